//! A background task that sends a heartbeat every interval, backs off while the
//! server is unreachable, and ends when stopped or dropped.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::services::ServiceHandle;
use crate::{Client, ClientError, HeartbeatStatus, KumaStatus, Ping, Signal};

/// What each beat sends.
#[derive(Debug, Clone)]
pub enum Beat {
    /// A success ping to a healthchecks.io-style ping URL (`…/ping/<token>`).
    Ping(Url),
    /// `status=up` to an Uptime Kuma-style push URL (`…/api/push/<token>`).
    Kuma(Url),
    /// `POST` to a Heartbeat Central-style URL (`…/heartbeat/<token>`).
    Central(Url),
    /// A `healthy` LaneSwap heartbeat for a service.
    Service(ServiceHandle),
}

impl Beat {
    async fn send(&self, client: &Client) -> Result<(), ClientError> {
        match self {
            Beat::Ping(url) => client
                .ping(url, &Ping::new(Signal::Success))
                .await
                .map(drop),
            Beat::Kuma(url) => client
                .kuma_push(url, KumaStatus::Up, None, None)
                .await
                .map(drop),
            Beat::Central(url) => client.central(url, None).await.map(drop),
            Beat::Service(s) => s.heartbeat(HeartbeatStatus::Healthy, None, None).await,
        }
    }
}

/// Timing of an [`AutoHeartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoHeartbeatOptions {
    /// Time between successful beats.
    pub interval: Duration,
    /// Delay after the first failed beat; doubles with each further failure, capped at `interval`.
    pub first_retry: Duration,
}

impl AutoHeartbeatOptions {
    pub fn every(interval: Duration) -> AutoHeartbeatOptions {
        AutoHeartbeatOptions {
            interval,
            first_retry: Duration::from_secs(1).min(interval),
        }
    }
}

/// Counters of a running [`AutoHeartbeat`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BeatStatus {
    /// Beats the server acknowledged.
    pub sent: u64,
    /// Beats that failed (after the client's own retries).
    pub failed: u64,
    /// Failures since the last acknowledged beat.
    pub consecutive_failures: u32,
    /// The last failure's text (never holds a token).
    pub last_error: Option<String>,
    /// Whether the task has ended.
    pub stopped: bool,
}

/// A running background heartbeat. Dropping it stops the task; [`AutoHeartbeat::stop`]
/// stops it and waits until it has ended.
#[derive(Debug)]
pub struct AutoHeartbeat {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    status: watch::Receiver<BeatStatus>,
}

impl AutoHeartbeat {
    /// Starts beating at once, then every `options.interval`. Needs a tokio runtime.
    pub fn spawn(client: Client, beat: Beat, options: AutoHeartbeatOptions) -> AutoHeartbeat {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (status_tx, status_rx) = watch::channel(BeatStatus::default());
        let task = tokio::spawn(run(client, beat, options, stop_rx, status_tx));
        AutoHeartbeat {
            stop: Some(stop_tx),
            task: Some(task),
            status: status_rx,
        }
    }

    /// The counters right now.
    pub fn status(&self) -> BeatStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of the counters (to wait for a condition).
    pub fn subscribe(&self) -> watch::Receiver<BeatStatus> {
        self.status.clone()
    }

    /// Stops the task (an in-flight beat is abandoned) and waits for it to end.
    pub async fn stop(mut self) -> BeatStatus {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.status.borrow().clone()
    }
}

impl Drop for AutoHeartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    client: Client,
    beat: Beat,
    options: AutoHeartbeatOptions,
    mut stop: oneshot::Receiver<()>,
    status: watch::Sender<BeatStatus>,
) {
    let interval = options.interval.max(Duration::from_millis(10));
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let result = tokio::select! {
            _ = &mut stop => break,
            r = beat.send(&client) => r,
        };
        let now = Instant::now();
        match result {
            Ok(()) => {
                status.send_modify(|s| {
                    s.sent += 1;
                    s.consecutive_failures = 0;
                });
                next = now + interval;
            }
            Err(e) => {
                let mut failures = 0;
                status.send_modify(|s| {
                    s.failed += 1;
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    s.last_error = Some(e.to_string());
                    failures = s.consecutive_failures;
                });
                let delay = options
                    .first_retry
                    .saturating_mul(1u32 << (failures - 1).min(16))
                    .min(interval);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "heartbeat failed");
                next = now + delay;
            }
        }
    }
    status.send_modify(|s| s.stopped = true);
}
