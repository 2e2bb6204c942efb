//! End-to-end tests of push heartbeats: the real agent binary, its real listener on
//! loopback, real SQLite files. Requests are shaped like the ones curl-based tools send.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heartbeat_core::Status;
use heartbeat_store::{PushEventKind, ReadStore};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests-0001";
const TOKEN: &str = "backup-token-for-tests-0001";

/// An agent whose push listener port is known and whose log goes to a file.
struct PushAgent {
    child: Child,
    dir: tempfile::TempDir,
    db: PathBuf,
    log: PathBuf,
    base: String,
    vars: Vec<(String, String)>,
}

use heartbeat_testkit::free_port;

impl PushAgent {
    fn start(vars: &[(&str, &str)]) -> PushAgent {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PushAgent::spawn(tempfile::tempdir().unwrap(), vars)
    }

    fn spawn(dir: tempfile::TempDir, vars: Vec<(String, String)>) -> PushAgent {
        let db = dir.path().join("data/metrics.db");
        let port = free_port();
        let fixed = [
            // The log is read by the secrets test.
            ("RUST_LOG", "debug"),
            ("LOOP_INTERVAL_SECONDS", "0.2"),
            ("ADMIN_TOKEN", ADMIN),
            ("SERVICE_URL_backup", "push://"),
            ("SERVICE_TOKEN_backup", TOKEN),
        ];
        let env = fixed
            .into_iter()
            .chain(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let log = dir.path().join(format!("agent-{port}.log"));
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_heartbeat-agent"));
        let addr = format!("127.0.0.1:{port}");
        let child = heartbeat_testkit::agent::agent_command(bin, dir.path(), &db, &addr, env)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut agent = PushAgent {
            child,
            dir,
            db,
            log,
            base: format!("http://127.0.0.1:{port}"),
            vars,
        };
        agent.wait_healthy();
        agent
    }

    /// kill -9, then a new agent on the same database (and a new port).
    fn kill_and_restart(mut self) -> PushAgent {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let vars = std::mem::take(&mut self.vars);
        PushAgent::spawn(dir, vars)
    }

    fn wait_healthy(&mut self) {
        let give_up = Instant::now() + Duration::from_secs(20);
        let rt = support::runtime();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early: {status}: {}", self.log_text());
            }
            let ok = rt.block_on(async {
                reqwest::get(format!("{}/health", self.base))
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            });
            if ok {
                return;
            }
            assert!(Instant::now() < give_up, "agent never became healthy");
            std::thread::sleep(Duration::from_millis(20)); // polling interval
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the stored checks of `name` until one satisfies `done`.
    fn wait_check(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&heartbeat_core::CheckResult) -> bool,
    ) -> heartbeat_core::CheckResult {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(store) = ReadStore::open(&self.db)
                && let Ok(checks) = store.target_checks(name, 0, i64::MAX)
                && let Some(c) = checks.iter().rev().find(|c| done(&c.result))
            {
                return c.result.clone();
            }
            assert!(Instant::now() < give_up, "{name}: never {what}");
            std::thread::sleep(Duration::from_millis(20)); // polling interval
        }
    }

    fn latest_check(&self, name: &str) -> Option<heartbeat_core::CheckResult> {
        let store = ReadStore::open(&self.db).ok()?;
        store
            .target_checks(name, 0, i64::MAX)
            .ok()?
            .last()
            .map(|c| c.result.clone())
    }
}

impl Drop for PushAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that looks like curl on the wire: its User-Agent and `Accept: */*`.
fn curl() -> Client {
    Client::builder()
        .user_agent("curl/8.14.1")
        .no_proxy()
        .build()
        .unwrap()
}

async fn send(
    c: &Client,
    method: Method,
    url: String,
    body: Option<&str>,
    bearer: Option<&str>,
) -> (StatusCode, String) {
    let mut req = c.request(method, url).header("Accept", "*/*");
    if let Some(t) = bearer {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        // curl --data-raw sends this content type.
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(b.to_owned());
    }
    let r = req.send().await.unwrap();
    let code = r.status();
    (code, r.text().await.unwrap())
}

/// A plain `curl <url>`.
async fn get(c: &Client, url: String) -> (StatusCode, String) {
    send(c, Method::GET, url, None, None).await
}

async fn api(
    c: &Client,
    method: Method,
    url: String,
    body: Option<Value>,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = c.request(method, url);
    if let Some(t) = bearer {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let code = r.status();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends a request head declaring a body of `declared` bytes, sends none of it, and
/// returns the status line of the answer (or what went wrong while waiting for it).
fn status_without_sending_the_body(base: &str, path: &str, declared: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // Long enough for a loaded machine; a server that waits for the body never answers.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) => line.trim_end().to_owned(),
        Err(e) => format!("no answer: {e}"),
    }
}

#[test]
fn unknown_tokens_are_refused_before_their_bodies_are_read() {
    let agent = PushAgent::start(&[("PUSH_BODY_LIMIT", "65536")]);
    let base = &agent.base;
    // Made-up tokens on every token-carrying route: answered at once, the declared
    // (allowed) 60 000 bytes never read, so a flood of them buffers nothing.
    let bogus = "q".repeat(43);
    for path in [
        format!("/ping/{bogus}"),
        format!("/ping/{bogus}/fail"),
        format!("/heartbeat/{bogus}"),
    ] {
        let status = status_without_sending_the_body(base, &path, 60_000);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
    }
    // Routes that take a bearer token: none given, likewise (401).
    for path in ["/api/services/nope/heartbeat", "/api/services"] {
        let status = status_without_sending_the_body(base, path, 60_000);
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
    }
    // A real token with a declared body over PUSH_BODY_LIMIT: 413 before it is sent.
    let status = status_without_sending_the_body(base, &format!("/ping/{TOKEN}/fail"), 70_000);
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    let store = ReadStore::open(&agent.db).unwrap();
    assert!(store.push_events("backup", 10).unwrap().is_empty());
}

#[test]
fn healthchecks_style_pings_pair_runs_keep_bodies_and_hide_unknown_tokens() {
    let rt = support::runtime();
    let mut agent = PushAgent::start(&[("PUSH_BODY_LIMIT", "65536")]);
    let c = curl();
    let base = agent.base.clone();
    rt.block_on(async {
        // curl -fsS -m 10 --retry 5 -o /dev/null https://.../ping/<token>
        let (code, body) = get(&c, format!("{base}/ping/{TOKEN}")).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "OK"));
        // curl -I (HEAD) with a run id, then the exit status with the output tail.
        let (code, body) = send(
            &c,
            Method::HEAD,
            format!("{base}/ping/{TOKEN}/start?rid=run-1"),
            None,
            None,
        )
        .await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
        let (code, _) = send(
            &c,
            Method::POST,
            format!("{base}/ping/{TOKEN}/0?rid=run-1"),
            Some("backup done\n"),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, _) = send(
            &c,
            Method::POST,
            format!("{base}/ping/{TOKEN}/log"),
            Some("halfway"),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let big = "x".repeat(20_000);
        let (code, _) = send(
            &c,
            Method::POST,
            format!("{base}/ping/{TOKEN}/3"),
            Some(&format!("disk full\n{big}")),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, body) = get(&c, format!("{base}/ping/{TOKEN}/256")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body.contains("exit status 0-255"), "{body}");
        // Larger than PUSH_BODY_LIMIT: refused, not stored.
        let huge = "y".repeat(70_000);
        let (code, _) = send(
            &c,
            Method::POST,
            format!("{base}/ping/{TOKEN}/fail"),
            Some(&huge),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);

        // Unknown tokens: one that exists nowhere and a registered-looking one answer alike.
        let a = get(&c, format!("{base}/ping/{}", "z".repeat(43))).await;
        let b = get(&c, format!("{base}/ping/{}x", TOKEN)).await;
        assert_eq!(a.0, StatusCode::NOT_FOUND);
        assert_eq!(a, b);
        let k = get(&c, format!("{base}/api/push/{}x?status=up", TOKEN)).await;
        assert_eq!(k.0, StatusCode::NOT_FOUND);
    });

    let failed = agent.wait_check("backup", "error", |r| r.status == Status::Error);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("exit status 3: disk full")
    );

    let store = ReadStore::open(&agent.db).unwrap();
    let events = store.push_events("backup", 10).unwrap();
    let kinds: Vec<PushEventKind> = events.iter().rev().map(|e| e.kind).collect();
    use PushEventKind::*;
    assert_eq!(kinds, [Success, Start, Success, Log, Fail]);
    let done = &events[2];
    assert_eq!(
        (done.exit_code, done.rid.as_deref()),
        (Some(0), Some("run-1"))
    );
    let duration = done.duration_ms.unwrap();
    assert!((0.0..10_000.0).contains(&duration), "{duration}");
    assert_eq!(done.body.as_deref(), Some("backup done\n"));
    let fail = &events[0];
    assert_eq!(
        fail.body.as_ref().unwrap().len(),
        10 * 1024,
        "kept truncated, not rejected"
    );
    assert_eq!(events[1].body.as_deref(), Some("halfway"));

    // SIGTERM with the listener up: gone within the 1 s budget.
    Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "still running");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn uptime_kuma_and_heartbeat_central_styles() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[]);
    let c = curl();
    let base = agent.base.clone();
    rt.block_on(async {
        let (code, body) = get(
            &c,
            format!("{base}/api/push/{TOKEN}?status=up&msg=OK&ping=42.5"),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"ok": true})
        );
        let (code, body) = get(&c, format!("{base}/api/push/{TOKEN}?status=sideways")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ok"], json!(false));
        assert!(v["msg"].as_str().unwrap().starts_with("status:"), "{v}");
        let (code, body) = get(&c, format!("{base}/api/push/{TOKEN}?ping=fast")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body.contains("ping"), "{body}");
    });
    let up = agent.wait_check("backup", "healthy with Kuma's latency", |r| {
        r.latency_ms == Some(42.5)
    });
    assert_eq!(up.status, Status::Healthy);

    rt.block_on(async {
        let (code, _) = get(
            &c,
            format!("{base}/api/push/{TOKEN}?status=down&msg=db%20unreachable"),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    });
    let down = agent.wait_check("backup", "error from Kuma down", |r| {
        r.status == Status::Error
    });
    assert_eq!(down.error_message.as_deref(), Some("down: db unreachable"));

    rt.block_on(async {
        // curl -X POST http://.../heartbeat/<uuid>
        let (code, body) = send(
            &c,
            Method::POST,
            format!("{base}/heartbeat/{TOKEN}"),
            Some(""),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"ok": true})
        );
        let (code, _) = send(
            &c,
            Method::POST,
            format!("{base}/heartbeat/{}", "q".repeat(30)),
            None,
            None,
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    });
    agent.wait_check("backup", "healthy again", |r| {
        r.status == Status::Healthy && r.latency_ms.is_none()
    });
}

#[test]
fn updates_racing_a_completion_never_reopen_the_task() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[("PUSH_RATE_LIMIT", "0")]);
    let c = Client::new();
    let svc = format!("{}/api/services", agent.base);
    rt.block_on(async {
        let (code, v) = api(
            &c,
            Method::POST,
            svc.clone(),
            Some(json!({"name": "racer"})),
            Some(ADMIN),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{v}");
        let id = v["service_id"].as_str().unwrap().to_owned();
        let token = v["token"].as_str().unwrap().to_owned();
        for round in 0..5 {
            let (code, t) = api(
                &c,
                Method::POST,
                format!("{svc}/{id}/progress"),
                Some(json!({"task_name": format!("import {round}"), "total_steps": 100})),
                Some(&token),
            )
            .await;
            assert_eq!(code, StatusCode::CREATED, "{t}");
            let task = format!("{svc}/{id}/progress/{}", t["task_id"].as_str().unwrap());
            // Updates sent together with the completion, from separate connections.
            let mut requests = tokio::task::JoinSet::new();
            for step in 0..20 {
                // The completion goes out in the middle of the updates.
                let url = if step == 10 {
                    format!("{task}/complete")
                } else {
                    task.clone()
                };
                let body = (step != 10).then(|| json!({"current_step": step, "status": "running"}));
                let (c, token) = (c.clone(), token.clone());
                requests
                    .spawn(async move { api(&c, Method::POST, url, body, Some(&token)).await.0 });
            }
            while let Some(code) = requests.join_next().await {
                let code = code.unwrap();
                assert!(
                    code == StatusCode::OK || code == StatusCode::CONFLICT,
                    "{code}"
                );
            }
            let (code, v) = api(&c, Method::GET, task.clone(), None, Some(&token)).await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(v["status"], "completed", "round {round}: {v}");
        }
    });
    // What is stored agrees with what was answered.
    let stored = ReadStore::open(&agent.db)
        .unwrap()
        .push_latest_task("racer")
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "completed", "{stored:?}");
}

#[test]
fn laneswap_api_registers_beats_tracks_progress_and_deletes() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[]);
    let c = Client::new();
    let base = agent.base.clone();
    let (id, token) = rt.block_on(async {
        let svc = format!("{base}/api/services");
        let (code, v) = api(&c, Method::POST, svc.clone(), Some(json!({"name": "worker"})), None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{v}");
        let (code, v) = api(&c, Method::POST, svc.clone(), Some(json!({"name": "worker"})), Some(TOKEN)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "a service token is not the admin token: {v}");
        let (code, v) = api(&c, Method::POST, svc.clone(), Some(json!({"name": "backup"})), Some(ADMIN)).await;
        assert_eq!(code, StatusCode::CONFLICT, "{v}");
        let (code, v) = api(&c, Method::POST, svc.clone(), Some(json!({"metadata": {}})), Some(ADMIN)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().contains("missing field `name`"), "{v}");
        let (code, v) = api(&c, Method::POST, svc.clone(), Some(json!({"name": "w", "period": -3})), Some(ADMIN)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("period:"), "{v}");

        let (code, v) = api(
            &c,
            Method::POST,
            svc.clone(),
            Some(json!({"name": "worker", "metadata": {"version": "1.0.0"}, "period": 30, "grace": 10})),
            Some(ADMIN),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{v}");
        for field in ["service_id", "name", "status", "created_at", "last_heartbeat", "metadata", "token"] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
        assert_eq!(v["status"], json!("unknown"));
        assert_eq!(v["last_heartbeat"], Value::Null);
        assert_eq!(v["metadata"], json!({"version": "1.0.0"}));
        let id = v["service_id"].as_str().unwrap().to_owned();
        let token = v["token"].as_str().unwrap().to_owned();

        let beat = format!("{svc}/{id}/heartbeat");
        let (code, v) = api(&c, Method::POST, beat.clone(), Some(json!({"status": "meh"})), Some(&token)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("status:"), "{v}");
        let raw = c.post(&beat).bearer_auth(&token).body("{\"status\": ").send().await.unwrap();
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
        assert!(raw.text().await.unwrap().contains("invalid JSON"));
        // Another service's token (the configured one) gets the same 404 as a missing id.
        let (code, other) = api(&c, Method::POST, beat.clone(), Some(json!({"status": "healthy"})), Some(TOKEN)).await;
        let (code2, missing) = api(&c, Method::POST, format!("{svc}/nope/heartbeat"), Some(json!({"status": "healthy"})), Some(TOKEN)).await;
        assert_eq!((code, code2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
        assert_eq!(other, missing);

        let (code, v) = api(
            &c,
            Method::POST,
            beat,
            Some(json!({"status": "critical", "message": "queue stuck", "metadata": {"depth": 9000}})),
            Some(&token),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{v}");
        assert_eq!(v["status"], json!("critical"));

        // Progress: start, update, complete.
        let (code, t) = api(&c, Method::POST, format!("{svc}/{id}/progress"), Some(json!({"task_name": "import", "total_steps": 8})), Some(&token)).await;
        assert_eq!(code, StatusCode::CREATED, "{t}");
        let task = format!("{svc}/{id}/progress/{}", t["task_id"].as_str().unwrap());
        let (code, v) = api(&c, Method::POST, task.clone(), Some(json!({"current_step": 9})), Some(&token)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("current_step:"), "{v}");
        let (code, v) = api(&c, Method::POST, task.clone(), Some(json!({"current_step": 3, "status": "running", "message": "3/8"})), Some(&token)).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(v["percentage"], json!(37.5));
        let (code, v) = api(&c, Method::POST, format!("{task}/complete"), None, Some(&token)).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!((v["status"].clone(), v["percentage"].clone()), (json!("completed"), json!(100.0)));
        let (code, _) = api(&c, Method::POST, task.clone(), Some(json!({"current_step": 1})), Some(&token)).await;
        assert_eq!(code, StatusCode::CONFLICT);
        (id, token)
    });

    // The progress counts as a sign of life: the critical heartbeat was replaced by a success.
    // (wait_check fails the test unless such a check arrives.)
    agent.wait_check("worker", "healthy after the task", |r| {
        r.status == Status::Healthy
    });
    let store = ReadStore::open(&agent.db).unwrap();
    assert!(
        store
            .push_events(&id, 50)
            .unwrap()
            .iter()
            .any(|e| e.message.as_deref() == Some("critical: queue stuck"))
    );
    assert_eq!(
        store
            .push_latest_task("worker")
            .unwrap()
            .unwrap()
            .current_step,
        8
    );

    rt.block_on(async {
        let svc = format!("{base}/api/services");
        let (code, v) = api(&c, Method::GET, svc.clone(), None, Some(ADMIN)).await;
        assert_eq!(code, StatusCode::OK);
        let names: Vec<&str> = v["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["backup", "worker"]);
        let (code, v) = api(&c, Method::GET, format!("{svc}/{id}"), None, Some(&token)).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(v["progress"]["percentage"], json!(100.0));
        assert!(
            v.get("token").is_none(),
            "the token is only shown at registration"
        );
        let (code, _) = api(
            &c,
            Method::DELETE,
            format!("{svc}/backup"),
            None,
            Some(ADMIN),
        )
        .await;
        assert_eq!(
            code,
            StatusCode::CONFLICT,
            "configured targets are not deleted over the API"
        );
        let (code, _) = api(
            &c,
            Method::DELETE,
            format!("{svc}/{id}"),
            None,
            Some(&token),
        )
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _) = api(&c, Method::DELETE, format!("{svc}/{id}"), None, Some(ADMIN)).await;
        assert_eq!(code, StatusCode::OK);
        let (code, _) = api(&c, Method::GET, format!("{svc}/{id}"), None, Some(ADMIN)).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (code, _) = get(&c, format!("{base}/ping/{token}")).await;
        assert_eq!(
            code,
            StatusCode::NOT_FOUND,
            "a deleted service's token is dead"
        );
    });
}

#[test]
fn registration_is_off_without_an_admin_token() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[("ADMIN_TOKEN", "")]);
    rt.block_on(async {
        let (code, v) = api(
            &Client::new(),
            Method::POST,
            format!("{}/api/services", agent.base),
            Some(json!({"name": "w"})),
            Some(ADMIN),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(v["error"].as_str().unwrap().contains("ADMIN_TOKEN"), "{v}");
    });
}

#[test]
fn a_silent_job_goes_late_then_down_and_a_hung_run_is_capped_by_the_grace() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[
        ("SERVICE_PERIOD_backup", "1"),
        ("SERVICE_GRACE_backup", "1"),
    ]);
    let c = curl();
    rt.block_on(async {
        let (code, _) = get(&c, format!("{}/ping/{TOKEN}", agent.base)).await;
        assert_eq!(code, StatusCode::OK);
    });
    agent.wait_check("backup", "healthy", |r| r.status == Status::Healthy);
    let late = agent.wait_check("backup", "late", |r| r.status == Status::Timeout);
    let text = late.error_message.unwrap();
    assert!(
        text.starts_with("late: last ping 1") && text.ends_with(", period 1 s"),
        "{text}"
    );
    let down = agent.wait_check("backup", "down", |r| r.status == Status::Down);
    let text = down.error_message.unwrap();
    assert!(
        text.starts_with("no ping for 2") && text.ends_with("(period 1 s + grace 1 s)"),
        "{text}"
    );

    // A start is no sign of life by itself: a run that never ends goes down after the grace.
    rt.block_on(async {
        get(&c, format!("{}/ping/{TOKEN}", agent.base)).await;
        get(&c, format!("{}/ping/{TOKEN}/start", agent.base)).await;
    });
    let hung = agent.wait_check("backup", "down for a hung run", |r| {
        r.error_message
            .as_deref()
            .is_some_and(|m| m.starts_with("run started"))
    });
    assert_eq!(hung.status, Status::Down);
    assert!(
        hung.error_message
            .unwrap()
            .ends_with("has not finished (grace 1 s)")
    );
}

#[test]
fn a_restart_never_makes_a_silent_job_look_healthy() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[
        ("SERVICE_PERIOD_backup", "1"),
        ("SERVICE_GRACE_backup", "1"),
    ]);
    rt.block_on(async {
        send(
            &curl(),
            Method::GET,
            format!("{}/ping/{TOKEN}", agent.base),
            None,
            None,
        )
        .await;
    });
    agent.wait_check("backup", "down", |r| r.status == Status::Down);
    let before = ReadStore::open(&agent.db).unwrap().cycle_count().unwrap();
    let agent = agent.kill_and_restart();
    // Every check the new process records is still down: the clock was not reset.
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let store = ReadStore::open(&agent.db).unwrap();
        if store.cycle_count().unwrap() >= before + 3 {
            let cycles = store.cycles(3).unwrap();
            for cycle in cycles {
                let c = cycle
                    .checks
                    .iter()
                    .find(|c| c.target.name == "backup")
                    .unwrap();
                assert_eq!(c.result.status, Status::Down, "{c:?}");
            }
            break;
        }
        assert!(Instant::now() < give_up, "no cycles after restart");
        std::thread::sleep(Duration::from_millis(20)); // polling interval
    }

    // A target added while the agent was down and never pinged counts from its creation.
    let mut agent = agent;
    agent
        .vars
        .push(("SERVICE_URL_fresh".into(), "push://".into()));
    agent.vars.push((
        "SERVICE_TOKEN_fresh".into(),
        "fresh-token-for-tests-001".into(),
    ));
    agent.vars.push(("SERVICE_PERIOD_fresh".into(), "1".into()));
    agent.vars.push(("SERVICE_GRACE_fresh".into(), "1".into()));
    let agent = agent.kill_and_restart();
    agent.wait_check("fresh", "down", |r| r.status == Status::Down);
    let agent = agent.kill_and_restart();
    let store_cycles = || ReadStore::open(&agent.db).unwrap().cycle_count().unwrap();
    let before = store_cycles();
    let give_up = Instant::now() + Duration::from_secs(20);
    while store_cycles() < before + 2 {
        assert!(Instant::now() < give_up);
        std::thread::sleep(Duration::from_millis(20)); // polling interval
    }
    assert_eq!(agent.latest_check("fresh").unwrap().status, Status::Down);
}

#[test]
fn silent_registered_services_are_removed_when_configured() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[("PUSH_AUTO_REMOVE_AFTER", "1")]);
    let c = Client::new();
    let svc = format!("{}/api/services", agent.base);
    let id = rt.block_on(async {
        let (code, v) = api(
            &c,
            Method::POST,
            svc.clone(),
            Some(json!({"name": "ephemeral"})),
            Some(ADMIN),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        v["service_id"].as_str().unwrap().to_owned()
    });
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let code = rt.block_on(async {
            api(&c, Method::GET, format!("{svc}/{id}"), None, Some(ADMIN))
                .await
                .0
        });
        if code == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(code, StatusCode::OK);
        assert!(Instant::now() < give_up, "never removed");
        std::thread::sleep(Duration::from_millis(20)); // polling interval
    }
    let store = ReadStore::open(&agent.db).unwrap();
    let names: Vec<String> = store
        .push_targets()
        .unwrap()
        .into_iter()
        .map(|p| p.definition.name)
        .collect();
    assert_eq!(names, ["backup"], "configured targets stay however silent");
}

#[test]
fn auto_removal_is_off_by_default() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[]);
    let c = Client::new();
    let svc = format!("{}/api/services", agent.base);
    let id = rt.block_on(async {
        let (_, v) = api(
            &c,
            Method::POST,
            svc.clone(),
            Some(json!({"name": "kept", "period": 0.2, "grace": 0.2})),
            Some(ADMIN),
        )
        .await;
        v["service_id"].as_str().unwrap().to_owned()
    });
    agent.wait_check("kept", "down", |r| r.status == Status::Down);
    let code = rt.block_on(async {
        api(&c, Method::GET, format!("{svc}/{id}"), None, Some(ADMIN))
            .await
            .0
    });
    assert_eq!(code, StatusCode::OK);
}

#[test]
fn a_token_over_its_rate_limit_gets_429() {
    let rt = support::runtime();
    let agent = PushAgent::start(&[("PUSH_RATE_LIMIT", "0.5"), ("PUSH_RATE_BURST", "3")]);
    rt.block_on(async {
        let c = curl();
        for _ in 0..3 {
            let (code, _) = get(&c, format!("{}/ping/{TOKEN}", agent.base)).await;
            assert_eq!(code, StatusCode::OK);
        }
        let r = c
            .get(format!("{}/ping/{TOKEN}", agent.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        assert_eq!(r.text().await.unwrap(), "rate limited");
    });
    // Only the three accepted pings were stored.
    let store = ReadStore::open(&agent.db).unwrap();
    assert_eq!(store.push_events("backup", 50).unwrap().len(), 3);
}

#[test]
fn tokens_never_reach_the_database_file_or_the_logs() {
    let rt = support::runtime();
    let mut agent = PushAgent::start(&[]);
    let registered = rt.block_on(async {
        let c = Client::new();
        let (_, v) = api(
            &c,
            Method::POST,
            format!("{}/api/services", agent.base),
            Some(json!({"name": "secretive"})),
            Some(ADMIN),
        )
        .await;
        let token = v["token"].as_str().unwrap().to_owned();
        let id = v["service_id"].as_str().unwrap();
        api(
            &c,
            Method::POST,
            format!("{}/api/services/{id}/heartbeat", agent.base),
            Some(json!({"status": "healthy"})),
            Some(&token),
        )
        .await;
        get(&c, format!("{}/ping/{TOKEN}", agent.base)).await;
        get(&c, format!("{}/ping/{token}/fail", agent.base)).await;
        token
    });
    agent.wait_check("secretive", "error", |r| r.status == Status::Error);
    Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    agent.child.wait().unwrap();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(agent.db.parent().unwrap()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let log = agent.log_text();
    assert!(
        log.contains("push listener ready"),
        "the log was captured: {log}"
    );
    for secret in [ADMIN, TOKEN, registered.as_str()] {
        let needle = secret.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a token is in the database files"
        );
        assert!(!log.contains(secret), "a token is in the log");
    }
}

#[test]
fn sigterm_ends_the_agent_while_a_client_is_stuck_mid_request() {
    use std::io::Write;
    let mut agent = PushAgent::start(&[]);
    // A request whose body never finishes: its connection task keeps a sender of the ping
    // queue alive, which must not keep the writer (and so the process) waiting.
    let addr = agent.base.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    stuck
        .write_all(
            format!(
                "POST /ping/{TOKEN} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nhalf a body"
            )
            .as_bytes(),
        )
        .unwrap();
    Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < give_up,
            "the agent waited for the stuck client"
        );
        std::thread::sleep(Duration::from_millis(10)); // polling interval
    };
    assert!(status.success(), "{status}: {}", agent.log_text());
    drop(stuck);
}
