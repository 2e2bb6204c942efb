//! Proxy environment variables must never reroute probes.
//!
//! This is its own test binary with a single test because it mutates the
//! process environment, which would race with tests running in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use heartbeat_core::Status;
use heartbeat_probe::{HttpProber, ProberOptions};
use support::{Behaviour, closed_port, next_seen, serve, target};

#[tokio::test]
#[allow(unsafe_code)]
async fn proxy_env_vars_are_ignored() {
    let dead_proxy = format!("http://{}", closed_port().await);
    // SAFETY: this binary's only test; the variables are set before the
    // runtime spawns anything that reads the environment.
    unsafe {
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(var, &dead_proxy);
        }
        for var in ["NO_PROXY", "no_proxy"] {
            std::env::remove_var(var);
        }
    }

    let mut s = serve(Behaviour::Status(200, vec![])).await;

    // Control: a client that honours the environment goes to the dead proxy,
    // so the variables really are in force.
    let honouring = reqwest::Client::builder().build().unwrap();
    let err = honouring.head(s.url("/")).send().await;
    assert!(
        err.is_err(),
        "a proxy-honouring client should fail: {err:?}"
    );
    assert_eq!(s.accepted(), 0);

    let prober = HttpProber::new(ProberOptions::default()).unwrap();
    let r = prober
        .probe(&target(s.url("/")), Duration::from_secs(5))
        .await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(next_seen(&mut s).await.target, "/");
}
