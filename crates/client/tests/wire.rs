//! What the client sends and how it handles failures, against a real HTTP server on
//! loopback that records every request (`heartbeat_testkit::Recorder`). The same calls
//! against the real agent are in `apps/cli/tests/agent.rs`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use heartbeat_client::{
    AutoHeartbeat, AutoHeartbeatOptions, Beat, BeatStatus, Client, ClientError, ClientOptions,
    HeartbeatStatus, KumaStatus, Ping, Services, Signal, Url,
};
use heartbeat_core::Secret;
use heartbeat_testkit::Recorder;
use serde_json::{Value, json};

const TOKEN: &str = "tok_0123456789abcdefXYZ";

fn client(retries: u32, timeout: Duration) -> Client {
    Client::new(ClientOptions {
        timeout,
        connect_timeout: timeout,
        retries,
        retry_backoff: Duration::from_millis(10),
        use_system_proxy: false,
        ..ClientOptions::default()
    })
    .unwrap()
}

fn ping_url(rec: &Recorder) -> Url {
    Url::parse(&format!("{}/ping/{TOKEN}", rec.base)).unwrap()
}

#[tokio::test]
async fn every_ping_kind_is_sent_as_healthchecks_expects() {
    let rec = Recorder::start().await;
    let c = client(0, Duration::from_secs(5));
    let url = ping_url(&rec);
    let pings = [
        Ping::new(Signal::Success),
        Ping::new(Signal::Start).rid("r1"),
        Ping::new(Signal::Exit(0)).rid("r1").body("all good"),
        Ping::new(Signal::Fail).body("boom"),
        Ping::new(Signal::Log).body("just saying"),
        Ping::new(Signal::Exit(7)),
    ];
    for p in &pings {
        let ack = c.ping(&url, p).await.unwrap();
        assert_eq!((ack.status, ack.body.as_str()), (200, "OK"));
    }
    let seen = rec.seen();
    let got: Vec<(&str, &str, &str, &str)> = seen
        .iter()
        .map(|s| {
            (
                s.method.as_str(),
                s.path.as_str(),
                s.query.as_str(),
                s.body.as_str(),
            )
        })
        .collect();
    let p = format!("/ping/{TOKEN}");
    assert_eq!(
        got,
        [
            ("GET", p.as_str(), "", ""),
            ("GET", &format!("{p}/start"), "rid=r1", ""),
            ("POST", &format!("{p}/0"), "rid=r1", "all good"),
            ("POST", &format!("{p}/fail"), "", "boom"),
            ("POST", &format!("{p}/log"), "", "just saying"),
            ("GET", &format!("{p}/7"), "", ""),
        ]
    );
    assert!(seen[0].headers["user-agent"].starts_with("heartbeat-client/"));
}

#[tokio::test]
async fn kuma_central_and_json_api_requests() {
    let rec = Recorder::start().await;
    let c = client(0, Duration::from_secs(5));
    let kuma = Url::parse(&format!("{}/api/push/{TOKEN}", rec.base)).unwrap();
    c.kuma_push(&kuma, KumaStatus::Up, None, Some(12.5))
        .await
        .unwrap();
    c.kuma_push(&kuma, KumaStatus::Down, Some("disk full & more"), None)
        .await
        .unwrap();
    let central = Url::parse(&format!("{}/heartbeat/{TOKEN}", rec.base)).unwrap();
    c.central(&central, Some(&json!({"status": "healthy"})))
        .await
        .unwrap();

    // The recorder answers "OK", not the API's JSON, so only calls that return () are used.
    let api = Services::new(c.clone(), &Url::parse(&rec.base).unwrap());
    let svc = api.service("svc-1", Secret::new(TOKEN));
    svc.heartbeat(
        HeartbeatStatus::Warning,
        Some("slow"),
        Some(json!({"v": 1})),
    )
    .await
    .unwrap();
    api.delete(&Secret::new("admin-secret"), "svc-1")
        .await
        .unwrap();

    let seen = rec.seen();
    assert_eq!(seen[0].query, "status=up&ping=12.5");
    assert_eq!(seen[1].query, "status=down&msg=disk+full+%26+more");
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        ("POST", format!("/heartbeat/{TOKEN}").as_str())
    );
    assert_eq!(seen[2].headers["content-type"], "application/json");
    let hb = &seen[3];
    assert_eq!(
        (hb.method.as_str(), hb.path.as_str()),
        ("POST", "/api/services/svc-1/heartbeat")
    );
    assert_eq!(hb.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        serde_json::from_str::<Value>(&hb.body).unwrap(),
        json!({"status": "warning", "message": "slow", "metadata": {"v": 1}})
    );
    assert_eq!(
        (seen[4].method.as_str(), seen[4].path.as_str()),
        ("DELETE", "/api/services/svc-1")
    );
    assert_eq!(seen[4].headers["authorization"], "Bearer admin-secret");

    // A progress task needs at least one step; nothing is sent otherwise.
    let before = rec.count();
    let e = svc.start_task("t", 0, None).await.unwrap_err();
    assert_eq!(e.to_string(), "total_steps: must be at least 1");
    assert_eq!(rec.count(), before);
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let rec = Recorder::start().await;
    rec.set_status(503);
    let c = client(2, Duration::from_secs(5));
    let e = c
        .ping(&ping_url(&rec), &Ping::new(Signal::Success))
        .await
        .unwrap_err();
    assert_eq!(rec.count(), 3, "one attempt and two retries");
    assert!(e.is_transient());
    assert_eq!(e.status(), Some(503));
    let text = e.to_string();
    assert!(text.contains("(after 3 attempts)"), "{text}");
    // The answer echoed the path; neither the URL nor the body text shows the token.
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("/ping/<redacted>"), "{text}");

    // 429 is retried too; a 404 is not.
    rec.set_status(429);
    let c1 = client(1, Duration::from_secs(5));
    let before = rec.count();
    c1.ping(&ping_url(&rec), &Ping::new(Signal::Success))
        .await
        .unwrap_err();
    assert_eq!(rec.count() - before, 2);
    rec.set_status(404);
    let before = rec.count();
    let e = c
        .ping(&ping_url(&rec), &Ping::new(Signal::Success))
        .await
        .unwrap_err();
    assert_eq!(rec.count() - before, 1, "a 404 is final");
    assert!(!e.is_transient());
    assert!(
        matches!(
            e,
            ClientError::Rejected {
                status: 404,
                attempts: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let rec = Recorder::start().await;
    rec.set_hang(true);
    let c = client(1, Duration::from_millis(200));
    let started = Instant::now();
    let e = c
        .ping(&ping_url(&rec), &Ping::new(Signal::Start))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Network {
                timed_out: true,
                attempts: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(rec.count(), 2);
    // Two 200 ms attempts and a 10 ms backoff: well under the 10 s default timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!e.to_string().contains(TOKEN));
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error_without_the_token() {
    let port = heartbeat_testkit::free_port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/ping/{TOKEN}?rid=abc")).unwrap();
    let e = client(0, Duration::from_secs(2))
        .ping(&url, &Ping::new(Signal::Success))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            ClientError::Network {
                timed_out: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains(TOKEN) && !text.contains("rid="), "{text}");
    assert!(!format!("{e:?}").contains(TOKEN));
}

async fn wait_status(
    hb: &AutoHeartbeat,
    what: &str,
    done: impl Fn(&BeatStatus) -> bool,
) -> BeatStatus {
    let mut rx = hb.subscribe();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| done(s)))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 10 s; status {:?}", hb.status()));
    got.unwrap().clone()
}

/// Watches for `window` and returns how many requests arrived in it.
async fn requests_during(rec: &Recorder, window: Duration) -> usize {
    let before = rec.count();
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await; // observation window, not a wait for an event
    }
    rec.count() - before
}

#[tokio::test]
async fn auto_heartbeat_keeps_going_through_errors_and_stops() {
    let rec = Recorder::start().await;
    let c = client(0, Duration::from_secs(2));
    let hb = AutoHeartbeat::spawn(
        c.clone(),
        Beat::Ping(ping_url(&rec)),
        AutoHeartbeatOptions {
            interval: Duration::from_millis(50),
            first_retry: Duration::from_millis(10),
        },
    );
    wait_status(&hb, "three beats", |s| s.sent >= 3).await;

    // The server fails: the task backs off and keeps trying.
    rec.set_status(500);
    let s = wait_status(&hb, "two failures in a row", |s| {
        s.consecutive_failures >= 2
    })
    .await;
    let err = s.last_error.unwrap();
    assert!(err.contains("500") && !err.contains(TOKEN), "{err}");

    // It recovers on its own.
    rec.set_status(200);
    let sent = hb.status().sent;
    let s = wait_status(&hb, "beats again", |s| s.sent > sent).await;
    assert_eq!(s.consecutive_failures, 0);

    let last = hb.stop().await;
    assert!(last.stopped);
    assert_eq!(requests_during(&rec, Duration::from_millis(300)).await, 0);

    // Dropping the handle also ends the task.
    let hb = AutoHeartbeat::spawn(
        c,
        Beat::Kuma(Url::parse(&format!("{}/api/push/{TOKEN}", rec.base)).unwrap()),
        AutoHeartbeatOptions::every(Duration::from_millis(50)),
    );
    wait_status(&hb, "a kuma beat", |s| s.sent >= 1).await;
    drop(hb);
    assert_eq!(requests_during(&rec, Duration::from_millis(300)).await, 0);
    assert!(rec.seen().iter().any(|s| s.query == "status=up"));
}

#[tokio::test]
async fn creating_requests_are_retried_only_when_the_server_cannot_have_acted() {
    let rec = Recorder::start().await;
    let c = client(2, Duration::from_secs(5));
    let api = Services::new(c, &Url::parse(&rec.base).unwrap());
    let admin = Secret::new("admin-secret");
    let reg = heartbeat_client::Registration {
        name: "once".into(),
        ..Default::default()
    };
    // A 500 may come after the service was created: sending it again could register twice.
    rec.set_status(500);
    let e = api.register(&admin, &reg).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(rec.count(), 1, "not retried");
    // 503 (and 429) mean "not done": retried.
    rec.set_status(503);
    api.register(&admin, &reg).await.unwrap_err();
    assert_eq!(rec.count(), 1 + 3);
    // A task is created by POST …/progress: the same rule.
    rec.set_status(500);
    let svc = api.service("s1", Secret::new(TOKEN));
    svc.start_task("t", 3, None).await.unwrap_err();
    assert_eq!(rec.count(), 4 + 1);
    // Heartbeats are harmless to repeat: a 500 is retried.
    svc.heartbeat(HeartbeatStatus::Healthy, None, None)
        .await
        .unwrap_err();
    assert_eq!(rec.count(), 5 + 3);
    let bodies: Vec<Value> = rec
        .seen()
        .iter()
        .take(1)
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(bodies[0], json!({"name": "once"}));
}
