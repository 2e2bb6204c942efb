//! A mock started in-process on free ports, and an HTTP client to drive it.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use heartbeat_mock::{MockConfig, RunningMock};
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret";

pub async fn start_mock() -> RunningMock {
    heartbeat_mock::start(MockConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        port_base: 0,
        secret_key: SECRET.into(),
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// A plain-HTTP client with no proxy and no pooling surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .unwrap()
}

/// A client that opens a new connection per request (what a refused/reset check needs).
pub fn fresh_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .unwrap()
}

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(mock: &RunningMock) -> Api {
        Api {
            base: mock.url(),
            client: client(),
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// Creates a service on a free port and returns its address.
    pub async fn create(&self, name: &str) -> SocketAddr {
        let (status, v) = self
            .send("POST", "/api/services", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{v}");
        let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    pub async fn set_mode(&self, name: &str, mode: Value) -> Value {
        let (status, v) = self
            .send("PUT", &format!("/api/services/{name}/mode"), Some(mode))
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn requests(&self, name: &str) -> u64 {
        let (_, v) = self
            .send("GET", &format!("/api/services/{name}"), None)
            .await;
        v["requests"].as_u64().unwrap()
    }
}

/// The whole error chain as text.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Polls `f` until it returns `Some`, or panics at `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < give_up, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
}
