//! TLS-mode DNS override: connect to a chosen IP while SNI and certificate
//! checks use the URL's host (curl --resolve semantics).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use heartbeat_core::{DnsOverrideMode, HttpTarget, Status, Url};
use heartbeat_probe::{HttpProber, ProberOptions};
use support::{
    Behaviour, TestCert, expired_self_signed, next_seen, self_signed, serve_tls, target,
};

const HOST: &str = "internal.heartbeat.test";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(5);

fn prober_trusting(certs: &[&TestCert]) -> HttpProber {
    HttpProber::new(ProberOptions {
        force_ipv4: false,
        tls_override_hosts: vec![(HOST.to_owned(), LOCALHOST)],
        extra_root_certs_pem: certs
            .iter()
            .map(|c| c.cert_pem.clone().into_bytes())
            .collect(),
    })
    .unwrap()
}

fn tls_target(port: u16) -> HttpTarget {
    let mut t = target(Url::parse(&format!("https://{HOST}:{port}/ready")).unwrap());
    t.dns_override = Some((LOCALHOST, DnsOverrideMode::Tls));
    t
}

#[tokio::test]
async fn tls_override_keeps_https_sni_and_verification_on_the_host() {
    let cert = self_signed(&[HOST]);
    let mut tls = serve_tls(&cert, Behaviour::Status(204, vec![])).await;
    let port = tls.server.port();
    let r = prober_trusting(&[&cert]).probe(&tls_target(port), T).await;
    assert_eq!(r.status, Status::Healthy, "{r:?}");
    assert_eq!(r.status_code, Some(204));

    let seen = next_seen(&mut tls.server).await;
    assert_eq!(seen.sni.as_deref(), Some(HOST), "ClientHello server_name");
    assert_eq!(seen.target, "/ready");
    assert_eq!(
        seen.header("host").map(str::to_owned),
        Some(format!("{HOST}:{port}"))
    );
}

#[tokio::test]
async fn tls_override_checks_the_certificate_against_the_url_host() {
    // Trusted, but issued for another name: the check must fail on the name.
    let cert = self_signed(&["other.heartbeat.test"]);
    let mut tls = serve_tls(&cert, Behaviour::Status(200, vec![])).await;
    let r = prober_trusting(&[&cert])
        .probe(&tls_target(tls.server.port()), T)
        .await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some("tls: certificate not valid for internal.heartbeat.test")
    );
    let sni = tls.snis.recv().await.unwrap();
    assert_eq!(sni.as_deref(), Some(HOST));
    assert!(
        tls.server.try_seen().is_none(),
        "no request after a failed handshake"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_an_unknown_issuer() {
    let cert = self_signed(&[HOST]);
    let tls = serve_tls(&cert, Behaviour::Status(200, vec![])).await;
    let r = prober_trusting(&[])
        .probe(&tls_target(tls.server.port()), T)
        .await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("tls: unknown issuer"));
}

#[tokio::test]
async fn an_expired_certificate_is_reported_as_expired() {
    let cert = expired_self_signed(&[HOST]);
    let tls = serve_tls(&cert, Behaviour::Status(200, vec![])).await;
    let r = prober_trusting(&[&cert])
        .probe(&tls_target(tls.server.port()), T)
        .await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("tls: certificate expired"));
}

#[tokio::test]
async fn plain_https_to_an_ip_literal_checks_the_certificate_too() {
    // Without any override the same server is reached by IP: the certificate
    // (for HOST) does not match the address, so it must be rejected.
    let cert = self_signed(&[HOST]);
    let tls = serve_tls(&cert, Behaviour::Status(200, vec![])).await;
    let url = Url::parse(&format!("https://127.0.0.1:{}/", tls.server.port())).unwrap();
    let r = prober_trusting(&[&cert]).probe(&target(url), T).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some("tls: certificate not valid for 127.0.0.1")
    );
}

#[tokio::test]
async fn a_tls_override_with_another_ip_than_registered_is_unknown() {
    let cert = self_signed(&[HOST]);
    let tls = serve_tls(&cert, Behaviour::Status(200, vec![])).await;
    let mut t = tls_target(tls.server.port());
    t.dns_override = Some((
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        DnsOverrideMode::Tls,
    ));
    let r = prober_trusting(&[&cert]).probe(&t, T).await;
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert_eq!(tls.server.accepted(), 0);
}
