//! The router in-process on 127.0.0.1:0, real HTTP, over real SQLite files written by `Store`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck, TargetRef,
};
use heartbeat_dashboard::{AppState, Config, router};
use heartbeat_store::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: i64 = 1_699_999_200_000;

struct Server {
    addr: std::net::SocketAddr,
    now: Arc<AtomicI64>,
}

async fn serve(config: Config) -> Server {
    let now = Arc::new(AtomicI64::new(T));
    let clock = now.clone();
    let state = AppState::with_clock(config, move || clock.load(Ordering::SeqCst));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    Server { addr, now }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close` (the body is read to EOF).
async fn get(s: &Server, path: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers: head.to_owned(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn target(name: &str, kind: &str) -> TargetRef {
    TargetRef {
        name: name.into(),
        kind: kind.into(),
        url: if kind == "docker" {
            format!("docker:{name}")
        } else {
            format!("http://{name}.internal/")
        },
    }
}

const HOSTILE: &str = "</script><script>alert(\"x\")</script> & \\ \u{1} 'q'";

fn cycle(ts_ms: i64) -> CycleRecord {
    CycleRecord {
        started_at_ms: ts_ms,
        host: HostMetrics {
            cpu_percent: Some(12.5),
            ram_percent: Some(40.0),
            ram_used_mb: Some(100.0),
            disk_percent: Some(70.0),
            uptime_seconds: Some(1234.0),
            container_count: Some(4),
        },
        connectivity: Connectivity {
            internet_status: Some(true),
            ping_ms: Some(15.0),
        },
        worker_status: Some(200),
        worker_error: None,
        cycle_duration_ms: 20.0,
        checks: vec![
            TargetCheck {
                target: target("web", "http"),
                result: CheckResult::healthy(12.0, Some(200)),
            },
            TargetCheck {
                target: target("db", "docker"),
                result: CheckResult {
                    status: Status::Error,
                    status_code: Some(500),
                    latency_ms: Some(3.0),
                    error_message: Some(HOSTILE.into()),
                },
            },
        ],
    }
}

fn write(path: &std::path::Path, from: i64, n: i64) {
    let mut store = Store::open(path).unwrap();
    for i in 0..n {
        store.write_cycle(&cycle(from + i * 10_000)).unwrap();
    }
}

/// Every key path of a JSON value, arrays collapsed to `[]` (their first element's paths).
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.iter().find(|x| x.is_object()) {
                paths(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn live_has_every_field_of_the_replaced_system() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    write(&db, T - 30 * 60_000, 180);
    let s = serve(Config::new(&db)).await;
    let r = get(&s, "/api/live").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let v = r.json();
    let mut got = Vec::new();
    paths(&v, "", &mut got);
    // The replaced system's response (reference.md §1), key path by key path.
    let required = [
        "last_updated",
        "system",
        "system.cpu",
        "system.ram",
        "system.disk",
        "system.containers",
        "system.uptime",
        "monitor",
        "monitor.worker_status",
        "monitor.uptime",
        "monitor.uptime.1h",
        "monitor.distribution",
        "monitor.distribution[].value",
        "monitor.distribution[].name",
        "monitor.stats",
        "monitor.stats.max",
        "monitor.stats.avg",
        "monitor.stats.min",
        "monitor.stats.jitter",
        "network",
        "network.internet_status",
        "network.uptime",
        "network.uptime_counts",
        "network.uptime_counts.success",
        "network.uptime_counts.failure",
        "network.stats",
        "network.stats.max",
        "network.stats.avg",
        "network.stats.min",
        "network.stats.jitter",
        "services",
        "services[].name",
        "services[].service_type",
        "services[].status",
        "services[].status_code",
        "services[].latency",
        "services[].error",
        "services[].stats",
        "services[].stats.uptime",
        "services[].stats.success",
        "services[].stats.failure",
        "services[].stats.distribution",
        "services[].stats.distribution.healthy",
        "services[].stats.max",
        "services[].stats.avg",
        "services[].stats.min",
        "services[].stats.jitter",
        "history",
        "history.times",
        "history.system",
        "history.system.cpu",
        "history.system.ram",
        "history.system.disk",
        "history.cycle_duration",
        "history.ping",
        "history.services",
        "history.services.web",
        "history.services.db",
    ];
    for p in required {
        assert!(got.iter().any(|g| g == p), "missing {p}; got {got:?}");
    }
    // Values.
    assert_eq!(v["system"]["cpu"], 12.5);
    assert_eq!(v["system"]["containers"], 4);
    assert_eq!(v["monitor"]["worker_status"], 200);
    assert_eq!(v["monitor"]["uptime"]["1h"], 100.0);
    assert_eq!(v["monitor"]["distribution"][0]["name"], "200");
    assert_eq!(v["monitor"]["distribution"][0]["value"], 180);
    assert_eq!(v["network"]["internet_status"], 1);
    assert_eq!(v["network"]["uptime_counts"]["success"], 180);
    assert_eq!(v["bucket_seconds"], 120);
    let times = v["history"]["times"].as_array().unwrap();
    assert_eq!(times.len(), 31, "1 h / 30 points, widened to whole buckets");
    assert_eq!(times[0], "2023-11-14T21:00:00+00:00");
    // 30 minutes of data in a 1 h window: the first half of the buckets is null.
    let web = v["history"]["services"]["web"].as_array().unwrap();
    assert_eq!(web.len(), 31);
    assert!(web[..15].iter().all(Value::is_null), "{web:?}");
    assert_eq!(web[20], 12.0);
    let services = v["services"].as_array().unwrap();
    let db_svc = services.iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!(db_svc["service_type"], "docker");
    assert_eq!(db_svc["status"], "error");
    assert_eq!(db_svc["status_code"], 500);
    assert_eq!(
        db_svc["error"], HOSTILE,
        "hostile text is a plain JSON string"
    );
    assert_eq!(db_svc["stats"]["uptime"], 0.0);
    assert_eq!(db_svc["stats"]["distribution"]["error"], 180);
    assert!(
        !r.body.contains("http://web.internal"),
        "URLs are never returned"
    );
    assert!(
        r.body.contains("\\u0001"),
        "control characters are escaped by JSON"
    );
    assert!(v["coverage"]["ratio"].as_f64().unwrap() > 0.45);
}

#[tokio::test]
async fn bad_range_is_400_listing_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    write(&db, T - 60_000, 3);
    let s = serve(Config::new(&db)).await;
    for path in [
        "/api/live?range=2d",
        "/api/services/web?range=%3Cscript%3E",
        "/badge/web/uptime.svg?range=x",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 400, "{path}");
        let v = r.json();
        assert_eq!(v["valid_ranges"].as_array().unwrap().len(), 8);
        assert!(
            v["valid_ranges"]
                .as_array()
                .unwrap()
                .contains(&Value::from("30d"))
        );
    }
    for range in ["live", "1h", "3h", "6h", "12h", "24h", "7d", "30d"] {
        let r = get(&s, &format!("/api/live?range={range}")).await;
        assert_eq!(r.status, 200, "{range}: {}", r.body);
        assert!(r.json()["monitor"]["uptime"].get(range).is_some());
    }
}

#[tokio::test]
async fn unknown_target_is_404_for_api_and_badges() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    write(&db, T - 60_000, 3);
    let s = serve(Config::new(&db)).await;
    for path in [
        "/api/services/nope",
        "/badge/nope/status.svg",
        "/badge/nope/uptime.svg",
        "/badge/nope/response-time.svg",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string());
    }
    let r = get(&s, "/api/services/db?range=live").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["distribution"]["error"], 3);
    assert_eq!(v["errors"][0]["message"], HOSTILE);
    assert_eq!(v["errors"][0]["count"], 3);
    assert_eq!(v["series"].as_array().unwrap().len(), 31);
    assert!(v["series"][0]["avg"].is_null());
}

#[tokio::test]
async fn no_data_yet_until_the_store_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("later/metrics.db");
    let s = serve(Config::new(&db)).await;
    for path in ["/api/live", "/api/services/web", "/badge/web/status.svg"] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json()["error"], "no data yet");
    }
    let h = get(&s, "/health").await;
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "no data yet");
    assert!(!db.exists(), "the dashboard never creates the database");

    // The writer creates it; the same router recovers on its own.
    let mut store = Store::open(&db).unwrap();
    let r = get(&s, "/api/live").await;
    assert_eq!(r.status, 503, "schema but no cycle yet: {}", r.body);
    assert_eq!(r.json()["error"], "no data yet");
    store.write_cycle(&cycle(T - 5_000)).unwrap();
    // Still writing (the writer is open): reads see the committed cycle.
    let r = get(&s, "/api/live?range=live").await;
    assert_eq!(r.json()["services"].as_array().unwrap().len(), 2);
    drop(store); // clean close: the WAL persists, the reader still opens
    let r = get(&s, "/api/live?range=live").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["last_updated_ms"], T - 5_000);
}

#[tokio::test]
async fn health_is_ok_when_fresh_and_503_when_stale() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    write(&db, T - 10_000, 1);
    let mut config = Config::new(&db);
    config.stale_after = std::time::Duration::from_secs(60);
    let s = serve(config).await;
    let r = get(&s, "/health").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["last_cycle_ms"], T - 10_000);
    assert_eq!(v["age_s"], 10.0);

    s.now.store(T + 61_000, Ordering::SeqCst);
    let r = get(&s, "/health").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "stale");
}

#[tokio::test]
async fn badges_escape_names_and_use_the_palette() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    {
        let mut store = Store::open(&db).unwrap();
        let mut c = cycle(T - 10_000);
        c.checks.push(TargetCheck {
            target: target("<script>&\"", "http"),
            result: CheckResult::failed(Status::Timeout, "timeout"),
        });
        store.write_cycle(&c).unwrap();
    }
    let s = serve(Config::new(&db)).await;
    let r = get(&s, "/badge/%3Cscript%3E%26%22/status.svg").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("image/svg+xml")
    );
    assert!(!r.body.contains("<script>"), "{}", r.body);
    assert!(r.body.contains("&lt;script&gt;&amp;&quot;"));
    assert!(r.body.contains("#eab308"), "timeout is yellow");

    let r = get(&s, "/badge/web/status.svg").await;
    assert!(r.body.contains("#22c55e") && r.body.contains(">healthy<"));
    let r = get(&s, "/badge/db/status.svg").await;
    assert!(r.body.contains("#f97316"));
    let r = get(&s, "/badge/web/uptime.svg?range=24h").await;
    assert!(r.body.contains("100.00%"));
    let r = get(&s, "/badge/web/response-time.svg").await;
    assert!(r.body.contains("12 ms"));
}

#[tokio::test]
async fn openapi_and_frontend_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Config::new(dir.path().join("none.db"))).await;
    let r = get(&s, "/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["openapi"], "3.1.0");
    for p in [
        "/health",
        "/api/live",
        "/api/services/{name}",
        "/badge/{name}/status.svg",
        "/badge/{name}/uptime.svg",
        "/badge/{name}/response-time.svg",
    ] {
        assert!(v["paths"].get(p).is_some(), "{p}");
    }
    let r = get(&s, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    for name in heartbeat_dashboard::embedded_assets() {
        let r = get(&s, &format!("/assets/{name}")).await;
        assert_eq!(r.status, 200, "{name}");
    }
    assert_eq!(get(&s, "/assets/nope.js").await.status, 404);
    assert_eq!(get(&s, "/nope").await.status, 404);
}

#[tokio::test]
async fn push_targets_show_their_type_and_progress_but_never_a_token() {
    use heartbeat_store::{PushDefinition, PushOp, PushSource, PushTask};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let mut store = Store::open(&db).unwrap();
    let token_hash = [7u8; 32];
    store
        .push_sync_config(
            &[PushDefinition {
                service_id: "nightly".into(),
                name: "nightly".into(),
                source: PushSource::Config,
                token_sha256: token_hash,
                period_ms: 60_000,
                grace_ms: 60_000,
                schedule: None,
                metadata: None,
                created_at_ms: 0,
            }],
            T - 120_000,
        )
        .unwrap();
    let results = store
        .push_apply(&[PushOp::Task(PushTask {
            task_id: "t1".into(),
            service_id: "nightly".into(),
            task_name: "import".into(),
            description: None,
            total_steps: 8,
            current_step: 3,
            status: "running".into(),
            message: Some("3/8".into()),
            metadata: None,
            started_at_ms: T - 30_000,
            updated_at_ms: T - 20_000,
            completed_at_ms: None,
        })])
        .unwrap();
    assert_eq!(results, [Ok(())]);
    let mut c = cycle(T - 10_000);
    c.checks.push(TargetCheck {
        target: TargetRef {
            name: "nightly".into(),
            kind: "push".into(),
            url: "push://".into(),
        },
        result: CheckResult::failed(Status::Timeout, "late: last ping 75 s ago, period 60 s"),
    });
    store.write_cycle(&c).unwrap();
    drop(store);

    let s = serve(Config::new(&db)).await;
    let live = get(&s, "/api/live?range=live").await.json();
    let svc = live["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "nightly")
        .unwrap()
        .clone();
    assert_eq!(svc["service_type"], "push");
    assert_eq!(svc["status"], "timeout");
    let detail = get(&s, "/api/services/nightly?range=live").await;
    assert_eq!(detail.status, 200);
    let v = detail.json();
    assert_eq!(v["progress"]["percentage"], 37.5);
    assert_eq!(v["progress"]["task_name"], "import");
    assert!(!detail.body.contains(&hex_of(&token_hash)) && !detail.body.contains("token"));
    // Other targets carry no progress.
    assert!(get(&s, "/api/services/web?range=live").await.json()["progress"].is_null());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
