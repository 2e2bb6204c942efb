//! The agent's work loop: every tick of a drift-free schedule it probes all
//! targets concurrently, samples the host, and commits the cycle in one
//! transaction.
//!
//! Binaries wire this up; nothing here reads the process environment.

mod alerting;
mod cycle;
mod delivery;
mod host;
mod runner;
mod schedule;

pub use alerting::{Alerting, CONNECTIVITY_ITEM, WORKER_ITEM};
pub use cycle::Monitor;
pub use host::HostSampler;
pub use runner::{PushSetup, RunOptions, run};
pub use schedule::{Schedule, Tick};

/// Failures that stop the agent from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot set up HTTP probing: {0}")]
    Probe(#[from] heartbeat_probe::ProbeError),
    #[error("database: {0}")]
    Store(#[from] heartbeat_store::StoreError),
    #[error("cannot set up alert delivery: {0}")]
    Notify(#[from] heartbeat_notify::NotifierError),
    #[error("database writer stopped unexpectedly")]
    WriterGone,
}
