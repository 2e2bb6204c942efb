//! The `heartbeat` binary against the REAL agent: `run` with succeeding, failing and
//! unstartable commands records start, end, exit code, output tail and duration; `ping`
//! of every kind; a ping failure never changes the job's exit code; no token in output.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use heartbeat_client::{Client, ClientOptions, Services, Url};
use heartbeat_core::{Secret, Status};
use heartbeat_store::ReadStore;
use heartbeat_testkit::Agent;
use serde_json::Value;

const TOKEN: &str = "cli-token-0123456789abcdef";

fn agent() -> Agent {
    Agent::start(&[
        ("SERVICE_URL_job", "push://".into()),
        ("SERVICE_TOKEN_job", TOKEN.into()),
        ("SERVICE_PERIOD_job", "3600".into()),
        ("SERVICE_GRACE_job", "3600".into()),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.5".into()),
        // Many pings in a row from one test.
        ("PUSH_RATE_LIMIT", "0".into()),
    ])
}

fn ping_url(agent: &Agent) -> String {
    format!("{}/ping/{TOKEN}", agent.base)
}

async fn heartbeat(args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_heartbeat"));
    cmd.args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// `heartbeat run <url> -- sh -c <script>`.
async fn run_sh(url: &str, script: &str) -> Output {
    heartbeat(&["run", url, "--", "sh", "-c", script], None).await
}

/// The agent's events for `job`, newest first.
async fn events(agent: &Agent) -> Vec<Value> {
    let client = Client::new(ClientOptions {
        use_system_proxy: false,
        ..ClientOptions::default()
    })
    .unwrap();
    Services::new(client, &Url::parse(&agent.base).unwrap())
        .service("job", Secret::new(TOKEN))
        .pings(100)
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The newest check the agent recorded for `job` once `done` accepts it.
async fn wait_check(
    agent: &mut Agent,
    what: &str,
    done: impl Fn(&heartbeat_core::CheckResult) -> bool,
) -> heartbeat_core::CheckResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.assert_running();
        if let Ok(store) = ReadStore::open(&agent.db)
            && let Ok(Some(cycle)) = store.latest_cycle()
            && let Some(c) = cycle.checks.iter().find(|c| c.target.name == "job")
            && done(&c.result)
        {
            return c.result.clone();
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_process_holding_the_output_open_does_not_hold_the_run() {
    let agent = agent();
    let url = ping_url(&agent);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("background.pid");
    // The job exits at once but leaves a child that keeps stdout and stderr open.
    let script = format!(
        "echo started; sleep 60 & echo $! > {}; exit 0",
        pid_file.display()
    );
    let started = Instant::now();
    let out = run_sh(&url, &script).await;
    let took = started.elapsed();
    let background = std::fs::read_to_string(&pid_file).unwrap();
    let _ = std::process::Command::new("kill")
        .arg(background.trim())
        .status();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Reading stops after the drain limit instead of waiting for the background child
    // (the shared deadline itself is checked exactly by a unit test in src/run.rs).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let ev = events(&agent).await;
    assert_eq!(ev[0]["kind"], "success", "{ev:?}");
    assert_eq!(ev[0]["body"], "started\n", "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_a_succeeding_and_a_failing_command() {
    let mut agent = agent();
    let url = ping_url(&agent);

    // Success: output passed through, start and end paired by rid, duration from start to end.
    let out = run_sh(&url, "echo to-stdout; echo to-stderr >&2; sleep 0.3").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "to-stdout\n");
    assert_eq!(text(&out.stderr), "to-stderr\n", "no warnings");
    let ev = events(&agent).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    let (end, start) = (&ev[0], &ev[1]);
    assert_eq!(start["kind"], "start");
    assert_eq!(end["exit_code"], 0, "{end}");
    assert_eq!(end["kind"], "success", "{end}");
    assert_eq!(start["rid"], end["rid"]);
    assert_eq!(start["rid"].as_str().unwrap().len(), 36);
    let body = end["body"].as_str().unwrap();
    assert!(
        body.contains("to-stdout\n") && body.contains("to-stderr\n"),
        "{body:?}"
    );
    let ms = end["duration_ms"].as_f64().unwrap();
    assert!((300.0..30_000.0).contains(&ms), "duration {ms} ms");
    let check = wait_check(&mut agent, "a healthy check with the run's duration", |r| {
        r.status == Status::Healthy && r.latency_ms.is_some()
    })
    .await;
    assert!(check.latency_ms.unwrap() >= 300.0, "{check:?}");

    // Failure: the command's exit code is ours, and the agent records it with the output.
    let out = run_sh(&url, "echo going wrong; exit 3").await;
    assert_eq!(out.status.code(), Some(3));
    let ev = events(&agent).await;
    assert_eq!(ev[0]["exit_code"], 3, "{:?}", ev[0]);
    assert_eq!(ev[0]["kind"], "fail");
    assert_eq!(ev[0]["rid"], ev[1]["rid"]);
    assert_eq!(ev[1]["kind"], "start");
    assert!(ev[0]["body"].as_str().unwrap().contains("going wrong"));
    let check = wait_check(&mut agent, "an error check", |r| r.status == Status::Error).await;
    let msg = check.error_message.unwrap_or_default();
    assert!(msg.contains("exit status 3"), "{msg}");

    // Killed by a signal: 128 + 9, as a shell reports it.
    let out = run_sh(&url, "kill -9 $$").await;
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(events(&agent).await[0]["exit_code"], 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_only_the_tail_and_reports_unstartable_commands() {
    let agent = agent();
    let url = ping_url(&agent);

    // 2000 numbered lines (about 20 KB): the last 10 KB arrive, ending with the last line.
    let out = run_sh(
        &url,
        "i=0; while [ $i -lt 2000 ]; do echo line-$i-padding; i=$((i+1)); done",
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.len() > 20_000, "all output is passed through");
    let ev = events(&agent).await;
    let body = ev[0]["body"].as_str().unwrap();
    assert!(
        body.len() <= 10 * 1024 && body.len() > 9 * 1024,
        "{}",
        body.len()
    );
    assert!(
        body.ends_with("line-1999-padding\n"),
        "{:?}",
        &body[body.len() - 40..]
    );
    assert!(!body.contains("line-0-padding"));

    // A command that cannot start: 127, reported as a failure with the reason.
    let out = heartbeat(
        &["run", &url, "--", "/nonexistent/backup.sh", "--now"],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert!(err.contains("cannot start /nonexistent/backup.sh"), "{err}");
    let ev = events(&agent).await;
    assert_eq!(ev[0]["kind"], "fail", "{:?}", ev[0]);
    assert_eq!(ev[0]["rid"], ev[1]["rid"]);
    assert!(
        ev[0]["body"].as_str().unwrap().contains("No such file"),
        "{:?}",
        ev[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_sends_every_kind() {
    let agent = agent();
    let url = ping_url(&agent);
    let calls: [(&[&str], Option<&str>); 6] = [
        (&["ping", &url], None),
        (&["ping", &url, "--start", "--rid", "run-7"], None),
        (
            &[
                "ping", &url, "--exit", "0", "--rid", "run-7", "--body", "fine",
            ],
            None,
        ),
        (&["ping", &url, "--fail", "--body", "broken"], None),
        (
            &["ping", &url, "--log", "--body", "-"],
            Some("from stdin\n"),
        ),
        (&["ping", &url, "--exit", "5"], None),
    ];
    for (args, stdin) in calls {
        let out = heartbeat(args, stdin).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
    let mut ev = events(&agent).await;
    ev.reverse();
    let got: Vec<(String, Value, Value, Value)> = ev
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["exit_code"].clone(),
                e["rid"].clone(),
                e["body"].clone(),
            )
        })
        .collect();
    let j = |s: &str| Value::String(s.into());
    assert_eq!(
        got,
        [
            ("success".into(), Value::Null, Value::Null, Value::Null),
            ("start".into(), Value::Null, j("run-7"), Value::Null),
            ("success".into(), 0.into(), j("run-7"), j("fine")),
            ("fail".into(), Value::Null, Value::Null, j("broken")),
            ("log".into(), Value::Null, Value::Null, j("from stdin\n")),
            ("fail".into(), 5.into(), Value::Null, Value::Null),
        ],
        "{ev:?}"
    );
    // The paired end carries the run's duration.
    assert!(ev[2]["duration_ms"].as_f64().is_some(), "{:?}", ev[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_to_ping_are_reported_without_the_token() {
    let agent = agent();
    // Unknown token: ping fails (exit 1) and says 404; run still exits with the job's code.
    let bad = format!("{}/ping/not-the-token-0123456789", agent.base);
    let out = heartbeat(&["ping", &bad], None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("404") && err.contains("/ping/<redacted>"),
        "{err}"
    );
    assert!(!err.contains("not-the-token"), "{err}");
    let out = run_sh(&bad, "exit 4").await;
    assert_eq!(out.status.code(), Some(4));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: start ping failed") && err.contains("warning: end ping failed"),
        "{err}"
    );
    assert!(!err.contains("not-the-token"), "{err}");

    // Nobody listening: the job still runs and keeps its exit code.
    let closed = format!(
        "http://127.0.0.1:{}/ping/{TOKEN}",
        heartbeat_testkit::free_port()
    );
    let out = heartbeat(
        &[
            "run",
            "--retries",
            "1",
            &closed,
            "--",
            "sh",
            "-c",
            "echo ran; exit 0",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "ran\n");
    assert!(!text(&out.stderr).contains(TOKEN));

    // Bad arguments name the field and run nothing.
    let out = heartbeat(
        &[
            "run",
            "ftp://x/ping/y",
            "--",
            "touch",
            "/tmp/should-not-exist",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("url: scheme \"ftp\""),
        "{}",
        text(&out.stderr)
    );
    let out = heartbeat(&["ping", &bad, "--exit", "300"], None).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap rejects exit codes above 255"
    );
}

#[test]
fn a_tail_larger_than_the_agent_keeps_is_refused_before_anything_runs() {
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heartbeat"))
        .args([
            "run",
            "--tail",
            "99999",
            "http://127.0.0.1:9/ping/some-token-0123456789",
            "--",
        ])
        .arg("touch")
        .arg(&ran)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tail"), "{err}");
    assert!(!ran.exists(), "the command ran despite the bad option");
}
