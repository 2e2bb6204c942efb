//! Builders shared by the integration tests and the bench.
#![allow(dead_code)]

use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck, TargetRef,
};

pub fn target(i: usize) -> TargetRef {
    TargetRef {
        name: format!("svc{i}"),
        kind: "http".to_owned(),
        url: format!("http://svc{i}.internal/health"),
    }
}

/// A cycle at `ts_ms` with `n` checks cycling through every status.
pub fn cycle(ts_ms: i64, n: usize) -> CycleRecord {
    let checks = (0..n)
        .map(|i| {
            let status = Status::ALL[i % Status::ALL.len()];
            let result = if status.is_healthy() {
                CheckResult::healthy(1.25 + i as f64, Some(200))
            } else {
                CheckResult {
                    status,
                    status_code: (i % 2 == 0).then_some(503),
                    latency_ms: (i % 3 == 0).then_some(2000.5),
                    error_message: Some(format!("failure {i}")),
                }
            };
            TargetCheck {
                target: target(i),
                result,
            }
        })
        .collect();
    CycleRecord {
        started_at_ms: ts_ms,
        host: HostMetrics {
            cpu_percent: Some(12.5),
            ram_percent: Some(40.0),
            ram_used_mb: Some(2048.75),
            disk_percent: None,
            uptime_seconds: Some(3600.0),
            container_count: Some(7),
        },
        connectivity: Connectivity {
            internet_status: Some(true),
            ping_ms: Some(14.2),
        },
        worker_status: Some(200),
        worker_error: None,
        cycle_duration_ms: 42.125,
        checks,
    }
}
