//! Delivers queued alerts, in order per channel, with retries and backoff.
//!
//! Alerts reach the outbox in the same transaction as the cycle that raised
//! them; this task only reads them back through the writer, sends them and
//! records every attempt. Probing never waits for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use heartbeat_notify::{Alert as Payload, Notifier};
use heartbeat_store::{AttemptOutcome, NextStep, OutboxAlert};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::runner::{WriterCommand, now_ms};

/// One attempt may take this long before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Quick retries first, then exponential backoff from `BACKOFF_BASE` up to `BACKOFF_CAP`.
const QUICK_RETRIES: u32 = 3;
const QUICK_RETRY_MS: i64 = 2_000;
const BACKOFF_BASE_MS: i64 = 5_000;
const BACKOFF_CAP_MS: i64 = 10 * 60_000;
/// Re-read the outbox at least this often, even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// When the next attempt is due after `attempts` failed ones, from `now`.
pub(crate) fn next_attempt(now: i64, attempts: u32, expires_ms: i64) -> NextStep {
    let wait = if attempts <= QUICK_RETRIES {
        QUICK_RETRY_MS
    } else {
        let doublings = (attempts - QUICK_RETRIES - 1).min(20);
        (BACKOFF_BASE_MS << doublings).min(BACKOFF_CAP_MS)
    };
    let at = now + wait;
    if at > expires_ms {
        NextStep::Expired
    } else {
        NextStep::RetryAt(at)
    }
}

pub(crate) async fn deliver_loop(
    writer: mpsc::Sender<WriterCommand>,
    notifier: Arc<Notifier>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        if writer
            .send(WriterCommand::PendingAlerts { reply })
            .await
            .is_err()
        {
            return;
        }
        let Ok(pending) = answer.await else { return };

        // Strict order per channel: only the oldest pending alert of each channel
        // may go, so a recovery never overtakes its outage.
        let mut heads: BTreeMap<&str, &OutboxAlert> = BTreeMap::new();
        for alert in &pending {
            heads.entry(alert.channel.as_str()).or_insert(alert);
        }
        let now = now_ms();
        let due: Vec<&OutboxAlert> = heads
            .values()
            .copied()
            .filter(|a| a.next_attempt_ms <= now)
            .collect();

        if due.is_empty() {
            let sleep_ms = heads
                .values()
                .map(|a| a.next_attempt_ms - now)
                .min()
                .map_or(IDLE_POLL, |ms| {
                    Duration::from_millis(ms.max(1) as u64).min(IDLE_POLL)
                });
            tokio::select! {
                () = tokio::time::sleep(sleep_ms) => {}
                () = wake.notified() => {}
                _ = stop.changed() => return,
            }
            continue;
        }

        let attempts = due.iter().map(|alert| attempt(&notifier, alert));
        let results = futures::future::join_all(attempts).await;
        for (alert, (outcome, next)) in due.iter().zip(results) {
            let (reply, done) = oneshot::channel();
            let command = WriterCommand::RecordAttempt {
                id: alert.id,
                outcome,
                next,
                reply,
            };
            if writer.send(command).await.is_err() || done.await.is_err() {
                return;
            }
        }
    }
}

async fn attempt(notifier: &Notifier, alert: &OutboxAlert) -> (AttemptOutcome, NextStep) {
    let now = now_ms();
    let failed = |error: String, status_code: Option<i64>, next: NextStep| {
        (
            AttemptOutcome {
                at_ms: now,
                ok: false,
                status_code,
                error: Some(error),
            },
            next,
        )
    };
    if now > alert.expires_ms {
        warn!(alert = alert.id, channel = %alert.channel, "alert expired undelivered (ALERT_MAX_AGE)");
        return failed(
            "expired: ALERT_MAX_AGE reached".into(),
            None,
            NextStep::Expired,
        );
    }
    let Some(channel) = notifier.channel(&alert.channel) else {
        return failed(
            format!("channel {} is no longer configured", alert.channel),
            None,
            NextStep::Expired,
        );
    };
    let mut payload: Payload = match serde_json::from_str(&alert.payload_json) {
        Ok(p) => p,
        Err(e) => return failed(format!("unreadable payload: {e}"), None, NextStep::Expired),
    };
    payload.id = alert.id;
    match notifier.deliver(channel, &payload, ATTEMPT_TIMEOUT).await {
        Ok(delivered) => {
            info!(alert = alert.id, channel = %alert.channel, item = %alert.item, kind = %alert.kind, "alert delivered");
            (
                AttemptOutcome {
                    at_ms: now,
                    ok: true,
                    status_code: delivered.status.map(i64::from),
                    error: None,
                },
                NextStep::Sent,
            )
        }
        Err(e) => {
            let next = next_attempt(now_ms(), alert.attempts + 1, alert.expires_ms);
            warn!(alert = alert.id, error = %e, next = ?next, "alert delivery failed");
            failed(e.to_string(), e.status().map(i64::from), next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_quick_retries_then_exponential_backoff_until_expiry() {
        let far = i64::MAX;
        let waits: Vec<i64> = (1..=8)
            .map(|n| match next_attempt(0, n, far) {
                NextStep::RetryAt(at) => at,
                other => panic!("attempt {n}: {other:?}"),
            })
            .collect();
        assert_eq!(
            waits,
            [2_000, 2_000, 2_000, 5_000, 10_000, 20_000, 40_000, 80_000]
        );
        assert_eq!(next_attempt(0, 30, far), NextStep::RetryAt(BACKOFF_CAP_MS));
        assert_eq!(next_attempt(1_000, 5, 5_000), NextStep::Expired);
    }
}
