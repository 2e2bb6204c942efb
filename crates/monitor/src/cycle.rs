//! One cycle: every probe at once, plus host metrics and connectivity.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Probe starts are spread over the beginning of a cycle, one every
/// `START_SPACING`, instead of all at the same instant. Started together,
/// 1 000 probes (a) each need a connection of their own at that instant, so
/// the pool grows to one kept-alive connection (~30 KB in hyper) per target
/// even when all of them share one host, and (b) flood the runtime's queues,
/// so a response that arrives while the burst is still being worked through
/// waits its turn and the wait is counted as the target's latency. Spread
/// out, fast answers hand their connection back before later probes need
/// one, and the queues stay short. Every probe is still its own task with
/// its own full timeout: a hanging target never holds up another one.
const START_SPACING: Duration = Duration::from_micros(100);

/// The spread never exceeds this share of the interval (nor [`MAX_START_SPREAD`]),
/// so the schedule and one-timeout cycles are kept whatever the target count.
const MAX_START_SPREAD_SHARE: u32 = 10;
const MAX_START_SPREAD: Duration = Duration::from_millis(500);

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
    /// Delay between the starts of two consecutive probes (see [`START_SPACING`]).
    start_spacing: Duration,
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
        let start_spacing = start_spacing(probed.len(), config.loop_interval);
        Ok(Monitor {
            target_refs: probed.iter().map(TargetRef::from).collect(),
            targets: probed.into(),
            http: Arc::new(http),
            docker: Arc::new(DockerProber::new(config.docker_host.clone())),
            host: HostSampler::new(&config.sqlite_db_path),
            ping,
            heartbeat: None,
            start_spacing,
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

    fn spawn_probe(&self, probes: &mut JoinSet<(usize, CheckResult)>, index: usize) {
        let targets = Arc::clone(&self.targets);
        let http = Arc::clone(&self.http);
        let docker = Arc::clone(&self.docker);
        probes.spawn(async move {
            let target = &targets[index];
            let guarded =
                tokio::time::timeout(target.timeout + PROBE_GRACE, probe(&http, &docker, target));
            let result = guarded.await.unwrap_or_else(|_| {
                CheckResult::failed(Status::Unknown, "probe did not finish in time")
            });
            (index, result)
        });
    }

    /// Runs one cycle. `cycle_duration_ms` covers the start of the cycle until its
    /// results are ready, not the write that follows.
    pub async fn run_cycle(&mut self) -> CycleRecord {
        let started = Instant::now();
        let started_at_ms = heartbeat_core::now_ms();

        let ping = self.ping.clone().map(|(target, timeout)| {
            let http = Arc::clone(&self.http);
            tokio::spawn(async move { http.probe(&target, timeout).await })
        });
        let docker = Arc::clone(&self.docker);
        let containers = tokio::spawn(async move { docker.running_count().await });

        let mut host = self.host.sample();

        // One task per target, no worker pool: N hanging targets cost one timeout
        // (plus the start spread, a small fraction of the interval). A task is
        // spawned when its probe is due, so only probes in flight hold memory.
        let count = self.targets.len();
        let mut results: Vec<Option<CheckResult>> = vec![None; count];
        let mut probes = JoinSet::new();
        let spread_from = tokio::time::Instant::now();
        let mut next = 0;
        while next < count {
            // The timer wheel has 1 ms slots: every wake-up starts the probes
            // that have become due since the last one, the first at once.
            let now = tokio::time::Instant::now();
            while next < count && spread_from + self.start_spacing * next as u32 <= now {
                self.spawn_probe(&mut probes, next);
                next += 1;
            }
            if next == count {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(spread_from + self.start_spacing * next as u32) => {}
                Some(joined) = probes.join_next() => store_result(&mut results, joined),
            }
        }
        while let Some(joined) = probes.join_next().await {
            store_result(&mut results, joined);
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
            checks.extend(registry.evaluate(heartbeat_core::now_ms()));
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

/// Only a panicking probe task fails to join; its slot stays empty and is
/// recorded as such.
fn store_result(
    results: &mut [Option<CheckResult>],
    joined: Result<(usize, CheckResult), tokio::task::JoinError>,
) {
    if let Ok((index, result)) = joined {
        results[index] = Some(result);
    }
}

/// Spacing of probe starts for `targets` targets at `interval`: [`START_SPACING`],
/// shrunk so that the whole spread stays within its cap.
fn start_spacing(targets: usize, interval: Duration) -> Duration {
    let Ok(count) = u32::try_from(targets) else {
        return Duration::ZERO;
    };
    if count == 0 {
        return Duration::ZERO;
    }
    let cap = (interval / MAX_START_SPREAD_SHARE).min(MAX_START_SPREAD);
    START_SPACING.min(cap / count)
}

async fn probe(http: &HttpProber, docker: &DockerProber, target: &Target) -> CheckResult {
    match &target.kind {
        TargetKind::Http(h) => http.probe(h, target.timeout).await,
        TargetKind::Docker { container } => docker.probe(container, target.timeout).await,
        // Filtered out in `Monitor::new`; never probed.
        TargetKind::Push(_) => CheckResult::failed(Status::Unknown, "push targets are not probed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the keep-alive test server saw.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        requests: Mutex<Vec<tokio::time::Instant>>,
    }

    /// An HTTP/1.1 server on 127.0.0.1:0 that answers every request at once
    /// with 200 and keeps the connection open; it counts connections and
    /// stamps each request's arrival.
    async fn counting_server() -> (std::net::SocketAddr, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        // HEAD requests have no body: each ends at an empty line.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            seen.requests
                                .lock()
                                .expect("lock")
                                .push(tokio::time::Instant::now());
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_of_a_cycle_are_spread_and_share_connections() {
        const TARGETS: usize = 100;
        let (addr, seen) = counting_server().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("LOOP_INTERVAL_SECONDS".into(), "10".into());
        env.insert("PING_URL".into(), String::new());
        env.insert("DOCKER_HOST".into(), "unix:///nonexistent.sock".into());
        env.insert(
            "SQLITE_DB_PATH".into(),
            dir.path().join("m.db").display().to_string(),
        );
        for i in 0..TARGETS {
            env.insert(format!("SERVICE_URL_t{i}"), format!("http://{addr}/"));
        }
        let config = AgentConfig::from_map(&env).expect("config");
        let mut monitor = Monitor::new(&config).expect("monitor");
        assert_eq!(monitor.start_spacing, START_SPACING);
        // A wider spacing than the default keeps this test independent of how
        // fast a probe is in a debug build on a busy machine.
        monitor.start_spacing = Duration::from_millis(1);
        let spread = monitor.start_spacing * (TARGETS as u32 - 1);

        for cycle in 0..2 {
            seen.requests.lock().expect("lock").clear();
            let began = tokio::time::Instant::now();
            let record = monitor.run_cycle().await;
            assert_eq!(record.checks.len(), TARGETS);
            for check in &record.checks {
                assert_eq!(check.result.status, Status::Healthy, "{check:?}");
            }
            let requests = seen.requests.lock().expect("lock").clone();
            assert_eq!(requests.len(), TARGETS, "cycle {cycle}");
            // Timers never fire early: the last probe cannot start before its slot.
            let last = requests.iter().max().copied().expect("requests");
            assert!(
                last - began >= spread,
                "cycle {cycle}: last request after {:?}, spread {spread:?}",
                last - began
            );
        }
        // Started together, every probe would have needed its own connection.
        // Spread out, answered connections are reused by later probes.
        let connections = seen.connections.load(Ordering::SeqCst);
        assert!(
            connections < TARGETS / 4,
            "{connections} connections for {TARGETS} targets"
        );
    }

    #[test]
    fn start_spread_is_capped_by_the_interval_and_an_absolute_limit() {
        let s = Duration::from_secs;
        // Few targets: the nominal spacing, a spread far below the cap.
        assert_eq!(start_spacing(10, s(10)), START_SPACING);
        assert_eq!(start_spacing(1_000, s(10)), START_SPACING);
        // Many targets: the spread is held at 500 ms.
        assert_eq!(
            start_spacing(100_000, s(10)) * 100_000,
            Duration::from_millis(500)
        );
        // A short interval: at most a tenth of it.
        assert!(
            start_spacing(1_000, Duration::from_millis(100)) * 1_000 <= Duration::from_millis(10)
        );
        assert_eq!(start_spacing(0, s(10)), Duration::ZERO);
    }
}
