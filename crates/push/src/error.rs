//! Request errors and how each endpoint style renders them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with; the text says what is wrong, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Unknown token or id; the same answer whether or not it exists for someone else.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limited: retry in {0} s")]
    RateLimited(u64),
    #[error("body: larger than {0} bytes (PUSH_BODY_LIMIT)")]
    TooLarge(usize),
    #[error("body: not received within {0} s")]
    BodyTimeout(u64),
    /// The writer is gone: nothing was stored.
    #[error("the database writer is not running; nothing was stored")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn finish(&self, mut response: Response) -> Response {
        *response.status_mut() = self.status();
        if let ApiError::RateLimited(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }

    /// healthchecks.io style: plain text.
    pub fn text(&self) -> Response {
        let body = match self {
            ApiError::RateLimited(_) => "rate limited".to_owned(),
            other => other.to_string(),
        };
        self.finish(body.into_response())
    }

    /// Uptime Kuma / Heartbeat Central style: `{"ok": false, "msg": ...}`.
    pub fn kuma(&self) -> Response {
        self.finish(axum::Json(json!({"ok": false, "msg": self.to_string()})).into_response())
    }

    /// JSON API style: `{"error": ...}`.
    pub fn json(&self) -> Response {
        self.finish(axum::Json(json!({"error": self.to_string()})).into_response())
    }
}
