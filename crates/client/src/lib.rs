//! Client for Heartbeat's push API (the agent's listener, `AGENT_ADDR`).
//!
//! * [`Client::ping`]: healthchecks.io-style pings: success, `/start`, `/fail`, `/log`
//!   and `/<exit code>`, with a run id (`?rid=`) and a body.
//! * [`Client::kuma_push`]: Uptime Kuma-style `GET /api/push/<token>?status=…`.
//! * [`Services`]: the LaneSwap-style JSON API: register, heartbeat with a status,
//!   and progress tasks.
//! * [`AutoHeartbeat`]: a background task that keeps a target healthy and stops
//!   cleanly when stopped or dropped.
//!
//! Every request has a timeout; network errors, 5xx and 429 answers are retried a
//! few times with backoff. Tokens never appear in errors or logs: URLs are shown
//! through [`redact_url`].

mod auto;
mod error;
mod http;
mod services;
mod url;

pub use crate::auto::{AutoHeartbeat, AutoHeartbeatOptions, Beat, BeatStatus};
pub use crate::error::ClientError;
pub use crate::http::{Ack, Client, ClientOptions, KumaStatus, Ping, Signal};
pub use crate::services::{
    HeartbeatStatus, Registration, ServiceHandle, ServiceInfo, Services, TaskHandle, TaskInfo,
    TaskStatus,
};
pub use crate::url::{parse_url, redact_url};
pub use ::url::Url;

/// A fresh random run id (a UUID v4 in its usual text form) for `?rid=`.
pub fn new_run_id() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_are_uuid_v4_and_differ() {
        let a = super::new_run_id();
        let b = super::new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
