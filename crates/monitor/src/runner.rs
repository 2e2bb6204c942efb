//! The loop: schedule → cycle → alerting → the single writer thread, plus the
//! alert delivery task.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heartbeat_config::AgentConfig;
use heartbeat_core::CycleRecord;
use heartbeat_notify::Notifier;
use heartbeat_push::{Health, PushJob, PushState, Registry, Settings};
use heartbeat_store::{
    AttemptOutcome, CycleEffects, NextStep, OutboxAlert, PRUNE_BATCH, PushOp, Retention, Store,
};
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
/// Pings waiting for the writer; beyond this handlers wait (back-pressure).
const PUSH_QUEUE: usize = 16_384;
/// Most pings committed in one transaction, so a cycle waits behind at most one such batch.
const PUSH_BATCH: usize = 4096;
/// How long in-flight push requests may finish at shutdown, within the 1 s budget.
const PUSH_DRAIN: Duration = Duration::from_millis(300);

/// The push listener and what it serves, handed to [`run`].
#[derive(Debug)]
pub struct PushSetup {
    /// `None` when `AGENT_ADDR=off`: configured push targets are still evaluated.
    pub listener: Option<tokio::net::TcpListener>,
    pub registry: Arc<Registry>,
    pub settings: Settings,
    pub auto_remove_after: Option<Duration>,
}

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

pub(crate) use heartbeat_core::now_ms;

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
    push: Option<PushSetup>,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, MonitorError> {
    let notifier = Arc::new(Notifier::new(config.alerts.channels.clone())?);
    let mut monitor = Monitor::new(config)?;
    if let Some(p) = &push {
        monitor = monitor.with_push(Arc::clone(&p.registry));
    }
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
    let (push_tx, push_rx) = mpsc::channel::<PushJob>(PUSH_QUEUE);
    let writer_wake = Arc::clone(&wake);
    let retention = Retention {
        raw: config.retention.raw,
        minute: config.retention.minute,
        hour: config.retention.hour,
    };
    let health = Arc::new(Health::new(options.interval, now_ms()));
    let writer_ctx = WriterContext {
        wake: writer_wake,
        retention,
        health: Arc::clone(&health),
        registry: push.as_ref().map(|p| Arc::clone(&p.registry)),
        auto_remove_after: push.as_ref().and_then(|p| p.auto_remove_after),
        runtime: tokio::runtime::Handle::current(),
    };
    // SQLite is synchronous; one dedicated thread is the only writer.
    let writer = std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || write_loop(store, rx, push_rx, &writer_ctx))
        .map_err(|_| MonitorError::WriterGone)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server = push.and_then(|p| {
        let listener = p.listener?;
        let state = Arc::new(PushState {
            registry: p.registry,
            jobs: push_tx.clone(),
            health: Arc::clone(&health),
            settings: p.settings,
        });
        let mut stop = stop_rx.clone();
        let served = heartbeat_push::Listener { listener, state };
        Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = served.serve(stopped).await {
                error!(error = %e, "push listener failed");
            }
        }))
    });
    drop(push_tx);
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
    if let Some(task) = server.as_mut()
        && tokio::time::timeout(PUSH_DRAIN, &mut *task).await.is_err()
    {
        // Requests still waiting are answered with a closed connection; nothing they sent
        // was acknowledged, so clients retry.
        task.abort();
    }
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

/// What the writer thread needs besides the store and its queues.
struct WriterContext {
    wake: Arc<Notify>,
    retention: Retention,
    health: Arc<Health>,
    registry: Option<Arc<Registry>>,
    auto_remove_after: Option<Duration>,
    runtime: tokio::runtime::Handle,
}

enum Work {
    Command(WriterCommand),
    Push(PushJob),
}

/// The next piece of work, cycle commands first; `None` at shutdown once the queued pings
/// are written.
///
/// Shutdown is the command queue closing. Connections the listener still serves keep
/// senders of the ping queue alive, so waiting for that queue to close could block for as
/// long as a slow client likes: it is closed here instead (later sends get 503) and only
/// what was already queued is written and acknowledged.
fn next_work(
    ctx: &WriterContext,
    rx: &mut mpsc::Receiver<WriterCommand>,
    push_rx: &mut mpsc::Receiver<PushJob>,
) -> Option<Work> {
    ctx.runtime.block_on(async {
        tokio::select! {
            biased;
            command = rx.recv() => match command {
                Some(c) => Some(Work::Command(c)),
                None => {
                    push_rx.close();
                    push_rx.recv().await.map(Work::Push)
                }
            },
            Some(j) = push_rx.recv() => Some(Work::Push(j)),
        }
    })
}

fn write_loop(
    mut store: Store,
    mut rx: mpsc::Receiver<WriterCommand>,
    mut push_rx: mpsc::Receiver<PushJob>,
    ctx: &WriterContext,
) -> u64 {
    let mut written = 0;
    while let Some(work) = next_work(ctx, &mut rx, &mut push_rx) {
        match work {
            Work::Command(command) => {
                if handle_command(&mut store, command, ctx) {
                    written += 1;
                }
            }
            Work::Push(first) => {
                // Group commit: everything queued so far goes into one transaction, and
                // every request is answered only after its COMMIT.
                let mut batch = vec![first];
                while batch.len() < PUSH_BATCH {
                    match push_rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                commit_push(&mut store, batch);
            }
        }
    }
    ctx.health.writer_stopped();
    info!("database writer finished");
    written
}

fn commit_push(store: &mut Store, batch: Vec<PushJob>) {
    let (ops, replies): (Vec<PushOp>, Vec<_>) = batch.into_iter().map(|j| (j.op, j.reply)).unzip();
    match store.push_apply(&ops) {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            error!(error = %e, pings = ops.len(), "could not record pings");
            for reply in replies {
                let _ = reply.send(Err(heartbeat_store::PushOpError::Database(
                    "the database refused the write".into(),
                )));
            }
        }
    }
}

/// Handles one cycle-side command; `true` when a cycle was committed.
fn handle_command(store: &mut Store, command: WriterCommand, ctx: &WriterContext) -> bool {
    match command {
        WriterCommand::Cycle { record, effects } => {
            let committed = match store.write_cycle_with(&record, &effects) {
                Ok(_) => {
                    ctx.health.cycle_committed(now_ms());
                    true
                }
                // Keep probing: a full disk or a locked file may clear up.
                Err(e) => {
                    error!(error = %e, "could not record cycle");
                    false
                }
            };
            let mut new_work = !effects.alerts.is_empty();
            // Alerts held back while the agent itself was offline go out once it is back.
            if record.connectivity.internet_status != Some(false) {
                match store.release_held(now_ms()) {
                    Ok(n) => new_work |= n > 0,
                    Err(e) => error!(error = %e, "could not release held alerts"),
                }
            }
            if new_work {
                ctx.wake.notify_one();
            }
            // One bounded batch per cycle: old data goes steadily, never in a
            // long delete that would stall the next cycle's write.
            if let Err(e) = store.prune(now_ms(), &ctx.retention) {
                error!(error = %e, "could not prune old data");
            }
            if ctx.registry.is_some() {
                let before =
                    now_ms() - i64::try_from(ctx.retention.raw.as_millis()).unwrap_or(i64::MAX);
                if let Err(e) = store.push_prune(before, PRUNE_BATCH) {
                    error!(error = %e, "could not prune old ping events");
                }
            }
            auto_remove(store, ctx);
            committed
        }
        WriterCommand::PendingAlerts { reply } => {
            let pending = store.due_alerts(i64::MAX, OUTBOX_PAGE).unwrap_or_else(|e| {
                error!(error = %e, "could not read the alert outbox");
                Vec::new()
            });
            let _ = reply.send(pending);
            false
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
            false
        }
    }
}

/// Deletes registered push services silent for longer than `PUSH_AUTO_REMOVE_AFTER`.
fn auto_remove(store: &mut Store, ctx: &WriterContext) {
    let (Some(registry), Some(after)) = (&ctx.registry, ctx.auto_remove_after) else {
        return;
    };
    let before = now_ms() - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let silent = registry.silent_registered(before);
    if silent.is_empty() {
        return;
    }
    let ops: Vec<PushOp> = silent
        .iter()
        .map(|id| PushOp::Delete {
            service_id: id.clone(),
        })
        .collect();
    match store.push_apply(&ops) {
        Ok(results) => {
            for (id, result) in silent.iter().zip(results) {
                if result.is_ok() && registry.remove(id) {
                    info!(service_id = %id, silent_for_s = after.as_secs_f64(), "removed a silent registered push service");
                }
            }
        }
        Err(e) => error!(error = %e, "could not remove silent push services"),
    }
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
