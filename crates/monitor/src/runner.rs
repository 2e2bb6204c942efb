//! The loop: schedule → cycle → alerting → the single writer thread, plus the
//! alert delivery task.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heartbeat_config::AgentConfig;
use heartbeat_core::CycleRecord;
use heartbeat_notify::Notifier;
use heartbeat_store::{AttemptOutcome, CycleEffects, NextStep, OutboxAlert, Retention, Store};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::alerting::Alerting;
use crate::delivery::deliver_loop;
use crate::{Monitor, MonitorError, Schedule};

/// Commands waiting for the writer; beyond this senders wait (back-pressure)
/// rather than buffer without bound.
const WRITE_QUEUE: usize = 8;
/// How long in-flight deliveries may finish at shutdown, within the 1 s budget.
const DELIVERY_DRAIN: Duration = Duration::from_millis(600);
/// Pending alerts read per delivery round.
const OUTBOX_PAGE: usize = 500;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub interval: Duration,
    /// Stop after this many cycles (used by tests and benchmarks).
    pub max_cycles: Option<u64>,
}

/// Work for the writer thread, the only holder of the read-write connection.
#[derive(Debug)]
pub(crate) enum WriterCommand {
    Cycle {
        record: CycleRecord,
        effects: CycleEffects,
    },
    PendingAlerts {
        reply: oneshot::Sender<Vec<OutboxAlert>>,
    },
    RecordAttempt {
        id: i64,
        outcome: AttemptOutcome,
        next: NextStep,
        reply: oneshot::Sender<()>,
    },
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs the agent until `shutdown` resolves (or `max_cycles` is reached), then
/// lets the writer finish and closes the database cleanly. Returns the number
/// of cycles committed.
///
/// A cycle in flight when `shutdown` fires is abandoned, not written: its
/// results are incomplete, and a partial cycle must never reach the database.
pub async fn run(
    config: &AgentConfig,
    store: Store,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, MonitorError> {
    let notifier = Arc::new(Notifier::new(config.alerts.channels.clone())?);
    let mut monitor = Monitor::new(config)?;
    if let Some(heartbeat) = &config.alerts.heartbeat {
        monitor = monitor.with_heartbeat(heartbeat.clone(), Arc::clone(&notifier));
    }
    let mut alerting = Alerting::new(
        config.alerts.clone(),
        config.time_zone.clone(),
        store.item_states()?,
    );

    let wake = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel::<WriterCommand>(WRITE_QUEUE);
    let writer_wake = Arc::clone(&wake);
    let retention = Retention {
        raw: config.retention.raw,
        minute: config.retention.minute,
        hour: config.retention.hour,
    };
    // SQLite is synchronous; one dedicated thread is the only writer.
    let writer = std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || write_loop(store, rx, &writer_wake, &retention))
        .map_err(|_| MonitorError::WriterGone)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut delivery = (alerting.channel_count() > 0).then(|| {
        tokio::spawn(deliver_loop(
            tx.clone(),
            Arc::clone(&notifier),
            Arc::clone(&wake),
            stop_rx,
        ))
    });

    tokio::pin!(shutdown);
    let mut schedule = Schedule::new(Instant::now(), options.interval);
    let mut cycle_number: u64 = 0;
    loop {
        if options.max_cycles.is_some_and(|max| cycle_number >= max) {
            break;
        }
        let tick = schedule.next(Instant::now());
        if tick.skipped > 0 {
            warn!(
                skipped = tick.skipped,
                "previous cycle overran the interval; skipped ticks"
            );
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(tick.start_at.into()) => {}
        }
        let record = tokio::select! {
            biased;
            () = &mut shutdown => break,
            record = monitor.run_cycle() => record,
        };
        cycle_number += 1;
        log_cycle(cycle_number, &record);
        let effects = alerting.evaluate(&record);
        if tx
            .send(WriterCommand::Cycle { record, effects })
            .await
            .is_err()
        {
            return Err(MonitorError::WriterGone);
        }
    }

    let _ = stop_tx.send(true);
    if let Some(task) = delivery.as_mut()
        && tokio::time::timeout(DELIVERY_DRAIN, &mut *task)
            .await
            .is_err()
    {
        // An attempt still in flight is retried after restart (receivers can
        // de-duplicate on the Idempotency-Key header).
        task.abort();
    }
    drop(tx);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| MonitorError::WriterGone)?
        .map_err(|_| MonitorError::WriterGone)
}

fn write_loop(
    mut store: Store,
    mut rx: mpsc::Receiver<WriterCommand>,
    wake: &Notify,
    retention: &Retention,
) -> u64 {
    let mut written = 0;
    while let Some(command) = rx.blocking_recv() {
        match command {
            WriterCommand::Cycle { record, effects } => {
                match store.write_cycle_with(&record, &effects) {
                    Ok(_) => written += 1,
                    // Keep probing: a full disk or a locked file may clear up.
                    Err(e) => error!(error = %e, "could not record cycle"),
                }
                let mut new_work = !effects.alerts.is_empty();
                // Alerts held back while the agent itself was offline go out once it is back.
                if record.connectivity.internet_status != Some(false) {
                    match store.release_held(now_ms()) {
                        Ok(n) => new_work |= n > 0,
                        Err(e) => error!(error = %e, "could not release held alerts"),
                    }
                }
                if new_work {
                    wake.notify_one();
                }
                // One bounded batch per cycle: old data goes steadily, never in a
                // long delete that would stall the next cycle's write.
                if let Err(e) = store.prune(now_ms(), retention) {
                    error!(error = %e, "could not prune old data");
                }
            }
            WriterCommand::PendingAlerts { reply } => {
                let pending = store.due_alerts(i64::MAX, OUTBOX_PAGE).unwrap_or_else(|e| {
                    error!(error = %e, "could not read the alert outbox");
                    Vec::new()
                });
                let _ = reply.send(pending);
            }
            WriterCommand::RecordAttempt {
                id,
                outcome,
                next,
                reply,
            } => {
                if let Err(e) = store.record_attempt(id, &outcome, next) {
                    error!(alert = id, error = %e, "could not record delivery attempt");
                }
                let _ = reply.send(());
            }
        }
    }
    info!("database writer finished");
    written
}

fn log_cycle(number: u64, record: &CycleRecord) {
    let healthy = record
        .checks
        .iter()
        .filter(|c| c.result.status.is_healthy())
        .count();
    let failing: Vec<String> = record
        .checks
        .iter()
        .filter(|c| !c.result.status.is_healthy())
        .take(10)
        .map(|c| format!("{}={}", c.target.name, c.result.status))
        .collect();
    info!(
        cycle = number,
        duration_ms = format_args!("{:.1}", record.cycle_duration_ms),
        targets = record.checks.len(),
        healthy,
        failing = %failing.join(","),
        internet = ?record.connectivity.internet_status,
        ping_ms = ?record.connectivity.ping_ms,
        containers = ?record.host.container_count,
        worker_status = ?record.worker_status,
        "cycle"
    );
}
