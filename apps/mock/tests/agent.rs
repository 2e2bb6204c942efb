//! The mock against the REAL agent binary: every status, a scenario end to end, the
//! heartbeat receiver and the webhook sink.
//!
//! The agent binary is found by `heartbeat_testkit::agent_binary` (`HEARTBEAT_AGENT_BIN`,
//! else `target/debug/heartbeat-agent`, else it is built).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use heartbeat_core::Status;
use heartbeat_store::{ReadStore, StoredCycle};
use heartbeat_testkit::Agent;
use serde_json::json;
use support::{Api, SECRET, fresh_client, poll, start_mock};

/// Cycles, oldest first, once `done` accepts them; panics at the deadline.
async fn wait_until(
    agent: &mut Agent,
    what: &str,
    deadline: Duration,
    done: impl Fn(&[StoredCycle]) -> bool,
) -> Vec<StoredCycle> {
    let give_up = Instant::now() + deadline;
    loop {
        agent.assert_running();
        if let Ok(store) = ReadStore::open(&agent.db)
            && let Ok(mut cycles) = store.cycles(10_000)
        {
            cycles.reverse();
            if done(&cycles) {
                return cycles;
            }
        }
        assert!(Instant::now() < give_up, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

fn status_of(cycle: &StoredCycle, name: &str) -> Option<Status> {
    cycle
        .checks
        .iter()
        .find(|c| c.target.name == name)
        .map(|c| c.result.status)
}

async fn refused(addr: std::net::SocketAddr) {
    poll("listener closed", Duration::from_secs(5), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_records_every_status() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let ok = api.create("ok").await;
    let err = api.create("err").await;
    let hang = api.create("hang").await;
    let gone = api.create("gone").await;
    api.set_mode("err", json!({ "kind": "error", "code": 500 }))
        .await;
    api.set_mode("hang", json!({ "kind": "timeout" })).await;
    api.set_mode("gone", json!({ "kind": "down" })).await;
    refused(gone).await;

    let mut agent = Agent::start(&[
        ("SERVICE_URL_ok", format!("http://{ok}/")),
        ("SERVICE_URL_err", format!("http://{err}/")),
        ("SERVICE_URL_hang", format!("http://{hang}/")),
        ("SERVICE_URL_gone", format!("http://{gone}/")),
        ("SERVICE_URL_box", "docker:no-such-container".into()),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.5".into()),
    ]);
    let cycles = wait_until(&mut agent, "one cycle", Duration::from_secs(30), |c| {
        !c.is_empty()
    })
    .await;
    let cycle = &cycles[0];
    let check = |name: &str| {
        cycle
            .checks
            .iter()
            .find(|c| c.target.name == name)
            .unwrap_or_else(|| panic!("no check for {name}"))
            .result
            .clone()
    };
    let r = check("ok");
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    let r = check("err");
    assert_eq!(r.status, Status::Error, "{r:?}");
    assert_eq!(r.status_code, Some(500));
    let r = check("hang");
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    let r = check("gone");
    assert_eq!(r.status, Status::Down, "{r:?}");
    let msg = r.error_message.unwrap_or_default().to_lowercase();
    assert!(msg.contains("refused"), "down message: {msg}");
    let r = check("box");
    assert_eq!(r.status, Status::Unknown, "{r:?}");

    assert!(api.requests("ok").await >= 1);
    assert!(api.requests("err").await >= 1);
    assert!(api.requests("hang").await >= 1);
    assert_eq!(api.requests("gone").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_takes_a_service_down_and_back_and_alerts_reach_the_sink() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let svc = api.create("svc").await;
    let mut agent = Agent::start(&[
        ("SERVICE_URL_svc", format!("http://{svc}/")),
        ("LOOP_INTERVAL_SECONDS", "0.3".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.2".into()),
        ("STATUS_CHANGE_THRESHOLD", "1".into()),
        ("WEBHOOK_URL", format!("{}/sink/webhook", mock.url())),
    ]);
    wait_until(
        &mut agent,
        "a healthy cycle",
        Duration::from_secs(30),
        |c| {
            c.iter()
                .any(|c| status_of(c, "svc") == Some(Status::Healthy))
        },
    )
    .await;

    let (status, v) = api
        .send(
            "POST",
            "/api/scenario",
            Some(json!([
                { "at_s": 3, "service": "svc", "mode": { "kind": "healthy" } },
                { "at_s": 1, "service": "svc", "mode": { "kind": "down" } },
            ])),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["running"], true);
    assert_eq!(
        v["steps"][0]["at_s"].as_f64(),
        Some(1.0),
        "steps are sorted"
    );

    wait_until(
        &mut agent,
        "down, then healthy",
        Duration::from_secs(60),
        |cycles| {
            let statuses: Vec<_> = cycles.iter().filter_map(|c| status_of(c, "svc")).collect();
            statuses
                .iter()
                .position(|s| *s == Status::Down)
                .is_some_and(|i| statuses[i..].contains(&Status::Healthy))
        },
    )
    .await;

    let v = poll("scenario finished", Duration::from_secs(10), || async {
        let (_, v) = api.send("GET", "/api/scenario", None).await;
        (v["running"] == false).then_some(v)
    })
    .await;
    assert_eq!(v["current_step"], 1);

    // The agent's alerts (down, then recovered) arrive at the sink.
    let alerts = poll(
        "two alerts in the sink",
        Duration::from_secs(30),
        || async {
            let (_, v) = api.send("GET", "/api/alerts", None).await;
            (v.as_array().unwrap().len() >= 2).then_some(v)
        },
    )
    .await;
    assert_eq!(alerts[0]["channel"], "webhook");
    assert_eq!(alerts[0]["answered"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_receiver_checks_the_bearer_and_answers_per_mode() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let http = fresh_client(Duration::from_secs(5));
    let url = format!("{}/worker/heartbeat", mock.url());
    let body = json!({ "services": { "api": { "status": "healthy" } } }).to_string();

    for auth in [None, Some("Bearer wrong"), Some(SECRET)] {
        let mut req = http.post(&url).body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401, "{auth:?}");
    }
    let send = || {
        http.post(&url)
            .header("authorization", format!("Bearer {SECRET}"))
            .body(body.clone())
            .send()
    };
    // auto: blind the first time, then ok.
    assert_eq!(send().await.unwrap().status().as_u16(), 220);
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
    for (mode, code) in [
        ("recorded", 200),
        ("recovered", 200),
        ("blind", 220),
        ("partial", 221),
        ("critical", 500),
        ("offline", 503),
        ("auto", 200),
    ] {
        let (status, v) = api
            .send("PUT", "/api/worker/mode", Some(json!({ "mode": mode })))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(send().await.unwrap().status().as_u16(), code, "{mode}");
    }
    let (_, inbox) = api.send("GET", "/api/heartbeats", None).await;
    let inbox = inbox.as_array().unwrap();
    assert_eq!(inbox.len(), 9, "401s are not kept");
    assert_eq!(inbox[0]["body"]["services"]["api"]["status"], "healthy");
    assert!(inbox[0]["headers"].get("authorization").is_none());

    // The sink answers 204, or 503 when told to fail.
    let sink = format!("{}/sink/test", mock.url());
    assert_eq!(
        http.post(&sink).body("{}").send().await.unwrap().status(),
        204
    );
    api.send("PUT", "/api/sink/mode", Some(json!({ "mode": "down" })))
        .await;
    assert_eq!(
        http.post(&sink).body("{}").send().await.unwrap().status(),
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_stores_worker_status_500_in_critical_mode() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let svc = api.create("svc").await;
    let (status, _) = api
        .send(
            "PUT",
            "/api/worker/mode",
            Some(json!({ "mode": "critical" })),
        )
        .await;
    assert_eq!(status, 200);
    let mut agent = Agent::start(&[
        ("SERVICE_URL_svc", format!("http://{svc}/")),
        ("LOOP_INTERVAL_SECONDS", "0.5".into()),
        ("HEARTBEAT_URL", format!("{}/worker/heartbeat", mock.url())),
        ("SECRET_KEY", SECRET.into()),
    ]);
    wait_until(
        &mut agent,
        "worker_status 500",
        Duration::from_secs(30),
        |c| c.iter().any(|c| c.worker_status == Some(500)),
    )
    .await;
    let (_, inbox) = api.send("GET", "/api/heartbeats", None).await;
    let first = &inbox.as_array().unwrap()[0];
    assert_eq!(first["answered"], 500);
    assert_eq!(first["body"]["services"]["svc"]["status"], "healthy");
}

/// The statuses the agent recorded for `name`, oldest first.
fn statuses(cycles: &[StoredCycle], name: &str) -> Vec<Status> {
    cycles.iter().filter_map(|c| status_of(c, name)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_job_keeps_a_push_target_healthy_then_fails_and_falls_silent() {
    const TOKEN: &str = "mock-job-token-0123456789";
    let mut agent = Agent::start(&[
        ("SERVICE_URL_backup", "push://".into()),
        ("SERVICE_TOKEN_backup", TOKEN.into()),
        ("SERVICE_PERIOD_backup", "1".into()),
        ("SERVICE_GRACE_backup", "1".into()),
        ("LOOP_INTERVAL_SECONDS", "0.3".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.2".into()),
        ("PUSH_RATE_LIMIT", "0".into()),
    ]);
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let (status, v) = api
        .send(
            "POST",
            "/api/jobs",
            Some(
                json!({"name": "backup", "url": format!("{}/ping/{TOKEN}", agent.base),
                        "interval_s": 0.3, "run_ms": 50}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    wait_until(&mut agent, "healthy", Duration::from_secs(30), |c| {
        let s = statuses(c, "backup");
        s.len() >= 3 && s[s.len() - 3..].iter().all(|x| *x == Status::Healthy)
    })
    .await;

    // fail: exit status 1 is an error with the job's message.
    api.send(
        "PUT",
        "/api/jobs/backup/mode",
        Some(json!({"mode": "fail"})),
    )
    .await;
    let cycles = wait_until(&mut agent, "error", Duration::from_secs(30), |c| {
        c.last().and_then(|c| status_of(c, "backup")) == Some(Status::Error)
    })
    .await;
    let check = cycles
        .last()
        .and_then(|c| c.checks.iter().find(|k| k.target.name == "backup"))
        .unwrap();
    let msg = check.result.error_message.clone().unwrap_or_default();
    assert!(msg.contains("exit status 1"), "{msg}");

    // silent: late, then down once period + grace have passed.
    api.send(
        "PUT",
        "/api/jobs/backup/mode",
        Some(json!({"mode": "silent"})),
    )
    .await;
    wait_until(&mut agent, "down", Duration::from_secs(30), |c| {
        c.last().and_then(|c| status_of(c, "backup")) == Some(Status::Down)
    })
    .await;

    // ok again: healthy again.
    api.send("PUT", "/api/jobs/backup/mode", Some(json!({"mode": "ok"})))
        .await;
    wait_until(&mut agent, "healthy again", Duration::from_secs(30), |c| {
        c.last().and_then(|c| status_of(c, "backup")) == Some(Status::Healthy)
    })
    .await;
    let v = poll("job counters", Duration::from_secs(5), || async {
        let (_, v) = api.send("GET", "/api/jobs/backup", None).await;
        (v["runs"].as_u64() > Some(3)).then_some(v)
    })
    .await;
    assert_eq!(v["errors"], 0, "every ping was acknowledged: {v}");
}
