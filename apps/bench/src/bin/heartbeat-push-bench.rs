//! `heartbeat-push-bench`: drives the release agent's push listener over loopback with many
//! concurrent keep-alive clients and reports pings/s and latency percentiles. Every ping is
//! answered only after the transaction holding it committed, so the figures include the
//! group commit. Afterwards it checks that every acknowledged ping is in the database.
//!
//! `cargo build --release -p heartbeat-agent -p heartbeat-bench`, then
//! `target/release/heartbeat-push-bench [seconds per scenario]`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use heartbeat_store::ReadStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKENS: usize = 256;

fn token(i: usize) -> String {
    format!("bench-push-token-{i:06}-abcdefgh")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("the argument is the seconds each scenario runs")?
        .unwrap_or(10.0);
    let agent_bin = heartbeat_bench::agent_binary()?;
    let mut report = String::from(
        "| clients (keep-alive) | pings acked | pings/s | p50 ms | p99 ms | max ms | all acked pings stored | 1 s cycles committed during the run |\n|---|---|---|---|---|---|---|---|\n",
    );
    for clients in [16, 64, 256] {
        let row = scenario(&agent_bin, clients, Duration::from_secs_f64(seconds))?;
        println!("{row}");
        report.push_str(&row);
    }
    println!("\n{report}");
    Ok(())
}

fn scenario(agent_bin: &Path, clients: usize, run_for: Duration) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("metrics.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut env = format!(
        "LOOP_INTERVAL_SECONDS=1\nPING_URL=\nDOCKER_HOST=unix:///nonexistent.sock\nSQLITE_DB_PATH={}\nRUST_LOG=warn\nAGENT_ADDR=127.0.0.1:{port}\nPUSH_RATE_LIMIT=0\n",
        db.display()
    );
    for i in 0..TOKENS {
        writeln!(
            env,
            "SERVICE_URL_p{i}=push://\nSERVICE_TOKEN_p{i}={}",
            token(i)
        )?;
    }
    let env_path = dir.path().join("bench.env");
    std::fs::write(&env_path, env)?;
    let _agent = Killed(
        Command::new(agent_bin)
            .arg("--env-file")
            .arg(&env_path)
            .current_dir(dir.path())
            .env_clear()
            .stdout(Stdio::null())
            .spawn()?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = format!("127.0.0.1:{port}");
    let wall_start_ms = now_ms();
    let (acked, mut latencies, elapsed) = runtime.block_on(async {
        let give_up = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).await.is_err() {
            if Instant::now() > give_up {
                bail!("the agent never listened on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
        }
        let start = Instant::now();
        let stop_at = start + run_for;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move { client(&addr, c, stop_at).await }));
        }
        let mut latencies = Vec::new();
        let mut acked = 0usize;
        for t in tasks {
            let l = t.await??;
            acked += l.len();
            latencies.extend(l);
        }
        anyhow::Ok((acked, latencies, start.elapsed()))
    })?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let store = ReadStore::open(&db)?;
    let mut stored = 0usize;
    for i in 0..TOKENS {
        stored += store.push_events(&format!("p{i}"), usize::MAX >> 1)?.len();
    }
    // Cycles keep their schedule under the flood: pings never starve the writer's cycle work.
    let cycles = store.cycles_between(wall_start_ms, now_ms())?.len();
    Ok(format!(
        "| {clients} | {acked} | {:.0} | {:.2} | {:.2} | {:.2} | {} ({stored} rows) | {cycles} in {:.1} s |\n",
        acked as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(0.0),
        if stored >= acked { "yes" } else { "NO" },
        elapsed.as_secs_f64(),
    ))
}

use heartbeat_core::now_ms;

/// One keep-alive connection sending `GET /ping/<token>` back to back until `stop_at`;
/// returns the latency of each acknowledged ping in ms.
async fn client(addr: &str, index: usize, stop_at: Instant) -> anyhow::Result<Vec<f64>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut n = 0usize;
    while Instant::now() < stop_at {
        let t = token((index + n * 31) % TOKENS);
        n += 1;
        let request = format!(
            "GET /ping/{t} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"
        );
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        // The answer is a short header block and the body "OK".
        let mut got = 0usize;
        loop {
            let r = stream.read(&mut buf[got..]).await?;
            if r == 0 {
                bail!("the agent closed the connection");
            }
            got += r;
            if buf[..got].ends_with(b"\r\n\r\nOK") {
                break;
            }
            if got == buf.len() {
                bail!("unexpected answer");
            }
        }
        if !buf.starts_with(b"HTTP/1.1 200") {
            bail!(
                "ping refused: {}",
                String::from_utf8_lossy(&buf[..got.min(200)])
            );
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}
