//! What the bench binaries share: finding the release agent they drive.

use anyhow::{Context, bail};
use std::path::PathBuf;

/// The `heartbeat-agent` next to the running bench binary (same profile), with the
/// open-files limit raised for thousands of sockets.
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    let agent_bin = std::env::current_exe()?
        .parent()
        .context("no parent dir")?
        .join("heartbeat-agent");
    if !agent_bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p heartbeat-agent -p heartbeat-bench` first",
            agent_bin.display()
        );
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(agent_bin)
}
