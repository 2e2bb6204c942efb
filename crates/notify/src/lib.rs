//! Alert delivery for Heartbeat.
//!
//! Channels (n8n, a generic signed webhook, Discord, Slack, Telegram, ntfy and
//! e-mail) are read from an environment-style map by [`channels_from_map`];
//! a [`Notifier`] holds them and one shared HTTP client, and
//! [`Notifier::deliver`] sends one [`Alert`] to one channel.
//!
//! Unlike the replaced system, **any non-2xx answer is a failure**: nothing
//! counts as sent unless the receiver accepted it. Retrying is the caller's
//! decision; [`DeliveryError::is_retryable`] gives advice.
//!
//! Secrets (webhook URLs, tokens, passwords, HMAC keys) never appear in
//! `Debug` output, logs or error texts: errors name the channel, not the URL.

mod config;
mod email;
mod error;
mod format;
mod heartbeat;
mod http;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::{
    CHANNEL_VARIABLES, Channel, ChannelKind, DEFAULT_TELEGRAM_API_URL, SmtpSecurity,
    channels_from_map,
};
pub use error::{ChannelConfigError, DeliveryError, DeliveryErrorKind, NotifierError};
pub use http::signature_hex;

/// Alert states, as carried in [`Alert::state`].
pub mod state {
    pub const DOWN: &str = "down";
    pub const RECOVERED: &str = "recovered";
    pub const REMINDER: &str = "reminder";
    pub const WORKER: &str = "worker";
    pub const CONNECTIVITY: &str = "connectivity";
}

/// One alert, as the generic webhook receives it (JSON, these field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Outbox id. Sent as `Idempotency-Key` and `X-Heartbeat-Alert-Id` headers
    /// so a receiver can drop the duplicates that retries may create.
    pub id: i64,
    pub target: String,
    /// "down" | "recovered" | "reminder" | "worker" | "connectivity" (see [`state`]).
    pub state: String,
    /// Why it is down (`HTTP 500`, `Timeout`, container state, ...).
    pub reason: Option<String>,
    pub title: String,
    /// Markdown text.
    pub message: String,
    pub started_at_ms: Option<i64>,
    pub occurred_at_ms: i64,
    pub duration_s: Option<f64>,
    pub latency_ms: Option<f64>,
    pub maintenance: bool,
    pub held_back: bool,
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status (always 2xx) for HTTP channels, SMTP reply code (2xx) for e-mail.
    pub status: Option<u16>,
}

/// Options of the shared HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierOptions {
    /// Honour `HTTP(S)_PROXY`/`NO_PROXY` for outbound alerts (default true).
    pub use_system_proxy: bool,
    pub user_agent: String,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            use_system_proxy: true,
            user_agent: concat!("heartbeat-notify/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The configured channels plus one shared HTTP client (no redirects,
/// embedded Mozilla roots, rustls). Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    channels: Vec<Channel>,
}

/// Outcome of one channel in [`Notifier::deliver_all`].
#[derive(Debug, Clone)]
pub struct ChannelOutcome {
    pub channel: &'static str,
    pub result: Result<Delivered, DeliveryError>,
}

impl Notifier {
    pub fn new(channels: Vec<Channel>) -> Result<Notifier, NotifierError> {
        Notifier::with_options(channels, &NotifierOptions::default())
    }

    pub fn with_options(
        channels: Vec<Channel>,
        options: &NotifierOptions,
    ) -> Result<Notifier, NotifierError> {
        let http = http::build_client(options)?;
        Ok(Notifier { http, channels })
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The configured channel with this label, if any.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name() == name)
    }

    /// Sends `alert` to `channel` (any channel, configured here or not).
    ///
    /// Succeeds only on a 2xx answer (or an accepted SMTP transaction); the
    /// whole exchange is bounded by `timeout`.
    pub async fn deliver(
        &self,
        channel: &Channel,
        alert: &Alert,
        timeout: Duration,
    ) -> Result<Delivered, DeliveryError> {
        let name = channel.name();
        let result = match &channel.inner {
            config::Inner::Email(cfg) => email::send(cfg, alert, timeout, &channel.redactor).await,
            inner => http::send(&self.http, inner, alert, timeout, &channel.redactor).await,
        }
        .map_err(|kind| DeliveryError::new(name, kind));
        match &result {
            Ok(d) => {
                tracing::debug!(channel = name, alert_id = alert.id, status = ?d.status, "alert delivered")
            }
            Err(e) => tracing::warn!(
                channel = name,
                alert_id = alert.id,
                status = ?e.status(),
                retryable = e.is_retryable(),
                error = %e,
                "alert delivery failed"
            ),
        }
        result
    }

    /// Sends `alert` to every configured channel concurrently, in channel order.
    pub async fn deliver_all(&self, alert: &Alert, timeout: Duration) -> Vec<ChannelOutcome> {
        futures::future::join_all(self.channels.iter().map(|c| async move {
            ChannelOutcome {
                channel: c.name(),
                result: self.deliver(c, alert, timeout).await,
            }
        }))
        .await
    }
}
