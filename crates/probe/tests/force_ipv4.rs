//! FORCE_IPV4 against names that resolve to both families or only to IPv6.
//!
//! Needs `/etc/hosts` to hold
//!     127.0.0.1 heartbeat-dual.test
//!     ::1       heartbeat-dual.test
//!     ::1       heartbeat-v6only.test
//! Without them the tests are skipped with a printed reason, unless
//! `HEARTBEAT_REQUIRE_HOSTS=1`, in which case they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use heartbeat_core::{Status, Url};
use heartbeat_probe::{HttpProber, ProberOptions};
use support::{Behaviour, next_seen, serve_on, target};
use tokio::net::TcpListener;

const DUAL: &str = "heartbeat-dual.test";
const V6ONLY: &str = "heartbeat-v6only.test";
const T: Duration = Duration::from_secs(5);

/// Whether the test hosts are set up; `false` means skip (already explained).
async fn hosts_ready(name: &str, want_v4: bool, want_v6: bool) -> bool {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((name, 0)).await {
        Ok(a) => a.collect(),
        Err(_) => Vec::new(),
    };
    let has_v4 = addrs.iter().any(SocketAddr::is_ipv4);
    let has_v6 = addrs.iter().any(SocketAddr::is_ipv6);
    if has_v4 == want_v4 && has_v6 == want_v6 {
        return true;
    }
    let reason = format!(
        "{name} resolves to {addrs:?}; expected IPv4: {want_v4}, IPv6: {want_v6} (see /etc/hosts lines in tests/force_ipv4.rs)"
    );
    if std::env::var("HEARTBEAT_REQUIRE_HOSTS").as_deref() == Ok("1") {
        panic!("HEARTBEAT_REQUIRE_HOSTS=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

fn forced() -> HttpProber {
    HttpProber::new(ProberOptions {
        force_ipv4: true,
        ..ProberOptions::default()
    })
    .unwrap()
}

/// Listeners on 127.0.0.1:P and [::1]:P for one port P.
async fn same_port_on_both_families() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            return (v4, v6);
        }
    }
    panic!("could not bind the same port on 127.0.0.1 and ::1");
}

#[tokio::test]
async fn dual_stack_name_is_reached_over_ipv4() {
    if !hosts_ready(DUAL, true, true).await {
        return;
    }
    let (v4, v6) = same_port_on_both_families().await;
    let port = v4.local_addr().unwrap().port();
    // The IPv6 listener answers differently, so the result tells the family.
    let mut over_v4 = serve_on(v4, Behaviour::Status(200, vec![]));
    let over_v6 = serve_on(v6, Behaviour::Status(503, vec![]));
    let url = Url::parse(&format!("http://{DUAL}:{port}/")).unwrap();

    for _ in 0..3 {
        let r = forced().probe(&target(url.clone()), T).await;
        assert_eq!(r.status, Status::Healthy, "{r:?}");
        assert_eq!(r.status_code, Some(200));
        next_seen(&mut over_v4).await;
    }
    assert_eq!(
        over_v6.accepted(),
        0,
        "FORCE_IPV4 reached the IPv6 listener"
    );

    // Without forcing, either family may be used; both listeners work.
    let r = HttpProber::new(ProberOptions::default())
        .unwrap()
        .probe(&target(url), T)
        .await;
    eprintln!(
        "unforced probe of {DUAL}: {r:?} (IPv6 listener accepted {})",
        over_v6.accepted()
    );
    assert!(matches!(r.status_code, Some(200 | 503)), "{r:?}");
}

#[tokio::test]
async fn ipv6_only_name_is_down_with_a_clear_message() {
    if !hosts_ready(V6ONLY, false, true).await {
        return;
    }
    let v6 = TcpListener::bind("[::1]:0").await.unwrap();
    let port = v6.local_addr().unwrap().port();
    let over_v6 = serve_on(v6, Behaviour::Status(200, vec![]));
    let url = Url::parse(&format!("http://{V6ONLY}:{port}/")).unwrap();

    let r = forced().probe(&target(url.clone()), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some("dns: heartbeat-v6only.test has no IPv4 address (FORCE_IPV4 is on)")
    );
    assert_eq!(over_v6.accepted(), 0);

    // The same name works when IPv4 is not forced.
    let r = HttpProber::new(ProberOptions::default())
        .unwrap()
        .probe(&target(url), T)
        .await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
}
