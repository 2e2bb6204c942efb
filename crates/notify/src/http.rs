//! HTTP channels: n8n, webhook, Discord, Slack, Telegram, ntfy.

use std::error::Error as StdError;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder};
use sha2::Sha256;
use url::Url;

use crate::config::Inner;
use crate::error::{DeliveryErrorKind, NotifierError, Redactor};
use crate::{Alert, Delivered, NotifierOptions, format};

const JSON: &str = "application/json";
/// ntfy turns longer bodies into attachments.
const NTFY_MAX_BODY: usize = 4000;
/// How much of an error answer is read for the error text.
const ERROR_BODY_READ: usize = 1024;
const ERROR_DETAIL_CHARS: usize = 200;

pub(crate) fn build_client(options: &NotifierOptions) -> Result<Client, NotifierError> {
    let mut roots = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
    for (index, der) in webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().enumerate() {
        let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| {
            NotifierError::RootCertificate {
                index,
                reason: e.to_string(),
            }
        })?;
        roots.push(cert);
    }
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(options.user_agent.clone())
        .pool_idle_timeout(Duration::from_secs(60))
        .tls_certs_only(roots);
    if !options.use_system_proxy {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| NotifierError::HttpClient(chain_text(&e)))
}

/// Hex HMAC-SHA256 of `body` under `key`, as sent in `X-Heartbeat-Signature: sha256=<hex>`.
pub fn signature_hex(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails in practice; an
    // empty signature (which no receiver accepts) is the fallback anyway.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn json_bytes(value: &impl serde::Serialize) -> Result<Vec<u8>, DeliveryErrorKind> {
    serde_json::to_vec(value).map_err(|e| DeliveryErrorKind::Request(format!("JSON: {e}")))
}

fn build_request(
    http: &Client,
    inner: &Inner,
    alert: &Alert,
) -> Result<RequestBuilder, DeliveryErrorKind> {
    let id = alert.id.to_string();
    let post = |url: &Url| {
        http.post(url.clone())
            .header("Idempotency-Key", id.as_str())
            .header("X-Heartbeat-Alert-Id", id.as_str())
    };
    let req = match inner {
        Inner::N8n { url } => post(url.url())
            .header(CONTENT_TYPE, JSON)
            .body(json_bytes(alert)?),
        Inner::Webhook { url, secret } => {
            let body = json_bytes(alert)?;
            let mut req = post(url.url()).header(CONTENT_TYPE, JSON);
            if let Some(secret) = secret {
                let sig = signature_hex(secret.expose().as_bytes(), &body);
                req = req.header("X-Heartbeat-Signature", format!("sha256={sig}"));
            }
            req.body(body)
        }
        Inner::Discord { url } => post(url.url())
            .header(CONTENT_TYPE, JSON)
            .body(json_bytes(&format::discord_body(alert))?),
        Inner::Slack { url } => post(url.url())
            .header(CONTENT_TYPE, JSON)
            .body(json_bytes(&format::slack_body(alert))?),
        Inner::Telegram {
            api,
            token,
            chat_id,
            disable_notification,
        } => {
            let base = api.url().as_str().trim_end_matches('/');
            let url = Url::parse(&format!("{base}/bot{}/sendMessage", token.expose()))
                .map_err(|_| DeliveryErrorKind::Request("invalid Telegram API URL".into()))?;
            post(&url)
                .header(CONTENT_TYPE, JSON)
                .body(json_bytes(&format::telegram_body(
                    alert,
                    chat_id,
                    *disable_notification,
                ))?)
        }
        Inner::Ntfy { url, token } => {
            let mut req = post(url.url())
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .header("Title", format::header_text(&alert.title))
                .header("Priority", format::ntfy_priority(alert))
                .header("Tags", format::ntfy_tags(alert))
                .header("Markdown", "yes");
            if let Some(token) = token {
                req = req.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
            }
            req.body(format::truncate_bytes(&alert.message, NTFY_MAX_BODY))
        }
        Inner::Email(_) => {
            return Err(DeliveryErrorKind::Request(
                "e-mail is not an HTTP channel".into(),
            ));
        }
    };
    Ok(req)
}

pub(crate) async fn send(
    http: &Client,
    inner: &Inner,
    alert: &Alert,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Delivered, DeliveryErrorKind> {
    let req = build_request(http, inner, alert)?;
    let exchange = async {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(&e, timeout, redactor))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered {
                status: Some(status.as_u16()),
            });
        }
        let detail = if status.is_redirection() {
            "redirects are not followed".to_owned()
        } else {
            error_detail(resp, redactor).await
        };
        Err(DeliveryErrorKind::Status {
            status: status.as_u16(),
            detail,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryErrorKind::Timeout(timeout)),
    }
}

/// A short, single-line, redacted excerpt of an error answer; empty for HTML
/// pages (proxies' error pages say nothing useful in 200 characters).
async fn error_detail(mut resp: reqwest::Response, redactor: &Redactor) -> String {
    let is_html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("html"));
    if is_html {
        return String::new();
    }
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_READ {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(ERROR_BODY_READ);
    let text = String::from_utf8_lossy(&buf);
    let compact = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format::truncate_chars(&redactor.redact(&compact), ERROR_DETAIL_CHARS)
}

/// The error's source chain as text, without the top-level reqwest message
/// (which would carry the URL).
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        // A source-less reqwest error: its own text, without any URL.
        return match e.downcast_ref::<reqwest::Error>() {
            Some(re) => reqwest_kind_text(re).to_owned(),
            None => "unknown error".to_owned(),
        };
    }
    parts.join(": ")
}

/// Short text of a reqwest error that has no source.
fn reqwest_kind_text(e: &reqwest::Error) -> &'static str {
    if e.is_builder() {
        "invalid request"
    } else if e.is_body() {
        "request or response body error"
    } else if e.is_decode() {
        "response decoding error"
    } else if e.is_redirect() {
        "redirect error"
    } else if e.is_request() {
        "request error"
    } else {
        "HTTP error"
    }
}

/// The error and everything under it: `source()` links, plus the payload of
/// `io::Error`s (whose `source()` skips it), which is where rustls errors hide.
pub(crate) fn error_chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if out.len() >= 32 {
            break;
        }
        out.push(err);
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    out
}

fn find_tls(e: &(dyn StdError + 'static)) -> Option<String> {
    error_chain(e)
        .into_iter()
        .find_map(|err| err.downcast_ref::<rustls::Error>())
        .map(|t| t.to_string())
}

/// A plain description of the first telling `io::Error` kind in the chain.
pub(crate) fn io_text(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    error_chain(e).into_iter().find_map(|err| {
        err.downcast_ref::<std::io::Error>()
            .and_then(|io| io_kind_text(io.kind()))
    })
}

pub(crate) fn classify(
    e: &reqwest::Error,
    timeout: Duration,
    redactor: &Redactor,
) -> DeliveryErrorKind {
    if e.is_timeout() {
        return DeliveryErrorKind::Timeout(timeout);
    }
    if e.is_builder() {
        return DeliveryErrorKind::Request(redactor.redact(&chain_text(e)));
    }
    if let Some(tls) = find_tls(e) {
        return DeliveryErrorKind::Tls(redactor.redact(&tls));
    }
    if let Some(text) = io_text(e) {
        return if e.is_connect() {
            DeliveryErrorKind::Connect(text.to_owned())
        } else {
            DeliveryErrorKind::Network(text.to_owned())
        };
    }
    let text = redactor.redact(&chain_text(e));
    if e.is_connect() {
        DeliveryErrorKind::Connect(format!("cannot connect: {text}"))
    } else {
        DeliveryErrorKind::Network(text)
    }
}

pub(crate) fn io_kind_text(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match kind {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::UnexpectedEof => "connection closed early",
        K::BrokenPipe => "connection closed (broken pipe)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
