//! Bounded storage and pruning cost: a year of 10 s cycles for `BENCH_TARGETS` (default 50)
//! targets as the default retention leaves it (raw rows for the last 14 days, minute rollups
//! for 90 days, hour rollups for the whole year), then one simulated day of steady-state
//! operation (`write_cycle` + one `prune` per cycle, as the agent's writer does), then a
//! backlog of one day pruned batch by batch.
//!
//! ```text
//! cargo bench -p heartbeat-store --features synthetic --bench retention
//! ```
//!
//! `BENCH_DAYS` (default 365) is the age of the oldest data. Prints figures, asserts nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use heartbeat_store::synthetic::{DEFAULT_CHUNK_CYCLES, Levels, Synthetic};
use heartbeat_store::{ReadStore, Retention, Store};

const STEP_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

/// Size of the database file and its WAL, in bytes.
fn size(db: &Path) -> (u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (len(db), len(&db.with_extension("db-wal")))
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// (median, p99, max) in ms.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (v[n / 2], v[(n * 99 / 100).min(n - 1)], v[n - 1])
}

fn main() {
    let n_targets = usize::try_from(env_num("BENCH_TARGETS", 50)).unwrap();
    let days = env_num("BENCH_DAYS", 365);
    let retention = Retention::default();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");

    // The clock at the end of the generated year; cycles run on a 10 s grid up to it.
    let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let start = now - days * DAY_MS;
    let began = Instant::now();
    let mut synthetic = Synthetic::new(n_targets);
    {
        let mut store = Store::open(&db).unwrap();
        let mut bulk = store.bulk_writer(DEFAULT_CHUNK_CYCLES).unwrap();
        let mut ts = start;
        while ts < now {
            let age = now - ts;
            let levels = Levels {
                raw: age < ms(retention.raw),
                minute: age < ms(retention.minute),
                hour: age < ms(retention.hour),
            };
            bulk.append_levels(&synthetic.cycle(ts), levels).unwrap();
            ts += STEP_MS;
        }
        bulk.finish().unwrap();
    }
    let (file, wal) = size(&db);
    let r = ReadStore::open(&db).unwrap();
    println!(
        "generated {days} days x 10 s x {n_targets} targets at the default retention in {:.0} s: \
         {} cycles, {} raw checks; database {:.1} MB + WAL {:.1} MB",
        began.elapsed().as_secs_f64(),
        r.cycle_count().unwrap(),
        r.check_count().unwrap(),
        mb(file),
        mb(wal)
    );
    drop(r);

    // One day of steady state: the agent's writer loop (write, then one bounded prune).
    let mut store = Store::open(&db).unwrap();
    let (mut writes, mut prunes) = (Vec::new(), Vec::new());
    let mut ts = now;
    while ts < now + DAY_MS {
        let cycle = synthetic.cycle(ts);
        let t = Instant::now();
        store.write_cycle(&cycle).unwrap();
        writes.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        store.prune(ts, &retention).unwrap();
        prunes.push(t.elapsed().as_secs_f64() * 1e3);
        ts += STEP_MS;
    }
    let (w50, w99, wmax) = spread(writes);
    let (p50, p99, pmax) = spread(prunes);
    let (file2, wal2) = size(&db);
    println!(
        "steady state, 8 640 cycles of {n_targets} checks: write_cycle median {w50:.3} ms \
         p99 {w99:.3} max {wmax:.3}; prune median {p50:.3} ms p99 {p99:.3} max {pmax:.3}; \
         database {:.1} MB + WAL {:.1} MB after the day",
        mb(file2),
        mb(wal2)
    );

    // A backlog (e.g. retention shortened, or the agent was stopped for a day): full batches.
    let mut batches = Vec::new();
    loop {
        let t = Instant::now();
        let more = store.prune(ts + DAY_MS, &retention).unwrap();
        batches.push(t.elapsed().as_secs_f64() * 1e3);
        if !more {
            break;
        }
    }
    let n = batches.len();
    let (b50, b99, bmax) = spread(batches);
    println!(
        "backlog of one day: {n} prune calls (at most {} rows each): median {b50:.2} ms \
         p99 {b99:.2} max {bmax:.2}",
        heartbeat_store::PRUNE_BATCH
    );
}
