//! The Docker Compose deployment, end to end on this machine's real Docker engine.
//!
//! Builds the three images the way `cargo xtask images` does (static host binaries, the
//! Dockerfile's `runtime-prebuilt` target) and checks their size, user and HEALTHCHECK.
//! Then, each under a unique project name with free host ports and an empty `--env-file`
//! (so a developer's `.env` plays no part), on the real compose files:
//!
//! * `docker-compose.dev.yml`: `config`, `up`; every target healthy on the dashboard; the
//!   `healthcheck` subcommand in each container; the dashboard's mount read-only in the
//!   engine; the mock's `api` taken down through its JSON API, reported by the dashboard
//!   through its `:ro` mount, the alert in the mock's webhook sink; the agent restarted while
//!   the dashboard is polled (every answer serves history); the agent stopped cleanly (exit
//!   0) and a restarted dashboard opening the closed database.
//! * `docker-compose.prod.yml`: `config`; `.env.prod.example` accepted by the agent's
//!   `check-config` as compose hands it over; `up` with a local target; the agent, user
//!   10001 with the socket's group added, counting containers through the socket.
//!
//! Guards run `down -v` and remove the images even when a step fails, and the test checks
//! that no container, network, volume or image of the run is left.
//!
//! Without an engine or a compose tool the test prints `skipping: <reason>` and passes,
//! unless `HEARTBEAT_REQUIRE_DOCKER=1`, which makes it fail instead.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use xtask::images;

/// How long the stack may take to reach each expected state.
const DEADLINE: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Runtime images must stay this small (issue 6).
const MAX_IMAGE_BYTES: u64 = 20_000_000;

// ---------------------------------------------------------------------------
// Tools and skipping
// ---------------------------------------------------------------------------

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{:?} {:?} failed ({}): {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").args(args)).map(|o| stdout(&o))
}

/// `docker compose` (v2) when it works, else `docker-compose` (1.29 here); the files and
/// the commands the test uses are the same for both.
fn compose_tool() -> Result<Vec<&'static str>, String> {
    if run(Command::new("docker").args(["compose", "version"])).is_ok() {
        return Ok(vec!["docker", "compose"]);
    }
    run(Command::new("docker-compose").arg("version"))
        .map(|_| vec!["docker-compose"])
        .map_err(|e| format!("neither `docker compose` nor `docker-compose` works: {e}"))
}

/// The compose tool, or `None` (after printing why) when the test must skip.
fn environment() -> Option<Vec<&'static str>> {
    let ready = docker(&["version", "--format", "{{.Server.Version}}"])
        .map_err(|e| format!("docker engine not reachable: {e}"))
        .and_then(|_| compose_tool());
    match ready {
        Ok(tool) => Some(tool),
        Err(reason) => {
            if std::env::var("HEARTBEAT_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("HEARTBEAT_REQUIRE_DOCKER=1 but {reason}");
            }
            println!("skipping: {reason}");
            None
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// The stack and its guard
// ---------------------------------------------------------------------------

/// Images built for this run, removed when dropped (after the stacks that use them).
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            if let Err(e) = docker(&["image", "rm", "--force", image]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// One compose project of this test run on one of the real compose files; dropping it
/// runs `down -v`, which removes its containers, network and volumes.
struct Stack {
    tool: Vec<&'static str>,
    root: PathBuf,
    file: &'static str,
    project: String,
    /// An empty --env-file, so a developer's .env in the repository plays no part.
    env_file: tempfile::NamedTempFile,
    vars: Vec<(String, String)>,
}

impl Stack {
    fn new(
        tool: &[&'static str],
        file: &'static str,
        project: String,
        vars: &[(&str, String)],
    ) -> Stack {
        Stack {
            tool: tool.to_vec(),
            root: images::workspace_root(),
            file,
            project,
            env_file: tempfile::NamedTempFile::new().expect("env file"),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.to_owned()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.tool[0]);
        cmd.args(&self.tool[1..])
            .current_dir(&self.root)
            .arg("--env-file")
            .arg(self.env_file.path())
            .args(["-f", self.file, "-p", &self.project])
            .args(args);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        run(&mut self.command(args)).map(|o| stdout(&o))
    }

    fn container(&self, service: &str) -> String {
        let id = self.run(&["ps", "-q", service]).expect("compose ps");
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self) -> String {
        self.run(&["logs", "--no-color", "--tail", "60"])
            .unwrap_or_else(|e| e)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{} logs:\n{}", self.file, self.logs());
        }
        if let Err(e) = self.run(&["down", "-v", "--remove-orphans", "--timeout", "10"]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Nothing of `project` is left in the engine.
fn assert_removed(project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    for kind in ["container", "network", "volume"] {
        let mut args = vec![kind, "ls", "-q", "--filter", label.as_str()];
        if kind == "container" {
            args.push("--all");
        }
        let left = docker(&args).expect("docker ls");
        assert!(left.is_empty(), "{kind}s of {project} left behind: {left}");
    }
}

// ---------------------------------------------------------------------------
// HTTP against the published ports
// ---------------------------------------------------------------------------

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
        }
    }

    /// The status and JSON body (Null when not JSON), or the transport error.
    fn get(&self, url: &str) -> Result<(u16, Value), String> {
        self.rt.block_on(async {
            let res = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let code = res.status().as_u16();
            let text = res.text().await.map_err(|e| e.to_string())?;
            Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
        })
    }

    fn put(&self, url: &str, body: Value) -> (u16, Value) {
        self.rt.block_on(async {
            let res = self
                .client
                .put(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("PUT");
            let code = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            (code, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }
}

/// Polls `probe` until it returns `Some`; an `Err` is an observation to report if the
/// deadline passes (the last one is shown), not a failure.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Result<Option<T>, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(POLL_EVERY); // polling interval, not synchronisation
    }
}

/// The `services` entry named `name` in an /api/live answer.
fn service<'a>(live: &'a Value, name: &str) -> Option<&'a Value> {
    live["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// An /api/live answer that serves history: 200 and at least one latency for `web`.
fn serves_history(answer: &Result<(u16, Value), String>) -> Result<(), String> {
    match answer {
        Ok((200, live)) => {
            let points = live["history"]["services"]["web"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|v| !v.is_null()).count());
            if points > 0 {
                Ok(())
            } else {
                Err(format!("200 without history: {live}"))
            }
        }
        Ok((code, body)) => Err(format!("{code}: {body}")),
        Err(e) => Err(e.clone()),
    }
}

/// In a rendered `config`, whether the dashboard mounts `volume` read-only: the short form
/// `volume:/data:ro` (docker-compose 1.29) or the long form with `read_only: true` (v2).
fn dashboard_mount_is_ro(config: &str, volume: &str) -> bool {
    let Some(start) = config.find("\n  dashboard:\n") else {
        return false;
    };
    let rest = &config[start + 1..];
    // The dashboard's block ends at the next line indented two spaces or less.
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let line = &rest[i..];
            !line.is_empty() && !line.starts_with("   ")
        })
        .unwrap_or(rest.len());
    let block = &rest[..end];
    if block.contains(&format!("- {volume}:/data:ro")) {
        return true;
    }
    // Long form: the list item holding `source: volume` also holds `read_only: true`.
    block.split("- type:").any(|item| {
        item.contains(&format!("source: {volume}\n")) && item.contains("read_only: true")
    })
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// The image variables of both compose files, for this run's tag.
fn image_vars(tag: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "HEARTBEAT_AGENT_IMAGE",
            images::image_name("heartbeat-agent", tag),
        ),
        (
            "HEARTBEAT_DASHBOARD_IMAGE",
            images::image_name("heartbeat-dashboard", tag),
        ),
        (
            "HEARTBEAT_MOCK_IMAGE",
            images::image_name("heartbeat-mock", tag),
        ),
    ]
}

fn socket_gid() -> String {
    std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
        .expect("/var/run/docker.sock")
}

#[test]
fn compose_deployment_end_to_end_on_the_real_engine() {
    let Some(tool) = environment() else { return };
    let root = images::workspace_root();
    let run_id = format!(
        "{}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    let tag = format!("e2e-{run_id}");

    // Images: the guard owns them before the first is built.
    let built = Images(
        images::BINARIES
            .iter()
            .map(|b| images::image_name(b, &tag))
            .collect(),
    );
    let binaries = images::build_static_binaries(&root).expect("static binaries");
    images::stage(&root, &binaries).expect("staging");
    for bin in images::BINARIES {
        images::build_image(&root, bin, &images::image_name(bin, &tag)).expect("image build");
    }
    for image in &built.0 {
        let size = images::image_size(image).expect("image size");
        println!("image {image}: {size} bytes");
        assert!(
            size <= MAX_IMAGE_BYTES,
            "{image} is {size} bytes, over 20 MB"
        );
        let user =
            docker(&["image", "inspect", "--format", "{{.Config.User}}", image]).expect("inspect");
        assert_eq!(user, "10001:10001", "{image} must run as the non-root user");
        let health = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            image,
        ])
        .expect("inspect");
        assert!(
            health.contains("\"healthcheck\"") && !health.contains("CMD-SHELL"),
            "{image}: {health}"
        );
    }

    let dev_project = format!("hbtest{run_id}dev");
    let prod_project = format!("hbtest{run_id}prod");
    dev_stack(&tool, &tag, &dev_project);
    prod_stack(&tool, &tag, &prod_project);

    // The guards' cleanup, checked: nothing of the projects or the images is left.
    assert_removed(&dev_project);
    assert_removed(&prod_project);
    let created = built.0.clone();
    drop(built);
    for image in created {
        assert!(
            docker(&["image", "inspect", &image]).is_err(),
            "{image} left behind"
        );
    }
}

/// docker-compose.dev.yml: outage, alert, agent restart, clean stop, dashboard on the closed database.
fn dev_stack(tool: &[&'static str], tag: &str, project: &str) {
    let dashboard_port = free_port();
    let mock_port = free_port();
    let mut vars = image_vars(tag);
    vars.extend([
        ("DASHBOARD_PORT", dashboard_port.to_string()),
        ("MOCK_PORT", mock_port.to_string()),
        ("LOOP_INTERVAL_SECONDS", "2".to_owned()),
        ("STATUS_CHANGE_THRESHOLD", "2".to_owned()),
        // A zone with history, resolved without /usr/share/zoneinfo in the image.
        ("TZ", "America/Lima".to_owned()),
    ]);
    let stack = Stack::new(tool, "docker-compose.dev.yml", project.to_owned(), &vars);

    let config = stack
        .run(&["config"])
        .expect("docker-compose.dev.yml config");
    assert!(
        dashboard_mount_is_ro(&config, "heartbeat-dev-data"),
        "dev: the dashboard's data mount is not read-only:\n{config}"
    );

    // Up. The compose file's `build:` is not used: the images are there already.
    stack.run(&["up", "-d", "--no-build"]).expect("compose up");
    let http = Http::new();
    let dash = format!("http://127.0.0.1:{dashboard_port}");
    let mock = format!("http://127.0.0.1:{mock_port}");
    let live_url = format!("{dash}/api/live?range=1h");

    // Every target healthy on the dashboard: the agent resolved `mock` and wrote cycles,
    // the dashboard read them through the :ro mount.
    wait_for("four healthy targets on the dashboard", || {
        let (code, live) = http.get(&format!("{dash}/api/live?range=live"))?;
        let healthy = ["api", "web", "auth", "db"]
            .iter()
            .all(|n| service(&live, n).is_some_and(|s| s["status"] == "healthy"));
        if code == 200 && healthy {
            Ok(Some(()))
        } else {
            Err(format!("{code}: {live}"))
        }
    });

    // The healthcheck subcommand, in the real images, from inside the containers.
    for service in ["agent", "dashboard", "mock"] {
        let id = stack.container(service);
        docker(&["exec", &id, "/usr/local/bin/heartbeat", "healthcheck"])
            .unwrap_or_else(|e| panic!("healthcheck of {service}: {e}"));
    }
    // The dashboard's data mount really is read-only in the engine.
    let mounts = docker(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}",
        &stack.container("dashboard"),
    ])
    .expect("inspect");
    assert_eq!(mounts.trim(), "/data=false", "dashboard mounts");
    // The limits the compose file sets reach the engine (docker-compose 1.29 honours mem_limit).
    let memory = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}}",
        &stack.container("agent"),
    ])
    .expect("inspect");
    assert_eq!(memory, (256 * 1024 * 1024).to_string(), "agent mem_limit");

    // Take `api` down through the mock's API.
    let (code, body) = http.put(
        &format!("{mock}/api/services/api/mode"),
        serde_json::json!({"kind": "down"}),
    );
    assert_eq!(code, 200, "{body}");

    // The agent records it and the dashboard reports it.
    wait_for("api down on the dashboard", || {
        let (code, live) = http.get(&format!("{dash}/api/live?range=live"))?;
        let api = service(&live, "api").cloned().unwrap_or(Value::Null);
        if code == 200 && api["status"] == "down" {
            Ok(Some(()))
        } else {
            Err(format!("{code}: {api}"))
        }
    });

    // The alert reaches the webhook sink.
    let alert = wait_for("the down alert in the mock's sink", || {
        let (_, alerts) = http.get(&format!("{mock}/api/alerts"))?;
        let found = alerts.as_array().and_then(|a| {
            a.iter()
                .find(|i| i["body"]["target"] == "api" && i["body"]["state"] == "down")
                .cloned()
        });
        found.map(Some).ok_or_else(|| format!("alerts: {alerts}"))
    });
    assert_eq!(alert["channel"], "webhook", "{alert}");

    // Restart the agent while polling the dashboard: every answer serves history.
    let before = serves_history(&http.get(&live_url));
    assert!(before.is_ok(), "before the restart: {before:?}");
    let mut restart = stack
        .command(&["restart", "--timeout", "20", "agent"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("compose restart");
    let mut polls = 0_u32;
    let status = loop {
        let answer = http.get(&live_url);
        if let Err(e) = serves_history(&answer) {
            panic!("the dashboard stopped serving history during the agent's restart: {e}");
        }
        polls += 1;
        if let Some(status) = restart.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(POLL_EVERY); // polling interval
    };
    assert!(status.success(), "compose restart agent failed: {status}");
    assert!(polls >= 2, "only {polls} polls during the restart");
    println!("{polls} dashboard polls during the agent's restart, all with history");
    // The restarted agent writes again: the newest check moves on.
    let last_check = |live: &Value| service(live, "web").and_then(|s| s["last_check_ms"].as_i64());
    let (_, live) = http.get(&live_url).expect("live");
    let seen = last_check(&live).expect("web has a last check");
    wait_for("a cycle from the restarted agent", || {
        let (_, live) = http.get(&live_url)?;
        Ok(last_check(&live).filter(|&t| t > seen).map(|_| ()))
    });

    // Stop the agent cleanly: exit 0 after SIGTERM, database closed.
    let agent = stack.container("agent");
    stack
        .run(&["stop", "--timeout", "20", "agent"])
        .expect("compose stop agent");
    let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &agent]).expect("inspect");
    assert_eq!(exit, "0", "the agent did not stop cleanly");
    // The running dashboard still opens the closed database …
    serves_history(&http.get(&live_url)).expect("after the agent stopped");
    // … and so does a fresh dashboard process on the :ro mount (needs the persisted -wal/-shm).
    stack
        .run(&["restart", "dashboard"])
        .expect("compose restart dashboard");
    wait_for(
        "the restarted dashboard serving the closed database",
        || serves_history(&http.get(&live_url)).map(Some),
    );

    let logs = stack.logs();
    assert!(!logs.contains("panicked"), "a container panicked:\n{logs}");
}

/// docker-compose.prod.yml: the example configuration is valid, and the agent reads the
/// Docker socket as user 10001 through `group_add`.
fn prod_stack(tool: &[&'static str], tag: &str, project: &str) {
    let dashboard_port = free_port();
    let mut vars = image_vars(tag);
    vars.extend([
        ("DASHBOARD_PORT", dashboard_port.to_string()),
        ("AGENT_PORT", free_port().to_string()),
        ("DOCKER_GID", socket_gid()),
        // First the shipped example, as a user would copy it.
        ("HEARTBEAT_ENV_FILE", ".env.prod.example".to_owned()),
    ]);
    // Declared before the stack: `down` in the stack's guard still needs the file.
    let agent_env = tempfile::NamedTempFile::new().expect("agent env");
    let mut stack = Stack::new(tool, "docker-compose.prod.yml", project.to_owned(), &vars);

    let config = stack
        .run(&["config"])
        .expect("docker-compose.prod.yml config");
    assert!(
        dashboard_mount_is_ro(&config, "heartbeat-data"),
        "prod: the dashboard's data mount is not read-only:\n{config}"
    );
    // The agent accepts .env.prod.example as compose hands it over (env_file parsing included).
    let checked = stack
        .run(&["run", "--rm", "--no-deps", "agent", "check-config"])
        .expect(".env.prod.example: heartbeat check-config in the agent image");
    assert!(checked.contains("Configuration OK."), "{checked}");

    // Then a configuration that stays on this machine: the agent watches the dashboard.
    std::fs::write(
        agent_env.path(),
        "SERVICE_URL_dashboard=http://dashboard:8100/health\nLOOP_INTERVAL_SECONDS=2\nPING_URL=\nTZ=America/Lima\n",
    )
    .expect("write agent env");
    stack.set(
        "HEARTBEAT_ENV_FILE",
        agent_env.path().to_str().expect("utf-8 temp path"),
    );
    stack.run(&["up", "-d", "--no-build"]).expect("compose up");
    let agent = stack.container("agent");
    let identity = docker(&[
        "inspect",
        "--format",
        "{{.Config.User}} {{.HostConfig.GroupAdd}}",
        &agent,
    ])
    .expect("inspect");
    assert_eq!(
        identity,
        format!("10001:10001 [{}]", socket_gid()),
        "agent user and groups"
    );

    let http = Http::new();
    let live_url = format!("http://127.0.0.1:{dashboard_port}/api/live?range=live");
    // The agent counts running containers through the socket (-1 when it cannot read it),
    // and its target, the dashboard's /health, turns healthy once a cycle is stored.
    wait_for(
        "the agent reading the socket and the dashboard healthy",
        || {
            let (code, live) = http.get(&live_url)?;
            let containers = live["system"]["containers"].as_i64().unwrap_or(-1);
            let healthy = service(&live, "dashboard").is_some_and(|s| s["status"] == "healthy");
            if code == 200 && containers >= 2 && healthy {
                Ok(Some(()))
            } else {
                Err(format!("{code}: containers {containers}: {live}"))
            }
        },
    );
    let logs = stack.logs();
    assert!(!logs.contains("panicked"), "a container panicked:\n{logs}");
}
