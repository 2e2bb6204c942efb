//! Browser end-to-end test of the dashboard frontend.
//!
//! Starts the real `heartbeat-dashboard` binary on a temporary SQLite database, drives Debian's
//! headless Chromium through chromedriver (WebDriver, via `fantoccini`) and checks what a user
//! sees: values, status colours, gaps in charts, escaping, theme, languages and live updates.
//! Screenshots go to `target/screenshots/`.
//!
//! Without `chromedriver`/`chromium` it prints `skipping: <reason>` and passes, unless
//! `HEARTBEAT_REQUIRE_BROWSER=1` (CI), where their absence fails the test.
//! `CHROMEDRIVER` and `CHROME` override the executables' paths.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use fantoccini::{Client, Locator};
use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck, TargetRef,
};
use heartbeat_store::Store;
use heartbeat_testkit::browser::{Browser, js, wait_js};
use heartbeat_testkit::{Proc, free_port, wait_port};
use serde_json::json;

const HOSTILE: &str = "<img src=x onerror=alert(1)>";
const STEP_MS: i64 = 10_000;

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(d.as_millis()).expect("ms")
}

fn target(name: &str, kind: &str) -> TargetRef {
    TargetRef {
        name: name.to_owned(),
        kind: kind.to_owned(),
        url: format!("http://{name}.internal/health"),
    }
}

fn check(name: &str, kind: &str, result: CheckResult) -> TargetCheck {
    TargetCheck {
        target: target(name, kind),
        result,
    }
}

/// One cycle. `i` is the cycle's index (0 = oldest); `web` is absent from cycles 12..=17
/// (a gap of six buckets); `flaky_status` is flaky's status in this cycle.
fn cycle(ts_ms: i64, i: usize, last: bool, flaky_status: Status) -> CycleRecord {
    let mut checks = Vec::new();
    if !(12..=17).contains(&i) {
        let latency = if last { 42.5 } else { 30.0 + (i % 7) as f64 };
        checks.push(check(
            "web",
            "http",
            CheckResult::healthy(latency, Some(200)),
        ));
    }
    checks.push(check(
        "db",
        "docker",
        CheckResult::failed(Status::Down, "Container state: exited"),
    ));
    checks.push(check(
        "evil",
        "http",
        CheckResult {
            status: Status::Error,
            status_code: Some(500),
            latency_ms: Some(12.0),
            error_message: Some(HOSTILE.to_owned()),
        },
    ));
    let flaky = if flaky_status == Status::Healthy {
        CheckResult::healthy(20.0, Some(204))
    } else {
        CheckResult::failed(flaky_status, "Timeout")
    };
    checks.push(check("flaky", "http", flaky));
    CycleRecord {
        started_at_ms: ts_ms,
        host: HostMetrics {
            cpu_percent: Some(12.5),
            ram_percent: Some(45.0),
            ram_used_mb: Some(2048.0),
            disk_percent: Some(67.0),
            uptime_seconds: Some(5.0 * 3600.0),
            container_count: Some(3),
        },
        connectivity: Connectivity {
            internet_status: Some(true),
            ping_ms: Some(20.0),
        },
        worker_status: Some(200),
        worker_error: None,
        cycle_duration_ms: 8.0 + (i % 3) as f64,
        checks,
    }
}

/// The real dashboard binary on a free port over `db`, once it listens.
fn start_dashboard(db: &Path) -> (u16, Proc) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_heartbeat-dashboard"))
        .env("DASHBOARD_ADDR", format!("127.0.0.1:{port}"))
        .env("SQLITE_DB_PATH", db)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start heartbeat-dashboard");
    wait_port(port, "heartbeat-dashboard", &mut child);
    (port, Proc(child))
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };

    // The database exists (schema only) before the dashboard starts: it must say "waiting".
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("metrics.db");
    let mut store = Store::open(&db).expect("open store");

    let (port, _dashboard) = start_dashboard(&db);

    let base = format!("http://127.0.0.1:{port}/");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    browser
        .run(move |c| async move { checks(&c, &base, &shots, &mut store).await })
        .await;
}

async fn checks(c: &Client, base: &str, shots: &Path, store: &mut Store) {
    c.set_window_size(1280, 800).await.expect("window size");
    c.goto(base).await.expect("open dashboard");

    // 1. Before any cycle: a friendly waiting state, and the page keeps polling.
    wait_js(
        c,
        "the waiting-for-data state",
        "return !document.getElementById('waiting').hidden",
    )
    .await;

    // 2. Thirty cycles over the last five minutes (the "live" range), `web` with a gap.
    let now = now_ms();
    for i in 0..30usize {
        let ts = now - (29 - i as i64) * STEP_MS;
        store
            .write_cycle(&cycle(ts, i, i == 29, Status::Healthy))
            .expect("write cycle");
    }
    wait_js(
        c,
        "targets to render",
        "return document.querySelectorAll('[data-target] .target-status').length >= 4",
    )
    .await;
    assert_eq!(
        js(c, "return document.getElementById('waiting').hidden").await,
        json!(true)
    );

    // Values.
    let latency = wait_js(
        c,
        "web's latency",
        "const e = document.querySelector('[data-target=\"web\"] .target-latency'); return e && /42[.,]5/.test(e.textContent) && e.textContent",
    )
    .await;
    assert!(
        latency.as_str().is_some_and(|s| s.contains("ms")),
        "{latency}"
    );
    let cpu = js(
        c,
        "return document.querySelector('[data-metric=\"cpu\"] dd').textContent",
    )
    .await;
    assert!(
        cpu.as_str().is_some_and(|s| s.contains("12.5")),
        "cpu: {cpu}"
    );
    let containers = js(
        c,
        "return document.querySelector('[data-metric=\"containers\"] dd').textContent",
    )
    .await;
    assert_eq!(containers, json!("3"));
    let worker = js(
        c,
        "return document.getElementById('worker-status').dataset.status",
    )
    .await;
    assert_eq!(worker, json!("healthy"), "worker_status 200 is ok");

    // Status colours (computed styles, exactly the palette).
    let colour = |name: &str| {
        format!(
            "const e = document.querySelector('[data-target=\"{name}\"] .target-status'); \
             return e && [e.dataset.status, getComputedStyle(e).backgroundColor]"
        )
    };
    assert_eq!(
        js(c, &colour("db")).await,
        json!(["down", "rgb(239, 68, 68)"])
    );
    assert_eq!(
        js(c, &colour("web")).await,
        json!(["healthy", "rgb(34, 197, 94)"])
    );
    assert_eq!(
        js(c, &colour("evil")).await,
        json!(["error", "rgb(249, 115, 22)"])
    );
    assert!(js(c, "return document.querySelector('[data-target=\"db\"].status-down, [data-target=\"db\"] .status-down') !== null").await == json!(true));

    // A missing bucket is a gap: web's chart has at least two separate line segments.
    let segs = wait_js(
        c,
        "web's chart with a gap",
        "const n = document.querySelectorAll('[data-target=\"web\"] .series-segment').length; return n >= 2 && n",
    )
    .await;
    assert!(segs.as_u64().is_some_and(|n| n >= 2), "segments: {segs}");

    // Hostile error text is shown literally; no element was injected.
    let err = js(
        c,
        "return document.querySelector('[data-target=\"evil\"] .target-error').textContent",
    )
    .await;
    assert_eq!(err, json!(HOSTILE));
    let imgs = js(
        c,
        "return document.querySelectorAll('#targets img, [data-target] img').length",
    )
    .await;
    assert_eq!(imgs, json!(0), "an <img> was injected from an error text");

    screenshot(c, shots, "dashboard-desktop.png").await;

    // Table view shows the same hooks.
    c.find(Locator::Css("#view-toggle [data-view=\"table\"]"))
        .await
        .expect("table toggle")
        .click()
        .await
        .expect("click table");
    wait_js(c, "table view", "return document.querySelector('table.target-table tr[data-target=\"db\"] .target-status[data-status=\"down\"]') !== null").await;
    assert_eq!(
        js(c, "return document.querySelector('#view-toggle [data-view=\"table\"]').getAttribute('aria-pressed')").await,
        json!("true")
    );
    screenshot(c, shots, "dashboard-desktop-table.png").await;
    c.find(Locator::Css("#view-toggle [data-view=\"grid\"]"))
        .await
        .expect("grid toggle")
        .click()
        .await
        .expect("click grid");

    // Theme: the switch flips data-theme and the background, and is remembered.
    let before = js(c, "return [document.documentElement.dataset.theme, getComputedStyle(document.body).backgroundColor]").await;
    c.find(Locator::Id("theme-toggle"))
        .await
        .expect("theme toggle")
        .click()
        .await
        .expect("click theme");
    let after = js(c, "return [document.documentElement.dataset.theme, getComputedStyle(document.body).backgroundColor]").await;
    assert_ne!(before[0], after[0], "data-theme did not change");
    assert_ne!(before[1], after[1], "background colour did not change");
    assert!(
        after[0] == json!("dark") || after[0] == json!("light"),
        "{after}"
    );
    screenshot(
        c,
        shots,
        &format!(
            "dashboard-desktop-{}.png",
            after[0].as_str().unwrap_or("theme")
        ),
    )
    .await;
    c.refresh().await.expect("reload");
    wait_js(c, "the remembered theme", &format!("return document.documentElement.dataset.theme === {} && document.querySelector('[data-target]') !== null", after[0])).await;

    // Languages: Spanish and Thai change visible labels and <html lang>.
    for (code, title, down) in [
        ("es", "Servicios", "Caído"),
        ("th", "บริการที่ตรวจสอบ", "ล่ม"),
        ("en", "Targets", "Down"),
    ] {
        c.find(Locator::Id("lang-select"))
            .await
            .expect("lang select")
            .select_by_value(code)
            .await
            .expect("select language");
        wait_js(
            c,
            &format!("language {code}"),
            &format!(
                "return document.documentElement.lang === '{code}' \
                 && document.getElementById('targets-title').textContent === '{title}' \
                 && document.querySelector('[data-target=\"db\"] .target-status').textContent === '{down}'"
            ),
        )
        .await;
        if code == "th" {
            screenshot(c, shots, "dashboard-desktop-th.png").await;
        }
    }

    // Detail view (hash route): history chart with the gap, incidents/errors panels, badge.
    c.goto(&format!("{base}#/service/web"))
        .await
        .expect("detail route");
    wait_js(
        c,
        "detail view",
        "return !document.getElementById('detail').hidden && document.querySelectorAll('#detail-chart .series-segment').length >= 2",
    )
    .await;
    let badge = js(c, "return [...document.querySelectorAll('#detail input.snippet')].map(i => i.value).join('\\n')").await;
    assert!(
        badge
            .as_str()
            .is_some_and(|s| s.contains("/badge/web/status.svg")),
        "{badge}"
    );
    screenshot(c, shots, "dashboard-detail.png").await;
    c.goto(&format!("{base}#/")).await.expect("overview route");
    wait_js(
        c,
        "overview again",
        "return !document.getElementById('overview').hidden",
    )
    .await;

    // Phone width: no horizontal scroll.
    c.set_window_size(390, 844).await.expect("phone size");
    wait_js(
        c,
        "no horizontal scroll at phone width",
        "return window.innerWidth <= 420 && document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await;
    screenshot(c, shots, "dashboard-phone.png").await;
    c.set_window_size(1280, 800).await.expect("desktop size");

    // Live update: a new cycle turns flaky to timeout and #last-updated changes.
    assert_eq!(js(c, &colour("flaky")).await[0], json!("healthy"));
    let stamp = js(
        c,
        "return document.getElementById('last-updated').textContent",
    )
    .await;
    store
        .write_cycle(&cycle(now_ms(), 30, true, Status::Timeout))
        .expect("write new cycle");
    wait_js(
        c,
        "flaky to turn timeout",
        "const e = document.querySelector('[data-target=\"flaky\"] .target-status'); return e && e.dataset.status === 'timeout'",
    )
    .await;
    assert_eq!(
        js(c, &colour("flaky")).await,
        json!(["timeout", "rgb(234, 179, 8)"])
    );
    let stamp2 = js(
        c,
        "return document.getElementById('last-updated').textContent",
    )
    .await;
    assert_ne!(stamp, stamp2, "#last-updated did not change");
}

/// The detail view's incident table: a closed maintenance incident (tagged "Maintenance")
/// and an ongoing outage (tagged "Ongoing"), with hostile error texts shown as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_view_shows_incidents_and_maintenance() {
    let Some(browser) = Browser::start().await else {
        return;
    };

    // Ten minutes of cycles; `db` is down throughout. Incidents of `db`, all within the
    // default "live" range (the last 5 minutes): a two-minute maintenance window (closed), and
    // an outage opened 90 s ago (still open).
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("metrics.db");
    let mut store = Store::open(&db).expect("open store");
    let now = now_ms();
    let open = |started_at_ms: i64, cause: &str, err: &str, maintenance: bool| {
        heartbeat_store::IncidentChange::Open {
            item: "db".into(),
            started_at_ms,
            cause: cause.into(),
            first_error: Some(err.into()),
            last_error: None,
            maintenance,
        }
    };
    let close = |ended_at_ms: i64| heartbeat_store::IncidentChange::Close {
        item: "db".into(),
        ended_at_ms,
        last_error: Some("back after maintenance".into()),
    };
    for i in 0..60usize {
        let ts = now - (59 - i as i64) * STEP_MS;
        let mut effects = heartbeat_store::CycleEffects::default();
        match i {
            32 => effects
                .incidents
                .push(open(ts, "down", "planned restart", true)),
            44 => effects.incidents.push(close(ts)),
            50 => effects.incidents.push(open(ts, "down", HOSTILE, false)),
            _ => {}
        }
        store
            .write_cycle_with(&cycle(ts, i, i == 59, Status::Healthy), &effects)
            .expect("write cycle");
    }
    drop(store);

    let (port, _dashboard) = start_dashboard(&db);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let url = format!("http://127.0.0.1:{port}/#/service/db");
    browser
        .run(move |c| async move {
            c.set_window_size(1280, 900).await.expect("window size");
            c.goto(&url).await.expect("open detail view");
            incident_checks(&c, &shots).await;
        })
        .await;
}

async fn incident_checks(c: &Client, shots: &Path) {
    // Rows newest first: the ongoing outage, then the maintenance window.
    let rows = wait_js(
        c,
        "two incident rows in the detail view",
        "const r = [...document.querySelectorAll('#detail table.plain tbody tr')]
           .filter((tr) => tr.children.length === 6);
         return r.length === 2 && r.map((tr) => ({
           ongoing: tr.classList.contains('ongoing'),
           tags: [...tr.querySelectorAll('.tag')].map((t) => t.textContent),
           cause: tr.children[3].textContent,
           first: tr.children[4].textContent,
           last: tr.children[5].textContent,
         }));",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            {"ongoing": true, "tags": ["Ongoing"], "cause": "Down", "first": HOSTILE, "last": ""},
            {"ongoing": false, "tags": ["Maintenance"], "cause": "Down",
             "first": "planned restart", "last": "back after maintenance"},
        ])
    );
    // The hostile text stayed text: no element was created from it anywhere on the page
    // (the detail view's own <img> is the badge preview).
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('[onerror], img[src=\"x\"]').length"
        )
        .await,
        json!(0)
    );
    // The closed incident's duration is its two minutes.
    let duration = js(
        c,
        "return [...document.querySelectorAll('#detail table.plain tbody tr.ongoing ~ tr td.num')].map((t) => t.textContent)",
    )
    .await;
    assert_eq!(
        duration,
        json!(["2m 0s"]),
        "maintenance lasted 12 cycles of 10 s"
    );
    js(
        c,
        "document.querySelector('#detail table.plain').scrollIntoView(); return true",
    )
    .await;
    screenshot(c, shots, "dashboard-detail-incidents.png").await;
}
