//! `heartbeat-bench`: runs the release agent binary against local HTTP targets
//! and prints the figures recorded in `docs/benchmarks.md`.
//!
//! Build both first: `cargo build --release -p heartbeat-agent -p heartbeat-bench`,
//! then `target/release/heartbeat-bench`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use heartbeat_core::Status;
use heartbeat_store::ReadStore;

/// Delay of the "slow" targets, whose measured latency is checked for accuracy.
const SLOW_MS: u64 = 50;

struct Scenario {
    targets: usize,
    slow_targets: usize,
    interval_s: f64,
    cycles: usize,
    warmup: usize,
}

fn main() -> anyhow::Result<()> {
    let agent_bin = std::env::current_exe()?
        .parent()
        .context("no parent dir")?
        .join("heartbeat-agent");
    if !agent_bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p heartbeat-agent -p heartbeat-bench` first",
            agent_bin.display()
        );
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = runtime.block_on(async {
        let app = Router::new().route("/ok", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
                "slow"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })?;

    let scenarios = [
        Scenario {
            targets: 10,
            slow_targets: 0,
            interval_s: 0.5,
            cycles: 20,
            warmup: 2,
        },
        Scenario {
            targets: 1_000,
            slow_targets: 20,
            interval_s: 1.0,
            cycles: 20,
            warmup: 3,
        },
        Scenario {
            targets: 10_000,
            slow_targets: 0,
            interval_s: 4.0,
            cycles: 8,
            warmup: 2,
        },
    ];
    let mut report = String::from(
        "| targets | cycles (steady) | cycle ms median | cycle ms max | slow-target latency p50 / p99 (server waits 50 ms) | agent RSS (VmHWM) |\n|---|---|---|---|---|---|\n",
    );
    for s in &scenarios {
        let row = run_scenario(&agent_bin, &addr.to_string(), s)?;
        report.push_str(&row);
        println!("{row}");
    }
    println!("\n{report}");
    Ok(())
}

fn run_scenario(agent_bin: &Path, addr: &str, s: &Scenario) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("metrics.db");
    let mut env_file = format!(
        "LOOP_INTERVAL_SECONDS={}\nSERVICE_TIMEOUT_SECONDS=2\nPING_URL=\nDOCKER_HOST=unix:///nonexistent.sock\nSQLITE_DB_PATH={}\nRUST_LOG=warn\nAGENT_ADDR=127.0.0.1:0\n",
        s.interval_s,
        db.display()
    );
    for i in 0..s.targets {
        let path = if i < s.slow_targets { "slow" } else { "ok" };
        writeln!(env_file, "SERVICE_URL_t{i}=http://{addr}/{path}")?;
    }
    let env_path = dir.path().join("bench.env");
    std::fs::write(&env_path, env_file)?;

    let mut agent = AgentProcess(
        Command::new(agent_bin)
            .arg("--env-file")
            .arg(&env_path)
            .current_dir(dir.path())
            .env_clear()
            .stdout(Stdio::null())
            .spawn()?,
    );
    let wanted = s.cycles + s.warmup;
    let deadline =
        Instant::now() + Duration::from_secs_f64(s.interval_s * wanted as f64 * 3.0 + 30.0);
    let cycles = loop {
        if let Ok(store) = ReadStore::open(&db)
            && store.cycle_count()? >= wanted as u64
        {
            break store.cycles(wanted)?;
        }
        if Instant::now() > deadline {
            bail!(
                "{} targets: agent did not write {wanted} cycles in time",
                s.targets
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let hwm_kb = vm_hwm_kb(agent.0.id())?;
    agent.stop();

    // Newest first: drop the oldest `warmup` cycles (connection set-up).
    let steady = &cycles[..s.cycles];
    let mut durations: Vec<f64> = steady.iter().map(|c| c.cycle_duration_ms).collect();
    let unhealthy = steady
        .iter()
        .flat_map(|c| &c.checks)
        .filter(|c| c.result.status != Status::Healthy)
        .count();
    if unhealthy > 0 {
        bail!(
            "{} targets: {unhealthy} unhealthy checks in steady state",
            s.targets
        );
    }
    let mut slow: Vec<f64> = steady
        .iter()
        .flat_map(|c| &c.checks)
        .filter(|c| c.target.url.ends_with("/slow"))
        .filter_map(|c| c.result.latency_ms)
        .collect();
    let slow_text = if slow.is_empty() {
        "–".to_owned()
    } else {
        format!(
            "{:.2} / {:.2} ms ({} samples)",
            percentile(&mut slow, 0.50),
            percentile(&mut slow, 0.99),
            slow.len()
        )
    };
    Ok(format!(
        "| {} | {} | {:.1} | {:.1} | {} | {:.1} MB |",
        s.targets,
        steady.len(),
        percentile(&mut durations, 0.5),
        durations.iter().cloned().fold(0.0, f64::max),
        slow_text,
        hwm_kb as f64 / 1024.0
    ))
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Peak resident set size of a process, from /proc.
fn vm_hwm_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc status")
}

struct AgentProcess(Child);

impl AgentProcess {
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
