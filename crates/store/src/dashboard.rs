//! The dashboard's reads: bucketed series and window statistics, from raw rows or rollups.
//!
//! Every answer is read in one read transaction (one snapshot) that lasts only as long as
//! the queries, so the writer's checkpoints are never held up for long. Aggregation happens
//! in SQLite (`GROUP BY` bucket index); Rust only places the groups into their buckets, so an
//! empty bucket stays `None` and no value is ever invented.

use std::collections::HashMap;

use heartbeat_core::{Connectivity, HostMetrics, Status, TargetRef};
use rusqlite::{Connection, Row, params};

use crate::StoreError;
use crate::StoredIncident;
use crate::read::{INCIDENT_SELECT, incident_from_row};
use crate::rollup::{HOUR_MS, MINUTE_MS, align};

/// Most buckets one query may ask for (bad input must not allocate without bound).
pub const MAX_BUCKETS: i64 = 10_000;
/// Most incidents returned by [`TargetDetail`].
const MAX_INCIDENTS: i64 = 100;
/// Most distinct error messages returned by [`TargetDetail`].
const MAX_ERRORS: usize = 20;
/// How many of the most recent minutes with failures are searched for error messages.
const ERROR_MINUTES: i64 = 500;
/// How many of the latest cycles estimate the cycle interval for [`Coverage`].
const INTERVAL_SAMPLE: i64 = 101;

/// A time range cut into buckets.
///
/// Buckets are aligned to multiples of `bucket_ms` since the Unix epoch (UTC), and the range
/// is widened to whole buckets: the answer covers
/// `[floor(from_ms / bucket_ms) * bucket_ms, ceil(to_ms / bucket_ms) * bucket_ms)`.
/// Because the widened range consists of whole buckets, the rollups answer it exactly: the
/// source is the hour rollup when `bucket_ms` is a multiple of one hour, the minute rollup when
/// it is a multiple of one minute, and the raw rows otherwise (see [`Source::for_bucket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
}

/// The aligned window of a [`RangeQuery`].
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
    bucket: i64,
    len: usize,
    source: Source,
}

impl RangeQuery {
    fn window(&self) -> Result<Window, StoreError> {
        let bad = |m: String| Err(StoreError::InvalidQuery(m));
        if self.bucket_ms <= 0 {
            return bad(format!(
                "bucket_ms must be positive, got {}",
                self.bucket_ms
            ));
        }
        if self.from_ms < 0 {
            return bad(format!(
                "from_ms must not be negative, got {}",
                self.from_ms
            ));
        }
        if self.to_ms <= self.from_ms {
            return bad(format!(
                "to_ms ({}) must be after from_ms ({})",
                self.to_ms, self.from_ms
            ));
        }
        let start = align(self.from_ms, self.bucket_ms);
        let last = align(self.to_ms.saturating_sub(1), self.bucket_ms);
        let count = (last - start) / self.bucket_ms + 1;
        if count > MAX_BUCKETS {
            return bad(format!("{count} buckets requested, at most {MAX_BUCKETS}"));
        }
        Ok(Window {
            start,
            end: last.saturating_add(self.bucket_ms),
            bucket: self.bucket_ms,
            len: usize::try_from(count).unwrap_or(0),
            source: Source::for_bucket(self.bucket_ms),
        })
    }
}

impl Window {
    fn starts(&self) -> Vec<i64> {
        (0..self.len)
            .map(|i| self.start + i64::try_from(i).unwrap_or(0) * self.bucket)
            .collect()
    }

    fn slot(&self, index: i64) -> Option<usize> {
        usize::try_from(index).ok().filter(|&i| i < self.len)
    }
}

/// Where a query's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Raw,
    Minute,
    Hour,
}

impl Source {
    /// The coarsest source whose buckets tile `bucket_ms` exactly.
    pub fn for_bucket(bucket_ms: i64) -> Source {
        if bucket_ms % HOUR_MS == 0 {
            Source::Hour
        } else if bucket_ms % MINUTE_MS == 0 {
            Source::Minute
        } else {
            Source::Raw
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Minute => "minute",
            Source::Hour => "hour",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Source::Hour => "1h",
            Source::Minute | Source::Raw => "1m",
        }
    }
}

/// Number of checks per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub healthy: u64,
    pub down: u64,
    pub error: u64,
    pub timeout: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn total(&self) -> u64 {
        self.healthy + self.down + self.error + self.timeout + self.unknown
    }

    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Healthy => self.healthy,
            Status::Down => self.down,
            Status::Error => self.error,
            Status::Timeout => self.timeout,
            Status::Unknown => self.unknown,
        }
    }

    fn add(&mut self, o: &StatusCounts) {
        self.healthy += o.healthy;
        self.down += o.down;
        self.error += o.error;
        self.timeout += o.timeout;
        self.unknown += o.unknown;
    }
}

/// Aggregate of a set of values (latencies, durations): how many, their sum, min and max.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyAgg {
    pub n: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl LatencyAgg {
    /// Mean, or `None` without values.
    pub fn avg(&self) -> Option<f64> {
        // u64 → f64 is exact far beyond any row count.
        #[allow(clippy::cast_precision_loss)]
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// `max - min`, or `None` without values.
    pub fn jitter(&self) -> Option<f64> {
        Some(self.max? - self.min?)
    }

    fn add(&mut self, o: &LatencyAgg) {
        self.n += o.n;
        self.sum += o.sum;
        self.min = min_opt(self.min, o.min);
        self.max = max_opt(self.max, o.max);
    }
}

pub(crate) fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Checks of one target within one bucket (only buckets that have checks exist).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckBucket {
    pub start_ms: i64,
    pub counts: StatusCounts,
    /// Over the checks that have a latency.
    pub latency: LatencyAgg,
}

/// Statistics of one target over the whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckStats {
    pub counts: StatusCounts,
    pub latency: LatencyAgg,
}

impl CheckStats {
    /// Healthy checks / all checks × 100; `None` without checks.
    pub fn uptime_pct(&self) -> Option<f64> {
        pct(self.counts.healthy, self.counts.total())
    }
}

/// `part / whole × 100`, `None` when `whole` is 0.
#[allow(clippy::cast_precision_loss)]
fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Answers of the outbound heartbeat (`worker_status`) counted per cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    pub ok_200: u64,
    pub blind_220: u64,
    pub partial_221: u64,
    pub critical_500: u64,
    pub other: u64,
    /// `worker_status` NULL: no answer (failed, skipped, or no heartbeat configured).
    pub none: u64,
}

impl WorkerCounts {
    fn add(&mut self, o: &WorkerCounts) {
        self.ok_200 += o.ok_200;
        self.blind_220 += o.blind_220;
        self.partial_221 += o.partial_221;
        self.critical_500 += o.critical_500;
        self.other += o.other;
        self.none += o.none;
    }
}

/// The cycles within one bucket (only buckets that have cycles exist).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleBucket {
    pub start_ms: i64,
    pub n: u64,
    /// Means over the cycles that recorded the value; `None` when none did.
    pub cpu: Option<f64>,
    pub ram: Option<f64>,
    pub disk: Option<f64>,
    pub duration: LatencyAgg,
    pub ping: LatencyAgg,
    pub online: u64,
    pub offline: u64,
    pub worker: WorkerCounts,
}

/// The cycles over the whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CycleStats {
    pub n: u64,
    pub duration: LatencyAgg,
    pub ping: LatencyAgg,
    pub online: u64,
    pub offline: u64,
    pub worker: WorkerCounts,
}

/// How much of the range has cycles.
///
/// Method: the cycle interval is the median gap between the latest (up to 101) cycles that
/// started before the window's end; `covered_ms = min(cycles × interval_ms, range_ms)` and
/// `ratio = covered_ms / range_ms`, where `range_ms` runs from the aligned window start to the
/// query's `to_ms`. `None`s when fewer than two cycles exist to estimate the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coverage {
    /// Cycles in the window.
    pub cycles: u64,
    pub interval_ms: Option<i64>,
    pub covered_ms: Option<i64>,
    pub range_ms: i64,
    /// `covered_ms / range_ms`, 0..=1.
    pub ratio: Option<f64>,
}

/// The newest check of a target (at or before the window's end).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestCheck {
    pub ts_ms: i64,
    pub status: Status,
    pub status_code: Option<u16>,
    pub latency_ms: Option<f64>,
    pub error_message: Option<String>,
}

/// The newest cycle (at or before the window's end), without its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestCycle {
    pub id: i64,
    pub ts_ms: i64,
    pub host: HostMetrics,
    pub connectivity: Connectivity,
    pub worker_status: Option<i64>,
    pub worker_error: Option<String>,
    pub cycle_duration_ms: Option<f64>,
}

/// One target's buckets and window statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSeries {
    pub id: i64,
    pub target: TargetRef,
    pub latest: Option<LatestCheck>,
    /// One entry per bucket of [`DashboardData::bucket_starts`]; `None` = no checks.
    pub buckets: Vec<Option<CheckBucket>>,
    pub stats: CheckStats,
}

/// Everything the dashboard's overview shows for one range.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardData {
    /// Aligned window `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub source: Source,
    pub bucket_starts: Vec<i64>,
    /// One entry per bucket; `None` = no cycles.
    pub cycles: Vec<Option<CycleBucket>>,
    pub cycle_stats: CycleStats,
    pub coverage: Coverage,
    pub latest_cycle: Option<LatestCycle>,
    /// Targets with checks in the window or in the latest cycle, by id.
    pub targets: Vec<TargetSeries>,
}

/// One distinct error message of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSummary {
    pub message: String,
    pub count: u64,
    pub last_seen_ms: i64,
}

/// One target in depth.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetDetail {
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub source: Source,
    pub bucket_starts: Vec<i64>,
    /// Series, window statistics (`stats.counts` is the status distribution) and latest check.
    pub series: TargetSeries,
    /// Incidents of this target overlapping the window, newest first (at most 100).
    pub incidents: Vec<StoredIncident>,
    /// Distinct error messages, most recently seen first (at most 20), counted over the raw
    /// rows of the 500 most recent minutes with failures in the window (raw rows are kept
    /// for the raw retention only).
    pub errors: Vec<ErrorSummary>,
}

fn count(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(r.get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
}

fn agg(r: &Row<'_>, first: usize, with_min_max: bool) -> rusqlite::Result<LatencyAgg> {
    Ok(LatencyAgg {
        n: count(r, first)?,
        sum: r.get::<_, Option<f64>>(first + 1)?.unwrap_or(0.0),
        min: if with_min_max {
            r.get(first + 2)?
        } else {
            None
        },
        max: if with_min_max {
            r.get(first + 3)?
        } else {
            None
        },
    })
}

/// Per-bucket check aggregates; columns: target_id, bucket index, n, 5 status counts,
/// lat_n, lat_sum, lat_min, lat_max.
fn check_sql(source: Source, one_target: bool) -> String {
    match source {
        Source::Raw => format!(
            "SELECT target_id, (ts_ms - ?1) / ?3 AS i, count(*), sum(status = 0), \
             sum(status = 1), sum(status = 2), sum(status = 3), sum(status NOT IN (0, 1, 2, 3)), \
             count(latency_ms), total(latency_ms), min(latency_ms), max(latency_ms) \
             FROM service_checks WHERE ts_ms >= ?1 AND ts_ms < ?2 {} GROUP BY target_id, i",
            if one_target { "AND target_id = ?4" } else { "" }
        ),
        // One aggregate per (target, bucket), without GROUP BY: the rows arrive in key order,
        // and a GROUP BY on the computed bucket index would sort them all through a temporary
        // B-tree (measured 5x slower for 50 targets x 1 440 minute rows).
        Source::Minute | Source::Hour => format!(
            "SELECT ?4, ?5, sum(n), sum(n_healthy), sum(n_down), sum(n_error), sum(n_timeout), \
             sum(n_unknown), sum(lat_n), total(lat_sum), min(lat_min), max(lat_max) \
             FROM check_rollup_{} WHERE target_id = ?4 AND bucket_ms >= ?1 AND bucket_ms < ?2 \
             AND ?3 IS NOT NULL",
            source.suffix()
        ),
    }
}

/// Buckets per target id, for `ids` (all targets when reading raw rows without `one`).
fn check_buckets(
    conn: &Connection,
    w: &Window,
    ids: &[i64],
    one: Option<i64>,
) -> Result<HashMap<i64, Vec<Option<CheckBucket>>>, StoreError> {
    let mut out: HashMap<i64, Vec<Option<CheckBucket>>> = HashMap::new();
    let mut place = |r: &Row<'_>| -> Result<(), StoreError> {
        let id: i64 = r.get(0)?;
        let index: i64 = r.get(1)?;
        let Some(slot) = w.slot(index) else {
            return Ok(());
        };
        let bucket = CheckBucket {
            start_ms: w.start + index * w.bucket,
            counts: StatusCounts {
                healthy: count(r, 3)?,
                down: count(r, 4)?,
                error: count(r, 5)?,
                timeout: count(r, 6)?,
                unknown: count(r, 7)?,
            },
            latency: agg(r, 8, true)?,
        };
        let series = out.entry(id).or_insert_with(|| vec![None; w.len]);
        if let Some(cell) = series.get_mut(slot) {
            *cell = Some(bucket);
        }
        Ok(())
    };
    match (w.source, one) {
        (Source::Raw, None) => {
            let mut stmt = conn.prepare_cached(&check_sql(Source::Raw, false))?;
            let mut rows = stmt.query(params![w.start, w.end, w.bucket])?;
            while let Some(r) = rows.next()? {
                place(r)?;
            }
        }
        (Source::Raw, Some(id)) => {
            let mut stmt = conn.prepare_cached(&check_sql(Source::Raw, true))?;
            let mut rows = stmt.query(params![w.start, w.end, w.bucket, id])?;
            while let Some(r) = rows.next()? {
                place(r)?;
            }
        }
        (source, _) => {
            let mut stmt = conn.prepare_cached(&check_sql(source, true))?;
            for &id in one.as_ref().map(std::slice::from_ref).unwrap_or(ids) {
                for (index, from) in (0_i64..).zip(w.starts()) {
                    let to = from + w.bucket;
                    let mut rows = stmt.query(params![from, to, w.bucket, id, index])?;
                    while let Some(r) = rows.next()? {
                        // An aggregate without rows gives one row of NULLs: an empty bucket.
                        if r.get::<_, Option<i64>>(2)?.is_some() {
                            place(r)?;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn stats_of(buckets: &[Option<CheckBucket>]) -> CheckStats {
    let mut s = CheckStats::default();
    for b in buckets.iter().flatten() {
        s.counts.add(&b.counts);
        s.latency.add(&b.latency);
    }
    s
}

fn cycle_sql(source: Source) -> String {
    match source {
        Source::Raw => "SELECT (ts_ms - ?1) / ?3 AS i, count(*), \
             count(cpu_percent), total(cpu_percent), count(ram_percent), total(ram_percent), \
             count(disk_percent), total(disk_percent), \
             count(cycle_duration_ms), total(cycle_duration_ms), min(cycle_duration_ms), \
             max(cycle_duration_ms), count(ping_ms), total(ping_ms), min(ping_ms), max(ping_ms), \
             sum(coalesce(internet_status <> 0, 0)), sum(coalesce(internet_status = 0, 0)), \
             sum(coalesce(worker_status = 200, 0)), sum(coalesce(worker_status = 220, 0)), \
             sum(coalesce(worker_status = 221, 0)), sum(coalesce(worker_status = 500, 0)), \
             sum(coalesce(worker_status NOT IN (200, 220, 221, 500), 0)), \
             sum(worker_status IS NULL) \
             FROM monitoring_cycles WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY i"
            .to_owned(),
        Source::Minute | Source::Hour => format!(
            "SELECT (bucket_ms - ?1) / ?3 AS i, sum(n), sum(cpu_n), total(cpu_sum), sum(ram_n), \
             total(ram_sum), sum(disk_n), total(disk_sum), sum(dur_n), total(dur_sum), \
             min(dur_min), max(dur_max), sum(ping_n), total(ping_sum), min(ping_min), \
             max(ping_max), sum(online_n), sum(offline_n), sum(w200_n), sum(w220_n), \
             sum(w221_n), sum(w500_n), sum(wother_n), sum(wnull_n) \
             FROM cycle_rollup_{} WHERE bucket_ms >= ?1 AND bucket_ms < ?2 GROUP BY i",
            source.suffix()
        ),
    }
}

fn cycle_buckets(conn: &Connection, w: &Window) -> Result<Vec<Option<CycleBucket>>, StoreError> {
    let mut out = vec![None; w.len];
    let mut stmt = conn.prepare_cached(&cycle_sql(w.source))?;
    let mut rows = stmt.query(params![w.start, w.end, w.bucket])?;
    while let Some(r) = rows.next()? {
        let index: i64 = r.get(0)?;
        let Some(slot) = w.slot(index) else {
            continue;
        };
        let mean =
            |n: usize| -> rusqlite::Result<Option<f64>> { agg(r, n, false).map(|a| a.avg()) };
        let bucket = CycleBucket {
            start_ms: w.start + index * w.bucket,
            n: count(r, 1)?,
            cpu: mean(2)?,
            ram: mean(4)?,
            disk: mean(6)?,
            duration: agg(r, 8, true)?,
            ping: agg(r, 12, true)?,
            online: count(r, 16)?,
            offline: count(r, 17)?,
            worker: WorkerCounts {
                ok_200: count(r, 18)?,
                blind_220: count(r, 19)?,
                partial_221: count(r, 20)?,
                critical_500: count(r, 21)?,
                other: count(r, 22)?,
                none: count(r, 23)?,
            },
        };
        if let Some(cell) = out.get_mut(slot) {
            *cell = Some(bucket);
        }
    }
    Ok(out)
}

fn cycle_stats(buckets: &[Option<CycleBucket>]) -> CycleStats {
    let mut s = CycleStats::default();
    for b in buckets.iter().flatten() {
        s.n += b.n;
        s.duration.add(&b.duration);
        s.ping.add(&b.ping);
        s.online += b.online;
        s.offline += b.offline;
        s.worker.add(&b.worker);
    }
    s
}

fn latest_cycle(conn: &Connection, before: i64) -> Result<Option<LatestCycle>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts_ms, cpu_percent, ram_percent, ram_used_mb, disk_percent, uptime_seconds, \
         container_count, internet_status, ping_ms, worker_status, worker_error, \
         cycle_duration_ms FROM monitoring_cycles WHERE ts_ms < ?1 \
         ORDER BY ts_ms DESC, id DESC LIMIT 1",
    )?;
    let mut rows = stmt.query([before])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(LatestCycle {
        id: r.get(0)?,
        ts_ms: r.get(1)?,
        host: HostMetrics {
            cpu_percent: r.get(2)?,
            ram_percent: r.get(3)?,
            ram_used_mb: r.get(4)?,
            disk_percent: r.get(5)?,
            uptime_seconds: r.get(6)?,
            container_count: r.get(7)?,
        },
        connectivity: Connectivity {
            internet_status: r.get(8)?,
            ping_ms: r.get(9)?,
        },
        worker_status: r.get(10)?,
        worker_error: r.get(11)?,
        cycle_duration_ms: r.get(12)?,
    }))
}

/// The newest check of target `id` before `before`: the newest minute rollup row locates its
/// minute (a key seek), then the raw rows of that minute give the check.
fn latest_check(
    conn: &Connection,
    id: i64,
    before: i64,
) -> Result<Option<LatestCheck>, StoreError> {
    let minute: Option<i64> = conn
        .prepare_cached(
            "SELECT max(bucket_ms) FROM check_rollup_1m WHERE target_id = ?1 AND bucket_ms < ?2",
        )?
        .query_row(params![id, before], |r| r.get(0))?;
    let Some(minute) = minute else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts_ms, status, status_code, latency_ms, error_message FROM service_checks \
         WHERE ts_ms >= ?2 AND ts_ms < ?3 AND target_id = ?1 ORDER BY ts_ms DESC, id DESC LIMIT 1",
    )?;
    let upto = before.min(minute.saturating_add(MINUTE_MS));
    let mut rows = stmt.query(params![id, minute, upto])?;
    match rows.next()? {
        Some(r) => Ok(Some(check_row(r)?)),
        None => Ok(None),
    }
}

/// The checks of cycle `cycle_id` by target id (the last one if a target has several).
fn latest_cycle_checks(
    conn: &Connection,
    cycle_id: i64,
) -> Result<HashMap<i64, LatestCheck>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts_ms, status, status_code, latency_ms, error_message, target_id \
         FROM service_checks WHERE cycle_id = ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([cycle_id])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        out.insert(r.get::<_, i64>(6)?, check_row(r)?);
    }
    Ok(out)
}

/// Columns: id, ts_ms, status, status_code, latency_ms, error_message.
fn check_row(r: &Row<'_>) -> Result<LatestCheck, StoreError> {
    let (status, status_code) = crate::read::decode_status(r.get(0)?, r.get(2)?, r.get(3)?)?;
    Ok(LatestCheck {
        ts_ms: r.get(1)?,
        status,
        status_code,
        latency_ms: r.get(4)?,
        error_message: r.get(5)?,
    })
}

fn coverage(
    conn: &Connection,
    w: &Window,
    q: &RangeQuery,
    cycles: u64,
) -> Result<Coverage, StoreError> {
    let ts: Vec<i64> = conn
        .prepare_cached(
            "SELECT ts_ms FROM monitoring_cycles WHERE ts_ms < ?1 ORDER BY ts_ms DESC LIMIT ?2",
        )?
        .query_map(params![w.end, INTERVAL_SAMPLE], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut gaps: Vec<i64> = ts
        .windows(2)
        .map(|p| p[0] - p[1])
        .filter(|&g| g > 0)
        .collect();
    gaps.sort_unstable();
    let interval_ms = gaps.get(gaps.len() / 2).copied();
    let range_ms = q.to_ms.min(w.end) - w.start;
    let covered_ms = interval_ms.map(|i| {
        i64::try_from(cycles)
            .unwrap_or(i64::MAX)
            .saturating_mul(i)
            .min(range_ms)
    });
    #[allow(clippy::cast_precision_loss)]
    let ratio = covered_ms
        .filter(|_| range_ms > 0)
        .map(|c| c as f64 / range_ms as f64);
    Ok(Coverage {
        cycles,
        interval_ms,
        covered_ms,
        range_ms,
        ratio,
    })
}

fn all_targets(conn: &Connection) -> Result<Vec<(i64, TargetRef)>, StoreError> {
    crate::read::targets(conn)
}

fn series_for(
    conn: &Connection,
    w: &Window,
    id: i64,
    target: TargetRef,
    buckets: &mut HashMap<i64, Vec<Option<CheckBucket>>>,
) -> Result<TargetSeries, StoreError> {
    let buckets = buckets.remove(&id).unwrap_or_else(|| vec![None; w.len]);
    Ok(TargetSeries {
        id,
        target,
        latest: latest_check(conn, id, w.end)?,
        stats: stats_of(&buckets),
        buckets,
    })
}

pub(crate) fn dashboard(conn: &Connection, q: &RangeQuery) -> Result<DashboardData, StoreError> {
    let w = q.window()?;
    let tx = conn.unchecked_transaction()?;
    let targets = all_targets(&tx)?;
    let ids: Vec<i64> = targets.iter().map(|(id, _)| *id).collect();
    let mut buckets = check_buckets(&tx, &w, &ids, None)?;
    let cycles = cycle_buckets(&tx, &w)?;
    let stats = cycle_stats(&cycles);
    let coverage = coverage(&tx, &w, q, stats.n)?;
    let latest = latest_cycle(&tx, w.end)?;
    let mut from_latest = match &latest {
        Some(c) => latest_cycle_checks(&tx, c.id)?,
        None => HashMap::new(),
    };
    let mut series = Vec::new();
    for (id, target) in targets {
        let s = match from_latest.remove(&id) {
            Some(check) => {
                let b = buckets.remove(&id).unwrap_or_else(|| vec![None; w.len]);
                TargetSeries {
                    id,
                    target,
                    latest: Some(check),
                    stats: stats_of(&b),
                    buckets: b,
                }
            }
            None => series_for(&tx, &w, id, target, &mut buckets)?,
        };
        let in_latest = match (&s.latest, &latest) {
            (Some(check), Some(cycle)) => check.ts_ms == cycle.ts_ms,
            _ => false,
        };
        if s.stats.counts.total() > 0 || in_latest {
            series.push(s);
        }
    }
    tx.finish()?;
    Ok(DashboardData {
        from_ms: w.start,
        to_ms: w.end,
        bucket_ms: w.bucket,
        source: w.source,
        bucket_starts: w.starts(),
        cycles,
        cycle_stats: stats,
        coverage,
        latest_cycle: latest,
        targets: series,
    })
}

pub(crate) fn target_detail(
    conn: &Connection,
    name: &str,
    q: &RangeQuery,
) -> Result<Option<TargetDetail>, StoreError> {
    let w = q.window()?;
    let tx = conn.unchecked_transaction()?;
    let found = tx
        .prepare_cached("SELECT id, name, kind, url FROM targets WHERE name = ?1")?
        .query_map([name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                TargetRef {
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    url: r.get(3)?,
                },
            ))
        })?
        .next()
        .transpose()?;
    let Some((id, target)) = found else {
        return Ok(None);
    };
    let mut buckets = check_buckets(&tx, &w, &[id], Some(id))?;
    let series = series_for(&tx, &w, id, target, &mut buckets)?;
    let incidents = tx
        .prepare_cached(&format!(
            "{INCIDENT_SELECT} WHERE item = ?1 AND started_at_ms < ?3 \
             AND (ended_at_ms IS NULL OR ended_at_ms >= ?2) \
             ORDER BY started_at_ms DESC, id DESC LIMIT ?4"
        ))?
        .query_map(
            params![name, w.start, w.end, MAX_INCIDENTS],
            incident_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let errors = recent_errors(&tx, &w, id)?;
    tx.finish()?;
    Ok(Some(TargetDetail {
        from_ms: w.start,
        to_ms: w.end,
        bucket_ms: w.bucket,
        source: w.source,
        bucket_starts: w.starts(),
        series,
        incidents,
        errors,
    }))
}

/// Distinct error messages: the minute rollup finds the most recent minutes with a
/// non-healthy check (key seeks), and only those minutes' raw rows are read.
fn recent_errors(conn: &Connection, w: &Window, id: i64) -> Result<Vec<ErrorSummary>, StoreError> {
    let minutes: Vec<i64> = conn
        .prepare_cached(
            "SELECT bucket_ms FROM check_rollup_1m WHERE target_id = ?1 AND bucket_ms >= ?2 \
             AND bucket_ms < ?3 AND n_healthy < n ORDER BY bucket_ms DESC LIMIT ?4",
        )?
        .query_map(
            params![id, align(w.start, MINUTE_MS), w.end, ERROR_MINUTES],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT error_message, count(*), max(ts_ms) FROM service_checks \
         WHERE ts_ms >= ?2 AND ts_ms < ?3 AND target_id = ?1 AND error_message IS NOT NULL \
         GROUP BY error_message",
    )?;
    let mut found: HashMap<String, (u64, i64)> = HashMap::new();
    for minute in minutes {
        let from = minute.max(w.start);
        let to = minute.saturating_add(MINUTE_MS).min(w.end);
        let mut rows = stmt.query(params![id, from, to])?;
        while let Some(r) = rows.next()? {
            let message: String = r.get(0)?;
            let n = count(r, 1)?;
            let last: i64 = r.get(2)?;
            let e = found.entry(message).or_insert((0, last));
            e.0 += n;
            e.1 = e.1.max(last);
        }
    }
    let mut errors: Vec<ErrorSummary> = found
        .into_iter()
        .map(|(message, (count, last_seen_ms))| ErrorSummary {
            message,
            count,
            last_seen_ms,
        })
        .collect();
    errors.sort_by(|a, b| {
        b.last_seen_ms
            .cmp(&a.last_seen_ms)
            .then_with(|| a.message.cmp(&b.message))
    });
    errors.truncate(MAX_ERRORS);
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_aligns_and_widens_to_whole_buckets() {
        let q = RangeQuery {
            from_ms: 125_000,
            to_ms: 245_000,
            bucket_ms: 60_000,
        };
        let w = q.window().ok();
        let w = w.as_ref();
        assert_eq!(
            w.map(|w| (w.start, w.end, w.len)),
            Some((120_000, 300_000, 3))
        );
        let exact = RangeQuery {
            from_ms: 120_000,
            to_ms: 240_000,
            bucket_ms: 60_000,
        };
        assert_eq!(
            exact.window().ok().map(|w| (w.start, w.end, w.len)),
            Some((120_000, 240_000, 2))
        );
    }

    #[test]
    fn bad_ranges_are_errors_not_panics() {
        for (from_ms, to_ms, bucket_ms) in [
            (0, 10, 0),
            (10, 10, 1),
            (10, 0, 1),
            (0, i64::MAX, 1),
            (-5, 10, 1),
        ] {
            let q = RangeQuery {
                from_ms,
                to_ms,
                bucket_ms,
            };
            assert!(
                matches!(q.window(), Err(StoreError::InvalidQuery(_))),
                "{q:?}"
            );
        }
    }

    #[test]
    fn source_is_the_coarsest_that_tiles_the_bucket() {
        assert_eq!(Source::for_bucket(86_400_000), Source::Hour);
        assert_eq!(Source::for_bucket(20_160_000), Source::Minute); // 7 d / 30
        assert_eq!(Source::for_bucket(10_000), Source::Raw);
    }
}
