//! The agent's push listener (`AGENT_ADDR`): healthchecks.io, Uptime Kuma, LaneSwap and
//! Heartbeat Central style heartbeats, the registration API, and `GET /health`.
//! The contract is docs/push-api.md.
//!
//! Nothing here writes the database: every change goes to the agent's single writer as a
//! [`PushJob`], which answers only after the transaction holding it committed (group commit:
//! the writer drains all queued jobs into one transaction). [`Registry`] mirrors the committed
//! state in memory; the monitor's cycle turns it into ordinary check rows.

mod error;
mod registry;
mod server;
pub mod status;
mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use heartbeat_config::AgentConfig;
use heartbeat_core::TargetKind;
use heartbeat_store::{PushDefinition, PushOp, PushOpError, PushSource};
use tokio::sync::{mpsc, oneshot};

pub use error::ApiError;
pub use registry::{Denied, RateLimit, Registry};
pub use server::{Listener, router};
pub use token::{TokenHash, new_token, new_uuid};

/// Bytes of a ping body kept with the event, as healthchecks.io keeps.
pub const BODY_KEPT: usize = 10 * 1024;
/// Push connections served at once. Far above what cron jobs and services need, far
/// below the open-files limit the agent raises for its probes.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections of one client address: an eighth of all, so that it takes several
/// addresses to fill the listener. A reverse proxy in front counts as one client.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 8;
/// A request body (at most `PUSH_BODY_LIMIT`) must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer that cannot be written for this long (the client stopped reading) ends
/// the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client gets this long to send a request head; slow or idle connections are closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One change for the writer, answered after COMMIT.
#[derive(Debug)]
pub struct PushJob {
    pub op: PushOp,
    pub reply: oneshot::Sender<Result<(), PushOpError>>,
}

/// What `GET /health` reports: the agent's last committed cycle and whether its writer lives.
#[derive(Debug)]
pub struct Health {
    started_ms: i64,
    last_cycle_ms: AtomicI64,
    writer_alive: AtomicBool,
    max_age_ms: i64,
}

impl Health {
    /// Healthy while a cycle committed within `max(3 × interval, 30 s)`.
    pub fn new(interval: Duration, now_ms: i64) -> Health {
        let max_age = (interval * 3).max(Duration::from_secs(30));
        Health {
            started_ms: now_ms,
            last_cycle_ms: AtomicI64::new(i64::MIN),
            writer_alive: AtomicBool::new(true),
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
        }
    }

    pub fn cycle_committed(&self, now_ms: i64) {
        self.last_cycle_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn writer_alive(&self) -> bool {
        self.writer_alive.load(Ordering::Relaxed)
    }

    pub fn writer_stopped(&self) {
        self.writer_alive.store(false, Ordering::Relaxed);
    }

    /// `(healthy, seconds since the last cycle, reason when unhealthy)`.
    pub fn check(&self, now_ms: i64) -> (bool, Option<f64>, Option<String>) {
        let last = self.last_cycle_ms.load(Ordering::Relaxed);
        let age = (last != i64::MIN).then(|| (now_ms - last) as f64 / 1000.0);
        if !self.writer_alive.load(Ordering::Relaxed) {
            return (false, age, Some("the database writer has stopped".into()));
        }
        let reference = if last == i64::MIN {
            self.started_ms
        } else {
            last
        };
        if now_ms - reference > self.max_age_ms {
            let reason = match age {
                Some(a) => format!("no cycle committed for {a:.0} s"),
                None => "no cycle committed since start".into(),
            };
            return (false, age, Some(reason));
        }
        (true, age, None)
    }
}

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub admin: Option<TokenHash>,
    pub body_limit: usize,
    /// Open connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Open connections of one client address (an IPv6 /64); more are closed at once.
    pub max_connections_per_peer: usize,
    /// How long a request body may take to arrive once its token is accepted.
    pub body_timeout: Duration,
    /// How long writing an answer may make no progress (a client that stopped reading)
    /// before the connection is closed.
    pub write_timeout: Duration,
    /// How long a connection may take to send a request head, or stay idle between
    /// requests, before it is closed.
    pub header_timeout: Duration,
    pub default_period: Duration,
    pub default_grace: Duration,
    /// For read-only queries (ping history).
    pub db_path: PathBuf,
}

/// Everything a handler shares.
#[derive(Debug)]
pub struct PushState {
    pub registry: Arc<Registry>,
    pub jobs: mpsc::Sender<PushJob>,
    pub health: Arc<Health>,
    pub settings: Settings,
}

impl Settings {
    pub fn from_config(config: &AgentConfig) -> Settings {
        Settings {
            admin: config
                .push
                .admin_token
                .as_ref()
                .map(|t| TokenHash::of(t.expose())),
            body_limit: config.push.body_limit,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            body_timeout: BODY_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            default_period: heartbeat_config::DEFAULT_PERIOD,
            default_grace: heartbeat_config::DEFAULT_GRACE,
            db_path: config.sqlite_db_path.clone(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The configured push targets as stored definitions (their service id is their name).
/// `created_at_ms` is filled by the store for new ones; existing ones keep theirs.
pub fn configured_definitions(config: &AgentConfig) -> Vec<PushDefinition> {
    config
        .targets
        .iter()
        .filter_map(|t| match &t.kind {
            TargetKind::Push(p) => Some(PushDefinition {
                service_id: t.name.clone(),
                name: t.name.clone(),
                source: PushSource::Config,
                token_sha256: TokenHash::of(p.token.expose()).0,
                period_ms: ms(p.period),
                grace_ms: ms(p.grace),
                schedule: p.schedule.clone(),
                metadata: None,
                created_at_ms: 0,
            }),
            _ => None,
        })
        .collect()
}

/// The rate limit of a configuration.
pub fn rate_limit(config: &AgentConfig) -> RateLimit {
    RateLimit {
        rate_per_sec: config.push.rate_per_sec,
        burst: config.push.rate_burst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_a_recent_cycle_and_a_live_writer() {
        let h = Health::new(Duration::from_secs(10), 1_000_000);
        // Just started: no cycle yet, but within the allowance.
        assert!(h.check(1_010_000).0);
        let (ok, _, reason) = h.check(1_031_000);
        assert!(!ok);
        assert_eq!(reason.as_deref(), Some("no cycle committed since start"));
        h.cycle_committed(1_040_000);
        assert_eq!(h.check(1_045_000), (true, Some(5.0), None));
        let (ok, age, reason) = h.check(1_080_000);
        assert!(!ok && age == Some(40.0));
        assert_eq!(reason.as_deref(), Some("no cycle committed for 40 s"));
        h.cycle_committed(1_080_000);
        h.writer_stopped();
        let (ok, _, reason) = h.check(1_080_001);
        assert!(!ok);
        assert_eq!(reason.as_deref(), Some("the database writer has stopped"));
    }
}
