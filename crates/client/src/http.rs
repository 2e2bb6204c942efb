//! The HTTP side: one reqwest client, timeouts, retries with backoff, pings and Kuma pushes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use url::Url;

use crate::ClientError;
use crate::url::{join, redact_url, scrub, with_query};

/// How much of an answer is read (the API's answers are small).
const MAX_ANSWER: usize = 64 * 1024;
/// How much of an error answer goes into [`ClientError::Rejected`].
const ERROR_BODY_CHARS: usize = 300;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout of one attempt.
    pub timeout: Duration,
    /// Connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Extra attempts after a transient failure (network error, 5xx, 429).
    pub retries: u32,
    /// Delay before the first retry; doubles for each further one.
    pub retry_backoff: Duration,
    /// Honour `HTTP(S)_PROXY` / `NO_PROXY` as curl does.
    pub use_system_proxy: bool,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retries: 2,
            retry_backoff: Duration::from_millis(500),
            use_system_proxy: true,
            user_agent: format!("heartbeat-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub status: u16,
    pub body: String,
}

/// What a healthchecks.io-style ping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `/ping/<token>`: the job succeeded (or: I am alive).
    Success,
    /// `/ping/<token>/start`: a run started; with a grace period this caps its run time.
    Start,
    /// `/ping/<token>/fail`.
    Fail,
    /// `/ping/<token>/log`: a message that changes no status.
    Log,
    /// `/ping/<token>/<code>`: 0 is success, anything else a failure.
    Exit(u8),
}

impl Signal {
    fn segment(self) -> Option<String> {
        match self {
            Signal::Success => None,
            Signal::Start => Some("start".into()),
            Signal::Fail => Some("fail".into()),
            Signal::Log => Some("log".into()),
            Signal::Exit(code) => Some(code.to_string()),
        }
    }
}

/// One ping: a signal, an optional run id pairing a start with its end, an optional body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub signal: Signal,
    pub rid: Option<String>,
    /// Sent as the POST body (the server keeps the first 10 KB); no body: a GET.
    pub body: Option<Vec<u8>>,
}

impl Ping {
    pub fn new(signal: Signal) -> Ping {
        Ping {
            signal,
            rid: None,
            body: None,
        }
    }

    pub fn rid(mut self, rid: impl Into<String>) -> Ping {
        self.rid = Some(rid.into());
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Ping {
        self.body = Some(body.into());
        self
    }

    /// The URL this ping requests, given the check's ping URL.
    pub fn url(&self, ping_url: &Url) -> Url {
        let url = match self.signal.segment() {
            Some(s) => join(ping_url, &[&s]),
            None => ping_url.clone(),
        };
        match &self.rid {
            Some(rid) => with_query(&url, &[("rid", rid.clone())]),
            None => url,
        }
    }
}

/// Uptime Kuma's push status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KumaStatus {
    Up,
    Down,
}

/// The push API client. Cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
}

/// A request to send, rebuilt for every attempt.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub body: Option<&'a [u8]>,
    pub json: bool,
    pub bearer: Option<&'a str>,
    /// Whether sending it twice is harmless. A request that creates something
    /// (a registration, a task) is retried only when the server cannot have acted on
    /// it: no connection, 429, 503.
    pub idempotent: bool,
}

impl Request<'_> {
    fn retryable(&self, e: &ClientError) -> bool {
        if self.idempotent {
            return e.is_transient();
        }
        match e {
            ClientError::Network { connect, .. } => *connect,
            ClientError::Rejected { status, .. } => *status == 429 || *status == 503,
            _ => false,
        }
    }
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let mut roots = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let cert = reqwest::Certificate::from_der(der.as_ref())
                .map_err(|e| ClientError::Build(format!("root certificate: {e}")))?;
            roots.push(cert);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .tls_certs_only(roots);
        if !options.use_system_proxy {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(error_text(&e)))?;
        Ok(Client { http, options })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends `ping` to the check whose ping URL is `ping_url` (`…/ping/<token>`).
    pub async fn ping(&self, ping_url: &Url, ping: &Ping) -> Result<Ack, ClientError> {
        let url = ping.url(ping_url);
        let method = if ping.body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        self.send(&Request {
            method,
            url: &url,
            body: ping.body.as_deref(),
            json: false,
            bearer: None,
            idempotent: true,
        })
        .await
    }

    /// Uptime Kuma-style push to `push_url` (`…/api/push/<token>`).
    pub async fn kuma_push(
        &self,
        push_url: &Url,
        status: KumaStatus,
        msg: Option<&str>,
        ping_ms: Option<f64>,
    ) -> Result<Ack, ClientError> {
        let mut pairs = vec![(
            "status",
            match status {
                KumaStatus::Up => "up".to_owned(),
                KumaStatus::Down => "down".to_owned(),
            },
        )];
        if let Some(m) = msg {
            pairs.push(("msg", m.to_owned()));
        }
        if let Some(p) = ping_ms {
            pairs.push(("ping", format!("{p}")));
        }
        let url = with_query(push_url, &pairs);
        self.send(&Request {
            method: Method::GET,
            url: &url,
            body: None,
            json: false,
            bearer: None,
            idempotent: true,
        })
        .await
    }

    /// Heartbeat Central-style `POST /heartbeat/<token>` to `url`, with an optional JSON body
    /// (an object with `"status"` is read like a LaneSwap heartbeat).
    pub async fn central(
        &self,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Ack, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.send(&Request {
            method: Method::POST,
            url,
            body: bytes.as_deref(),
            json: true,
            bearer: None,
            idempotent: true,
        })
        .await
    }

    /// Sends `req`, retrying transient failures; errors carry the redacted URL only.
    pub(crate) async fn send(&self, req: &Request<'_>) -> Result<Ack, ClientError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.attempt(req, attempt).await;
            match result {
                Err(e) if req.retryable(&e) && attempt <= self.options.retries => {
                    let delay = self
                        .options
                        .retry_backoff
                        .saturating_mul(1u32 << (attempt - 1).min(16));
                    tracing::debug!(url = %redact_url(req.url), attempt, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, req: &Request<'_>, attempts: u32) -> Result<Ack, ClientError> {
        let shown = redact_url(req.url);
        let mut rb = self.http.request(req.method.clone(), req.url.clone());
        if let Some(body) = req.body {
            rb = rb.body(body.to_vec());
            rb = rb.header(
                reqwest::header::CONTENT_TYPE,
                if req.json {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                },
            );
        }
        if let Some(token) = req.bearer {
            rb = rb.bearer_auth(token);
        }
        let network = |e: reqwest::Error| ClientError::Network {
            url: shown.clone(),
            timed_out: e.is_timeout(),
            connect: e.is_connect(),
            detail: scrub(&error_text(&e.without_url()), req.url),
            attempts,
        };
        let mut resp = rb.send().await.map_err(network)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(network)? {
            let room = MAX_ANSWER.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            return Ok(Ack {
                status: status.as_u16(),
                body: text,
            });
        }
        Err(ClientError::Rejected {
            url: shown,
            status: status.as_u16(),
            body: scrub(&error_summary(status, &text), req.url),
            attempts,
        })
    }
}

/// The server's explanation: a JSON `error`/`detail`/`message` field, else the text.
fn error_summary(status: StatusCode, text: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            ["error", "detail", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| text.trim().to_owned());
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("").to_owned()
    } else {
        text
    };
    text.chars().take(ERROR_BODY_CHARS).collect()
}

/// An error and its sources on one line.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls() {
        let base = Url::parse("http://127.0.0.1:8101/ping/tok").expect("url");
        let cases = [
            (Ping::new(Signal::Success), "http://127.0.0.1:8101/ping/tok"),
            (
                Ping::new(Signal::Start).rid("r-1"),
                "http://127.0.0.1:8101/ping/tok/start?rid=r-1",
            ),
            (
                Ping::new(Signal::Fail),
                "http://127.0.0.1:8101/ping/tok/fail",
            ),
            (Ping::new(Signal::Log), "http://127.0.0.1:8101/ping/tok/log"),
            (
                Ping::new(Signal::Exit(3)).rid("x"),
                "http://127.0.0.1:8101/ping/tok/3?rid=x",
            ),
        ];
        for (ping, want) in cases {
            assert_eq!(ping.url(&base).as_str(), want);
        }
    }

    #[test]
    fn error_summary_prefers_json_fields() {
        assert_eq!(
            error_summary(StatusCode::BAD_REQUEST, r#"{"error":"status: unknown"}"#),
            "status: unknown"
        );
        assert_eq!(error_summary(StatusCode::NOT_FOUND, ""), "Not Found");
        assert_eq!(error_summary(StatusCode::NOT_FOUND, " nope \n"), "nope");
    }
}
