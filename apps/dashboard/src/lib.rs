//! `heartbeat-dashboard`: a read-only HTTP API, SVG badges and the embedded web UI over the
//! agent's SQLite database.
//!
//! The database is only ever opened through [`ReadStore`] (read-only). Connections are kept in
//! a tiny pool (at most [`POOL_IDLE`] idle, each reused for at most [`POOL_MAX_AGE`]); every
//! request's reads run in one short read transaction inside `spawn_blocking`. A missing or
//! uninitialised file is "no data yet" (503) and the next request simply tries again.

#![recursion_limit = "512"]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use heartbeat_core::Status;
use heartbeat_store::{
    CheckStats, DashboardData, LatencyAgg, RangeQuery, ReadStore, StoreError, TargetDetail,
    TargetSeries,
};
use jiff::tz::TimeZone;
use serde_json::{Value, json};

mod assets;
mod badge;
mod openapi;

pub use assets::embedded as embedded_assets;

/// Idle read-only connections kept for reuse.
pub const POOL_IDLE: usize = 2;
/// A pooled connection older than this is closed instead of reused.
pub const POOL_MAX_AGE: Duration = Duration::from_secs(30);

/// The ranges `/api/live` accepts, with their length in seconds (`live` = 5 minutes).
pub const RANGES: &[(&str, i64)] = &[
    ("live", 300),
    ("1h", 3_600),
    ("3h", 3 * 3_600),
    ("6h", 6 * 3_600),
    ("12h", 12 * 3_600),
    ("24h", 24 * 3_600),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];

/// Settings, resolved from the environment by `main`.
#[derive(Debug, Clone)]
pub struct Config {
    pub db_path: PathBuf,
    /// `TARGET_DATA_POINTS`: buckets per range (default 30).
    pub target_points: u32,
    /// `TZ`: only for display fields (`last_updated`, `history.times`).
    pub tz: TimeZone,
    /// `DASHBOARD_STALE_SECONDS`: `/health` is 503 when the newest cycle is older.
    pub stale_after: Duration,
}

impl Config {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Config {
            db_path: db_path.into(),
            target_points: 30,
            tz: TimeZone::UTC,
            stale_after: Duration::from_secs(60),
        }
    }
}

type Clock = dyn Fn() -> i64 + Send + Sync;

struct Inner {
    config: Config,
    pool: Mutex<Vec<(Instant, ReadStore)>>,
    clock: Box<Clock>,
}

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

fn system_now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl AppState {
    /// State using the system clock.
    pub fn new(config: Config) -> Self {
        AppState::with_clock(config, system_now_ms)
    }

    /// State with an injected clock (UTC ms), for tests and benchmarks.
    pub fn with_clock(config: Config, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        AppState(Arc::new(Inner {
            config,
            pool: Mutex::new(Vec::new()),
            clock: Box::new(clock),
        }))
    }

    fn now_ms(&self) -> i64 {
        (self.0.clock)()
    }

    /// A pooled connection younger than [`POOL_MAX_AGE`], or a new one; with its opening time.
    fn take_conn(&self) -> Result<(Instant, ReadStore), StoreError> {
        let pooled = self
            .0
            .pool
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .filter(|(opened, _)| opened.elapsed() < POOL_MAX_AGE);
        match pooled {
            Some(entry) => Ok(entry),
            None => Ok((Instant::now(), ReadStore::open(&self.0.config.db_path)?)),
        }
    }

    fn give_back(&self, conn: ReadStore, opened: Instant) {
        if opened.elapsed() >= POOL_MAX_AGE {
            return;
        }
        if let Ok(mut pool) = self.0.pool.lock()
            && pool.len() < POOL_IDLE
        {
            pool.push((opened, conn));
        }
    }

    /// Runs `f` on a read-only connection on the blocking pool. The connection goes back to
    /// the pool only after a successful read.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let (opened, conn) = state.take_conn()?;
            let out = f(&conn)?;
            state.give_back(conn, opened);
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("read task failed: {e}")))?
    }
}

/// Why a request failed; each maps to a status and a JSON body `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no data yet")]
    NotReady,
    #[error("unknown range {0:?}")]
    BadRange(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotReady { .. } => ApiError::NotReady,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "no data yet"}),
            ),
            ApiError::BadRange(r) => (
                StatusCode::BAD_REQUEST,
                json!({
                    "error": format!("unknown range {r:?}"),
                    "valid_ranges": RANGES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                }),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, json!({"error": what})),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error"}),
                )
            }
        };
        json_response(status, &body)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/live", get(live))
        .route("/api/services/{name}", get(service))
        .route("/api/openapi.json", get(openapi))
        .route("/badge/{name}/status.svg", get(badge_status))
        .route("/badge/{name}/uptime.svg", get(badge_uptime))
        .route("/badge/{name}/response-time.svg", get(badge_response_time))
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .fallback(fallback)
        .with_state(state)
}

async fn fallback(uri: Uri) -> Response {
    // Files at the top of assets/ are also served at the root (e.g. /favicon.ico).
    if let Some(res) = assets::lookup(uri.path().trim_start_matches('/')) {
        return res;
    }
    ApiError::NotFound(format!("no route for {}", uri.path())).into_response()
}

async fn openapi() -> Response {
    let mut res = json_response(StatusCode::OK, &openapi::document());
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

async fn health(State(state): State<AppState>) -> Response {
    let now = state.now_ms();
    let stale_s = state.0.config.stale_after.as_secs_f64();
    match state.read(|s| s.latest_cycle_ts_ms()).await {
        Ok(Some(last_cycle_ms)) => {
            #[allow(clippy::cast_precision_loss)]
            let age_s = (now - last_cycle_ms) as f64 / 1000.0;
            let fresh = age_s <= stale_s;
            json_response(
                if fresh {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &json!({
                    "status": if fresh { "ok" } else { "stale" },
                    "last_cycle_ms": last_cycle_ms,
                    "age_s": age_s,
                    "stale_after_s": stale_s,
                }),
            )
        }
        Ok(None) | Err(ApiError::NotReady) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "no data yet", "error": "no data yet"}),
        ),
        Err(e) => e.into_response(),
    }
}

/// Parsed `?range=`: name, and the query for it at `now_ms`.
#[derive(Debug, Clone)]
struct Range {
    name: &'static str,
    query: RangeQuery,
}

impl AppState {
    fn range(&self, params: &HashMap<String, String>, default: &str) -> Result<Range, ApiError> {
        let asked = params.get("range").map_or(default, String::as_str);
        let (name, seconds) = RANGES
            .iter()
            .find(|(n, _)| *n == asked)
            .copied()
            .ok_or_else(|| ApiError::BadRange(asked.chars().take(64).collect()))?;
        let range_ms = seconds * 1000;
        let points = i64::from(self.0.config.target_points.max(1));
        let bucket_ms = nice_bucket(range_ms / points);
        let now = self.now_ms();
        Ok(Range {
            name,
            query: RangeQuery {
                from_ms: now - range_ms,
                // Exclusive end: include a cycle stamped exactly `now`.
                to_ms: now + 1,
                bucket_ms,
            },
        })
    }
}

/// `range / points`, rounded to whole hours from one hour up and to whole minutes from one
/// minute up (so the hour or minute rollups can answer: 7d/30 = 5.6 h becomes 6 h and reads
/// 6 hour rows per bucket instead of 336 minute rows), to whole seconds below, never under one
/// second. A range then has about `points` buckets (7d: 29 instead of 31).
pub fn nice_bucket(ms: i64) -> i64 {
    if ms >= 3_600_000 {
        (ms + 1_800_000) / 3_600_000 * 3_600_000
    } else if ms >= 60_000 {
        (ms + 30_000) / 60_000 * 60_000
    } else {
        ((ms + 500) / 1000 * 1000).max(1000)
    }
}

fn stats_json(l: &LatencyAgg) -> Value {
    json!({"max": l.max, "avg": l.avg(), "min": l.min, "jitter": l.jitter()})
}

fn distribution_json(s: &CheckStats) -> Value {
    let mut m = serde_json::Map::new();
    for st in Status::ALL {
        m.insert(st.as_str().to_owned(), json!(s.counts.get(st)));
    }
    Value::Object(m)
}

fn service_stats_json(s: &CheckStats) -> Value {
    let total = s.counts.total();
    json!({
        "uptime": s.uptime_pct(),
        "success": s.counts.healthy,
        "failure": total - s.counts.healthy,
        "distribution": distribution_json(s),
        "max": s.latency.max,
        "avg": s.latency.avg(),
        "min": s.latency.min,
        "jitter": s.latency.jitter(),
    })
}

fn service_json(t: &TargetSeries) -> Value {
    let latest = t.latest.as_ref();
    json!({
        "name": t.target.name,
        "service_type": match t.target.kind.as_str() {
            kind @ ("docker" | "push") => kind,
            _ => "http",
        },
        "status": latest.map(|c| c.status.as_str()),
        "status_code": latest.and_then(|c| c.status_code),
        "latency": latest.and_then(|c| c.latency_ms),
        "error": latest.and_then(|c| c.error_message.as_deref()),
        "last_check_ms": latest.map(|c| c.ts_ms),
        "stats": service_stats_json(&t.stats),
    })
}

fn format_time(ms: i64, tz: &TimeZone) -> Option<String> {
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(
        ts.to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    )
}

#[allow(clippy::cast_precision_loss)]
fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn live_json(d: &DashboardData, range: &str, tz: &TimeZone) -> Value {
    let latest = d.latest_cycle.as_ref();
    let cs = &d.cycle_stats;
    let w = &cs.worker;
    let distribution: Vec<Value> = [
        ("200", w.ok_200),
        ("220", w.blind_220),
        ("221", w.partial_221),
        ("500", w.critical_500),
        ("other", w.other),
        ("null", w.none),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| json!({"value": n, "name": name}))
    .collect();
    let net_total = cs.online + cs.offline;

    let cyc = |f: &dyn Fn(&heartbeat_store::CycleBucket) -> Option<f64>| -> Vec<Option<f64>> {
        d.cycles.iter().map(|c| c.as_ref().and_then(f)).collect()
    };
    let mut services_hist = serde_json::Map::new();
    let mut services_detail = serde_json::Map::new();
    for t in &d.targets {
        let pick = |f: &dyn Fn(&heartbeat_store::CheckBucket) -> Option<f64>| -> Vec<Option<f64>> {
            t.buckets.iter().map(|b| b.as_ref().and_then(f)).collect()
        };
        services_hist.insert(t.target.name.clone(), json!(pick(&|b| b.latency.avg())));
        services_detail.insert(
            t.target.name.clone(),
            json!({
                "min": pick(&|b| b.latency.min),
                "max": pick(&|b| b.latency.max),
                "jitter": pick(&|b| b.latency.jitter()),
                "uptime": pick(&|b| pct(b.counts.healthy, b.counts.total())),
            }),
        );
    }
    let times: Vec<Option<String>> = d
        .bucket_starts
        .iter()
        .map(|&t| format_time(t, tz))
        .collect();

    json!({
        "last_updated": latest.and_then(|c| format_time(c.ts_ms, tz)),
        "last_updated_ms": latest.map(|c| c.ts_ms),
        "range": range,
        "bucket_seconds": d.bucket_ms / 1000,
        "source": d.source.as_str(),
        "timezone": tz.iana_name().unwrap_or("UTC"),
        "system": {
            "cpu": latest.and_then(|c| c.host.cpu_percent),
            "ram": latest.and_then(|c| c.host.ram_percent),
            "disk": latest.and_then(|c| c.host.disk_percent),
            "containers": latest.and_then(|c| c.host.container_count),
            "uptime": latest.and_then(|c| c.host.uptime_seconds),
        },
        "monitor": {
            "worker_status": latest.and_then(|c| c.worker_status),
            "uptime": { range: pct(w.ok_200, cs.n) },
            "distribution": distribution,
            "stats": stats_json(&cs.duration),
        },
        "network": {
            "internet_status": latest.and_then(|c| c.connectivity.internet_status).map(i32::from),
            "uptime": pct(cs.online, net_total),
            "uptime_counts": {"success": cs.online, "failure": cs.offline},
            "stats": stats_json(&cs.ping),
        },
        "services": d.targets.iter().map(service_json).collect::<Vec<_>>(),
        "history": {
            "times": times,
            "times_ms": d.bucket_starts,
            "system": {
                "cpu": cyc(&|c| c.cpu),
                "ram": cyc(&|c| c.ram),
                "disk": cyc(&|c| c.disk),
            },
            "cycle_duration": cyc(&|c| c.duration.avg()),
            "ping": cyc(&|c| c.ping.avg()),
            "services": services_hist,
            "services_detail": services_detail,
        },
        "coverage": {
            "cycles": d.coverage.cycles,
            "interval_seconds": d.coverage.interval_ms.map(|i| i / 1000),
            "covered_seconds": d.coverage.covered_ms.map(|c| c / 1000),
            "range_seconds": d.coverage.range_ms / 1000,
            "ratio": d.coverage.ratio,
            "method": "cycles x median interval of the latest cycles, capped at the range",
        },
    })
}

async fn live(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let range = state.range(&params, "1h")?;
    let q = range.query;
    let data = state.read(move |s| s.dashboard(&q)).await?;
    if data.latest_cycle.is_none() {
        // The schema exists but the agent has not finished a cycle yet.
        return Err(ApiError::NotReady);
    }
    Ok(json_response(
        StatusCode::OK,
        &live_json(&data, range.name, &state.0.config.tz),
    ))
}

/// A push target's newest progress task (LaneSwap style), without anything secret.
fn progress_json(t: &heartbeat_store::PushTask, tz: &TimeZone) -> Value {
    json!({
        "task_name": t.task_name,
        "status": t.status,
        "current_step": t.current_step,
        "total_steps": t.total_steps,
        "percentage": t.percentage(),
        "message": t.message,
        "updated_at_ms": t.updated_at_ms,
        "updated_at": format_time(t.updated_at_ms, tz),
    })
}

fn detail_json(d: &TargetDetail, range: &str, tz: &TimeZone) -> Value {
    let t = &d.series;
    let series: Vec<Value> = d
        .bucket_starts
        .iter()
        .zip(&t.buckets)
        .map(|(&start, b)| {
            let b = b.as_ref();
            json!({
                "time": format_time(start, tz),
                "time_ms": start,
                "n": b.map(|b| b.counts.total()),
                "uptime": b.and_then(|b| pct(b.counts.healthy, b.counts.total())),
                "avg": b.and_then(|b| b.latency.avg()),
                "min": b.and_then(|b| b.latency.min),
                "max": b.and_then(|b| b.latency.max),
                "jitter": b.and_then(|b| b.latency.jitter()),
            })
        })
        .collect();
    let mut service = service_json(t);
    if let Some(obj) = service.as_object_mut() {
        obj.insert("range".into(), json!(range));
        obj.insert("bucket_seconds".into(), json!(d.bucket_ms / 1000));
        obj.insert("source".into(), json!(d.source.as_str()));
        obj.insert("distribution".into(), distribution_json(&t.stats));
        obj.insert("series".into(), json!(series));
        obj.insert(
            "incidents".into(),
            json!(
                d.incidents
                    .iter()
                    .map(|i| json!({
                        "id": i.id,
                        "started_at_ms": i.started_at_ms,
                        "started_at": format_time(i.started_at_ms, tz),
                        "ended_at_ms": i.ended_at_ms,
                        "ended_at": i.ended_at_ms.and_then(|e| format_time(e, tz)),
                        "cause": i.cause,
                        "first_error": i.first_error,
                        "last_error": i.last_error,
                        "maintenance": i.maintenance,
                    }))
                    .collect::<Vec<_>>()
            ),
        );
        obj.insert(
            "errors".into(),
            json!(
                d.errors
                    .iter()
                    .map(|e| json!({
                        "message": e.message,
                        "count": e.count,
                        "last_seen_ms": e.last_seen_ms,
                        "last_seen": format_time(e.last_seen_ms, tz),
                    }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    service
}

async fn service(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let range = state.range(&params, "1h")?;
    let q = range.query;
    let lookup = name.clone();
    let (detail, task) = state
        .read(move |s| {
            let detail = s.target_detail(&lookup, &q)?;
            let push = detail
                .as_ref()
                .is_some_and(|d| d.series.target.kind == "push");
            let task = if push {
                s.push_latest_task(&lookup)?
            } else {
                None
            };
            Ok((detail, task))
        })
        .await?;
    let detail = detail.ok_or_else(|| ApiError::NotFound(format!("unknown service {name:?}")))?;
    let tz = &state.0.config.tz;
    let mut body = detail_json(&detail, range.name, tz);
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "progress".into(),
            task.as_ref().map_or(Value::Null, |t| progress_json(t, tz)),
        );
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn badge_detail(
    state: &AppState,
    name: String,
    params: &HashMap<String, String>,
) -> Result<TargetDetail, ApiError> {
    let range = state.range(params, "24h")?;
    let q = range.query;
    let lookup = name.clone();
    state
        .read(move |s| s.target_detail(&lookup, &q))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown service {name:?}")))
}

async fn badge_status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let d = badge_detail(
        &state,
        name.clone(),
        &HashMap::from([("range".into(), "live".into())]),
    )
    .await?;
    let status = d.series.latest.as_ref().map(|c| c.status);
    Ok(badge::response(
        &name,
        status.map_or("no data", Status::as_str),
        badge::status_color(status),
    ))
}

async fn badge_uptime(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let d = badge_detail(&state, name.clone(), &params).await?;
    let uptime = d.series.stats.uptime_pct();
    let text = uptime.map_or_else(|| "no data".to_owned(), |u| format!("{u:.2}%"));
    Ok(badge::response(&name, &text, badge::uptime_color(uptime)))
}

async fn badge_response_time(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let d = badge_detail(&state, name.clone(), &params).await?;
    let avg = d.series.stats.latency.avg();
    let text = avg.map_or_else(|| "no data".to_owned(), |a| format!("{a:.0} ms"));
    Ok(badge::response(&name, &text, badge::latency_color(avg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_for_the_default_30_points() {
        let b: Vec<i64> = RANGES
            .iter()
            .map(|(_, s)| nice_bucket(s * 1000 / 30) / 1000)
            .collect();
        assert_eq!(b, vec![10, 120, 360, 720, 1440, 2880, 21600, 86400]);
        assert_eq!(nice_bucket(1), 1000);
    }
}
