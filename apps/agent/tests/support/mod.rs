//! Real local servers and a real agent process for the agent's end-to-end tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heartbeat_store::{ReadStore, StoredCycle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A runtime for the test's local servers; the test thread itself stays free to block.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A server answering every request with `status` and an empty body.
pub async fn status_server(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                // Answer each request head on the connection (keep-alive).
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = find(&seen, b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
                        );
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Accepts connections and never answers.
pub async fn hanging_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A port with nothing listening on it.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A running `heartbeat-agent` with its own working directory and database.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Agent {
    /// Starts the agent with exactly these variables (plus a database in a
    /// tempdir, no connectivity check and no Docker unless given).
    pub fn start(vars: &[(&str, String)]) -> Agent {
        Agent::start_in(tempfile::tempdir().unwrap(), vars)
    }

    /// Starts a new agent process on the same directory and database.
    pub fn restart(mut self, vars: &[(&str, String)]) -> Agent {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Agent::start_in(dir, vars)
    }

    fn start_in(dir: tempfile::TempDir, vars: &[(&str, String)]) -> Agent {
        let db = dir.path().join("data/metrics.db");
        let bin = Path::new(env!("CARGO_BIN_EXE_heartbeat-agent"));
        let vars = vars.iter().map(|(k, v)| (*k, v.as_str()));
        let child =
            heartbeat_testkit::agent::agent_command(bin, dir.path(), &db, "127.0.0.1:0", vars)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
        Agent { child, dir, db }
    }

    /// Waits until at least `n` cycles are committed, or panics at `deadline`.
    pub fn wait_for_cycles(&mut self, n: u64, deadline: Duration) -> Vec<StoredCycle> {
        let give_up = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early: {status}");
            }
            if let Ok(store) = ReadStore::open(&self.db)
                && store.cycle_count().unwrap_or(0) >= n
            {
                return store.cycles(n as usize).unwrap();
            }
            assert!(
                Instant::now() < give_up,
                "fewer than {n} cycles after {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20)); // polling interval, not a synchronisation guess
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns how long it took.
    pub fn wait_exit(&mut self, deadline: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                panic!("agent still running after {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
