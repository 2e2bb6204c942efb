//! Support for integration tests, shared so each test does not carry its own copy:
//! child processes that die with the test, free ports, the real agent binary, an HTTP
//! server that records what it receives, and headless Chromium through chromedriver.
//!
//! Test support panics with a clear message instead of returning errors: a failed
//! set-up is a failed test.
#![allow(clippy::missing_panics_doc)]

pub mod agent;
pub mod browser;
pub mod recorder;

pub use agent::Agent;
pub use recorder::{Recorder, Seen};

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a child gets to start listening.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// A child process that is killed and reaped when dropped (also on panic).
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls until 127.0.0.1:`port` accepts connections; panics if `child` exits first
/// or after [`START_WAIT`].
pub fn wait_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + START_WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited early: {st}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(25)); // polling interval
    }
}

/// `$env` if set, else the first of `names` found on `PATH`.
pub fn which(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Whether `var` is `1` (e.g. `HEARTBEAT_REQUIRE_BROWSER`).
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Prints `skipping: <reason>`, or panics when `require_var` is `1`.
pub fn skip(require_var: &str, reason: &str) {
    assert!(!required(require_var), "{require_var}=1 but {reason}");
    println!("skipping: {reason}");
}

/// The real `heartbeat-agent` binary (a binary of another package has no
/// `CARGO_BIN_EXE_*` in a test):
/// 1. `HEARTBEAT_AGENT_BIN`, if set;
/// 2. `heartbeat-agent` in the test's own profile directory (`target/debug/`), which
///    `cargo test --workspace` builds; with `cargo test -p <one package>` it is used as
///    it is, so run `cargo build -p heartbeat-agent` first if the agent changed;
/// 3. otherwise `cargo build -p heartbeat-agent` into `target/testkit/` (a separate
///    target directory, because the running `cargo test` holds the lock of its own).
pub fn agent_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HEARTBEAT_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        // target/debug/deps/<test>-xxxx -> target/debug
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary directory");
        let beside = profile_dir.join("heartbeat-agent");
        if beside.is_file() {
            return beside;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = profile_dir
            .parent()
            .map_or_else(|| root.join("target"), Path::to_path_buf)
            .join("testkit");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-p", "heartbeat-agent", "--target-dir"])
            .arg(&target)
            .status()
            .expect("run cargo build -p heartbeat-agent");
        assert!(status.success(), "cargo build -p heartbeat-agent failed");
        target.join("debug/heartbeat-agent")
    })
}
