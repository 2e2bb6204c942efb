//! An HTTP server on 127.0.0.1:0 that records every request and answers as told:
//! the receiving end for testing what a client sends, with failures on demand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    /// The value of `key` in the query, percent-decoding not applied.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    }
}

#[derive(Debug, Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    status: AtomicU16,
    hang: AtomicBool,
}

/// The running recorder; the server stops when it is dropped.
#[derive(Debug)]
pub struct Recorder {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts answering every request `200 OK`.
    pub async fn start() -> Recorder {
        let shared = Arc::new(Shared {
            status: AtomicU16::new(200),
            ..Shared::default()
        });
        let s = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    s.seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Seen {
                            method: method.to_string(),
                            path: uri.path().to_owned(),
                            query: uri.query().unwrap_or("").to_owned(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                    if s.hang.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let code = StatusCode::from_u16(s.status.load(Ordering::SeqCst))
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let body = if code.is_success() {
                        "OK".to_owned()
                    } else {
                        format!("no check at {}", uri.path())
                    };
                    (code, body)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { base, shared, task }
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn count(&self) -> usize {
        self.seen().len()
    }

    /// The status of every later answer (a non-2xx one says `no check at <path>`, echoing it).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Whether later requests are recorded but never answered.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::SeqCst);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
