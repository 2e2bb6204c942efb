//! Fast bulk generation of large databases, for benchmarks and storage estimates only
//! (cargo feature `synthetic`; the agent never enables it).
//!
//! [`BulkWriter`] writes the same rows as [`Store::write_cycle`]: the cycle and check rows go
//! through the same insert helpers, and the rollups are accumulated in memory
//! (`rollup::CheckAcc`/`CycleAcc`) and merged with the write-time conflict rules. Per-check
//! work is one prepared INSERT instead of a transaction and four set-based UPSERTs per cycle,
//! and many cycles share one transaction. Chunks end on hour boundaries, so no rollup bucket
//! is split across two merges and the sums are bit-identical to cycle-by-cycle writing (when
//! each target has at most one check per cycle, as the agent writes); every committed chunk
//! leaves rollups and raw rows in agreement.
//!
//! [`Synthetic`] produces deterministic, realistic-looking cycles for any number of targets.

use std::collections::BTreeMap;

use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck, TargetRef,
};

use crate::rollup::{CheckAcc, CycleAcc, HOUR_MS, MINUTE_MS, align};
use crate::{
    Store, StoreError, insert_check_row, insert_cycle_row, prepare_check_insert, resolve_target,
};

/// Which resolutions a cycle is written to. Data older than a retention limit exists only at
/// the coarser levels, so [`Levels`] lets a generator build a database exactly as retention
/// leaves it (e.g. raw 14 d, minutes 90 d, hours 2 y) without writing and pruning a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub raw: bool,
    pub minute: bool,
    pub hour: bool,
}

impl Levels {
    /// Raw rows and both rollups: what `write_cycle` writes.
    pub const ALL: Levels = Levels {
        raw: true,
        minute: true,
        hour: true,
    };
}

/// Default cycles per transaction (a few hours of 10 s cycles).
pub const DEFAULT_CHUNK_CYCLES: usize = 2_000;

/// Appends cycles in large transactions. Cycles must come in non-decreasing `started_at_ms`
/// order. Call [`BulkWriter::finish`]; dropping it instead rolls back the open chunk.
#[derive(Debug)]
pub struct BulkWriter<'a> {
    store: &'a mut Store,
    chunk_cycles: usize,
    in_chunk: usize,
    last_hour: Option<i64>,
    in_tx: bool,
    check_1m: BTreeMap<(i64, i64), CheckAcc>,
    check_1h: BTreeMap<(i64, i64), CheckAcc>,
    cycle_1m: BTreeMap<i64, CycleAcc>,
    cycle_1h: BTreeMap<i64, CycleAcc>,
}

impl Store {
    /// A [`BulkWriter`] committing every `chunk_cycles` cycles (at the next hour boundary).
    pub fn bulk_writer(&mut self, chunk_cycles: usize) -> Result<BulkWriter<'_>, StoreError> {
        if !self.rollups {
            return Err(StoreError::InvalidQuery(
                "bulk writing needs the rollup tables (schema v3 or later)".into(),
            ));
        }
        Ok(BulkWriter {
            store: self,
            chunk_cycles: chunk_cycles.max(1),
            in_chunk: 0,
            last_hour: None,
            in_tx: false,
            check_1m: BTreeMap::new(),
            check_1h: BTreeMap::new(),
            cycle_1m: BTreeMap::new(),
            cycle_1h: BTreeMap::new(),
        })
    }
}

impl BulkWriter<'_> {
    /// Appends `cycle` at every level, as `write_cycle` would; returns its cycle id.
    pub fn append(&mut self, cycle: &CycleRecord) -> Result<Option<i64>, StoreError> {
        self.append_levels(cycle, Levels::ALL)
    }

    /// Appends `cycle` to the chosen levels only; returns the cycle id when raw rows were written.
    pub fn append_levels(
        &mut self,
        cycle: &CycleRecord,
        levels: Levels,
    ) -> Result<Option<i64>, StoreError> {
        let ts = cycle.started_at_ms;
        let hour = align(ts, HOUR_MS);
        if self.in_chunk >= self.chunk_cycles && self.last_hour.is_some_and(|h| h != hour) {
            self.commit()?;
        }
        if !self.in_tx {
            self.store.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        self.in_chunk += 1;
        self.last_hour = Some(hour);
        let conn = &self.store.conn;
        let cycle_id = if levels.raw {
            Some(insert_cycle_row(conn, cycle)?)
        } else {
            None
        };
        let mut touched = Vec::new();
        let minute = align(ts, MINUTE_MS);
        let mut insert_check = prepare_check_insert(conn)?;
        for check in &cycle.checks {
            let target_id = resolve_target(
                conn,
                &mut self.store.targets,
                &check.target,
                ts,
                &mut touched,
            )?;
            let r = &check.result;
            if let Some(cycle_id) = cycle_id {
                insert_check_row(&mut insert_check, cycle_id, target_id, ts, r)?;
            }
            if levels.minute {
                let acc = self.check_1m.entry((target_id, minute)).or_default();
                acc.add(r.status.code(), r.latency_ms);
            }
            if levels.hour {
                let acc = self.check_1h.entry((target_id, hour)).or_default();
                acc.add(r.status.code(), r.latency_ms);
            }
        }
        if levels.minute {
            self.cycle_1m.entry(minute).or_default().add(cycle);
        }
        if levels.hour {
            self.cycle_1h.entry(hour).or_default().add(cycle);
        }
        Ok(cycle_id)
    }

    /// Merges the accumulated rollups and commits the open chunk.
    fn commit(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            return Ok(());
        }
        let conn = &self.store.conn;
        crate::rollup::upsert_checks(conn, "1m", &self.check_1m)?;
        crate::rollup::upsert_checks(conn, "1h", &self.check_1h)?;
        crate::rollup::upsert_cycles(conn, "1m", &self.cycle_1m)?;
        crate::rollup::upsert_cycles(conn, "1h", &self.cycle_1h)?;
        conn.execute_batch("COMMIT")?;
        self.in_tx = false;
        self.in_chunk = 0;
        self.check_1m.clear();
        self.check_1h.clear();
        self.cycle_1m.clear();
        self.cycle_1h.clear();
        Ok(())
    }

    /// Commits everything appended so far.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.commit()
    }
}

impl Drop for BulkWriter<'_> {
    fn drop(&mut self) {
        if self.in_tx {
            // Not finished (an error or an early return): the open chunk is discarded whole.
            let _ = self.store.conn.execute_batch("ROLLBACK");
            // Target ids cached during the chunk may not exist on disk any more.
            self.store.targets.clear();
        }
    }
}

/// Deterministic synthetic cycles: `n` targets (every fifth a `docker:` one), about 99 %
/// healthy with latencies of 2–52 ms, and rare down / timeout / HTTP 503 results; host metrics,
/// ping, and an occasional failed heartbeat answer. The same seed gives the same cycles.
#[derive(Debug, Clone)]
pub struct Synthetic {
    targets: Vec<TargetRef>,
    rng: u64,
    cycles: u64,
}

impl Synthetic {
    pub fn new(n_targets: usize) -> Synthetic {
        let targets = (0..n_targets)
            .map(|i| TargetRef {
                name: format!("svc{i:02}"),
                kind: if i % 5 == 4 { "docker" } else { "http" }.to_owned(),
                url: format!("http://svc{i}.internal/health"),
            })
            .collect();
        Synthetic {
            targets,
            rng: 0x9e37_79b9_7f4a_7c15,
            cycles: 0,
        }
    }

    /// xorshift64: fast, and good enough to spread statuses and latencies.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The next cycle, started at `ts_ms`.
    // Small integers to f64 are exact here.
    #[allow(clippy::cast_precision_loss)]
    pub fn cycle(&mut self, ts_ms: i64) -> CycleRecord {
        let mut checks = Vec::with_capacity(self.targets.len());
        for i in 0..self.targets.len() {
            let r = self.next();
            let result = match r % 1000 {
                0..=4 => CheckResult::failed(Status::Down, "connection refused"),
                5..=7 => CheckResult::failed(Status::Timeout, "timed out after 2s"),
                8..=9 => CheckResult {
                    status: Status::Error,
                    status_code: Some(503),
                    latency_ms: Some(40.0),
                    error_message: Some("HTTP 503".into()),
                },
                _ => CheckResult::healthy(2.0 + ((r >> 20) % 200) as f64 / 4.0, Some(200)),
            };
            checks.push(TargetCheck {
                target: self.targets[i].clone(),
                result,
            });
        }
        let r = self.next();
        self.cycles += 1;
        CycleRecord {
            started_at_ms: ts_ms,
            host: HostMetrics {
                cpu_percent: Some((r % 1000) as f64 / 10.0),
                ram_percent: Some(40.0 + (r % 100) as f64 / 10.0),
                ram_used_mb: Some(2048.0),
                disk_percent: Some(61.5),
                uptime_seconds: Some((self.cycles * 10) as f64),
                container_count: Some(12),
            },
            connectivity: Connectivity {
                internet_status: Some(!r.is_multiple_of(500)),
                ping_ms: Some(10.0 + (r % 300) as f64 / 10.0),
            },
            worker_status: Some(if r.is_multiple_of(300) { 500 } else { 200 }),
            worker_error: None,
            cycle_duration_ms: 15.0 + (r % 50) as f64,
            checks,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{RangeQuery, ReadStore};
    use rusqlite::types::Value;

    /// Every row of `table` in key order, as SQLite values.
    fn dump(store: &Store, table: &str, order: &str) -> Vec<Vec<Value>> {
        let mut stmt = store
            .conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let cols = stmt.column_count();
        stmt.query_map([], |r| (0..cols).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Awkward inputs on top of the synthetic profile: missing and NaN values, every status,
    /// unusual heartbeat answers, a target that joins late and one that changes its URL.
    fn awkward(s: &mut Synthetic, i: i64, ts: i64) -> CycleRecord {
        let mut c = s.cycle(ts);
        if i % 7 == 0 {
            c.host.cpu_percent = None;
            c.connectivity.ping_ms = None;
            c.connectivity.internet_status = None;
        }
        if i % 11 == 0 {
            c.cycle_duration_ms = f64::NAN;
            c.host.disk_percent = Some(f64::NAN);
        }
        c.worker_status = [Some(200), Some(220), Some(221), Some(500), Some(404), None]
            [usize::try_from(i % 6).unwrap()];
        let status = Status::ALL[usize::try_from(i % 5).unwrap()];
        c.checks[0].result = CheckResult {
            status,
            status_code: (i % 3 == 0).then_some(502),
            latency_ms: match i % 4 {
                0 => None,
                1 => Some(f64::NAN),
                _ => Some(0.1 * i as f64),
            },
            error_message: (!status.is_healthy()).then(|| format!("<b>err {}</b>", i % 3)),
        };
        if i > 500 {
            c.checks.push(TargetCheck {
                target: TargetRef {
                    name: "late".into(),
                    kind: "http".into(),
                    url: format!("http://late/{}", i / 400),
                },
                result: CheckResult::healthy(1.0 / 3.0 * i as f64, None),
            });
        }
        c
    }

    #[test]
    fn bulk_writer_produces_exactly_what_write_cycle_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (slow, fast) = (dir.path().join("slow.db"), dir.path().join("fast.db"));
        // 5.5 hours of 10 s cycles, starting mid-hour, for 6 targets (+ the late one).
        let start = 1_700_000_000_000 - 1_234_000;
        let cycles = 2_000;
        {
            let mut store = Store::open(&slow).unwrap();
            let mut s = Synthetic::new(6);
            for i in 0..cycles {
                store
                    .write_cycle(&awkward(&mut s, i, start + i * 10_000))
                    .unwrap();
            }
        }
        {
            let mut store = Store::open(&fast).unwrap();
            let mut s = Synthetic::new(6);
            // A small chunk, so several commits (and hour-boundary cuts) happen.
            let mut bulk = store.bulk_writer(300).unwrap();
            for i in 0..cycles {
                bulk.append(&awkward(&mut s, i, start + i * 10_000))
                    .unwrap();
            }
            bulk.finish().unwrap();
        }
        let (a, b) = (Store::open(&slow).unwrap(), Store::open(&fast).unwrap());
        for (table, order) in [
            ("targets", "id"),
            ("monitoring_cycles", "id"),
            ("service_checks", "id"),
            ("check_rollup_1m", "target_id, bucket_ms"),
            ("check_rollup_1h", "target_id, bucket_ms"),
            ("cycle_rollup_1m", "bucket_ms"),
            ("cycle_rollup_1h", "bucket_ms"),
        ] {
            let (x, y) = (dump(&a, table, order), dump(&b, table, order));
            assert!(!x.is_empty(), "{table} is empty");
            assert_eq!(x.len(), y.len(), "{table} row count");
            for (rx, ry) in x.iter().zip(&y) {
                assert_eq!(rx, ry, "{table}");
            }
        }
        // And so every dashboard answer is the same, from every source.
        let (ra, rb) = (
            ReadStore::open(&slow).unwrap(),
            ReadStore::open(&fast).unwrap(),
        );
        for bucket_ms in [10_000, 60_000, 600_000, 3_600_000] {
            let q = RangeQuery {
                from_ms: start,
                to_ms: start + cycles * 10_000,
                bucket_ms,
            };
            assert_eq!(ra.dashboard(&q).unwrap(), rb.dashboard(&q).unwrap());
            for name in ["svc00", "late"] {
                assert_eq!(
                    ra.target_detail(name, &q).unwrap(),
                    rb.target_detail(name, &q).unwrap()
                );
            }
        }
    }

    #[test]
    fn levels_skip_resolutions_and_a_dropped_writer_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.db")).unwrap();
        let mut s = Synthetic::new(3);
        let t0 = 1_700_002_800_000; // an hour boundary
        let mut bulk = store.bulk_writer(1).unwrap();
        let hour_only = Levels {
            raw: false,
            minute: false,
            hour: true,
        };
        assert_eq!(bulk.append_levels(&s.cycle(t0), hour_only).unwrap(), None);
        bulk.append(&s.cycle(t0 + HOUR_MS)).unwrap();
        bulk.finish().unwrap();
        let count = |store: &Store, table: &str| -> i64 {
            store
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&store, "monitoring_cycles"), 1);
        assert_eq!(count(&store, "service_checks"), 3);
        assert_eq!(count(&store, "check_rollup_1m"), 3);
        assert_eq!(count(&store, "check_rollup_1h"), 6);
        assert_eq!(count(&store, "cycle_rollup_1h"), 2);

        // Not finished: nothing of the open chunk stays, and write_cycle still works after.
        let mut bulk = store.bulk_writer(10).unwrap();
        bulk.append(&s.cycle(t0 + 2 * HOUR_MS)).unwrap();
        drop(bulk);
        assert_eq!(count(&store, "monitoring_cycles"), 1);
        assert_eq!(count(&store, "cycle_rollup_1h"), 2);
        store.write_cycle(&s.cycle(t0 + 3 * HOUR_MS)).unwrap();
        assert_eq!(count(&store, "service_checks"), 6);
    }
}
