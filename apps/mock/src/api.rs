//! The controller: UI page, JSON API, heartbeat receiver and webhook sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::jobs::{JOB_MODES, JobMode, JobSpec};
use crate::mode::{Fields, Mode, SinkMode, WORKER_MODES, WorkerMode};
use crate::scenario::parse_scenario;
use crate::state::{ApiError, InboxItem, Mock, now_ms};

type AppState = Arc<Mock>;
type ApiResult = Result<Response, ApiError>;

const UI: &str = include_str!("ui.html");
/// Largest body accepted by the API, the receiver and the sink.
const MAX_BODY: usize = 1024 * 1024;

/// The controller's router.
pub fn app(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(UI) }))
        .route("/api/state", get(state))
        .route("/api/services", get(list_services).post(create_service))
        .route(
            "/api/services/{name}",
            get(get_service).delete(delete_service),
        )
        .route("/api/services/{name}/mode", put(set_mode))
        .route("/api/jobs", get(list_jobs).post(create_job))
        .route("/api/jobs/{name}", get(get_job).delete(delete_job))
        .route("/api/jobs/{name}/mode", put(set_job_mode))
        .route("/api/log", get(log))
        .route("/api/alerts", get(alerts).delete(clear_alerts))
        .route("/api/heartbeats", get(heartbeats).delete(clear_heartbeats))
        .route("/api/worker/mode", get(worker_mode).put(set_worker_mode))
        .route("/api/sink/mode", get(sink_mode).put(set_sink_mode))
        .route("/api/scenario", get(scenario).post(load_scenario))
        .route("/api/scenario/start", post(start_scenario))
        .route("/api/scenario/stop", post(stop_scenario))
        .route("/worker/heartbeat", post(worker_heartbeat))
        .route("/sink/{channel}", post(sink))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(mock)
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad("body: expected a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: invalid JSON: {e}")))
}

fn object(value: &Value) -> Result<Fields<'_>, ApiError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad("body: expected a JSON object".into()))?;
    Ok(Fields { obj, prefix: "" })
}

fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

async fn state(State(mock): State<AppState>) -> ApiResult {
    ok(json!({
        "services": mock.services(),
        "jobs": mock.jobs(),
        "worker_mode": mock.worker_mode(),
        "sink_mode": mock.sink_mode(),
        "scenario": mock.scenario(),
        "alerts": mock.alerts().len(),
        "heartbeats": mock.heartbeats().len(),
    }))
}

async fn list_services(State(mock): State<AppState>) -> ApiResult {
    ok(mock.services())
}

async fn get_service(State(mock): State<AppState>, Path(name): Path<String>) -> ApiResult {
    mock.service(&name)
        .map_or_else(|| Err(crate::state::not_found(&name)), ok)
}

async fn create_service(State(mock): State<AppState>, body: Bytes) -> ApiResult {
    let value = json_body(&body)?;
    let f = object(&value)?;
    let name = f
        .string("name")?
        .ok_or_else(|| f.err("name", "required".into()))?;
    let port = match f.uint("port")? {
        None => 0,
        Some(p) => u16::try_from(p).map_err(|_| f.err("port", format!("{p} is beyond 65535")))?,
    };
    let mode = match f.obj.get("mode") {
        None | Some(Value::Null) => Mode::Healthy,
        Some(m) => Mode::from_json(m, "mode")?,
    };
    let view = mock.create_service(&name, port, mode).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn delete_service(State(mock): State<AppState>, Path(name): Path<String>) -> ApiResult {
    mock.delete_service(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_mode(
    State(mock): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&body)?;
    let mode = Mode::from_json(&value, "")?;
    ok(mock.set_mode(&name, mode, "api")?)
}

async fn list_jobs(State(mock): State<AppState>) -> ApiResult {
    ok(mock.jobs())
}

async fn get_job(State(mock): State<AppState>, Path(name): Path<String>) -> ApiResult {
    mock.job(&name).map_or_else(
        || {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no job named {name:?}"),
            ))
        },
        ok,
    )
}

async fn create_job(State(mock): State<AppState>, body: Bytes) -> ApiResult {
    let value = json_body(&body)?;
    let spec = JobSpec::from_json(&object(&value)?)?;
    let view = mock.create_job(spec)?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn delete_job(State(mock): State<AppState>, Path(name): Path<String>) -> ApiResult {
    mock.delete_job(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_job_mode(
    State(mock): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&body)?;
    let f = object(&value)?;
    let s = f
        .string("mode")?
        .ok_or_else(|| f.err("mode", format!("required, one of {JOB_MODES}")))?;
    let mode = JobMode::parse(&s).ok_or_else(|| {
        f.err(
            "mode",
            format!("unknown mode {s:?}; expected one of {JOB_MODES}"),
        )
    })?;
    ok(mock.set_job_mode(&name, mode, "api")?)
}

fn query_u64(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad(format!("{key}: expected a non-negative integer")))
        })
        .transpose()
}

async fn log(State(mock): State<AppState>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let after = query_u64(&q, "after")?.unwrap_or(0);
    let limit = query_u64(&q, "limit")?.unwrap_or(500).clamp(1, 5000);
    let (lines, last_seq) = mock.log_after(after, usize::try_from(limit).unwrap_or(500));
    ok(json!({ "lines": lines, "last_seq": last_seq }))
}

async fn alerts(State(mock): State<AppState>) -> ApiResult {
    ok(mock.alerts())
}

async fn clear_alerts(State(mock): State<AppState>) -> ApiResult {
    mock.lock().alerts.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn heartbeats(State(mock): State<AppState>) -> ApiResult {
    ok(mock.heartbeats())
}

async fn clear_heartbeats(State(mock): State<AppState>) -> ApiResult {
    mock.lock().heartbeats.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn worker_mode(State(mock): State<AppState>) -> ApiResult {
    ok(json!({ "mode": mock.worker_mode() }))
}

async fn set_worker_mode(State(mock): State<AppState>, body: Bytes) -> ApiResult {
    let value = json_body(&body)?;
    let f = object(&value)?;
    let s = f
        .string("mode")?
        .ok_or_else(|| f.err("mode", format!("required, one of {WORKER_MODES}")))?;
    let mode = WorkerMode::parse(&s).ok_or_else(|| {
        f.err(
            "mode",
            format!("unknown mode {s:?}; expected one of {WORKER_MODES}"),
        )
    })?;
    mock.set_worker_mode(mode, "api");
    ok(json!({ "mode": mode }))
}

async fn sink_mode(State(mock): State<AppState>) -> ApiResult {
    ok(json!({ "mode": mock.sink_mode() }))
}

async fn set_sink_mode(State(mock): State<AppState>, body: Bytes) -> ApiResult {
    let value = json_body(&body)?;
    let f = object(&value)?;
    let s = f
        .string("mode")?
        .ok_or_else(|| f.err("mode", "required, up or down".into()))?;
    let mode = SinkMode::parse(&s)
        .ok_or_else(|| f.err("mode", format!("unknown mode {s:?}; expected up or down")))?;
    mock.set_sink_mode(mode, "api");
    ok(json!({ "mode": mode }))
}

async fn scenario(State(mock): State<AppState>) -> ApiResult {
    ok(mock.scenario())
}

async fn load_scenario(State(mock): State<AppState>, body: Bytes) -> ApiResult {
    let steps = parse_scenario(&json_body(&body)?)?;
    ok(mock.load_scenario(steps)?)
}

async fn start_scenario(State(mock): State<AppState>) -> ApiResult {
    ok(mock.start_scenario()?)
}

async fn stop_scenario(State(mock): State<AppState>) -> ApiResult {
    ok(mock.stop_scenario())
}

/// Headers worth keeping in an inbox (never `Authorization`).
fn kept_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    const KEEP: &[&str] = &[
        "content-type",
        "user-agent",
        "idempotency-key",
        "x-heartbeat-alert-id",
        "x-heartbeat-signature",
        "title",
        "priority",
        "tags",
    ];
    headers
        .iter()
        .filter(|(k, _)| KEEP.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn body_value(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn worker_heartbeat(
    State(mock): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = format!("Bearer {}", mock.secret_key);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        mock.log(
            "worker",
            "heartbeat with a missing or wrong bearer token -> 401".into(),
        );
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authorization: expected Bearer <MOCK_SECRET_KEY>".into(),
        )
        .into_response();
    }
    let mut inner = mock.lock();
    let first = !inner.worker_seen;
    inner.worker_seen = true;
    let mode = inner.worker_mode;
    let code = mode.code(first);
    let value = body_value(&body);
    let services = value
        .get("services")
        .and_then(Value::as_object)
        .map(|s| {
            s.iter()
                .map(|(k, v)| {
                    let st = v.get("status").and_then(Value::as_str).unwrap_or("?");
                    format!("{k}={st}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    inner.push_inbox(
        true,
        InboxItem {
            id: 0,
            ts_ms: now_ms(),
            channel: "worker".into(),
            answered: code,
            headers: kept_headers(&headers),
            body: value,
        },
    );
    inner.push_log(
        "worker",
        format!("heartbeat ({}) {services} -> {code}", mode.as_str()),
    );
    drop(inner);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (status, axum::Json(json!({ "mode": mode, "code": code }))).into_response()
}

async fn sink(
    State(mock): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = mock.lock();
    let code: u16 = match inner.sink_mode {
        SinkMode::Up => 204,
        SinkMode::Down => 503,
    };
    let value = body_value(&body);
    let title = value
        .get("title")
        .or_else(|| value.get("state"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(120)
        .collect::<String>();
    inner.push_inbox(
        false,
        InboxItem {
            id: 0,
            ts_ms: now_ms(),
            channel: channel.clone(),
            answered: code,
            headers: kept_headers(&headers),
            body: value,
        },
    );
    inner.push_log("sink", format!("alert on {channel}: {title} -> {code}"));
    drop(inner);
    if code == 204 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sink is down (PUT /api/sink/mode {\"mode\":\"up\"})".into(),
        )
        .into_response()
    }
}
