//! One cycle: every probe at once, plus host metrics and connectivity.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heartbeat_config::{AgentConfig, OutboundHeartbeat};
use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, ExpectedStatus, HttpTarget, ProbeMethod, Status,
    Target, TargetCheck, TargetKind, TargetRef,
};
use heartbeat_docker::DockerProber;
use heartbeat_notify::Notifier;
use heartbeat_probe::{HttpProber, ProberOptions};
use tokio::task::JoinSet;

use crate::{HostSampler, MonitorError};

/// Extra time a probe task gets beyond its own timeout before the cycle gives up on
/// it; the probes enforce their timeouts, this only guards against a stuck one.
const PROBE_GRACE: Duration = Duration::from_secs(1);

/// Probes every target of a configuration, one cycle at a time.
#[derive(Debug)]
pub struct Monitor {
    targets: Arc<[Target]>,
    target_refs: Vec<TargetRef>,
    http: Arc<HttpProber>,
    docker: Arc<DockerProber>,
    host: HostSampler,
    ping: Option<(HttpTarget, Duration)>,
    heartbeat: Option<(OutboundHeartbeat, Arc<Notifier>)>,
    /// Push targets are not probed: their checks come from what they reported.
    push: Option<Arc<heartbeat_push::Registry>>,
}

impl Monitor {
    pub fn new(config: &AgentConfig) -> Result<Monitor, MonitorError> {
        let http = HttpProber::new(ProberOptions {
            force_ipv4: config.force_ipv4,
            tls_override_hosts: config.tls_override_hosts(),
            ..ProberOptions::default()
        })?;
        let ping = config.ping_url.clone().map(|url| {
            let target = HttpTarget {
                url,
                headers: Vec::new(),
                method: ProbeMethod::Head,
                expected: ExpectedStatus::default(),
                dns_override: None,
            };
            (target, config.service_timeout)
        });
        let probed: Vec<Target> = config
            .targets
            .iter()
            .filter(|t| !matches!(t.kind, TargetKind::Push(_)))
            .cloned()
            .collect();
        Ok(Monitor {
            target_refs: probed.iter().map(TargetRef::from).collect(),
            targets: probed.into(),
            http: Arc::new(http),
            docker: Arc::new(DockerProber::new(config.docker_host.clone())),
            host: HostSampler::new(&config.sqlite_db_path),
            ping,
            heartbeat: None,
            push: None,
        })
    }

    /// Sends the dead-man heartbeat after every cycle.
    pub fn with_heartbeat(mut self, heartbeat: OutboundHeartbeat, notifier: Arc<Notifier>) -> Self {
        self.heartbeat = Some((heartbeat, notifier));
        self
    }

    /// Adds a check per push target to every cycle, computed from the registry.
    pub fn with_push(mut self, registry: Arc<heartbeat_push::Registry>) -> Self {
        self.push = Some(registry);
        self
    }

    /// The probed targets (push targets are not among them).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Runs one cycle. `cycle_duration_ms` covers the start of the cycle until its
    /// results are ready, not the write that follows.
    pub async fn run_cycle(&mut self) -> CycleRecord {
        let started = Instant::now();
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();

        // One task per target, no worker pool: N hanging targets cost one timeout.
        let mut probes = JoinSet::new();
        for index in 0..self.targets.len() {
            let targets = Arc::clone(&self.targets);
            let http = Arc::clone(&self.http);
            let docker = Arc::clone(&self.docker);
            probes.spawn(async move {
                let target = &targets[index];
                let guarded = tokio::time::timeout(
                    target.timeout + PROBE_GRACE,
                    probe(&http, &docker, target),
                );
                let result = guarded.await.unwrap_or_else(|_| {
                    CheckResult::failed(Status::Unknown, "probe did not finish in time")
                });
                (index, result)
            });
        }
        let ping = self.ping.clone().map(|(target, timeout)| {
            let http = Arc::clone(&self.http);
            tokio::spawn(async move { http.probe(&target, timeout).await })
        });
        let docker = Arc::clone(&self.docker);
        let containers = tokio::spawn(async move { docker.running_count().await });

        let mut host = self.host.sample();

        let mut results: Vec<Option<CheckResult>> = vec![None; self.targets.len()];
        while let Some(joined) = probes.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }
        let connectivity = match ping {
            None => Connectivity::default(),
            Some(task) => match task.await {
                Ok(r) => Connectivity {
                    internet_status: Some(r.status.is_healthy()),
                    ping_ms: r.latency_ms.filter(|_| r.status.is_healthy()),
                },
                Err(_) => Connectivity {
                    internet_status: Some(false),
                    ping_ms: None,
                },
            },
        };
        host.container_count = containers.await.ok().flatten();
        let cycle_duration_ms = started.elapsed().as_secs_f64() * 1000.0;

        let mut checks: Vec<TargetCheck> = self
            .target_refs
            .iter()
            .zip(results)
            .map(|(target, result)| TargetCheck {
                target: target.clone(),
                // Only a panicking probe leaves a hole; record it rather than drop the row.
                result: result.unwrap_or_else(|| {
                    CheckResult::failed(Status::Unknown, "probe task failed unexpectedly")
                }),
            })
            .collect();
        if let Some(registry) = &self.push {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            checks.extend(registry.evaluate(now_ms));
        }

        let mut record = CycleRecord {
            started_at_ms,
            host,
            connectivity,
            worker_status: None,
            worker_error: None,
            cycle_duration_ms,
            checks,
        };
        if let Some((heartbeat, notifier)) = &self.heartbeat {
            // Sent even when the connectivity check failed (the replaced system
            // skipped it); its own failure then says so.
            let services: Vec<(&str, &str)> = record
                .checks
                .iter()
                .map(|c| (c.target.name.as_str(), c.result.status.as_str()))
                .collect();
            match notifier
                .post_heartbeat(
                    &heartbeat.url,
                    &heartbeat.secret,
                    &services,
                    heartbeat.timeout,
                )
                .await
            {
                Ok(code) => record.worker_status = Some(i64::from(code)),
                Err(e) => {
                    let mut text = e.to_string();
                    if record.connectivity.internet_status == Some(false) {
                        text.push_str(" (the connectivity check is failing too)");
                    }
                    record.worker_error = Some(text);
                }
            }
        }
        record
    }
}

async fn probe(http: &HttpProber, docker: &DockerProber, target: &Target) -> CheckResult {
    match &target.kind {
        TargetKind::Http(h) => http.probe(h, target.timeout).await,
        TargetKind::Docker { container } => docker.probe(container, target.timeout).await,
        // Filtered out in `Monitor::new`; never probed.
        TargetKind::Push(_) => CheckResult::failed(Status::Unknown, "push targets are not probed"),
    }
}
