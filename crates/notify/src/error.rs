//! Error types. Every text here is free of secrets: errors name the channel,
//! never its URL, token or password, and remote texts are passed through a
//! [`Redactor`] before they are kept.

use std::fmt;
use std::time::Duration;

/// One invalid (or missing) configuration variable.
///
/// `message` never repeats the value, since the value may hold a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ChannelConfigError {
    pub variable: String,
    pub message: String,
}

impl ChannelConfigError {
    pub(crate) fn new(variable: &str, message: impl Into<String>) -> Self {
        ChannelConfigError {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

/// The notifier itself could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifierError {
    #[error("notify: cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("notify: embedded root certificate #{index} is invalid: {reason}")]
    RootCertificate { index: usize, reason: String },
}

/// A delivery that did not succeed. Nothing failed counts as sent.
///
/// Display reads like `telegram: HTTP 401: Unauthorized` or
/// `discord: connection refused`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{channel}: {kind}")]
pub struct DeliveryError {
    /// The channel's stable label (see [`crate::Channel::name`]).
    pub channel: &'static str,
    pub kind: DeliveryErrorKind,
}

impl DeliveryError {
    pub(crate) fn new(channel: &'static str, kind: DeliveryErrorKind) -> Self {
        DeliveryError { channel, kind }
    }

    /// The remote answer's code, when there was one: the HTTP status for HTTP
    /// channels, the SMTP reply code for e-mail.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            DeliveryErrorKind::Status { status, .. } => Some(*status),
            DeliveryErrorKind::Smtp { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether trying again later may help. Network errors, timeouts, HTTP 5xx,
    /// 408 and 429, and transient (4xx) SMTP replies are retryable; other 4xx,
    /// redirects, TLS failures, permanent SMTP replies and request-building
    /// errors are not. This is advice only: the caller decides.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            DeliveryErrorKind::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            DeliveryErrorKind::Connect(_)
            | DeliveryErrorKind::Timeout(_)
            | DeliveryErrorKind::Network(_) => true,
            DeliveryErrorKind::Smtp { permanent, .. } => !permanent,
            DeliveryErrorKind::Tls(_) | DeliveryErrorKind::Request(_) => false,
        }
    }
}

/// What went wrong, without secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryErrorKind {
    /// The receiver answered with a non-2xx HTTP status. `detail` is a short,
    /// redacted excerpt of its answer (may be empty).
    Status { status: u16, detail: String },
    /// The connection could not be made (refused, DNS failure, unreachable).
    Connect(String),
    /// No complete answer within the given timeout.
    Timeout(Duration),
    /// Another transport error (connection reset, protocol error, ...).
    Network(String),
    /// TLS could not be established (bad certificate, STARTTLS not offered, ...).
    Tls(String),
    /// The SMTP server rejected the message or the session.
    Smtp {
        code: Option<u16>,
        permanent: bool,
        message: String,
    },
    /// The request could not be built on our side.
    Request(String),
}

impl fmt::Display for DeliveryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryErrorKind::Status { status, detail } => {
                write!(f, "HTTP {status}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            DeliveryErrorKind::Connect(d) => f.write_str(d),
            DeliveryErrorKind::Timeout(t) => write!(f, "timed out after {t:?}"),
            DeliveryErrorKind::Network(d) => write!(f, "network error: {d}"),
            DeliveryErrorKind::Tls(d) => write!(f, "TLS error: {d}"),
            DeliveryErrorKind::Smtp {
                code,
                permanent,
                message,
            } => {
                let kind = if *permanent { "permanent" } else { "transient" };
                match code {
                    Some(c) => write!(f, "SMTP {c} ({kind}): {message}"),
                    None => write!(f, "SMTP error ({kind}): {message}"),
                }
            }
            DeliveryErrorKind::Request(d) => write!(f, "cannot build the request: {d}"),
        }
    }
}

/// Replaces every known secret of a channel in free-form text.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Secrets shorter than this are not searched for: replacing "a" everywhere
/// would only garble the text, and such a value protects nothing anyway.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // Longest first, so a secret containing another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds a URL and the parts of it that may carry a token: the path, each
    /// longer path segment, the query and the password.
    pub(crate) fn add_url(&mut self, url: &url::Url) {
        self.add(url.as_str());
        let path = url.path();
        if path.len() > 1 {
            self.add(path);
            // Percent-decoded and raw segments alike.
            for segment in path.split('/') {
                if segment.len() >= 6 {
                    self.add(segment);
                }
            }
        }
        if let Some(q) = url.query() {
            self.add(q);
        }
        if let Some(p) = url.password() {
            self.add(p);
        }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let e = |status| {
            DeliveryError::new(
                "x",
                DeliveryErrorKind::Status {
                    status,
                    detail: String::new(),
                },
            )
        };
        assert!(e(500).is_retryable());
        assert!(e(503).is_retryable());
        assert!(e(408).is_retryable());
        assert!(e(429).is_retryable());
        assert!(!e(400).is_retryable());
        assert!(!e(401).is_retryable());
        assert!(!e(404).is_retryable());
        assert!(!e(301).is_retryable());
        assert_eq!(e(404).status(), Some(404));
        assert_eq!(e(404).to_string(), "x: HTTP 404");
        let t = DeliveryError::new(
            "ntfy",
            DeliveryErrorKind::Timeout(Duration::from_millis(1500)),
        );
        assert!(t.is_retryable());
        assert_eq!(t.to_string(), "ntfy: timed out after 1.5s");
        assert_eq!(t.status(), None);
    }

    #[test]
    fn redactor_replaces_url_parts() {
        let mut r = Redactor::default();
        let url = url::Url::parse(
            "https://u:pw1234@hooks.example.com/services/T000/B000/XXXXSECRET?token=qqqq",
        )
        .expect("url");
        r.add_url(&url);
        let text = "failed for https://u:pw1234@hooks.example.com/services/T000/B000/XXXXSECRET?token=qqqq and /services/T000/B000/XXXXSECRET and XXXXSECRET and token=qqqq pw1234";
        let out = r.redact(text);
        assert!(!out.contains("XXXXSECRET"), "{out}");
        assert!(!out.contains("qqqq"), "{out}");
        assert!(!out.contains("pw1234"), "{out}");
    }
}
