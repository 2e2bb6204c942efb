//! Local receivers on 127.0.0.1:0 that record the exact requests they get.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use heartbeat_notify::{Alert, Channel, Notifier, NotifierOptions, channels_from_map};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Captured>,
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    /// The one request the receiver got.
    pub async fn request(&mut self) -> Captured {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("a request within 5 s")
            .expect("receiver alive")
    }
    pub fn no_more_requests(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

#[derive(Clone)]
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
    tx: mpsc::UnboundedSender<Captured>,
}

async fn record(
    State(reply): State<Arc<Reply>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = reply.tx.send(Captured {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    });
    let mut resp = (reply.status, reply.body).into_response();
    if let Ok(v) = reply.content_type.parse() {
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, v);
    }
    if reply.status.is_redirection()
        && let Ok(v) = "http://127.0.0.1:9/elsewhere".parse()
    {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

/// A receiver answering every request with `status` and `body`.
pub async fn receiver(status: u16, content_type: &'static str, body: &'static str) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let reply = Arc::new(Reply {
        status: StatusCode::from_u16(status).expect("status"),
        content_type,
        body,
        tx,
    });
    let app = Router::new().fallback(record).with_state(reply);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { addr, rx }
}

pub async fn ok_receiver() -> Receiver {
    receiver(200, "text/plain", "ok").await
}

/// Accepts connections, reads, never answers.
pub async fn hanging_receiver() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// A port on which nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn notifier() -> Notifier {
    Notifier::with_options(
        Vec::new(),
        &NotifierOptions {
            use_system_proxy: false,
            ..NotifierOptions::default()
        },
    )
    .expect("notifier")
}

/// The single channel configured by `pairs`.
pub fn channel(pairs: &[(&str, &str)]) -> Channel {
    let mut chans = channels_from_map(&env(pairs)).expect("valid config");
    assert_eq!(chans.len(), 1, "{chans:?}");
    chans.remove(0)
}

pub fn down_alert() -> Alert {
    Alert {
        id: 42,
        target: "db_primary".into(),
        state: "down".into(),
        reason: Some("HTTP 500".into()),
        title: "🔴 db_primary is DOWN".into(),
        message: "**db_primary** is down: `HTTP 500` since 12:00 <b>&</b>".into(),
        started_at_ms: Some(1_700_000_000_000),
        occurred_at_ms: 1_700_000_060_000,
        duration_s: Some(60.0),
        latency_ms: None,
        maintenance: false,
        held_back: false,
    }
}

pub fn recovered_alert() -> Alert {
    Alert {
        id: 43,
        state: "recovered".into(),
        reason: None,
        title: "✅ db_primary recovered".into(),
        message: "**db_primary** is back after 1m (latency 12.5 ms)".into(),
        duration_s: Some(60.0),
        latency_ms: Some(12.5),
        occurred_at_ms: 1_700_000_120_000,
        ..down_alert()
    }
}
