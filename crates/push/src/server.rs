//! The router and its handlers. Paths and answers are fixed by docs/push-api.md.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use heartbeat_store::{
    PushDefinition, PushEvent, PushEventKind, PushOp, PushOpError, PushSource, PushTask,
};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Denied, Entry, status_name};
use crate::token::{TokenHash, new_token, new_uuid};
use crate::{BODY_KEPT, PushJob, PushState};

type Shared = State<Arc<PushState>>;

/// A bound listener and the state it serves.
#[derive(Debug)]
pub struct Listener {
    pub listener: tokio::net::TcpListener,
    pub state: Arc<PushState>,
}

impl Listener {
    /// Serves until `shutdown` resolves; in-flight requests then finish (the caller bounds
    /// how long it waits for that).
    ///
    /// Connections are bounded, as the agent's probes share its open-files limit: at
    /// [`Settings::max_connections`](crate::Settings) no more are accepted until one
    /// closes, and a connection that has not sent a whole request head within
    /// [`Settings::header_timeout`](crate::Settings), including an idle keep-alive one,
    /// is closed. One client address (an IPv6 /64) holds at most
    /// [`Settings::max_connections_per_peer`](crate::Settings) of them; more from it are
    /// closed at once, and an answer that cannot be written for
    /// [`Settings::write_timeout`](crate::Settings) ends its connection. (axum's `serve`
    /// has none of this.)
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Listener { listener, state } = self;
        let settings = &state.settings;
        let max = u32::try_from(settings.max_connections.max(1)).unwrap_or(u32::MAX);
        let header_timeout = settings.header_timeout;
        let write_timeout = settings.write_timeout;
        let slots = Arc::new(tokio::sync::Semaphore::new(max as usize));
        let peers = Arc::new(PeerCounts::new(settings.max_connections_per_peer));
        let service = hyper_util::service::TowerToHyperService::new(router(state.clone()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // A connection reset before it was accepted: only that one is lost.
                    Err(e) if is_connection_error(&e) => continue,
                    // Out of file descriptors, say: accept would fail again at once, so
                    // pause rather than spin, and keep serving the open connections.
                    Err(e) => {
                        tracing::warn!(error = %e, "push listener: accept failed; retrying in 1 s");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            let Some(peer_slot) = peers.enter(peer.ip()) else {
                tracing::debug!(peer = %peer.ip(), "push listener: too many connections from one address");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let _slots = (slot, peer_slot);
                // HTTP/1 only: with protocol detection, a connection that sends nothing
                // would wait in detection, before the header timeout applies.
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                // hyper has no write deadline, and its header timeout does not run
                // while an answer waits to be written.
                let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
                stream.set_write_timeout(Some(write_timeout));
                let io = hyper_util::rt::TokioIo::new(Box::pin(stream));
                let connection = builder.serve_connection(io, service);
                let mut connection = std::pin::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = stop.wait_for(|stopped| *stopped) => {}
                }
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        // New connections are refused from now on, in-flight requests finish and idle
        // connections close at once. Every slot back means every connection is done.
        drop(listener);
        let _ = stop_tx.send(true);
        let _ = slots.acquire_many(max).await;
        Ok(())
    }
}

/// Open connections per client address, so that one client cannot take every slot.
#[derive(Debug)]
struct PeerCounts {
    limit: usize,
    open: std::sync::Mutex<HashMap<[u16; 4], usize>>,
}

/// One open connection of a peer; dropping it gives the place back.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    key: [u16; 4],
}

impl PeerCounts {
    fn new(limit: usize) -> PeerCounts {
        PeerCounts {
            limit: limit.max(1),
            open: std::sync::Mutex::default(),
        }
    }

    /// IPv4 addresses count one by one; IPv6 ones by /64, the block one host usually has.
    fn key(ip: std::net::IpAddr) -> [u16; 4] {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                [
                    0xffff,
                    0xffff,
                    u16::from_be_bytes([a, b]),
                    u16::from_be_bytes([c, d]),
                ]
            }
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerCounts::key(std::net::IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    [s[0], s[1], s[2], s[3]]
                }
            },
        }
    }

    fn enter(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let key = PeerCounts::key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: self.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Errors of one incoming connection, after which the listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

pub fn router(state: Arc<PushState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ping/{token}", get(hc_success).post(hc_success))
        .route("/ping/{token}/{action}", get(hc_action).post(hc_action))
        .route("/api/push/{token}", get(kuma).post(kuma))
        .route("/heartbeat/{token}", get(central).post(central))
        .route("/api/services", get(list_services).post(register))
        .route(
            "/api/services/{id}",
            get(get_service).delete(delete_service),
        )
        .route("/api/services/{id}/heartbeat", post(laneswap_heartbeat))
        .route("/api/services/{id}/pings", get(pings))
        .route(
            "/api/services/{id}/progress",
            get(list_tasks).post(start_task),
        )
        .route(
            "/api/services/{id}/progress/{task_id}",
            get(get_task).post(update_task),
        )
        .route(
            "/api/services/{id}/progress/{task_id}/complete",
            post(
                |s: Shared, h: HeaderMap, ids: Path<(String, String)>, body: Body| {
                    finish_task(s, h, ids, body, false)
                },
            ),
        )
        .route(
            "/api/services/{id}/progress/{task_id}/fail",
            post(
                |s: Shared, h: HeaderMap, ids: Path<(String, String)>, body: Body| {
                    finish_task(s, h, ids, body, true)
                },
            ),
        )
        .with_state(state)
}

use heartbeat_core::now_ms;

fn rfc3339(ms: i64) -> Value {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => Value::String(format!("{t:.3}")),
        Err(_) => Value::Null,
    }
}

fn query(raw: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The first [`BODY_KEPT`] bytes, as text; `None` for an empty body.
fn kept_body(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let mut end = body.len().min(BODY_KEPT);
    // Cut at a UTF-8 boundary when the body is text; binary bodies are replaced lossily.
    while end > 0 && end < body.len() && (body[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    Some(String::from_utf8_lossy(&body[..end]).into_owned())
}

/// Characters of a sender's message kept for the check: it is copied into every cycle's
/// check row and into alerts, so one huge message must not multiply into gigabytes.
const MESSAGE_KEPT: usize = 200;

/// First non-empty line of a body, for a check message.
fn first_line(body: Option<&str>) -> Option<String> {
    let line = body?.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.to_owned())
}

/// `text` cut to `max` characters, marked with an ellipsis when cut.
fn shorten(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => {
            let mut s = text[..cut].to_owned();
            s.push('…');
            s
        }
        None => text,
    }
}

fn with_detail(prefix: &str, detail: Option<&str>) -> String {
    match detail.filter(|d| !d.trim().is_empty()) {
        Some(d) => format!("{prefix}: {}", d.trim()),
        None => prefix.to_owned(),
    }
}

fn denied(d: Denied) -> ApiError {
    match d {
        Denied::NotFound => ApiError::NotFound,
        Denied::RateLimited(s) => ApiError::RateLimited(s),
    }
}

/// Reads a request body of at most `PUSH_BODY_LIMIT` bytes. Handlers call it only after
/// the token or id is known, so a flood with made-up tokens is answered without buffering
/// its bodies.
async fn read_body(s: &PushState, body: Body) -> Result<Bytes, ApiError> {
    let limit = s.settings.body_limit;
    // A declared length over the limit is refused before a byte of it is read.
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(ApiError::TooLarge(limit));
    }
    let timeout = s.settings.body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::BodyTimeout(timeout.as_secs().max(1))),
        Ok(read) => read.map_err(|e| {
            if e.into_inner().is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest("body: the request body could not be read".into())
            }
        }),
    }
}

/// Runs a request's work on its own task, so it finishes even when the client goes away
/// (and hyper drops the handler): a commit once queued must reach the in-memory registry
/// too, or the registry and the database disagree (a completed task shown as running).
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|_| Err(ApiError::Internal("the request's task failed".into())))
}

/// Sends one op to the writer and waits for its COMMIT.
async fn commit(s: &PushState, op: PushOp) -> Result<(), ApiError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    s.jobs
        .send(PushJob { op, reply })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(PushOpError::NameTaken(name))) => Err(ApiError::Conflict(format!(
            "name: {name:?} is already used by another target"
        ))),
        Ok(Err(PushOpError::UnknownTarget)) => Err(ApiError::NotFound),
        Ok(Err(PushOpError::Database(e))) => Err(ApiError::Internal(e)),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// A ping's content before it is stamped and stored.
struct Ping {
    kind: PushEventKind,
    exit_code: Option<u8>,
    rid: Option<String>,
    source: &'static str,
    duration_ms: Option<f64>,
    message: Option<String>,
    body: Option<String>,
}

async fn submit(s: &PushState, service_id: String, p: Ping) -> Result<i64, ApiError> {
    let ts_ms = now_ms();
    let closes = match p.duration_ms {
        None if p.kind.is_end() => s.registry.open_run_start(&service_id, p.rid.as_deref()),
        _ => None,
    };
    let duration_ms = p
        .duration_ms
        .or(closes.map(|start| (ts_ms - start).max(0) as f64));
    let event = PushEvent {
        service_id,
        ts_ms,
        kind: p.kind,
        exit_code: p.exit_code,
        rid: p.rid,
        source: p.source.to_owned(),
        duration_ms,
        message: p.message.map(|m| shorten(m, MESSAGE_KEPT)),
        body: p.body,
    };
    commit(s, PushOp::Event(event.clone())).await?;
    s.registry.record(&event, closes);
    Ok(ts_ms)
}

// ---------------------------------------------------------------- health

async fn health(State(s): Shared) -> Response {
    let (ok, age, reason) = s.health.check(now_ms());
    let body = json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "last_cycle_age_s": age,
        "writer": if s.health.writer_alive() { "alive" } else { "stopped" },
        "reason": reason,
        "push_targets": s.registry.len(),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

// ---------------------------------------------------------------- healthchecks.io

fn rid_of(q: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    match q.get("rid").map(|r| r.trim()).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if r.len() <= 128 => Ok(Some(r.to_owned())),
        Some(_) => Err(ApiError::BadRequest("rid: at most 128 characters".into())),
    }
}

async fn hc(
    s: &PushState,
    token: &str,
    action: Option<&str>,
    q: Option<String>,
    body: Body,
) -> Result<(), ApiError> {
    let id = s
        .registry
        .authorize(&TokenHash::of(token))
        .map_err(denied)?;
    let q = query(q.as_deref());
    let rid = rid_of(&q)?;
    let body = kept_body(&read_body(s, body).await?);
    let line = first_line(body.as_deref());
    let (kind, exit_code, message) = match action {
        None => (PushEventKind::Success, None, None),
        Some("start") => (PushEventKind::Start, None, None),
        Some("fail") => (
            PushEventKind::Fail,
            None,
            Some(with_detail("fail", line.as_deref())),
        ),
        Some("log") => (PushEventKind::Log, None, line),
        Some(code) => match code.parse::<u8>() {
            Ok(0) => (PushEventKind::Success, Some(0), None),
            Ok(n) => (
                PushEventKind::Fail,
                Some(n),
                Some(with_detail(&format!("exit status {n}"), line.as_deref())),
            ),
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown ping {code:?}: expected start, fail, log or an exit status 0-255"
                )));
            }
        },
    };
    submit(
        s,
        id,
        Ping {
            kind,
            exit_code,
            rid,
            source: "hc",
            duration_ms: None,
            message,
            body,
        },
    )
    .await?;
    Ok(())
}

fn hc_answer(r: Result<(), ApiError>) -> Response {
    match r {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response(),
        Err(e) => e.text(),
    }
}

async fn hc_success(
    State(s): Shared,
    Path(token): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    hc_answer(detached(async move { hc(&s, &token, None, q, body).await }).await)
}

async fn hc_action(
    State(s): Shared,
    Path((token, action)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    hc_answer(detached(async move { hc(&s, &token, Some(&action), q, body).await }).await)
}

// ---------------------------------------------------------------- Uptime Kuma

async fn kuma(State(s): Shared, Path(token): Path<String>, RawQuery(q): RawQuery) -> Response {
    let run = async move {
        let id = s
            .registry
            .authorize(&TokenHash::of(&token))
            .map_err(denied)?;
        let q = query(q.as_deref());
        let msg = q
            .get("msg")
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        let ping = match q.get("ping").map(|p| p.trim()).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => match p.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "ping: expected a number of milliseconds, got {p:?}"
                    )));
                }
            },
        };
        let status = q.get("status").map(|s| s.trim().to_ascii_lowercase());
        let (kind, message) = match status.as_deref() {
            None | Some("") | Some("up") => (PushEventKind::Success, None),
            Some("down") => (
                PushEventKind::Fail,
                Some(with_detail("down", msg.as_deref())),
            ),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "status: expected up or down, got {other:?}"
                )));
            }
        };
        submit(
            &s,
            id,
            Ping {
                kind,
                exit_code: None,
                rid: None,
                source: "kuma",
                duration_ms: ping,
                message,
                body: msg,
            },
        )
        .await
    };
    match detached(run).await {
        Ok(_) => axum::Json(json!({"ok": true})).into_response(),
        Err(e) => e.kuma(),
    }
}

// ---------------------------------------------------------------- Heartbeat Central

async fn central(State(s): Shared, Path(token): Path<String>, body: Body) -> Response {
    let run = async move {
        let id = s
            .registry
            .authorize(&TokenHash::of(&token))
            .map_err(denied)?;
        let body = read_body(&s, body).await?;
        // A JSON object with a status reads like a LaneSwap heartbeat; anything else is a
        // plain "I am alive", kept as the body.
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        let ping = match parsed.as_ref().and_then(|v| v.get("status")) {
            Some(_) => {
                let hb: HeartbeatBody = serde_json::from_slice(&body).map_err(json_error)?;
                laneswap_ping(&hb, "central", kept_body(&body))?
            }
            None => Ping {
                kind: PushEventKind::Success,
                exit_code: None,
                rid: None,
                source: "central",
                duration_ms: None,
                message: None,
                body: kept_body(&body),
            },
        };
        submit(&s, id, ping).await
    };
    match detached(run).await {
        Ok(_) => axum::Json(json!({"ok": true})).into_response(),
        Err(e) => e.kuma(),
    }
}

// ---------------------------------------------------------------- LaneSwap JSON API

#[derive(Debug, Clone, PartialEq)]
enum Caller {
    Admin,
    Service(String),
}

fn json_error(e: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("invalid JSON: {e}"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "invalid JSON: the body is empty".into(),
        ));
    }
    serde_json::from_slice(body).map_err(json_error)
}

fn caller(s: &PushState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let missing = || {
        ApiError::Unauthorized(
            "send Authorization: Bearer <token> (the service's token or ADMIN_TOKEN)".into(),
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)?;
    let hash = TokenHash::of(token);
    if s.settings.admin.as_ref().is_some_and(|a| a.ct_eq(&hash)) {
        s.registry.admin_rate().map_err(denied)?;
        return Ok(Caller::Admin);
    }
    s.registry
        .authorize(&hash)
        .map(Caller::Service)
        .map_err(denied)
}

fn require_admin(s: &PushState, headers: &HeaderMap) -> Result<(), ApiError> {
    if s.settings.admin.is_none() {
        return Err(ApiError::Forbidden(
            "the registration API is disabled: ADMIN_TOKEN is not set on the agent".into(),
        ));
    }
    match caller(s, headers) {
        Ok(Caller::Admin) => Ok(()),
        Ok(Caller::Service(_)) | Err(ApiError::NotFound) => Err(ApiError::Unauthorized(
            "this endpoint needs Authorization: Bearer <ADMIN_TOKEN>".into(),
        )),
        Err(e) => Err(e),
    }
}

/// Admin, or the service's own token; anything else is the same 404 as a missing id.
fn require_service(s: &PushState, headers: &HeaderMap, id: &str) -> Result<(), ApiError> {
    let exists = s.registry.with(id, |_| ()).is_some();
    match caller(s, headers)? {
        Caller::Admin if exists => Ok(()),
        Caller::Service(own) if own == id => Ok(()),
        _ => Err(ApiError::NotFound),
    }
}

fn service_json(e: &Entry) -> Value {
    let metadata = e
        .def
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null);
    let latest = e.tasks.front().map(task_json);
    json!({
        "service_id": e.def.service_id,
        "name": e.def.name,
        "source": e.def.source.as_str(),
        "status": status_name(e.last_result.as_ref()),
        "message": e.last_result.as_ref().and_then(|r| r.error_message.clone()),
        "created_at": rfc3339(e.def.created_at_ms),
        "last_heartbeat": e.last_heartbeat_ms().map_or(Value::Null, rfc3339),
        "period": e.def.period_ms as f64 / 1000.0,
        "grace": e.def.grace_ms as f64 / 1000.0,
        "schedule": e.def.schedule,
        "metadata": metadata,
        "progress": latest,
    })
}

fn task_json(t: &PushTask) -> Value {
    let metadata = t
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null);
    json!({
        "task_id": t.task_id,
        "service_id": t.service_id,
        "task_name": t.task_name,
        "description": t.description,
        "total_steps": t.total_steps,
        "current_step": t.current_step,
        "percentage": t.percentage(),
        "status": t.status,
        "message": t.message,
        "metadata": metadata,
        "started_at": rfc3339(t.started_at_ms),
        "updated_at": rfc3339(t.updated_at_ms),
        "completed_at": t.completed_at_ms.map_or(Value::Null, rfc3339),
    })
}

fn json_answer(r: Result<(StatusCode, Value), ApiError>) -> Response {
    match r {
        Ok((code, v)) => (code, axum::Json(v)).into_response(),
        Err(e) => e.json(),
    }
}

fn seconds_field(
    field: &str,
    v: Option<f64>,
    default: std::time::Duration,
) -> Result<i64, ApiError> {
    let Some(secs) = v else {
        return Ok(i64::try_from(default.as_millis()).unwrap_or(i64::MAX));
    };
    let range = heartbeat_config::parse_push_span(&secs.to_string())
        .map_err(|m| ApiError::BadRequest(format!("{field}: {m}")))?;
    Ok(i64::try_from(range.as_millis()).unwrap_or(i64::MAX))
}

fn metadata_text(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => {
            let text = v.map(Value::to_string).unwrap_or_default();
            if text.len() > BODY_KEPT {
                return Err(ApiError::BadRequest(format!(
                    "metadata: at most {BODY_KEPT} bytes of JSON, got {}",
                    text.len()
                )));
            }
            Ok(Some(text))
        }
        Some(_) => Err(ApiError::BadRequest(
            "metadata: expected a JSON object".into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    period: Option<f64>,
    #[serde(default)]
    grace: Option<f64>,
    #[serde(default)]
    schedule: Option<String>,
}

async fn register(State(s): Shared, headers: HeaderMap, body: Body) -> Response {
    let run = async move {
        require_admin(&s, &headers)?;
        let b: RegisterBody = parse_json(&read_body(&s, body).await?)?;
        let name = b.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(ApiError::BadRequest(format!(
                "name: expected 1-64 characters of A-Z a-z 0-9 _ . -, got {name:?}"
            )));
        }
        if s.registry.name_taken(name) {
            return Err(ApiError::Conflict(format!(
                "name: {name:?} is already used by another target"
            )));
        }
        let schedule = match b
            .schedule
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(c) => {
                heartbeat_config::parse_schedule(c)
                    .map_err(|m| ApiError::BadRequest(format!("schedule: {m}")))?;
                if b.period.is_some() {
                    return Err(ApiError::BadRequest(
                        "period: set either a period or a schedule, not both".into(),
                    ));
                }
                Some(c.to_owned())
            }
        };
        let period_ms = seconds_field("period", b.period, s.settings.default_period)?;
        let grace_ms = seconds_field("grace", b.grace, s.settings.default_grace)?;
        let metadata = metadata_text(b.metadata.as_ref())?;
        let internal = |e: getrandom::Error| ApiError::Internal(format!("no randomness: {e}"));
        let token = new_token().map_err(internal)?;
        let def = PushDefinition {
            service_id: new_uuid().map_err(internal)?,
            name: name.to_owned(),
            source: PushSource::Api,
            token_sha256: TokenHash::of(token.expose()).0,
            period_ms,
            grace_ms,
            schedule,
            metadata,
            created_at_ms: now_ms(),
        };
        commit(&s, PushOp::Register(def.clone())).await?;
        let id = def.service_id.clone();
        s.registry.insert(def);
        let mut v = s
            .registry
            .with(&id, service_json)
            .ok_or(ApiError::NotFound)?;
        // The only time the token is ever shown.
        v["token"] = Value::String(token.expose().to_owned());
        Ok((StatusCode::CREATED, v))
    };
    json_answer(detached(run).await)
}

async fn list_services(State(s): Shared, headers: HeaderMap) -> Response {
    json_answer((|| {
        require_admin(&s, &headers)?;
        Ok((
            StatusCode::OK,
            json!({"services": s.registry.each(service_json)}),
        ))
    })())
}

async fn get_service(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    json_answer((|| {
        require_service(&s, &headers, &id)?;
        let v = s
            .registry
            .with(&id, service_json)
            .ok_or(ApiError::NotFound)?;
        Ok((StatusCode::OK, v))
    })())
}

async fn delete_service(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let run = async move {
        require_admin(&s, &headers)?;
        match s.registry.with(&id, |e| e.def.source) {
            None => return Err(ApiError::NotFound),
            Some(PushSource::Config) => {
                return Err(ApiError::Conflict(format!(
                    "{id:?} is defined in the configuration (SERVICE_URL_{id}); remove it there"
                )));
            }
            Some(PushSource::Api) => {}
        }
        commit(
            &s,
            PushOp::Delete {
                service_id: id.clone(),
            },
        )
        .await?;
        s.registry.remove(&id);
        Ok((StatusCode::OK, json!({"deleted": id})))
    };
    json_answer(detached(run).await)
}

#[derive(Debug, Deserialize)]
struct HeartbeatBody {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

fn laneswap_ping(
    b: &HeartbeatBody,
    source: &'static str,
    body: Option<String>,
) -> Result<Ping, ApiError> {
    let msg = b
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let (kind, message) = match b.status.trim().to_ascii_lowercase().as_str() {
        "healthy" => (PushEventKind::Success, msg.map(str::to_owned)),
        // Degraded but alive: shown, not alerted on.
        "warning" => (PushEventKind::Success, Some(with_detail("warning", msg))),
        "error" => (PushEventKind::Fail, Some(with_detail("error", msg))),
        "critical" => (PushEventKind::Fail, Some(with_detail("critical", msg))),
        "unknown" => (PushEventKind::Unknown, msg.map(str::to_owned)),
        other => {
            return Err(ApiError::BadRequest(format!(
                "status: expected healthy, warning, error, critical or unknown, got {other:?}"
            )));
        }
    };
    metadata_text(b.metadata.as_ref())?;
    Ok(Ping {
        kind,
        exit_code: None,
        rid: None,
        source,
        duration_ms: None,
        message,
        body,
    })
}

async fn laneswap_heartbeat(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let run = async move {
        require_service(&s, &headers, &id)?;
        let b: HeartbeatBody = parse_json(&read_body(&s, body).await?)?;
        let metadata = b.metadata.clone().unwrap_or(Value::Null);
        let ping = laneswap_ping(&b, "laneswap", metadata_text(b.metadata.as_ref())?)?;
        let ts = submit(&s, id.clone(), ping).await?;
        Ok((
            StatusCode::OK,
            json!({
                "service_id": id,
                "status": b.status.trim().to_ascii_lowercase(),
                "timestamp": rfc3339(ts),
                "message": b.message,
                "metadata": metadata,
            }),
        ))
    };
    json_answer(detached(run).await)
}

async fn pings(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = async move {
        require_service(&s, &headers, &id)?;
        let q = query(q.as_deref());
        let limit = match q.get("limit") {
            None => 50,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("limit: expected 1-500, got {l:?}")))?,
        };
        let path = s.settings.db_path.clone();
        let sid = id.clone();
        let events = tokio::task::spawn_blocking(move || {
            heartbeat_store::ReadStore::open(&path).and_then(|r| r.push_events(&sid, limit))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let list: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "ts": rfc3339(e.ts_ms),
                    "kind": e.kind.as_str(),
                    "exit_code": e.exit_code,
                    "rid": e.rid,
                    "source": e.source,
                    "duration_ms": e.duration_ms,
                    "message": e.message,
                    "body": e.body,
                })
            })
            .collect();
        Ok((StatusCode::OK, json!({"pings": list})))
    };
    json_answer(run.await)
}

// ---------------------------------------------------------------- progress tasks

#[derive(Debug, Deserialize)]
struct StartTask {
    task_name: String,
    total_steps: i64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct UpdateTask {
    current_step: i64,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
struct FinishTask {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn find_task(s: &PushState, id: &str, task_id: &str) -> Result<PushTask, ApiError> {
    s.registry
        .with(id, |e| {
            e.tasks.iter().find(|t| t.task_id == task_id).cloned()
        })
        .flatten()
        .ok_or(ApiError::NotFound)
}

/// Stores the task, then the sign of life it implies, and answers with the task.
async fn save_task(s: &PushState, mut task: PushTask, failed: bool) -> Result<Value, ApiError> {
    // Kept in memory and shown; a sender cannot make them unbounded.
    task.message = task.message.map(|m| shorten(m, BODY_KEPT));
    task.description = task.description.map(|d| shorten(d, BODY_KEPT));
    commit(s, PushOp::Task(task.clone())).await?;
    s.registry.record_task(&task);
    let ping = Ping {
        kind: if failed {
            PushEventKind::Fail
        } else {
            PushEventKind::Success
        },
        exit_code: None,
        rid: None,
        source: "progress",
        duration_ms: None,
        message: failed.then(|| {
            with_detail(
                &format!("task {} failed", task.task_name),
                task.message.as_deref(),
            )
        }),
        body: None,
    };
    submit(s, task.service_id.clone(), ping).await?;
    Ok(task_json(&task))
}

async fn start_task(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let run = async move {
        require_service(&s, &headers, &id)?;
        let b: StartTask = parse_json(&read_body(&s, body).await?)?;
        if b.task_name.trim().is_empty() || b.task_name.len() > 200 {
            return Err(ApiError::BadRequest(
                "task_name: expected 1-200 characters".into(),
            ));
        }
        if b.total_steps < 1 {
            return Err(ApiError::BadRequest(format!(
                "total_steps: expected at least 1, got {}",
                b.total_steps
            )));
        }
        let now = now_ms();
        let task = PushTask {
            task_id: new_uuid().map_err(|e| ApiError::Internal(e.to_string()))?,
            service_id: id,
            task_name: b.task_name.trim().to_owned(),
            description: b.description,
            total_steps: b.total_steps,
            current_step: 0,
            status: "running".into(),
            message: None,
            metadata: metadata_text(b.metadata.as_ref())?,
            started_at_ms: now,
            updated_at_ms: now,
            completed_at_ms: None,
        };
        Ok((StatusCode::CREATED, save_task(&s, task, false).await?))
    };
    json_answer(detached(run).await)
}

async fn list_tasks(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    json_answer((|| {
        require_service(&s, &headers, &id)?;
        let tasks = s
            .registry
            .with(&id, |e| e.tasks.iter().map(task_json).collect::<Vec<_>>())
            .ok_or(ApiError::NotFound)?;
        Ok((StatusCode::OK, json!({"tasks": tasks})))
    })())
}

async fn get_task(
    State(s): Shared,
    headers: HeaderMap,
    Path((id, task_id)): Path<(String, String)>,
) -> Response {
    json_answer((|| {
        require_service(&s, &headers, &id)?;
        Ok((StatusCode::OK, task_json(&find_task(&s, &id, &task_id)?)))
    })())
}

fn open_task(s: &PushState, id: &str, task_id: &str) -> Result<PushTask, ApiError> {
    let task = find_task(s, id, task_id)?;
    if task.status == "completed" || task.status == "failed" {
        return Err(ApiError::Conflict(format!(
            "task {task_id} is already {}",
            task.status
        )));
    }
    Ok(task)
}

async fn update_task(
    State(s): Shared,
    headers: HeaderMap,
    Path((id, task_id)): Path<(String, String)>,
    body: Body,
) -> Response {
    let run = async move {
        require_service(&s, &headers, &id)?;
        let b: UpdateTask = parse_json(&read_body(&s, body).await?)?;
        let _changing = s.registry.task_changes.lock().await;
        let mut task = open_task(&s, &id, &task_id)?;
        if !(0..=task.total_steps).contains(&b.current_step) {
            return Err(ApiError::BadRequest(format!(
                "current_step: expected 0-{}, got {}",
                task.total_steps, b.current_step
            )));
        }
        if let Some(st) = b.status.as_deref().map(str::trim) {
            match st {
                "pending" | "running" => task.status = st.to_owned(),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "status: expected pending or running (use /complete or /fail to finish), got {other:?}"
                    )));
                }
            }
        }
        task.current_step = b.current_step;
        if b.message.is_some() {
            task.message = b.message;
        }
        if b.metadata.is_some() {
            task.metadata = metadata_text(b.metadata.as_ref())?;
        }
        task.updated_at_ms = now_ms();
        Ok((StatusCode::OK, save_task(&s, task, false).await?))
    };
    json_answer(detached(run).await)
}

async fn finish(
    s: &PushState,
    id: &str,
    task_id: &str,
    b: FinishTask,
    fail: bool,
) -> Result<(StatusCode, Value), ApiError> {
    let _changing = s.registry.task_changes.lock().await;
    let mut task = open_task(s, id, task_id)?;
    let failed = fail
        || match b.status.as_deref().map(str::trim) {
            None | Some("completed") => false,
            Some("failed") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "status: expected completed or failed, got {other:?}"
                )));
            }
        };
    let now = now_ms();
    task.status = if failed { "failed" } else { "completed" }.into();
    if !failed {
        task.current_step = task.total_steps;
    }
    if b.message.is_some() {
        task.message = b.message;
    }
    task.updated_at_ms = now;
    task.completed_at_ms = Some(now);
    Ok((StatusCode::OK, save_task(s, task, failed).await?))
}

fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}

/// `POST .../complete` and `.../fail`: one handler, the route says which.
async fn finish_task(
    s: Shared,
    headers: HeaderMap,
    ids: Path<(String, String)>,
    body: Body,
    fail: bool,
) -> Response {
    let (State(s), Path((id, task_id))) = (s, ids);
    let run = async move {
        require_service(&s, &headers, &id)?;
        let b: FinishTask = optional_json(&read_body(&s, body).await?)?;
        finish(&s, &id, &task_id, b, fail).await
    };
    json_answer(detached(run).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_at_a_character_boundary_and_marks_the_cut() {
        assert_eq!(shorten("short".into(), 10), "short");
        assert_eq!(shorten("exactly".into(), 7), "exactly");
        assert_eq!(shorten("ดิสก์เต็มแล้ว".into(), 4), "ดิสก…");
        let huge = "x".repeat(1 << 20);
        assert_eq!(
            shorten(huge, MESSAGE_KEPT).chars().count(),
            MESSAGE_KEPT + 1
        );
    }
}
