//! The client's typed errors. No variant ever holds a token: URLs are redacted
//! ([`crate::redact_url`]) before they are put into an error.

/// What went wrong talking to the push API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A URL or another argument was unusable; `field` names it.
    #[error("{field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    /// The HTTP client could not be built (TLS roots, settings).
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("{url}: {detail} (after {attempts} attempt{})", plural(*attempts))]
    Network {
        url: String,
        detail: String,
        timed_out: bool,
        /// No connection was made, so the server never saw the request.
        connect: bool,
        attempts: u32,
    },
    /// The server answered with a non-2xx status.
    #[error("{url}: the server answered {status}{}{body} (after {attempts} attempt{})",
        if body.is_empty() { "" } else { ": " }, plural(*attempts))]
    Rejected {
        url: String,
        status: u16,
        /// The start of the answer's body (the server's explanation).
        body: String,
        attempts: u32,
    },
    /// A 2xx answer whose body is not what the API documents.
    #[error("{url}: unexpected answer: {reason}")]
    InvalidResponse { url: String, reason: String },
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl ClientError {
    /// Whether trying again later may succeed (network errors, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network { .. } => true,
            ClientError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status of a rejected request.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}
