//! Alerting for Heartbeat: a pure debouncing state machine per monitored item,
//! and localised alert texts for the webhook.
//!
//! Nothing here does I/O, reads the clock or the environment: time comes in as
//! UTC milliseconds, the state goes out to the caller to persist, and the rendered
//! texts go out to the caller to send.

mod format;
pub mod lang;
mod machine;
mod render;

pub use lang::{Language, Strings, Unit, UnknownLanguage};
pub use machine::{
    Confirmed, Incident, ItemState, Observation, Outage, Recovery, Reminder, Thresholds, Transition,
};
pub use render::{Alert, Rendered, WorkerAlert, WorkerState, render, render_held_back};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("threshold {0} must be at least 1")]
    ZeroThreshold(&'static str),
    #[error("cannot encode item state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot decode persisted item state: {0}")]
    Decode(#[source] serde_json::Error),
}

/// A UTC instant as alerts show it: `2026-11-23 14:05:09 -05 (America/Lima)`.
pub fn format_time(at_ms: i64, tz: &jiff::tz::TimeZone) -> String {
    format::time(at_ms, tz)
}

/// A duration as alerts show it: `3 min 20 s`, `2 h 5 min`.
pub fn format_duration(ms: i64, lang: Language) -> String {
    format::duration(ms, lang.strings())
}

/// A latency as alerts show it: `12.3 ms`.
pub fn format_latency(ms: Option<f64>, lang: Language) -> String {
    format::latency(ms, lang.strings())
}
