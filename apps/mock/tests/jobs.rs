//! Simulated push jobs: what they send (to a real HTTP receiver on loopback), how they
//! follow mode changes from the API and from scenarios, and how bad input is refused.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use heartbeat_testkit::{Recorder as Receiver, Seen};
use serde_json::{Value, json};
use support::{Api, poll, start_mock};

const TOKEN: &str = "job-token-0123456789abcdef";

fn rid(q: &str) -> Option<String> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix("rid="))
        .map(str::to_owned)
}

async fn job(api: &Api, name: &str) -> Value {
    let (status, v) = api.send("GET", &format!("/api/jobs/{name}"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Watches the receiver for `window` and returns how many requests arrived in it.
async fn requests_during(rx: &Receiver, window: Duration) -> usize {
    let before = rx.seen().len();
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await; // observation window, not a wait for an event
    }
    rx.seen().len() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_job_runs_with_rid_and_follows_its_mode() {
    let rx = Receiver::start().await;
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let url = format!("{}/ping/{TOKEN}", rx.base);
    let (status, v) = api
        .send(
            "POST",
            "/api/jobs",
            Some(json!({"name": "backup", "url": url, "interval_s": 0.2, "run_ms": 30})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["style"], "ping");
    assert_eq!(v["mode"], "ok");
    // The token is in the URL: the API (and so the UI) never shows it.
    assert!(!v.to_string().contains(TOKEN), "{v}");
    assert_eq!(v["url"], format!("{}/ping/<redacted>", rx.base));

    // Two complete runs: /start?rid=R, then /0?rid=R with a body.
    let runs = poll("two ok runs", Duration::from_secs(10), || async {
        let ends: Vec<Seen> = rx
            .seen()
            .into_iter()
            .filter(|s| s.path == format!("/ping/{TOKEN}/0"))
            .collect();
        (ends.len() >= 2).then_some(ends)
    })
    .await;
    let seen = rx.seen();
    for end in &runs {
        let r = rid(&end.query).expect("end has a rid");
        assert_eq!(end.method, "POST");
        assert_eq!(end.body, "simulated run: ok");
        assert!(
            seen.iter()
                .any(|s| s.path == format!("/ping/{TOKEN}/start")
                    && rid(&s.query) == Some(r.clone())),
            "no start with rid {r}: {seen:?}"
        );
    }
    assert_ne!(
        rid(&runs[0].query),
        rid(&runs[1].query),
        "run ids are fresh"
    );

    // fail: the next run ends with exit status 1 and says why.
    api.send(
        "PUT",
        "/api/jobs/backup/mode",
        Some(json!({"mode": "fail"})),
    )
    .await;
    let fail = poll("a failed run", Duration::from_secs(10), || async {
        rx.seen()
            .into_iter()
            .find(|s| s.path == format!("/ping/{TOKEN}/1"))
    })
    .await;
    assert!(fail.body.contains("simulated failure"), "{fail:?}");
    assert!(rid(&fail.query).is_some());
    let v = job(&api, "backup").await;
    assert_eq!(v["mode"], "fail");

    // silent: nothing at all is sent any more (after a run already under way ends).
    let (status, v) = api
        .send(
            "PUT",
            "/api/jobs/backup/mode",
            Some(json!({"mode": "silent"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let runs_then = poll(
        "the run under way to end",
        Duration::from_secs(5),
        || async {
            let v = job(&api, "backup").await;
            let seen = rx.seen();
            let starts = seen.iter().filter(|s| s.path.ends_with("/start")).count();
            let ends = seen.len() - starts;
            (starts == ends).then(|| v["runs"].as_u64().unwrap())
        },
    )
    .await;
    assert_eq!(requests_during(&rx, Duration::from_millis(1000)).await, 0);
    assert_eq!(
        job(&api, "backup").await["runs"].as_u64().unwrap(),
        runs_then
    );

    // Back to ok: it runs again at once.
    let before = rx.seen().len();
    api.send("PUT", "/api/jobs/backup/mode", Some(json!({"mode": "ok"})))
        .await;
    poll("pinging again", Duration::from_secs(5), || async {
        (rx.seen().len() > before).then_some(())
    })
    .await;

    // Deleting the job stops it.
    let (status, _) = api.send("DELETE", "/api/jobs/backup", None).await;
    assert_eq!(status, 204);
    let (status, _) = api.send("GET", "/api/jobs/backup", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_job_pushes_up_and_down() {
    let rx = Receiver::start().await;
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let url = format!("{}/api/push/{TOKEN}", rx.base);
    let (status, v) = api
        .send(
            "POST",
            "/api/jobs",
            Some(json!({"name": "kuma", "url": url, "interval_s": 0.1, "run_ms": 12})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["style"], "kuma", "style follows the URL");
    let up = poll("an up push", Duration::from_secs(5), || async {
        rx.seen().into_iter().next()
    })
    .await;
    assert_eq!(up.method, "GET");
    assert_eq!(up.path, format!("/api/push/{TOKEN}"));
    assert_eq!(up.query, "status=up&ping=12");

    api.send("PUT", "/api/jobs/kuma/mode", Some(json!({"mode": "fail"})))
        .await;
    let down = poll("a down push", Duration::from_secs(5), || async {
        rx.seen()
            .into_iter()
            .find(|s| s.query.starts_with("status=down"))
    })
    .await;
    assert_eq!(down.query, "status=down&msg=simulated+failure&ping=12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_pings_are_counted_without_showing_the_token() {
    let rx = Receiver::start().await;
    rx.set_status(404);
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let url = format!("{}/ping/{TOKEN}", rx.base);
    api.send(
        "POST",
        "/api/jobs",
        Some(json!({"name": "lost", "url": url, "interval_s": 0.1})),
    )
    .await;
    let v = poll("two failed runs", Duration::from_secs(5), || async {
        let v = job(&api, "lost").await;
        (v["errors"].as_u64().unwrap() >= 2).then_some(v)
    })
    .await;
    assert_eq!(v["last_ok"], false);
    let last = v["last_result"].as_str().unwrap();
    assert!(last.contains("404"), "{last}");
    assert!(!last.contains(TOKEN), "{last}");
    let (_, log) = api.send("GET", "/api/log?after=0&limit=5000", None).await;
    assert!(
        !log.to_string().contains(TOKEN),
        "the request log shows the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_steps_switch_jobs() {
    let rx = Receiver::start().await;
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let url = format!("{}/ping/{TOKEN}", rx.base);
    api.send(
        "POST",
        "/api/jobs",
        Some(json!({"name": "etl", "url": url, "interval_s": 0.1, "mode": "silent"})),
    )
    .await;
    let (status, v) = api
        .send(
            "POST",
            "/api/scenario",
            Some(json!([{"at_s": 0.1, "job": "etl", "mode": "fail"}])),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    poll(
        "the scenario to make etl fail",
        Duration::from_secs(5),
        || async {
            rx.seen()
                .into_iter()
                .find(|s| s.path == format!("/ping/{TOKEN}/fail"))
        },
    )
    .await;
    assert_eq!(job(&api, "etl").await["mode"], "fail");
    let (status, v) = api
        .send(
            "POST",
            "/api/scenario",
            Some(json!([{"at_s": 1, "job": "nope", "mode": "ok"}])),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "steps[0].job: no job named \"nope\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_name_the_field() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let cases = [
        (
            json!({"url": "http://127.0.0.1:1/ping/x"}),
            400,
            "name: required",
        ),
        (json!({"name": "a"}), 400, "url: required"),
        (
            json!({"name": "a", "url": "ftp://h/ping/x"}),
            400,
            "url: scheme \"ftp\" is not http or https",
        ),
        (
            json!({"name": "a b", "url": "http://h/ping/x"}),
            400,
            "name: \"a b\" may only contain letters, digits, '_' and '-'",
        ),
        (
            json!({"name": "a", "url": "http://h/ping/x", "mode": "loud"}),
            400,
            "mode: unknown mode \"loud\"; expected one of ok, fail, silent",
        ),
        (
            json!({"name": "a", "url": "http://h/ping/x", "interval_s": 0}),
            400,
            "interval_s: expected seconds from 0.05 to 86400",
        ),
        (
            json!({"name": "a", "url": "http://h/ping/x", "style": "grpc"}),
            400,
            "style: unknown style \"grpc\"; expected ping or kuma",
        ),
    ];
    for (body, code, error) in cases {
        let (status, v) = api.send("POST", "/api/jobs", Some(body.clone())).await;
        assert_eq!(status, code, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with(error),
            "{body}: {v}"
        );
    }
    let ok = json!({"name": "dup", "url": "http://127.0.0.1:1/ping/x", "mode": "silent"});
    assert_eq!(api.send("POST", "/api/jobs", Some(ok.clone())).await.0, 201);
    let (status, v) = api.send("POST", "/api/jobs", Some(ok)).await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = api
        .send("PUT", "/api/jobs/dup/mode", Some(json!({"mode": "maybe"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "mode: unknown mode \"maybe\"; expected one of ok, fail, silent"
    );
    let (status, _) = api
        .send("PUT", "/api/jobs/none/mode", Some(json!({"mode": "ok"})))
        .await;
    assert_eq!(status, 404);
}
