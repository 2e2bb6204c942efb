//! Probes against the real Docker engine of this machine.
//!
//! Setup goes through the `docker` CLI; the code under test talks to the engine
//! through its API. The test image is built here from Debian's `busybox-static`
//! (no registry is needed), shared by the tests that run at the same time, and
//! removed when the last of them finishes. Every container is named
//! `heartbeat-test-<run>-<scenario>`, labelled `heartbeat-test=1`, and removed by a
//! guard even when its test fails.
//!
//! When the engine cannot be reached the engine tests print `skipping: <reason>`
//! and pass, unless `HEARTBEAT_REQUIRE_DOCKER=1`, which makes them fail instead.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use heartbeat_core::{CheckResult, Status};
use heartbeat_docker::DockerProber;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we wait for the engine to reach a state before failing.
const STATE_DEADLINE: Duration = Duration::from_secs(45);
const POLL_EVERY: Duration = Duration::from_millis(100);
const BUSYBOX: &str = "/bin/busybox";

// ---------------------------------------------------------------------------
// The engine, the CLI and skipping
// ---------------------------------------------------------------------------

/// Runs the docker CLI; stdout trimmed, or a message with stderr.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `docker`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn engine_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        docker(&["version", "--format", "{{.Server.Version}}"])
            .map_err(|e| format!("docker engine not reachable: {e}"))?;
        if !Path::new(BUSYBOX).exists() {
            return Err(format!(
                "{BUSYBOX} missing, needed for the test image (apt-get install -y busybox-static)"
            ));
        }
        Ok(())
    })
}

/// The shared test image, or `None` (after printing why) when the engine tests must skip.
fn engine() -> Option<Arc<TestImage>> {
    if let Err(reason) = engine_status() {
        if std::env::var("HEARTBEAT_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("HEARTBEAT_REQUIRE_DOCKER=1 but {reason}");
        }
        println!("skipping: {reason}");
        return None;
    }
    Some(TestImage::shared())
}

/// The prober under test, pointed at the engine the CLI uses.
fn prober() -> DockerProber {
    DockerProber::new(std::env::var("DOCKER_HOST").ok())
}

/// Unique per test process, so concurrent runs never share names.
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        format!("{}-{nanos:x}", std::process::id())
    })
}

// ---------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------

/// A busybox image imported for this run; removed when the last user drops it.
struct TestImage {
    tag: String,
}

impl TestImage {
    /// The image shared by every test currently running, built if there is none.
    /// The lock makes creation race-free; a fresh tag per build means a removal in
    /// progress can never hit a newer build.
    fn shared() -> Arc<TestImage> {
        static CURRENT: Mutex<Weak<TestImage>> = Mutex::new(Weak::new());
        static BUILDS: Mutex<u32> = Mutex::new(0);
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(image) = current.upgrade() {
            return image;
        }
        let build = {
            let mut builds = BUILDS.lock().unwrap_or_else(PoisonError::into_inner);
            *builds += 1;
            *builds
        };
        let image = Arc::new(TestImage {
            tag: format!("heartbeat-test-busybox:{}-{build}", run_id()),
        });
        image.build().expect("building the test image");
        *current = Arc::downgrade(&image);
        image
    }

    fn build(&self) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
        std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink("busybox", bin.join("sh")).map_err(|e| e.to_string())?;
        let tarball = dir.path().join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg("bin")
            .status()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        if !tar.success() {
            return Err(format!("tar failed: {tar}"));
        }
        let tarball = tarball.to_string_lossy().into_owned();
        docker(&[
            "import",
            "--change",
            r#"CMD ["/bin/busybox","sleep","3600"]"#,
            "--change",
            "ENV PATH=/bin",
            "--change",
            "LABEL heartbeat-test=1",
            &tarball,
            &self.tag,
        ])
        .map(drop)
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        if let Err(e) = docker(&["rmi", "-f", &self.tag]) {
            eprintln!("cleanup: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// A test container; removed (with its volumes) on drop, whatever happened.
struct TestContainer {
    name: String,
    /// Keeps the image alive at least as long as the container.
    _image: Arc<TestImage>,
}

impl TestContainer {
    fn name_for(scenario: &str) -> String {
        format!("heartbeat-test-{}-{scenario}", run_id())
    }

    /// `docker <verb> -d --name … <options> <image> <command>`; `verb` is `run` or `create`.
    fn start(
        image: &Arc<TestImage>,
        verb: &str,
        scenario: &str,
        options: &[&str],
        command: &[&str],
    ) -> TestContainer {
        // The guard exists before the container does, so a half-failed `run` is cleaned too.
        let container = TestContainer {
            name: Self::name_for(scenario),
            _image: Arc::clone(image),
        };
        let mut args = vec![verb];
        if verb == "run" {
            args.push("-d");
        }
        args.extend([
            "--name",
            &container.name,
            "--label",
            "heartbeat-test=1",
            "--stop-timeout",
            "1",
        ]);
        args.extend_from_slice(options);
        args.push(&image.tag);
        args.extend_from_slice(command);
        if let Err(e) = docker(&args) {
            panic!("starting {scenario}: {e}");
        }
        container
    }

    fn run(image: &Arc<TestImage>, scenario: &str, options: &[&str], command: &[&str]) -> Self {
        Self::start(image, "run", scenario, options, command)
    }

    /// `docker inspect -f <format>`.
    fn inspect(&self, format: &str) -> Result<String, String> {
        docker(&["inspect", "-f", format, &self.name])
    }

    /// Polls the engine until `format` renders as `want`.
    async fn wait_for(&self, format: &str, want: &str) {
        let deadline = Instant::now() + STATE_DEADLINE;
        loop {
            let seen = self.inspect(format);
            if seen.as_deref() == Ok(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {format} never became {want:?} (last: {seen:?})",
                self.name
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        if let Err(e) = docker(&["rm", "-f", "-v", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn message(result: &CheckResult) -> &str {
    result.error_message.as_deref().unwrap_or("")
}

const SLEEP: &[&str] = &[];

// ---------------------------------------------------------------------------
// Engine tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn running_container_is_healthy_by_name_and_id() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(&image, "running", &[], SLEEP);
    c.wait_for("{{.State.Status}}", "running").await;
    let prober = prober();

    let result = prober.probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Healthy, "{result:?}");
    assert_eq!(result.error_message, None);
    assert_eq!(result.status_code, None);
    assert!(result.latency_ms.is_some_and(|ms| ms > 0.0), "{result:?}");

    let id = c.inspect("{{.Id}}").expect("container id");
    let by_id = prober.probe(&id, PROBE_TIMEOUT).await;
    assert_eq!(by_id.status, Status::Healthy, "{by_id:?}");
    let by_short_id = prober.probe(&id[..12], PROBE_TIMEOUT).await;
    assert_eq!(by_short_id.status, Status::Healthy, "{by_short_id:?}");
    let with_slash = prober.probe(&format!("/{}", c.name), PROBE_TIMEOUT).await;
    assert_eq!(with_slash.status, Status::Healthy, "{with_slash:?}");
}

#[tokio::test]
async fn exited_container_is_down_with_its_exit_code() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(&image, "exited", &[], &["/bin/sh", "-c", "exit 3"]);
    c.wait_for("{{.State.Status}}", "exited").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "exited (3)");
    assert!(result.latency_ms.is_some(), "{result:?}");
}

#[tokio::test]
async fn oom_killed_container_says_so() {
    let Some(image) = engine() else { return };
    // Without memory limits the loop below would eat the host's memory.
    if docker(&["info", "-f", "{{.MemoryLimit}}"]).as_deref() != Ok("true") {
        println!("skipping: the engine does not support memory limits");
        return;
    }
    let c = TestContainer::run(
        &image,
        "oom",
        &["--memory", "16m", "--memory-swap", "16m"],
        &["/bin/sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done"],
    );
    c.wait_for("{{.State.Status}}", "exited").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "exited (137), OOM killed");
}

#[tokio::test]
async fn created_container_is_down_never_started() {
    let Some(image) = engine() else { return };
    let c = TestContainer::start(&image, "create", "created", &[], SLEEP);
    c.wait_for("{{.State.Status}}", "created").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "created (never started)");
}

#[tokio::test]
async fn paused_container_is_down() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(&image, "paused", &[], SLEEP);
    c.wait_for("{{.State.Status}}", "running").await;
    docker(&["pause", &c.name]).expect("docker pause");
    c.wait_for("{{.State.Status}}", "paused").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "paused");
}

#[tokio::test]
async fn restart_loop_is_reported_with_the_restart_count() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(
        &image,
        "crashloop",
        &["--restart", "always"],
        &["/bin/sh", "-c", "exit 1"],
    );
    let prober = prober();

    // The first probe only records the baseline.
    let first = prober.probe(&c.name, PROBE_TIMEOUT).await;
    assert!(!message(&first).contains("restarted"), "{first:?}");

    let deadline = Instant::now() + STATE_DEADLINE;
    let result = loop {
        let result = prober.probe(&c.name, PROBE_TIMEOUT).await;
        if message(&result).contains("restarted") {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "no restart reported before the deadline; last {result:?}, RestartCount {:?}",
            c.inspect("{{.RestartCount}}")
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    println!("crash loop observed as {result:?}");
    let text = message(&result);
    match result.status {
        Status::Error => assert!(text.starts_with("restarted "), "{result:?}"),
        Status::Down => assert!(
            text.starts_with("restarting (") || text.starts_with("exited (1)"),
            "{result:?}"
        ),
        _ => panic!("a crash loop must be error or down: {result:?}"),
    }
    let count: i64 = c
        .inspect("{{.RestartCount}}")
        .expect("restart count")
        .parse()
        .expect("a number");
    assert!(count >= 1, "RestartCount {count}");
}

#[tokio::test]
async fn unhealthy_container_is_error_with_the_check_output() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(
        &image,
        "unhealthy",
        &[
            "--health-cmd",
            "echo 'db connection refused'; exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        SLEEP,
    );
    c.wait_for("{{.State.Health.Status}}", "unhealthy").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Error, "{result:?}");
    assert_eq!(message(&result), "unhealthy: db connection refused");
}

#[tokio::test]
async fn healthy_health_check_is_healthy() {
    let Some(image) = engine() else { return };
    let c = TestContainer::run(
        &image,
        "healthcheck",
        &["--health-cmd", "true", "--health-interval", "1s"],
        SLEEP,
    );
    c.wait_for("{{.State.Health.Status}}", "healthy").await;

    let result = prober().probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Healthy, "{result:?}");
}

#[tokio::test]
async fn starting_health_check_is_healthy_until_a_check_fails() {
    let Some(image) = engine() else { return };
    // First check only after an hour: stays `starting` for the whole test.
    let patient = TestContainer::run(
        &image,
        "starting",
        &["--health-cmd", "true", "--health-interval", "1h"],
        SLEEP,
    );
    // Fails every second, but needs 1000 failures to be declared unhealthy.
    let failing = TestContainer::run(
        &image,
        "starting-failing",
        &[
            "--health-cmd",
            "echo not ready yet; exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "1000",
        ],
        SLEEP,
    );
    patient
        .wait_for("{{.State.Health.Status}}", "starting")
        .await;
    failing
        .wait_for(
            "{{.State.Health.Status}} {{gt .State.Health.FailingStreak 0}}",
            "starting true",
        )
        .await;
    let prober = prober();

    let result = prober.probe(&patient.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Healthy, "{result:?}");

    let result = prober.probe(&failing.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Error, "{result:?}");
    let text = message(&result);
    assert!(
        text.starts_with("starting, health check failed ") && text.ends_with(": not ready yet"),
        "{result:?}"
    );
}

#[tokio::test]
async fn removed_and_unknown_containers_are_not_found() {
    let Some(image) = engine() else { return };
    let prober = prober();
    let c = TestContainer::run(&image, "removed", &[], SLEEP);
    c.wait_for("{{.State.Status}}", "running").await;
    assert_eq!(
        prober.probe(&c.name, PROBE_TIMEOUT).await.status,
        Status::Healthy
    );

    docker(&["rm", "-f", &c.name]).expect("docker rm");
    let deadline = Instant::now() + STATE_DEADLINE;
    while c.inspect("{{.Id}}").is_ok() {
        assert!(Instant::now() < deadline, "{} never went away", c.name);
        tokio::time::sleep(POLL_EVERY).await;
    }
    let result = prober.probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "container not found");
    assert!(result.latency_ms.is_some(), "{result:?}");

    let never = TestContainer::name_for("never-existed");
    let result = prober.probe(&never, PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Down, "{result:?}");
    assert_eq!(message(&result), "container not found");
}

#[tokio::test]
async fn running_count_includes_the_test_containers() {
    let Some(image) = engine() else { return };
    let a = TestContainer::run(&image, "count-a", &[], SLEEP);
    let b = TestContainer::run(&image, "count-b", &[], SLEEP);
    a.wait_for("{{.State.Status}}", "running").await;
    b.wait_for("{{.State.Status}}", "running").await;

    let count = prober().running_count().await;
    assert!(count.is_some_and(|n| n >= 2), "{count:?}");
}

#[tokio::test]
async fn prober_connects_once_the_socket_appears() {
    let Some(image) = engine() else { return };
    let engine_socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => host.trim_start_matches("unix://").to_owned(),
        Ok(host) if !host.trim().is_empty() => {
            println!("skipping: DOCKER_HOST={host} is not a unix socket");
            return;
        }
        _ => heartbeat_docker::DEFAULT_SOCKET.to_owned(),
    };
    let c = TestContainer::run(&image, "late-socket", &[], SLEEP);
    c.wait_for("{{.State.Status}}", "running").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let prober = DockerProber::new(Some(format!("unix://{}", socket.display())));

    let before = prober.probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(before.status, Status::Unknown, "{before:?}");
    assert_eq!(
        message(&before),
        format!("docker: socket {} not found", socket.display())
    );
    assert_eq!(prober.running_count().await, None);

    std::os::unix::fs::symlink(&engine_socket, &socket).expect("symlink to the engine socket");
    let after = prober.probe(&c.name, PROBE_TIMEOUT).await;
    assert_eq!(after.status, Status::Healthy, "{after:?}");
    assert!(prober.running_count().await.is_some_and(|n| n >= 1));
}

// ---------------------------------------------------------------------------
// Unreachable engines: always run
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_socket_is_unknown_and_the_prober_keeps_working() {
    let prober = DockerProber::new(Some("unix:///nonexistent/docker.sock".into()));
    for _ in 0..2 {
        let result = prober.probe("web", PROBE_TIMEOUT).await;
        assert_eq!(result.status, Status::Unknown, "{result:?}");
        assert_eq!(
            message(&result),
            "docker: socket /nonexistent/docker.sock not found"
        );
        assert_eq!(result.latency_ms, None);
        assert_eq!(prober.running_count().await, None);
    }
}

#[tokio::test]
async fn refused_connections_are_unknown() {
    // A socket file nobody listens on: what a stopped engine leaves behind.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let prober = DockerProber::new(Some(format!("unix://{}", path.display())));
    let result = prober.probe("web", PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Unknown, "{result:?}");
    assert_eq!(
        message(&result),
        format!(
            "docker: connection refused on {} (is the engine running?)",
            path.display()
        )
    );

    // A TCP port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let prober = DockerProber::new(Some(format!("tcp://127.0.0.1:{port}")));
    let result = prober.probe("web", PROBE_TIMEOUT).await;
    assert_eq!(result.status, Status::Unknown, "{result:?}");
    assert_eq!(
        message(&result),
        format!("docker: connection refused on tcp://127.0.0.1:{port} (is the engine running?)")
    );
    assert_eq!(prober.running_count().await, None);
}

#[tokio::test]
async fn a_silent_engine_times_out_within_the_probe_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    // Accepts connections and never answers.
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let prober = DockerProber::new(Some(format!("unix://{}", path.display())));
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = prober.probe("web", timeout).await;
    let took = started.elapsed();
    assert_eq!(result.status, Status::Unknown, "{result:?}");
    assert_eq!(message(&result), "docker: timeout after 300ms");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let count = prober.try_running_count(timeout).await;
    assert_eq!(count, Err(heartbeat_docker::DockerError::Timeout(timeout)));
    server.abort();
}
