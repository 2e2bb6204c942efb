//! The HTTP taxonomy against real servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use heartbeat_core::{DnsOverrideMode, ProbeMethod, Status, Url};
use heartbeat_probe::{HttpProber, ProberOptions};
use support::{Behaviour, closed_port, header, next_seen, serve, target};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(5);

fn prober() -> HttpProber {
    HttpProber::new(ProberOptions::default()).unwrap()
}

#[tokio::test]
async fn ok_is_healthy_with_sub_ms_latency_and_code() {
    let mut s = serve(Behaviour::Status(200, vec![])).await;
    let r = prober().probe(&target(s.url("/health")), T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    assert_eq!(r.error_message, None);
    let latency = r.latency_ms.unwrap();
    assert!(latency > 0.0 && latency < T.as_secs_f64() * 1000.0);
    let seen = next_seen(&mut s).await;
    assert_eq!(seen.method, "HEAD");
    assert_eq!(seen.target, "/health");
}

#[tokio::test]
async fn redirect_is_healthy_and_not_followed() {
    let mut elsewhere = serve(Behaviour::Status(500, vec![])).await;
    let location = elsewhere.url("/moved").to_string();
    let s = serve(Behaviour::Status(301, vec![("location".into(), location)])).await;
    let r = prober().probe(&target(s.url("/")), T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(301));
    // Had the redirect been followed, the probe would have waited for this
    // server's answer, so its accept and request would already be recorded.
    assert_eq!(elsewhere.accepted(), 0);
    assert!(elsewhere.try_seen().is_none());
}

#[tokio::test]
async fn non_success_answers_are_errors_with_their_code() {
    let p = prober();
    for code in [404u16, 500, 503] {
        let s = serve(Behaviour::Status(code, vec![])).await;
        let r = p.probe(&target(s.url("/")), T).await;
        assert_eq!(r.status, Status::Error, "{r:?}");
        assert_eq!(r.status_code, Some(code));
        assert_eq!(
            r.error_message.as_deref(),
            Some(format!("HTTP {code}").as_str())
        );
        assert!(r.latency_ms.is_some());
    }
}

#[tokio::test]
async fn expected_statuses_are_honoured() {
    let s = serve(Behaviour::Status(404, vec![])).await;
    let mut t = target(s.url("/"));
    t.expected = heartbeat_core::ExpectedStatus(vec![(404, 404)]);
    let r = prober().probe(&t, T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(404));
}

#[tokio::test]
async fn head_rejected_with_405_falls_back_to_get() {
    let mut s = serve(Behaviour::RejectHead).await;
    let r = prober().probe(&target(s.url("/x")), T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    assert_eq!(next_seen(&mut s).await.method, "HEAD");
    let second = next_seen(&mut s).await;
    assert_eq!(second.method, "GET");
    assert_eq!(second.target, "/x");
}

#[tokio::test]
async fn get_and_post_methods_are_used_as_configured() {
    let p = prober();
    for (method, want) in [(ProbeMethod::Get, "GET"), (ProbeMethod::Post, "POST")] {
        let mut s = serve(Behaviour::Status(200, vec![])).await;
        let mut t = target(s.url("/"));
        t.method = method;
        let r = p.probe(&t, T).await;
        assert_eq!(r.status, Status::Healthy, "{r:?}");
        assert_eq!(next_seen(&mut s).await.method, want);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let s = serve(Behaviour::Hang).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let r = prober().probe(&target(s.url("/")), timeout).await;
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("timeout after 300 ms"));
    assert_eq!(r.status_code, None);
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
}

#[tokio::test]
async fn headers_that_do_not_finish_in_time_are_a_timeout() {
    let s = serve(Behaviour::PartialHead).await;
    let r = prober()
        .probe(&target(s.url("/")), Duration::from_millis(1500))
        .await;
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("timeout after 1.5 s"));
}

#[tokio::test]
async fn a_closed_port_is_down_connection_refused() {
    let addr = closed_port().await;
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    let r = prober().probe(&target(url), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn a_reset_is_down_connection_reset() {
    let mut s = serve(Behaviour::Reset).await;
    let r = prober().probe(&target(s.url("/")), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("connection reset"));
    // The server did get the request before resetting.
    assert_eq!(next_seen(&mut s).await.method, "HEAD");
}

#[tokio::test]
async fn a_huge_body_is_not_read_and_does_not_hold_the_probe() {
    const LEN: u64 = 100 * 1024 * 1024;
    let mut s = serve(Behaviour::HugeBody { len: LEN }).await;
    let mut t = target(s.url("/big"));
    t.method = ProbeMethod::Get;
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let r = prober().probe(&t, timeout).await;
    let took = started.elapsed();
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    assert!(took < timeout, "probe took {took:?}");
    // The prober dropped the connection after a small prefix, so the server's
    // writes failed long before the 100 MB were out.
    let written = tokio::time::timeout(Duration::from_secs(30), s.written.recv())
        .await
        .expect("server writer did not stop")
        .expect("server task ended");
    assert!(written < LEN / 4, "server managed to send {written} bytes");
}

#[tokio::test]
async fn a_slow_body_never_changes_the_status_nor_hangs() {
    let s = serve(Behaviour::SlowBody).await;
    let mut t = target(s.url("/"));
    t.method = ProbeMethod::Get;
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let r = prober().probe(&t, timeout).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
}

#[tokio::test]
async fn custom_headers_reach_the_server() {
    let mut s = serve(Behaviour::Status(200, vec![])).await;
    let mut t = target(s.url("/"));
    t.headers = vec![
        header("Authorization", "Bearer hunter2"),
        header("X-Probe", "a:b:c"),
    ];
    let r = prober().probe(&t, T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    let seen = next_seen(&mut s).await;
    assert_eq!(seen.header("authorization"), Some("Bearer hunter2"));
    assert_eq!(seen.header("x-probe"), Some("a:b:c"));
}

#[tokio::test]
async fn an_invalid_header_value_is_unknown_and_not_echoed() {
    let s = serve(Behaviour::Status(200, vec![])).await;
    let mut t = target(s.url("/"));
    t.headers = vec![header("Authorization", "secret\nvalue")];
    let r = prober().probe(&t, T).await;
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    let msg = r.error_message.unwrap();
    assert!(
        msg.contains("Authorization") && !msg.contains("secret"),
        "{msg}"
    );
    assert_eq!(s.accepted(), 0);
}

#[tokio::test]
async fn legacy_dns_override_sends_plain_http_with_the_original_host() {
    let mut s = serve(Behaviour::Status(200, vec![])).await;
    let port = s.port();
    let url = Url::parse(&format!("https://app.example.invalid:{port}/health?deep=1")).unwrap();
    let mut t = target(url);
    t.dns_override = Some((LOCALHOST, DnsOverrideMode::Legacy));
    let r = prober().probe(&t, T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    // The raw server speaks plain HTTP only: a TLS ClientHello would not parse.
    let seen = next_seen(&mut s).await;
    assert_eq!(seen.method, "HEAD");
    assert_eq!(seen.target, "/health?deep=1");
    assert_eq!(
        seen.header("host").map(str::to_owned),
        Some(format!("app.example.invalid:{port}"))
    );
}

#[tokio::test]
async fn an_unresolvable_host_is_down_with_a_dns_message() {
    let url = Url::parse("http://nonexistent.invalid/").unwrap();
    let r = prober().probe(&target(url), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    let msg = r.error_message.unwrap();
    assert!(msg.starts_with("dns: "), "{msg}");
}

#[tokio::test]
async fn an_ipv6_literal_is_refused_under_force_ipv4() {
    let p = HttpProber::new(ProberOptions {
        force_ipv4: true,
        ..ProberOptions::default()
    })
    .unwrap();
    let url = Url::parse("http://[::1]:9/").unwrap();
    let r = p.probe(&target(url), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some("IPv6 address ::1 cannot be used (FORCE_IPV4 is on)")
    );
}

#[tokio::test]
async fn an_unregistered_tls_override_is_unknown() {
    let mut t = target(Url::parse("https://not-registered.test/").unwrap());
    t.dns_override = Some((LOCALHOST, DnsOverrideMode::Tls));
    let r = prober().probe(&t, T).await;
    assert_eq!(r.status, Status::Unknown, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hanging_targets_time_out_together() {
    const N: usize = 200;
    let mut servers = Vec::with_capacity(N);
    for _ in 0..N {
        servers.push(serve(Behaviour::Hang).await);
    }
    let p = prober();
    let timeout = Duration::from_secs(1);
    let targets: Vec<_> = servers.iter().map(|s| target(s.url("/"))).collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in targets {
        let p = p.clone();
        tasks.spawn(async move { p.probe(&t, timeout).await });
    }
    let mut timeouts = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        timeouts += 1;
    }
    let took = started.elapsed();
    assert_eq!(timeouts, N);
    assert!(took < Duration::from_secs(3), "200 probes took {took:?}");
}

#[tokio::test]
async fn connections_are_kept_alive_between_probes() {
    // GET answers carry a small body; reading it lets the connection go back
    // to the pool, so later probes reuse it instead of connecting again.
    let s = serve(Behaviour::RejectHead).await;
    let p = prober();
    let mut t = target(s.url("/"));
    t.method = ProbeMethod::Get;
    for _ in 0..3 {
        let r = p.probe(&t, T).await;
        assert_eq!(r.status, Status::Healthy, "{r:?}");
    }
    assert_eq!(s.accepted(), 1, "connections were not reused");
}
