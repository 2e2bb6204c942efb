//! Every service mode through the JSON API, checked with a real HTTP client on the
//! service's own port.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Api, chain, fresh_client, poll, start_mock};

fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/health")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_and_error_and_counters() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("api").await;
    let http = fresh_client(Duration::from_secs(5));

    let r = http.get(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-mock-service"], "api");
    let r = http.head(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(api.requests("api").await, 2);

    let v = api
        .set_mode("api", json!({ "kind": "error", "code": 503 }))
        .await;
    assert_eq!(v["mode"], json!({ "kind": "error", "code": 503 }));
    let r = http.get(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(api.requests("api").await, 3);

    api.set_mode("api", json!({ "kind": "error" })).await;
    let r = http.get(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500, "error without a code is 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_never_answers() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("slowpoke").await;
    api.set_mode("slowpoke", json!({ "kind": "timeout" })).await;
    let http = fresh_client(Duration::from_secs(1));
    let e = http.get(url(addr)).send().await.unwrap_err();
    assert!(e.is_timeout(), "expected a timeout, got {}", chain(&e));
    assert_eq!(api.requests("slowpoke").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_and_comes_back_on_the_same_port() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("db").await;
    // A keep-alive connection made while healthy must not survive "down".
    let pooled = support::client();
    assert_eq!(pooled.get(url(addr)).send().await.unwrap().status(), 200);

    let v = api.set_mode("db", json!({ "kind": "down" })).await;
    assert_eq!(v["mode"]["kind"], "down");
    // The listener closes asynchronously: poll until connecting is refused.
    poll("connection refused", Duration::from_secs(5), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    let e = fresh_client(Duration::from_secs(5))
        .get(url(addr))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{}", chain(&e));
    let e = pooled.get(url(addr)).send().await.unwrap_err();
    assert!(e.is_connect() || e.is_request(), "{}", chain(&e));

    api.set_mode("db", json!({ "kind": "healthy" })).await;
    let http = fresh_client(Duration::from_secs(5));
    poll("listening again", Duration::from_secs(5), || async {
        http.get(url(addr))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await;
    assert_eq!(http.get(url(addr)).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_jitter_delay_the_answer() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("slow").await;
    let http = fresh_client(Duration::from_secs(10));

    api.set_mode("slow", json!({ "kind": "slow", "ms": 300 }))
        .await;
    let t = Instant::now();
    let r = http.get(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    api.set_mode(
        "slow",
        json!({ "kind": "jitter", "min_ms": 50, "max_ms": 150 }),
    )
    .await;
    let mut delays = HashSet::new();
    for _ in 0..8 {
        let t = Instant::now();
        let r = http.get(url(addr)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ms: u64 = r.headers()["x-mock-delay-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((50..=150).contains(&ms), "delay {ms} outside [50, 150]");
        assert!(t.elapsed() >= Duration::from_millis(ms));
        delays.insert(ms);
    }
    assert!(
        delays.len() > 1,
        "jitter gave one delay every time: {delays:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_resets_the_connection() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("rst").await;
    api.set_mode("rst", json!({ "kind": "reset" })).await;
    let e = fresh_client(Duration::from_secs(5))
        .get(url(addr))
        .send()
        .await
        .unwrap_err();
    let text = chain(&e).to_lowercase();
    assert!(
        text.contains("reset") || text.contains("closed"),
        "expected a reset, got {text}"
    );
    // At the socket level it is a real RST.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_shows_both_states() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("flappy").await;
    api.set_mode("flappy", json!({ "kind": "flapping", "period_s": 0.3 }))
        .await;
    let http = fresh_client(Duration::from_secs(5));
    let mut up = false;
    let mut refused = false;
    let give_up = Instant::now() + Duration::from_secs(20);
    while !(up && refused) {
        assert!(
            Instant::now() < give_up,
            "flapping: up={up} refused={refused} after 20 s"
        );
        match http.get(url(addr)).send().await {
            Ok(r) if r.status() == 200 => up = true,
            Err(e) if e.is_connect() => refused = true,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_trickles_after_the_headers() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("trickle").await;
    api.set_mode("trickle", json!({ "kind": "slow_body", "ms": 30 }))
        .await;
    let http = fresh_client(Duration::from_secs(20));
    let t = Instant::now();
    let mut r = http.get(url(addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut chunks = 0;
    let mut body = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        chunks += 1;
        body.extend_from_slice(&c);
    }
    assert_eq!(body.len(), 16);
    assert!(chunks > 1, "the body came in one piece");
    assert!(t.elapsed() >= Duration::from_millis(16 * 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_after_never_repeats_a_line() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("logged").await;
    let http = fresh_client(Duration::from_secs(5));
    let mut seen = HashSet::new();
    let mut after = 0u64;
    for round in 0..5 {
        for _ in 0..7 {
            http.get(url(addr)).send().await.unwrap();
        }
        let (status, v) = api
            .send("GET", &format!("/api/log?after={after}"), None)
            .await;
        assert_eq!(status, 200);
        let lines = v["lines"].as_array().unwrap();
        assert!(lines.len() >= 7, "round {round}: {} lines", lines.len());
        for l in lines {
            let seq = l["seq"].as_u64().unwrap();
            assert!(seq > after, "line {seq} not after {after}");
            assert!(seen.insert(seq), "line {seq} repeated");
            after = after.max(seq);
        }
        assert_eq!(v["last_seq"].as_u64().unwrap(), after);
    }
    let (_, v) = api
        .send("GET", &format!("/api/log?after={after}"), None)
        .await;
    assert!(v["lines"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    api.create("svc").await;
    let cases = [
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "nope" }),
            400,
            "kind",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "code": 500 }),
            400,
            "kind",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "error", "code": 42 }),
            400,
            "code",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "error", "code": "x" }),
            400,
            "code",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "slow", "ms": -1 }),
            400,
            "ms",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "jitter", "min_ms": 9, "max_ms": 1 }),
            400,
            "max_ms",
        ),
        (
            "PUT",
            "/api/services/svc/mode",
            json!({ "kind": "flapping", "period_s": 0 }),
            400,
            "period_s",
        ),
        (
            "PUT",
            "/api/services/nope/mode",
            json!({ "kind": "down" }),
            404,
            "nope",
        ),
        (
            "POST",
            "/api/services",
            json!({ "name": "a b" }),
            400,
            "name",
        ),
        ("POST", "/api/services", json!({ "port": 1 }), 400, "name"),
        (
            "POST",
            "/api/services",
            json!({ "name": "svc" }),
            409,
            "name",
        ),
        (
            "POST",
            "/api/services",
            json!({ "name": "x", "port": 70000 }),
            400,
            "port",
        ),
        (
            "PUT",
            "/api/worker/mode",
            json!({ "mode": "sleepy" }),
            400,
            "mode",
        ),
        ("PUT", "/api/sink/mode", json!({}), 400, "mode"),
        (
            "POST",
            "/api/scenario",
            json!([{ "at_s": 1, "service": "svc" }]),
            400,
            "steps[0].mode",
        ),
        (
            "POST",
            "/api/scenario",
            json!([{ "at_s": 1, "service": "zz", "mode": { "kind": "down" } }]),
            400,
            "steps[0].service",
        ),
        (
            "POST",
            "/api/scenario",
            json!([{ "service": "svc", "mode": { "kind": "down" } }]),
            400,
            "steps[0].at_s",
        ),
    ];
    for (method, path, body, code, field) in cases {
        let (status, v) = api.send(method, path, Some(body.clone())).await;
        assert_eq!(status, code, "{method} {path} {body}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{method} {path} {body}: {msg:?} does not name {field}"
        );
    }
    let (status, v) = api.send("GET", "/api/log?after=x", None).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("after"));
    // Not JSON at all.
    let r = api
        .client
        .put(format!("{}/api/services/svc/mode", api.base))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_closes_the_port() {
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("gone").await;
    let (status, _) = api.send("DELETE", "/api/services/gone", None).await;
    assert_eq!(status, 204);
    poll("refused after delete", Duration::from_secs(5), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    let (status, _) = api.send("GET", "/api/services/gone", None).await;
    assert_eq!(status, 404);
}
