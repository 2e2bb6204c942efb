//! The loop: schedule → cycle → hand the record to the single writer thread.

use std::future::Future;
use std::time::{Duration, Instant};

use heartbeat_core::CycleRecord;
use heartbeat_store::Store;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{Monitor, MonitorError, Schedule};

/// Cycles waiting for the writer; beyond this the loop waits (back-pressure)
/// rather than buffer without bound.
const WRITE_QUEUE: usize = 8;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub interval: Duration,
    /// Stop after this many cycles (used by tests and benchmarks).
    pub max_cycles: Option<u64>,
}

/// Runs cycles until `shutdown` resolves (or `max_cycles` is reached), then lets
/// the writer finish and closes the database cleanly. Returns the number of
/// cycles committed.
///
/// A cycle in flight when `shutdown` fires is abandoned, not written: its
/// results are incomplete, and a partial cycle must never reach the database.
pub async fn run(
    mut monitor: Monitor,
    store: Store,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, MonitorError> {
    let (tx, rx) = mpsc::channel::<CycleRecord>(WRITE_QUEUE);
    // SQLite is synchronous; one dedicated thread is the only writer.
    let writer = std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || write_loop(store, rx))
        .map_err(|_| MonitorError::WriterGone)?;

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
        if tx.send(record).await.is_err() {
            return Err(MonitorError::WriterGone);
        }
    }
    drop(tx);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| MonitorError::WriterGone)?
        .map_err(|_| MonitorError::WriterGone)
}

fn write_loop(mut store: Store, mut rx: mpsc::Receiver<CycleRecord>) -> u64 {
    let mut written = 0;
    while let Some(record) = rx.blocking_recv() {
        match store.write_cycle(&record) {
            Ok(_) => written += 1,
            // Keep probing: a full disk or a locked file may clear up.
            Err(e) => error!(error = %e, "could not record cycle"),
        }
    }
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
        "cycle"
    );
}
