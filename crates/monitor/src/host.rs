//! Host metrics recorded with each cycle: CPU, RAM, disk, uptime.

use std::path::{Path, PathBuf};

use heartbeat_core::HostMetrics;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Keeps the sampler state that CPU % needs: usage is the difference between two
/// refreshes, so the first reading is taken at construction.
#[derive(Debug)]
pub struct HostSampler {
    system: Option<System>,
    disk_path: PathBuf,
}

impl HostSampler {
    /// `disk_path`: a path on the filesystem whose usage is reported (the database's).
    pub fn new(disk_path: &Path) -> Self {
        let refreshes = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        // When /proc cannot be read the metrics are recorded as NULL; probing goes on.
        let system = System::new_with_specifics(refreshes).ok();
        HostSampler {
            system,
            disk_path: disk_path.to_path_buf(),
        }
    }

    /// Current readings; fields that cannot be read are `None`.
    pub fn sample(&mut self) -> HostMetrics {
        let mut metrics = HostMetrics {
            uptime_seconds: System::uptime().ok().map(|s| s as f64),
            disk_percent: disk_percent(&self.disk_path),
            ..HostMetrics::default()
        };
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            metrics.cpu_percent = Some(round2(f64::from(system.global_cpu_usage())));
            let total = system.total_memory();
            let used = total.saturating_sub(system.available_memory());
            if total > 0 {
                metrics.ram_percent = Some(round2(used as f64 * 100.0 / total as f64));
                metrics.ram_used_mb = Some(round2(used as f64 / (1024.0 * 1024.0)));
            }
        }
        metrics
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Used space as `df` shows it: used / (used + available to unprivileged users).
fn disk_percent(path: &Path) -> Option<f64> {
    // The database file may not exist yet: walk up to the nearest existing directory.
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let stat = rustix::fs::statvfs(existing).ok()?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let denominator = used + stat.f_bavail;
    (denominator > 0).then(|| round2(used as f64 * 100.0 / denominator as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sampler = HostSampler::new(&dir.path().join("not-yet/metrics.db"));
        let m = sampler.sample();
        let pct = |v: Option<f64>| v.is_some_and(|p| (0.0..=100.0).contains(&p));
        assert!(pct(m.cpu_percent), "{m:?}");
        assert!(pct(m.ram_percent), "{m:?}");
        assert!(pct(m.disk_percent), "{m:?}");
        assert!(m.ram_used_mb.is_some_and(|mb| mb > 0.0), "{m:?}");
        assert!(m.uptime_seconds.is_some_and(|s| s > 0.0), "{m:?}");
        assert_eq!(m.container_count, None, "set by the cycle, not the sampler");
    }
}
