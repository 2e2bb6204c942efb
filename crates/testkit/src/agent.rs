//! The real agent binary, started in its own temporary directory with a chosen
//! environment, its push listener on a free loopback port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Proc, agent_binary, free_port, wait_port};

/// What every test agent starts from: its database at `db`, no connectivity check, no
/// Docker, `RUST_LOG=warn`, and the push listener at `agent_addr` (tests run agents in
/// parallel, so never the default 8101). Tests add their own variables on top.
pub fn baseline_env(db: &Path, agent_addr: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("SQLITE_DB_PATH".into(), db.display().to_string()),
        ("PING_URL".into(), String::new()),
        (
            "DOCKER_HOST".into(),
            "unix:///nonexistent/docker.sock".into(),
        ),
        ("RUST_LOG".into(), "warn".into()),
        ("AGENT_ADDR".into(), agent_addr.to_owned()),
    ])
}

/// `heartbeat-agent` at `bin`, to run in `dir` with exactly [`baseline_env`] plus `vars`
/// (later ones win) and nothing of the test's own environment. Output goes where the
/// caller sends it.
pub fn agent_command<K: Into<String>, V: Into<String>>(
    bin: &Path,
    dir: &Path,
    db: &Path,
    agent_addr: &str,
    vars: impl IntoIterator<Item = (K, V)>,
) -> Command {
    let mut env = baseline_env(db, agent_addr);
    env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
    let mut command = Command::new(bin);
    command.current_dir(dir).env_clear().envs(&env);
    command
}

/// A running `heartbeat-agent`; killed when dropped.
#[derive(Debug)]
pub struct Agent {
    proc: Proc,
    /// Its database (`SQLITE_DB_PATH`).
    pub db: PathBuf,
    /// Its push listener, `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent with `vars` on top of a test baseline (temporary database, no
    /// connectivity check, no Docker, `RUST_LOG=warn`, `AGENT_ADDR` on a free port) and
    /// waits until the push listener accepts connections. Nothing else of the test's
    /// environment reaches it.
    pub fn start(vars: &[(&str, String)]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("data/metrics.db");
        let port = free_port();
        let vars = vars.iter().map(|(k, v)| (*k, v.as_str()));
        let addr = format!("127.0.0.1:{port}");
        let mut child = agent_command(agent_binary(), dir.path(), &db, &addr, vars)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start heartbeat-agent");
        wait_port(port, "heartbeat-agent's push listener", &mut child);
        Agent {
            proc: Proc(child),
            db,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Panics if the agent has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.proc.0.try_wait() {
            panic!("heartbeat-agent exited: {status}");
        }
    }
}
