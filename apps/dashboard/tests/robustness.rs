//! The real `heartbeat-dashboard` binary over a database written by the real `heartbeat-agent`
//! binary, through a read-only mount: before the database exists (503, then recovers on its
//! own), while the agent writes, after `kill -9` of the agent, and after a clean stop (the
//! persisted WAL lets a fresh read-only process open the file).
//!
//! The read-only mount is a bind mount remounted `ro` in a private mount namespace
//! (`unshare -m`), as a `:ro` Docker volume is. Where that is not permitted the test uses
//! `chmod a-w` on the directory and files instead (which binds only a non-root user) and says
//! so. The agent binary is the workspace's `target/<profile>/heartbeat-agent` (built by
//! `cargo test --workspace`); without it the test prints `skipping: <reason>` and passes,
//! unless `CI` is set, where it fails.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heartbeat_store::ReadStore;
use heartbeat_testkit::{Proc, free_port};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
/// Polling interval while waiting for a condition (never a synchronisation guess).
const POLL: Duration = Duration::from_millis(25);

fn agent_binary() -> Option<PathBuf> {
    // target/<profile>/deps/robustness-<hash> → target/<profile>/heartbeat-agent
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("heartbeat-agent");
    bin.exists().then_some(bin)
}

/// A local target answering every request `200 OK`.
fn ok_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `GET path` with `Connection: close`: (status, body). `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls `f` until it returns `Some`, or panics naming `what` after [`WAIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// How the dashboard sees the data directory.
enum ReadOnly {
    /// `unshare -m` + `mount --bind` + `remount,ro` onto this directory.
    Mount(PathBuf),
    /// No mount namespace: the data directory itself, made `a-w`.
    Chmod,
}

fn read_only_mode(mnt: &Path) -> ReadOnly {
    let ok = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --bind / {0} && mount -o remount,bind,ro {0}",
            mnt.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        ReadOnly::Mount(mnt.to_owned())
    } else {
        println!("note: no private mount namespace here; using chmod a-w (binds non-root only)");
        ReadOnly::Chmod
    }
}

/// Starts the dashboard binary reading `data/metrics.db` through the read-only view.
fn dashboard(mode: &ReadOnly, data: &Path, port: u16) -> Proc {
    let bin = env!("CARGO_BIN_EXE_heartbeat-dashboard");
    let mut cmd = match mode {
        ReadOnly::Mount(mnt) => {
            let mut c = Command::new("unshare");
            // The mount exists only in the dashboard's namespace; `exec` keeps the pid.
            c.args(["-m", "sh", "-ec"])
                .arg(
                    "mount --bind \"$1\" \"$2\"; mount -o remount,bind,ro \"$2\"; \
                     if touch \"$2/.probe\" 2>/dev/null; then echo 'mount is writable' >&2; exit 9; fi; \
                     exec \"$3\"",
                )
                .args(["sh", &data.display().to_string(), &mnt.display().to_string(), bin])
                .env("SQLITE_DB_PATH", mnt.join("metrics.db"));
            c
        }
        ReadOnly::Chmod => {
            let mut c = Command::new(bin);
            c.env("SQLITE_DB_PATH", data.join("metrics.db"));
            c
        }
    };
    let child = cmd
        .env("DASHBOARD_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    wait_for("the dashboard to listen", || {
        if let Ok(Some(st)) = p.0.try_wait() {
            panic!("dashboard exited early: {st}");
        }
        get(port, "/health").map(|_| ())
    });
    p
}

fn agent(bin: &Path, data: &Path, target: SocketAddr) -> Proc {
    let vars = [
        ("SERVICE_URL_web", format!("http://{target}/health")),
        ("LOOP_INTERVAL_SECONDS", "0.2".to_owned()),
    ];
    // Tests run in parallel: no push listener at all (never the default port).
    let db = data.join("metrics.db");
    let child = heartbeat_testkit::agent::agent_command(bin, data, &db, "off", vars)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

/// `/api/live?range=live` is 200 with `web` healthy: the newest cycle's `ts_ms`.
fn live_ok(port: u16) -> Option<i64> {
    let (status, body) = get(port, "/api/live?range=live")?;
    if status != 200 {
        return None;
    }
    let v = json(&body);
    let web = v["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "web")?;
    assert_eq!(web["status"], "healthy", "{body}");
    v["last_updated_ms"].as_i64()
}

/// The newest cycle in the file, read directly (from the writable side).
fn newest(db: &Path) -> Option<i64> {
    ReadStore::open(db)
        .ok()?
        .latest_cycle()
        .ok()?
        .map(|c| c.ts_ms)
}

fn chmod(path: &Path, mode: &str) {
    let st = Command::new("chmod")
        .args(["-R", mode])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn dashboard_survives_the_agent_lifecycle_on_a_read_only_mount() {
    let Some(agent_bin) = agent_binary() else {
        let reason = "no heartbeat-agent binary next to this test (cargo build -p heartbeat-agent)";
        assert!(std::env::var_os("CI").is_none(), "{reason}");
        println!("skipping: {reason}");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mnt = root.path().join("ro");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let db = data.join("metrics.db");
    let mode = read_only_mode(&mnt);
    let target = ok_server();
    let port = free_port();

    // 1. Before the database exists: 503 "no data yet", and the dashboard creates nothing.
    let dash = dashboard(&mode, &data, port);
    for path in ["/api/live", "/health", "/api/services/web"] {
        let (status, body) = get(port, path).unwrap();
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(json(&body)["error"], "no data yet", "{path}");
    }
    assert!(!db.exists());

    // 2. The agent starts writing: the same dashboard process recovers on its own.
    let mut writer = agent(&agent_bin, &data, target);
    let first = wait_for("the dashboard to show the agent's data", || live_ok(port));
    // While the agent writes, newer cycles keep appearing.
    let later = wait_for("a newer cycle while the agent writes", || {
        live_ok(port).filter(|&t| t > first)
    });
    let (status, body) = get(port, "/api/services/web?range=1h").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["stats"]["success"].as_u64().unwrap() >= 2);
    assert_eq!(get(port, "/health").unwrap().0, 200);

    // 3. kill -9: the writer leaves -wal/-shm behind; the running dashboard and a fresh one
    // (a new read-only open) both answer with the last committed cycle.
    writer.0.kill().unwrap();
    writer.0.wait().unwrap();
    let last = newest(&db).unwrap();
    assert!(last >= later);
    assert_eq!(
        wait_for("the last cycle after kill -9", || live_ok(port)
            .filter(|&t| t == last)),
        last
    );
    drop(dash);
    let port = free_port();
    let dash = dashboard(&mode, &data, port);
    assert_eq!(live_ok(port), Some(last), "fresh reader after kill -9");

    // 4. A new agent, then a clean stop (SIGTERM): SQLite would delete -wal/-shm on close,
    // but the writer persists them, so a fresh read-only process still opens the file.
    let mut writer = agent(&agent_bin, &data, target);
    wait_for("a cycle from the restarted agent", || {
        live_ok(port).filter(|&t| t > last)
    });
    let st = Command::new("kill")
        .args(["-TERM", &writer.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = wait_for("the agent to stop", || writer.0.try_wait().unwrap());
    assert!(exit.success(), "agent exit: {exit}");
    for ext in ["db-wal", "db-shm"] {
        assert!(db.with_extension(ext).exists(), "{ext} persisted");
    }
    let last = newest(&db).unwrap();
    drop(dash);
    if matches!(mode, ReadOnly::Chmod) {
        chmod(&data, "a-w");
    }
    let port = free_port();
    let _dash = dashboard(&mode, &data, port);
    assert_eq!(live_ok(port), Some(last), "fresh reader after a clean stop");
    let (status, body) = get(port, "/badge/web/status.svg").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("healthy"), "{body}");
    if matches!(mode, ReadOnly::Chmod) {
        chmod(&data, "u+w");
    }
}
