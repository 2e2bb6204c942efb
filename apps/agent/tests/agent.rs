//! End-to-end tests of the real `heartbeat-agent` binary against real local servers.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use heartbeat_core::Status;
use heartbeat_store::{ReadStore, StoredCycle};
use support::{Agent, closed_port, hanging_server, status_server};

fn check<'a>(cycle: &'a StoredCycle, name: &str) -> &'a heartbeat_core::CheckResult {
    &cycle
        .checks
        .iter()
        .find(|c| c.target.name == name)
        .unwrap_or_else(|| panic!("no check for {name} in {cycle:?}"))
        .result
}

#[test]
fn records_every_status_with_codes_and_messages_then_stops_on_sigterm() {
    let rt = support::runtime();
    let ok = rt.block_on(status_server(200));
    let moved = rt.block_on(status_server(301));
    let missing = rt.block_on(status_server(404));
    let broken = rt.block_on(status_server(500));
    let hang = rt.block_on(hanging_server());
    let closed = closed_port();

    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.5".into()),
        ("SERVICE_TIMEOUT_SECONDS", "0.3".into()),
        ("SERVICE_URL_Ok", format!("http://{ok}/health")),
        ("SERVICE_URL_moved", format!("http://{moved}/")),
        ("SERVICE_URL_missing", format!("http://{missing}/")),
        ("SERVICE_URL_broken", format!("http://{broken}/")),
        ("SERVICE_URL_hang", format!("http://{hang}/")),
        ("SERVICE_URL_closed", format!("http://{closed}/")),
        ("SERVICE_URL_box", "docker:some-container".into()),
        (
            "SERVICE_HEADERS_Ok",
            "Authorization:Bearer sup3rsecret".into(),
        ),
    ]);
    let cycles = agent.wait_for_cycles(2, Duration::from_secs(20));
    let latest = &cycles[0];
    assert_eq!(latest.checks.len(), 7);

    let r = check(latest, "Ok");
    assert_eq!((r.status, r.status_code), (Status::Healthy, Some(200)));
    assert!(r.latency_ms.is_some_and(|l| l > 0.0 && l < 300.0), "{r:?}");
    let r = check(latest, "moved");
    assert_eq!((r.status, r.status_code), (Status::Healthy, Some(301)));
    // The replaced system stored NULL here; every answer keeps its code now.
    let r = check(latest, "missing");
    assert_eq!((r.status, r.status_code), (Status::Error, Some(404)));
    assert_eq!(r.error_message.as_deref(), Some("HTTP 404"));
    let r = check(latest, "broken");
    assert_eq!((r.status, r.status_code), (Status::Error, Some(500)));
    let r = check(latest, "hang");
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    let r = check(latest, "closed");
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert_eq!(r.error_message.as_deref(), Some("connection refused"));
    let r = check(latest, "box");
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.error_message.as_deref().unwrap_or("").contains("docker"));
    assert_eq!(latest.host.container_count, None);
    assert!(latest.host.cpu_percent.is_some() && latest.host.ram_percent.is_some());

    agent.signal("TERM");
    let (status, took) = agent.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");

    // Clean close keeps -wal/-shm so a reader on a read-only mount can still open it.
    let store = ReadStore::open(&agent.db).unwrap();
    assert!(store.cycle_count().unwrap() >= 2);
    assert!(store.integrity_check().unwrap());
    let dump = std::fs::read(&agent.db).unwrap();
    let needle = b"sup3rsecret";
    assert!(
        !dump.windows(needle.len()).any(|w| w == needle),
        "header value reached the database"
    );
}

#[test]
fn cycles_follow_a_fixed_grid_without_drift() {
    let rt = support::runtime();
    let ok = rt.block_on(status_server(200));
    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.2".into()),
        ("SERVICE_URL_a", format!("http://{ok}/")),
    ]);
    let mut cycles = agent.wait_for_cycles(31, Duration::from_secs(30));
    cycles.reverse();
    let t0 = cycles[0].ts_ms;
    let offsets: Vec<i64> = cycles
        .iter()
        .enumerate()
        .map(|(n, c)| c.ts_ms - t0 - 200 * n as i64)
        .collect();
    // A sleep-after-work loop would accumulate each cycle's duration; the grid does not.
    let worst = offsets.iter().map(|o| o.abs()).max().unwrap();
    assert!(worst <= 60, "offsets from the grid (ms): {offsets:?}");
    let last = *offsets.last().unwrap();
    assert!(
        last.abs() <= 60,
        "drifted {last} ms over 30 cycles: {offsets:?}"
    );
}

#[test]
fn five_hundred_hanging_targets_cost_one_timeout() {
    let rt = support::runtime();
    let hang = rt.block_on(hanging_server());
    let mut vars = vec![
        ("LOOP_INTERVAL_SECONDS", "30".to_owned()),
        ("SERVICE_TIMEOUT_SECONDS", "1".to_owned()),
    ];
    let names: Vec<String> = (0..500).map(|i| format!("SERVICE_URL_t{i}")).collect();
    for name in &names {
        vars.push((name.as_str(), format!("http://{hang}/")));
    }
    let mut agent = Agent::start(&vars);
    let cycles = agent.wait_for_cycles(1, Duration::from_secs(20));
    let cycle = &cycles[0];
    assert_eq!(cycle.checks.len(), 500);
    assert!(
        cycle
            .checks
            .iter()
            .all(|c| c.result.status == Status::Timeout)
    );
    assert!(
        cycle.cycle_duration_ms < 1400.0,
        "cycle took {} ms",
        cycle.cycle_duration_ms
    );
}

#[test]
fn kill_9_mid_cycle_leaves_a_consistent_database() {
    let rt = support::runtime();
    let ok = rt.block_on(status_server(200));
    let hang = rt.block_on(hanging_server());
    let mut vars = vec![
        ("LOOP_INTERVAL_SECONDS", "0.1".to_owned()),
        ("SERVICE_TIMEOUT_SECONDS", "0.15".to_owned()),
    ];
    let names: Vec<String> = (0..200).map(|i| format!("SERVICE_URL_t{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let addr = if i % 3 == 0 { hang } else { ok };
        vars.push((name.as_str(), format!("http://{addr}/")));
    }
    // Kill at a few different points relative to the cycles' writes.
    for (round, after_cycles) in [3u64, 5, 8].into_iter().enumerate() {
        let mut agent = Agent::start(&vars);
        agent.wait_for_cycles(after_cycles, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(37 * round as u64)); // vary the kill point
        agent.signal("KILL");
        agent.wait_exit(Duration::from_secs(5));

        let store = ReadStore::open(&agent.db).unwrap();
        assert!(store.integrity_check().unwrap());
        let count = store.cycle_count().unwrap();
        assert!(count >= after_cycles);
        for cycle in store.cycles(count as usize).unwrap() {
            assert_eq!(cycle.checks.len(), 200, "partial cycle {}", cycle.id);
        }
    }
}

fn check_config(dir: &std::path::Path, env_file: &str) -> std::process::Output {
    let path = dir.join("test.env");
    std::fs::write(&path, env_file).unwrap();
    Command::new(env!("CARGO_BIN_EXE_heartbeat-agent"))
        .current_dir(dir)
        .env_clear()
        .args(["check-config", "--env-file"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_config_explains_every_mistake_in_a_broken_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        "SERVICE_URL_api=htp://api.example.com\n\
         SERVICE_URL_db=docker:\n\
         SERVICE_URL_web=https://web.example.com\n\
         SERVICE_HEADERS_web=\"Authorization Bearer t0psecret\"\n\
         SERVICE_HEADERS_Web=X:1\n\
         LOOP_INTERVAL_SECONDS=ten\n\
         SERVICE_TIMEOUT_SECONDS=-1\n\
         STATUS_CHANGE_THRESHOLD=0\n\
         TZ=Moon/Base\n\
         FORCE_IPV4=perhaps\n\
         INTERNAL_DNS_OVERRIDE_IP=999.1.1.1\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "SERVICE_URL_api",
        "SERVICE_URL_db",
        "SERVICE_HEADERS_web",
        "SERVICE_HEADERS_Web",
        "LOOP_INTERVAL_SECONDS",
        "SERVICE_TIMEOUT_SECONDS",
        "STATUS_CHANGE_THRESHOLD",
        "TZ",
        "FORCE_IPV4",
        "INTERNAL_DNS_OVERRIDE_IP",
    ] {
        assert!(
            stderr.contains(&format!("{var}: ")),
            "{var} not named in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("t0psecret"), "secret leaked:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_config_prints_the_resolved_targets_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        "SERVICE_URL_api=https://bob:pa55@api.example.com/health\n\
         SERVICE_HEADERS_api=\"Authorization:Bearer t0psecret\"\n\
         SERVICE_URL_db=docker:postgres\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("api") && stdout.contains("docker:postgres"),
        "{stdout}"
    );
    assert!(stdout.contains("Authorization: <redacted>"), "{stdout}");
    assert!(
        !stdout.contains("t0psecret") && !stdout.contains("pa55"),
        "{stdout}"
    );
}

#[test]
fn a_bad_configuration_stops_the_agent_with_a_named_error() {
    let mut agent = Agent::start(&[("SERVICE_URL_x", "ftp://x".into())]);
    let (status, _) = agent.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        !agent.db.exists(),
        "nothing is written on a bad configuration"
    );
}

#[test]
fn an_unparsable_env_file_line_is_reported_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        "SERVICE_URL_a=http://a.example\nSERVICE_HEADERS_a=Authorization:Bearer t0psecret\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("test.env:2") && stderr.contains("SERVICE_HEADERS_a"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0psecret"), "secret leaked: {stderr}");
}

#[test]
fn a_missing_env_file_is_an_error_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_heartbeat-agent"))
        .env_clear()
        .args(["check-config", "--env-file", "/nonexistent/heartbeat.env"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/heartbeat.env"));
}

/// A heartbeat receiver that answers `status` and keeps each request (head and body).
async fn heartbeat_receiver(
    status: u16,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let keep = std::sync::Arc::clone(&keep);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                        keep.lock().unwrap().push(text);
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(reply.as_bytes()).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn outbound_heartbeat_reports_services_and_stores_the_worker_code() {
    let rt = support::runtime();
    let ok = rt.block_on(status_server(200));
    let (worker, seen) = rt.block_on(heartbeat_receiver(220));
    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.3".into()),
        ("SERVICE_URL_web", format!("http://{ok}/")),
        ("SERVICE_URL_gone", format!("http://{}/", closed_port())),
        ("HEARTBEAT_URL", format!("http://{worker}/api/heartbeat")),
        ("SECRET_KEY", "sk_t0psecret".into()),
    ]);
    let cycles = agent.wait_for_cycles(2, Duration::from_secs(20));
    assert_eq!(cycles[0].worker_status, Some(220), "{:?}", cycles[0]);
    let request = seen.lock().unwrap()[0].clone();
    let lower = request.to_ascii_lowercase();
    assert!(request.starts_with("POST /api/heartbeat "), "{request}");
    assert!(
        lower.contains("authorization: bearer sk_t0psecret"),
        "{request}"
    );
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["services"]["web"]["status"], "healthy");
    assert_eq!(json["services"]["gone"]["status"], "down");
    agent.signal("TERM");
    agent.wait_exit(Duration::from_secs(5));
    let dump = std::fs::read(&agent.db).unwrap();
    assert!(
        !dump.windows(12).any(|w| w == b"sk_t0psecret"),
        "secret reached the database"
    );
}

#[test]
fn an_unreachable_heartbeat_stores_null_and_the_error() {
    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.3".into()),
        ("HEARTBEAT_URL", format!("http://{}/hb", closed_port())),
        ("SECRET_KEY", "sk_t0psecret".into()),
    ]);
    let cycles = agent.wait_for_cycles(1, Duration::from_secs(20));
    assert_eq!(cycles[0].worker_status, None);
    let error = cycles[0].worker_error.as_deref().unwrap_or_default();
    assert!(error.contains("connection refused"), "{error}");
    assert!(!error.contains("sk_t0psecret"));
}
