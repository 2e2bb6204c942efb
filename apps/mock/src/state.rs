//! The mock's shared state: services, the request log, the inboxes and the modes.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::jobs::JobEntry;
use crate::mode::{Mode, SinkMode, WorkerMode};
use crate::scenario::ScenarioState;

/// Lines kept in the request log.
pub const LOG_CAPACITY: usize = 2000;
/// Entries kept in each inbox.
pub const INBOX_CAPACITY: usize = 500;

/// An API error: a status and a message naming the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    pub fn new(status: StatusCode, message: String) -> ApiError {
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// One line of the request log. `seq` increases by one per line, for ever.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub seq: u64,
    pub ts_ms: i64,
    pub source: String,
    pub message: String,
}

/// A received heartbeat or alert.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    pub id: u64,
    pub ts_ms: i64,
    /// The sink channel, or `worker` for heartbeats.
    pub channel: String,
    /// The status code the mock answered with.
    pub answered: u16,
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a string when it is not JSON.
    pub body: Value,
}

/// A simulated service, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub port: u16,
    pub url: String,
    pub mode: Mode,
    pub mode_text: String,
    /// Whether the listener is open right now.
    pub listening: bool,
    pub requests: u64,
}

#[derive(Debug)]
pub(crate) struct ServiceEntry {
    pub port: u16,
    pub mode: Mode,
    pub mode_since: Instant,
    pub requests: u64,
    pub listening: bool,
    /// Bumped on every mode change; the service task and its connections watch it.
    pub control: watch::Sender<u64>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub services: BTreeMap<String, ServiceEntry>,
    pub jobs: BTreeMap<String, JobEntry>,
    log: VecDeque<LogLine>,
    next_seq: u64,
    pub alerts: VecDeque<InboxItem>,
    pub heartbeats: VecDeque<InboxItem>,
    next_inbox_id: u64,
    pub worker_mode: WorkerMode,
    pub worker_seen: bool,
    pub sink_mode: SinkMode,
    pub scenario: ScenarioState,
}

/// The whole mock; shared by the controller, the services and the scenario runner.
#[derive(Debug)]
pub struct Mock {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) bind: IpAddr,
    pub(crate) secret_key: String,
}

pub(crate) use heartbeat_core::now_ms;

/// Service names end up in `SERVICE_URL_<name>`: keep them to letters, digits, `_` and `-`.
pub(crate) fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad("name: must be 1 to 64 characters".into()));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::bad(format!(
            "name: {name:?} may only contain letters, digits, '_' and '-'"
        )));
    }
    Ok(())
}

impl Mock {
    pub fn new(bind: IpAddr, secret_key: String) -> Arc<Mock> {
        Arc::new(Mock {
            inner: Mutex::new(Inner {
                services: BTreeMap::new(),
                jobs: BTreeMap::new(),
                log: VecDeque::with_capacity(LOG_CAPACITY),
                next_seq: 1,
                alerts: VecDeque::new(),
                heartbeats: VecDeque::new(),
                next_inbox_id: 1,
                worker_mode: WorkerMode::Auto,
                worker_seen: false,
                sink_mode: SinkMode::Up,
                scenario: ScenarioState::default(),
            }),
            bind,
            secret_key,
        })
    }

    /// The lock; a poisoned lock is still usable (no invariant spans a panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line to the request log (and to the process log).
    pub fn log(&self, source: &str, message: String) {
        tracing::info!(target: "heartbeat_mock", source, "{message}");
        self.lock().push_log(source, message);
    }

    /// Log lines with `seq > after`, oldest first, at most `limit`.
    pub fn log_after(&self, after: u64, limit: usize) -> (Vec<LogLine>, u64) {
        let inner = self.lock();
        let lines = inner
            .log
            .iter()
            .filter(|l| l.seq > after)
            .take(limit)
            .cloned()
            .collect();
        (lines, inner.next_seq - 1)
    }

    pub fn services(&self) -> Vec<ServiceView> {
        let inner = self.lock();
        inner
            .services
            .iter()
            .map(|(name, s)| self.view(name, s))
            .collect()
    }

    pub fn service(&self, name: &str) -> Option<ServiceView> {
        let inner = self.lock();
        inner.services.get(name).map(|s| self.view(name, s))
    }

    fn view(&self, name: &str, s: &ServiceEntry) -> ServiceView {
        ServiceView {
            name: name.to_owned(),
            port: s.port,
            url: format!("http://{}/", SocketAddr::new(self.bind, s.port)),
            mode: s.mode,
            mode_text: s.mode.describe(),
            listening: s.listening,
            requests: s.requests,
        }
    }

    /// Sets a service's mode; its task rebinds or closes the listener accordingly.
    pub fn set_mode(&self, name: &str, mode: Mode, source: &str) -> Result<ServiceView, ApiError> {
        let mut inner = self.lock();
        let Some(s) = inner.services.get_mut(name) else {
            return Err(not_found(name));
        };
        s.mode = mode;
        s.mode_since = Instant::now();
        s.control.send_modify(|g| *g += 1);
        let view = self.view(name, s);
        inner.push_log(source, format!("{name}: mode {}", mode.describe()));
        Ok(view)
    }

    /// Deletes a service; its listener and connections close.
    pub fn delete_service(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        // Dropping the sender ends the service task and its connections.
        inner.services.remove(name).ok_or_else(|| not_found(name))?;
        inner.push_log("api", format!("{name}: deleted"));
        Ok(())
    }

    /// Closes every service (used on shutdown).
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.services.clear();
        inner.jobs.clear();
        inner.scenario.stop();
    }

    pub fn alerts(&self) -> Vec<InboxItem> {
        self.lock().alerts.iter().cloned().collect()
    }

    pub fn heartbeats(&self) -> Vec<InboxItem> {
        self.lock().heartbeats.iter().cloned().collect()
    }

    pub fn worker_mode(&self) -> WorkerMode {
        self.lock().worker_mode
    }

    pub fn set_worker_mode(&self, mode: WorkerMode, source: &str) {
        let mut inner = self.lock();
        inner.worker_mode = mode;
        inner.push_log(source, format!("worker receiver: mode {}", mode.as_str()));
    }

    pub fn sink_mode(&self) -> SinkMode {
        self.lock().sink_mode
    }

    pub fn set_sink_mode(&self, mode: SinkMode, source: &str) {
        let mut inner = self.lock();
        inner.sink_mode = mode;
        inner.push_log(source, format!("webhook sink: mode {}", mode.as_str()));
    }
}

pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no service named {name:?}"))
}

impl Inner {
    pub(crate) fn push_log(&mut self, source: &str, message: String) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.log.push_back(LogLine {
            seq,
            ts_ms: now_ms(),
            source: source.to_owned(),
            message,
        });
    }

    pub(crate) fn push_inbox(&mut self, heartbeat: bool, mut item: InboxItem) {
        item.id = self.next_inbox_id;
        self.next_inbox_id += 1;
        let inbox = if heartbeat {
            &mut self.heartbeats
        } else {
            &mut self.alerts
        };
        if inbox.len() == INBOX_CAPACITY {
            inbox.pop_front();
        }
        inbox.push_back(item);
    }
}
