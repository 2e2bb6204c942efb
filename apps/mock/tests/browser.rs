//! The controller UI in headless Chromium: a click on a mode button changes what the UI
//! shows *and* what the simulated service really does; a push job is switched the same way.
//!
//! Skips with `skipping: <reason>` without chromium/chromedriver unless
//! `HEARTBEAT_REQUIRE_BROWSER=1` (see `heartbeat_testkit::browser`).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, Locator};
use heartbeat_testkit::browser::{Browser, js, wait_js};
use serde_json::json;
use support::{Api, fresh_client, poll, start_mock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_ui_toggles_a_service_and_a_job() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = start_mock().await;
    let api = Api::new(&mock);
    let addr = api.create("api").await;
    // The job pings the simulated service itself, which answers 200 to any path.
    let (status, v) = api
        .send(
            "POST",
            "/api/jobs",
            Some(json!({"name": "backup", "url": format!("http://{addr}/ping/tok-0123456789abcdef"), "interval_s": 0.2})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let base = mock.url();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser
        .run(move |c| async move { checks(&c, &base, addr, &shots).await })
        .await;
    drop(mock);
}

/// Finds and clicks `css`. The page re-renders its tables every second, so an element
/// found just before a refresh can be stale by the click: then find it again.
async fn click(c: &Client, css: &str) {
    let deadline = std::time::Instant::now() + heartbeat_testkit::browser::WAIT;
    loop {
        let result = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await.map(drop),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => assert!(std::time::Instant::now() < deadline, "click {css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

async fn checks(c: &Client, base: &str, addr: SocketAddr, shots: &Path) {
    let http = fresh_client(Duration::from_secs(2));
    c.goto(base).await.unwrap();
    wait_js(
        c,
        "the api row, healthy",
        "const r = document.querySelector('tr[data-service=\"api\"] .service-mode'); return r && r.textContent === 'healthy'",
    )
    .await;
    let resp = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // Down: the UI says closed, and the port really refuses connections.
    click(c, "tr[data-service=\"api\"] button[data-mode=\"down\"]").await;
    wait_js(
        c,
        "the api row to show down (closed)",
        "const r = document.querySelector('tr[data-service=\"api\"] .service-mode'); return r && r.textContent === 'down (closed)'",
    )
    .await;
    assert_eq!(
        js(c, "return document.querySelector('tr[data-service=\"api\"] button[data-mode=\"down\"]').className").await,
        json!("on")
    );
    poll("connections refused", Duration::from_secs(5), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots.join("mock-controller.png"), png).unwrap();

    // Error 503 with the code typed into the header's field.
    let code = c.find(Locator::Id("p-code")).await.unwrap();
    code.clear().await.unwrap();
    code.send_keys("418").await.unwrap();
    click(c, "tr[data-service=\"api\"] button[data-mode=\"error\"]").await;
    wait_js(
        c,
        "the api row to show HTTP 418",
        "const r = document.querySelector('tr[data-service=\"api\"] .service-mode'); return r && r.textContent.includes('418') && !r.textContent.includes('closed')",
    )
    .await;
    let status = poll(
        "HTTP 418 from the service",
        Duration::from_secs(5),
        || async {
            match http.get(format!("http://{addr}/")).send().await {
                Ok(r) if r.status() == 418 => Some(r.status()),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(status, 418);

    // Back to healthy.
    click(c, "tr[data-service=\"api\"] button[data-mode=\"healthy\"]").await;
    poll("HTTP 200 again", Duration::from_secs(5), || async {
        match http.get(format!("http://{addr}/")).send().await {
            Ok(r) if r.status() == 200 => Some(()),
            _ => None,
        }
    })
    .await;

    // The push job: silent in the UI, and its run counter stops.
    wait_js(
        c,
        "the backup job row with runs",
        "const r = document.querySelector('tr[data-job=\"backup\"] .job-runs'); return r && parseInt(r.textContent, 10) > 0",
    )
    .await;
    click(
        c,
        "tr[data-job=\"backup\"] button[data-job-mode=\"silent\"]",
    )
    .await;
    wait_js(
        c,
        "the job to show silent",
        "const r = document.querySelector('tr[data-job=\"backup\"] .job-mode'); return r && r.textContent === 'silent'",
    )
    .await;
    click(c, "tr[data-job=\"backup\"] button[data-job-mode=\"fail\"]").await;
    wait_js(
        c,
        "the job's last result to be a failure report",
        "const r = document.querySelector('tr[data-job=\"backup\"] .job-last'); return r && r.textContent.startsWith('fail -> 200')",
    )
    .await;
    // (The request log does show the path, token included: the simulated service that
    // receives these pings logs every request it gets; an agent would not.)
    let jobs = js(c, "return document.getElementById('jobs').textContent").await;
    assert!(
        jobs.as_str().unwrap().contains("/ping/<redacted>"),
        "{jobs}"
    );
    assert!(
        !jobs.as_str().unwrap().contains("tok-0123456789abcdef"),
        "the jobs table shows the job's token"
    );
}
