//! `heartbeat-bench`: runs the release agent binary against local HTTP targets
//! and prints the figures recorded in `docs/benchmarks.md`.
//!
//! Build both first: `cargo build --release -p heartbeat-agent -p heartbeat-bench`,
//! then `target/release/heartbeat-bench`.
//!
//! The target server runs in its own process (`heartbeat-bench serve`), so its
//! work is not counted in the agent's RSS or CPU time. Variables:
//! * `BENCH_PIN=1`: pin the server to CPU 1 and the agent to CPU 0 (`taskset`),
//!   so the agent's scheduling is not disturbed by the server's;
//! * `BENCH_TARGETS=10,1000`: run only these scenarios;
//! * `BENCH_AGENT_ENV="K=V K=V"`: extra variables for the agent (experiments
//!   such as `MALLOC_ARENA_MAX=1` or `LD_PRELOAD=...`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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
    let agent_bin = heartbeat_bench::agent_binary()?;
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return serve();
    }
    let pin = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    let only: Option<Vec<usize>> = std::env::var("BENCH_TARGETS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let agent_env: Vec<(String, String)> = std::env::var("BENCH_AGENT_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let server = Server::start(pin)?;
    let addr = server.addr.clone();
    let agent = AgentCommand {
        bin: agent_bin,
        pin,
        env: agent_env,
    };
    println!(
        "target server pid {} at {addr}; pinned: {pin}",
        server.child.0.id()
    );

    let scenarios = [
        // Control: the slow targets alone. What their latency shows here is the
        // machine's own noise (other processes, the sandbox), not the load of
        // 1 000 probes.
        Scenario {
            targets: 20,
            slow_targets: 20,
            interval_s: 1.0,
            cycles: 20,
            warmup: 3,
        },
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
        "| targets | cycles (steady) | cycle ms median | cycle ms max | slow-target latency p50 / p99 (server waits 50 ms) | server's own hold p50 / p99 | agent RSS peak (VmHWM) / at end (VmRSS) | agent CPU ms per cycle (of which the database writer) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for s in scenarios
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.targets)))
    {
        let row = run_scenario(&agent, &addr, s)?;
        report.push_str(&row);
        report.push('\n');
        println!("{row}");
    }
    println!("\n{report}");
    Ok(())
}

/// `heartbeat-bench serve`: the targets, on their own runtime and process.
/// Prints the bound address on stdout and runs until stdin closes.
///
/// `/slow` holds each request for [`SLOW_MS`] on a blocking thread: tokio's
/// timer rounds a sleep up to the next whole millisecond, which would put up
/// to 1 ms of the server's own error into the agent's figures, while a
/// thread's sleep is within about 0.3 ms here. `/held` answers how long the
/// server really held each `/slow` request since the last `/held` (one line
/// of milliseconds each), so the bench can report the server's share apart.
fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let held: Arc<Mutex<Vec<f64>>> = Arc::default();
    let served = runtime.block_on(async {
        let slow_held = held.clone();
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/slow",
                get(move || async move {
                    let received = Instant::now();
                    let until = received + Duration::from_millis(SLOW_MS);
                    tokio::task::spawn_blocking(move || {
                        std::thread::sleep(until.saturating_duration_since(Instant::now()))
                    })
                    .await
                    .ok();
                    let ms = received.elapsed().as_secs_f64() * 1000.0;
                    slow_held.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                    "slow"
                }),
            )
            .route(
                "/held",
                get(move || async move {
                    let taken =
                        std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
                    taken.iter().fold(String::new(), |mut out, ms| {
                        let _ = writeln!(out, "{ms}");
                        out
                    })
                }),
            );
        // A deep backlog: the first cycle connects every target at once.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind("127.0.0.1:0".parse()?)?;
        let listener = socket.listen(16_384)?;
        println!("{}", listener.local_addr()?);
        anyhow::Ok(tokio::spawn(
            async move { axum::serve(listener, app).await },
        ))
    })?;
    // The parent holds our stdin; when it exits or closes it, we stop.
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())?;
    served.abort();
    Ok(())
}

/// Takes the server's record of how long it held each `/slow` request since
/// the last call, in milliseconds.
fn server_held_ms(addr: &str) -> anyhow::Result<Vec<f64>> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /held HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("malformed /held answer")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("/held answered {head:?}");
    }
    body.lines()
        .map(|l| l.parse().context("malformed /held line"))
        .collect()
}

/// The target server child process.
struct Server {
    child: ChildGuard,
    addr: String,
}

impl Server {
    fn start(pin: bool) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?;
        let mut command = if pin {
            let mut c = Command::new("taskset");
            c.arg("-c").arg("1").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = ChildGuard(
            command
                .arg("serve")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start the target server")?,
        );
        let stdout = child.0.stdout.take().context("no server stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let addr = line.trim().to_owned();
        if addr.is_empty() {
            bail!("the target server did not print its address");
        }
        Ok(Server { child, addr })
    }
}

/// How the agent is started.
struct AgentCommand {
    bin: PathBuf,
    pin: bool,
    env: Vec<(String, String)>,
}

impl AgentCommand {
    fn spawn(&self, env_path: &Path, dir: &Path) -> anyhow::Result<ChildGuard> {
        let mut command = if self.pin {
            let mut c = Command::new("taskset");
            c.arg("-c").arg("0").arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        // taskset execs the agent, so the child's pid is the agent's.
        let child = command
            .arg("--env-file")
            .arg(env_path)
            .current_dir(dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(ChildGuard(child))
    }
}

fn run_scenario(agent_cmd: &AgentCommand, addr: &str, s: &Scenario) -> anyhow::Result<String> {
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

    let mut agent = agent_cmd.spawn(&env_path, dir.path())?;
    let wanted = s.cycles + s.warmup;
    let mut cpu_at_warmup: Option<(u64, CpuMs)> = None;
    let deadline =
        Instant::now() + Duration::from_secs_f64(s.interval_s * wanted as f64 * 3.0 + 30.0);
    let cycles = loop {
        if let Ok(store) = ReadStore::open(&db) {
            let count = store.cycle_count()?;
            if cpu_at_warmup.is_none() && count >= s.warmup as u64 {
                cpu_at_warmup = Some((count, cpu_ms(agent.0.id())?));
                // Forget the warm-up cycles' requests.
                server_held_ms(addr)?;
            }
            if count >= wanted as u64 {
                break store.cycles(wanted)?;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} targets: agent did not write {wanted} cycles in time",
                s.targets
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (hwm_kb, rss_kb) = (
        proc_status_kb(agent.0.id(), "VmHWM")?,
        proc_status_kb(agent.0.id(), "VmRSS")?,
    );
    let (cpu_per_cycle, writer_per_cycle) = match cpu_at_warmup {
        Some((count, at)) if wanted as u64 > count => {
            let now = cpu_ms(agent.0.id())?;
            let n = (wanted as u64 - count) as f64;
            (
                (now.total - at.total) as f64 / n,
                (now.writer - at.writer) as f64 / n,
            )
        }
        _ => (f64::NAN, f64::NAN),
    };
    agent.stop();
    let mut held = server_held_ms(addr)?;

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
    let slow_text = match p50_p99(&mut slow) {
        Some(text) => format!("{text} ({} samples)", slow.len()),
        None => "–".to_owned(),
    };
    let held_text = p50_p99(&mut held).unwrap_or_else(|| "–".to_owned());
    let targets = if s.slow_targets == s.targets {
        format!("{} (all slow)", s.targets)
    } else {
        s.targets.to_string()
    };
    Ok(format!(
        "| {} | {} | {:.1} | {:.1} | {} | {} | {:.1} / {:.1} MB | {:.1} ({:.1} in db-writer) |",
        targets,
        steady.len(),
        percentile(&mut durations, 0.5),
        durations.iter().cloned().fold(0.0, f64::max),
        slow_text,
        held_text,
        hwm_kb as f64 / 1024.0,
        rss_kb as f64 / 1024.0,
        cpu_per_cycle,
        writer_per_cycle,
    ))
}

/// "p50 / p99 ms" of some latencies, or `None` when there are none.
fn p50_p99(values: &mut [f64]) -> Option<String> {
    (!values.is_empty()).then(|| {
        format!(
            "{:.2} / {:.2} ms",
            percentile(values, 0.50),
            percentile(values, 0.99)
        )
    })
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`: peak RSS, `VmRSS`: current).
fn proc_status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// CPU time (user plus system, in milliseconds) a process has used: in total
/// and in its `db-writer` thread.
fn cpu_ms(pid: u32) -> anyhow::Result<CpuMs> {
    // The process line also counts threads that have exited.
    let mut cpu = CpuMs {
        total: stat_cpu_ms(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?,
        writer: 0,
    };
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        // A thread may exit between listing and reading: skip it.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        if comm.trim() == "db-writer" {
            cpu.writer += stat_cpu_ms(&stat)?;
        }
    }
    Ok(cpu)
}

#[derive(Debug, Default, Clone, Copy)]
struct CpuMs {
    total: u64,
    writer: u64,
}

/// utime + stime of one `/proc/.../stat` line, in milliseconds.
fn stat_cpu_ms(stat: &str) -> anyhow::Result<u64> {
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc stat")
    };
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 here.
    let total = ticks(11)? + ticks(12)?;
    let hz = rustix::param::clock_ticks_per_second();
    Ok(total * 1000 / hz)
}

struct ChildGuard(Child);

impl ChildGuard {
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
