//! `heartbeat-agent healthcheck` (the image's HEALTHCHECK): the real binary asking a running
//! agent's `GET /health`, and, with the listener off, reading a real database, fresh from a
//! running agent and stale from a cycle written long ago.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use heartbeat_core::{Connectivity, CycleRecord, HostMetrics};
use support::{Agent, closed_port, runtime, status_server};

fn healthcheck(db: &Path, agent_addr: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heartbeat-agent"))
        .current_dir(db.parent().unwrap_or(Path::new("/")))
        .env_clear()
        .env("SQLITE_DB_PATH", db)
        .env("LOOP_INTERVAL_SECONDS", "1")
        .env("AGENT_ADDR", agent_addr)
        .arg("healthcheck")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn asks_the_running_agents_health_endpoint() {
    let rt = runtime();
    let target = rt.block_on(status_server(200));
    let addr = closed_port().to_string();
    let mut agent = Agent::start(&[
        ("SERVICE_URL_web", format!("http://{target}/")),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("AGENT_ADDR", addr.clone()),
    ]);
    agent.wait_for_cycles(1, Duration::from_secs(20));
    let out = healthcheck(&agent.db, &addr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("GET /health on"), "{}", text(&out));
}

#[test]
fn unhealthy_when_no_agent_listens() {
    let dir = tempfile::tempdir().unwrap();
    let out = healthcheck(&dir.path().join("metrics.db"), &closed_port().to_string());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot connect"), "{}", text(&out));
}

#[test]
fn without_the_listener_healthy_while_the_agent_writes_cycles() {
    let rt = runtime();
    let target = rt.block_on(status_server(200));
    let mut agent = Agent::start(&[
        ("SERVICE_URL_web", format!("http://{target}/")),
        ("LOOP_INTERVAL_SECONDS", "1".into()),
        ("AGENT_ADDR", "off".into()),
    ]);
    agent.wait_for_cycles(1, Duration::from_secs(20));
    let out = healthcheck(&agent.db, "off");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("healthy: last cycle"), "{}", text(&out));
}

#[test]
fn unhealthy_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = healthcheck(&dir.path().join("missing.db"), "off");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unhealthy: SQLITE_DB_PATH: no data yet"),
        "{}",
        text(&out)
    );
}

#[test]
fn unhealthy_when_the_newest_cycle_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut store = heartbeat_store::Store::open(&db).unwrap();
    store
        .write_cycle(&CycleRecord {
            // Ten minutes ago: far past max(3 intervals, 60 s).
            started_at_ms: now_ms - 600_000,
            host: HostMetrics::default(),
            connectivity: Connectivity::default(),
            worker_status: None,
            worker_error: None,
            cycle_duration_ms: 1.0,
            checks: Vec::new(),
        })
        .unwrap();
    drop(store);
    let out = healthcheck(&db, "off");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("more than 60 s"), "{}", text(&out));
}
