//! The client against the REAL agent (its push listener): the background heartbeat keeps
//! a push target healthy and, once stopped, the agent sees it go late and down; the
//! LaneSwap-style API end to end (register, heartbeat, progress, delete); Kuma and
//! Heartbeat Central pushes. The agent binary comes from `heartbeat_testkit::agent_binary`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use heartbeat_client::{
    AutoHeartbeat, AutoHeartbeatOptions, Beat, Client, ClientError, ClientOptions, HeartbeatStatus,
    KumaStatus, Registration, Services, TaskStatus, Url,
};
use heartbeat_core::{Secret, Status};
use heartbeat_store::ReadStore;
use heartbeat_testkit::Agent;
use serde_json::json;

const TOKEN: &str = "beat-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn client() -> Client {
    Client::new(ClientOptions {
        timeout: Duration::from_secs(5),
        retries: 1,
        retry_backoff: Duration::from_millis(50),
        use_system_proxy: false,
        ..ClientOptions::default()
    })
    .unwrap()
}

/// The statuses the agent recorded for `name`, oldest first.
fn statuses(agent: &Agent, name: &str) -> Vec<Status> {
    let Ok(store) = ReadStore::open(&agent.db) else {
        return Vec::new();
    };
    let mut cycles = store.cycles(10_000).unwrap_or_default();
    cycles.reverse();
    cycles
        .iter()
        .filter_map(|c| c.checks.iter().find(|k| k.target.name == name))
        .map(|k| k.result.status)
        .collect()
}

async fn wait_statuses(
    agent: &mut Agent,
    name: &str,
    what: &str,
    done: impl Fn(&[Status]) -> bool,
) -> Vec<Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.assert_running();
        let s = statuses(agent, name);
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s; statuses {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_heartbeat_keeps_a_push_target_healthy_until_stopped() {
    let mut agent = Agent::start(&[
        ("SERVICE_URL_beat", "push://".into()),
        ("SERVICE_TOKEN_beat", TOKEN.into()),
        ("SERVICE_PERIOD_beat", "1".into()),
        ("SERVICE_GRACE_beat", "1".into()),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.5".into()),
    ]);
    let url = Url::parse(&format!("{}/ping/{TOKEN}", agent.base)).unwrap();
    let hb = AutoHeartbeat::spawn(
        client(),
        Beat::Ping(url),
        AutoHeartbeatOptions::every(Duration::from_millis(250)),
    );
    let before = wait_statuses(&mut agent, "beat", "three healthy cycles in a row", |s| {
        s.len() >= 3 && s[s.len() - 3..].iter().all(|x| *x == Status::Healthy)
    })
    .await;
    let status = hb.stop().await;
    assert!(status.stopped);
    assert!(status.sent >= 3, "{status:?}");
    assert_eq!(status.failed, 0, "{status:?}");

    // Silent now: late (timeout) after the period, down after period + grace.
    let n = before.len();
    let after = wait_statuses(
        &mut agent,
        "beat",
        "down after the heartbeat stopped",
        |s| s.len() > n && s[n..].contains(&Status::Down),
    )
    .await;
    let first_down = n + after[n..].iter().position(|x| *x == Status::Down).unwrap();
    assert!(
        after[n..first_down]
            .iter()
            .all(|x| matches!(x, Status::Healthy | Status::Timeout)),
        "between healthy and down only late: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laneswap_services_heartbeats_and_progress() {
    let mut agent = Agent::start(&[
        ("ADMIN_TOKEN", ADMIN.into()),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.5".into()),
    ]);
    let admin = Secret::new(ADMIN);
    let api = Services::new(client(), &Url::parse(&agent.base).unwrap());
    let mut metadata = serde_json::Map::new();
    metadata.insert("version".into(), json!("1.2.3"));
    let (info, svc) = api
        .register(
            &admin,
            &Registration {
                name: "worker-1".into(),
                period_s: Some(60.0),
                grace_s: Some(30.0),
                metadata: Some(metadata),
                ..Registration::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.name, "worker-1");
    assert_eq!(info.period, Some(60.0));
    assert_eq!(info.metadata, json!({"version": "1.2.3"}));
    assert!(svc.token().expose().len() >= 16);
    assert!(
        !format!("{svc:?}").contains(svc.token().expose()),
        "Debug shows the token"
    );

    svc.heartbeat(HeartbeatStatus::Healthy, Some("started"), None)
        .await
        .unwrap();
    let mut task = svc
        .start_task("Data Processing", 4, Some("nightly"))
        .await
        .unwrap();
    assert_eq!(task.info.total_steps, 4);
    let t = task
        .update(2, Some(TaskStatus::Running), Some("half way"))
        .await
        .unwrap();
    assert_eq!(
        (t.current_step, t.percentage, t.status),
        (2, 50.0, TaskStatus::Running)
    );
    assert_eq!(t.message.as_deref(), Some("half way"));
    let t = task.complete(Some("done")).await.unwrap();
    assert_eq!(
        (t.current_step, t.percentage, t.status),
        (4, 100.0, TaskStatus::Completed)
    );
    // A final task takes no more updates.
    let e = task.update(1, None, None).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    let mut other = svc.start_task("Import", 10, None).await.unwrap();
    let t = other.fail(Some("disk full")).await.unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    // Out of range steps are refused with the field named.
    let mut third = svc.start_task("Export", 3, None).await.unwrap();
    let e = third.update(4, None, None).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("current_step"), "{e}");

    let pings = svc.pings(50).await.unwrap();
    assert!(
        pings.iter().any(|p| p["source"] == "laneswap"
            && p["message"].as_str().is_some_and(|m| m.contains("started"))),
        "{pings:?}"
    );
    let listed = api.list(&admin).await.unwrap();
    assert!(
        listed.iter().any(|s| s.service_id == svc.id()),
        "{listed:?}"
    );

    // The agent records the registered service as a target.
    wait_statuses(&mut agent, "worker-1", "worker-1 in a cycle", |s| {
        !s.is_empty()
    })
    .await;

    // A wrong token is a plain 404, and no error text shows a token.
    let wrong = api.service(svc.id(), Secret::new("wrong-token-0123456789abcdef"));
    let e = wrong.info().await.unwrap_err();
    assert!(
        matches!(e, ClientError::Rejected { status: 404, .. }),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong-token"), "{e}");
    let e = wrong
        .heartbeat(HeartbeatStatus::Healthy, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));

    api.delete(&admin, svc.id()).await.unwrap();
    let e = svc.info().await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_and_central_pushes_reach_the_agent() {
    let agent = Agent::start(&[
        ("SERVICE_URL_kuma", "push://".into()),
        ("SERVICE_TOKEN_kuma", TOKEN.into()),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.5".into()),
    ]);
    let c = client();
    let kuma = Url::parse(&format!("{}/api/push/{TOKEN}", agent.base)).unwrap();
    let ack = c
        .kuma_push(&kuma, KumaStatus::Up, Some("fine"), Some(42.0))
        .await
        .unwrap();
    assert_eq!(ack.status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ack.body).unwrap(),
        json!({"ok": true})
    );
    c.kuma_push(&kuma, KumaStatus::Down, Some("disk full"), None)
        .await
        .unwrap();
    let central = Url::parse(&format!("{}/heartbeat/{TOKEN}", agent.base)).unwrap();
    c.central(
        &central,
        Some(&json!({"status": "healthy", "message": "central says hi"})),
    )
    .await
    .unwrap();

    let svc = Services::new(c.clone(), &Url::parse(&agent.base).unwrap())
        .service("kuma", Secret::new(TOKEN));
    let pings = svc.pings(10).await.unwrap();
    let sources: Vec<&str> = pings.iter().filter_map(|p| p["source"].as_str()).collect();
    assert_eq!(sources, ["central", "kuma", "kuma"], "{pings:?}");
    assert_eq!(pings[1]["kind"], "fail");
    assert!(pings[1]["message"].as_str().unwrap().contains("disk full"));
    assert_eq!(pings[2]["duration_ms"], 42.0);

    // An unknown token: 404 from each style.
    let bad = Url::parse(&format!("{}/api/push/no-such-token-0123456789", agent.base)).unwrap();
    let e = c
        .kuma_push(&bad, KumaStatus::Up, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(!e.to_string().contains("no-such-token"), "{e}");
}
