//! Dashboard benchmark: `/api/live?range=30d` and `range=live` over a large database, and the
//! dashboard process's RSS. Not a test: it prints figures and asserts nothing about speed.
//!
//! ```text
//! cargo bench -p heartbeat-dashboard --bench live
//! ```
//!
//! Scale: `BENCH_DAYS` (default 30) days of 10 s cycles for `BENCH_TARGETS` (default 50)
//! targets, i.e. 259 200 cycles and 12.96 M checks at the defaults. The database is generated
//! by the store's bulk generator (`heartbeat_store::synthetic`, tested to write the same rows
//! and rollups as `Store::write_cycle`); it is cached as `target/dashboard-bench/metrics-<days>d-<targets>t.db`
//! and reused by later runs (delete it to regenerate). `BENCH_RUNS` (default 20) requests
//! are timed per range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use heartbeat_dashboard::{AppState, Config, router};
use heartbeat_store::synthetic::{DEFAULT_CHUNK_CYCLES, Synthetic};
use heartbeat_store::{ReadStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP_MS: i64 = 10_000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends 10 s cycles from `start` up to now to the database at `path`, through the store's
/// bulk generator (same rows and rollups as `write_cycle`, in large transactions).
fn generate(path: &Path, start: i64, n_targets: i64) {
    let cycles = (now_ms() - start) / STEP_MS;
    let mut synthetic = Synthetic::new(usize::try_from(n_targets).unwrap());
    let mut store = Store::open(path).unwrap();
    let began = Instant::now();
    let mut bulk = store.bulk_writer(DEFAULT_CHUNK_CYCLES).unwrap();
    for i in 0..cycles {
        bulk.append(&synthetic.cycle(start + i * STEP_MS)).unwrap();
        if i % 25_920 == 0 && i > 0 {
            eprintln!(
                "  {:>3}% ({i} cycles, {:.0} s)",
                i * 100 / cycles,
                began.elapsed().as_secs_f64()
            );
        }
    }
    bulk.finish().unwrap();
    drop(store);
    eprintln!(
        "generated {cycles} cycles in {:.0} s",
        began.elapsed().as_secs_f64()
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, usize) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw.len())
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let days = env_num("BENCH_DAYS", 30);
    let n_targets = env_num("BENCH_TARGETS", 50);
    let runs = usize::try_from(env_num("BENCH_RUNS", 20))
        .unwrap_or(20)
        .max(1);
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
        .join("dashboard-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join(format!("metrics-{days}d-{n_targets}t.db"));
    if db.exists() {
        // Reuse, topped up to now so that every range (and the real binary, which uses the
        // system clock) sees data up to the present.
        let last = ReadStore::open(&db)
            .unwrap()
            .latest_cycle()
            .unwrap()
            .map(|c| c.ts_ms);
        let from = last.map_or(now_ms() - days * 86_400_000, |t| t + STEP_MS);
        eprintln!(
            "reusing {}, topping up {} cycles",
            db.display(),
            (now_ms() - from) / STEP_MS
        );
        generate(&db, from, n_targets);
    } else {
        eprintln!(
            "generating {} ({days} d × 10 s × {n_targets} targets)...",
            db.display()
        );
        // Written under a temporary name, so an interrupted run is not reused.
        let tmp = db.with_extension("partial");
        for ext in ["partial", "partial-wal", "partial-shm"] {
            let _ = std::fs::remove_file(db.with_extension(ext));
        }
        generate(&tmp, now_ms() - days * 86_400_000, n_targets);
        for (from, to) in [
            ("partial", "db"),
            ("partial-wal", "db-wal"),
            ("partial-shm", "db-shm"),
        ] {
            let _ = std::fs::rename(db.with_extension(from), db.with_extension(to));
        }
    }
    let end_ms = ReadStore::open(&db)
        .unwrap()
        .latest_cycle()
        .unwrap()
        .map_or(0, |c| c.ts_ms)
        + 1;
    {
        let r = ReadStore::open(&db).unwrap();
        println!(
            "database: {} cycles, {} checks, {:.0} MB",
            r.cycle_count().unwrap(),
            r.check_count().unwrap(),
            std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // In-process, clock pinned just after the newest cycle.
        let state = AppState::with_clock(Config::new(&db), move || end_ms);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        for range in ["30d", "7d", "24h", "12h", "6h", "3h", "1h", "live"] {
            let path = format!("/api/live?range={range}");
            let (status, bytes) = http_get(addr, &path).await; // warm-up
            assert_eq!(status, 200, "{path}");
            let mut http = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                http_get(addr, &path).await;
                http.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let (med, min, max) = median(http);
            println!(
                "GET {path:<22} median {med:7.2} ms  min {min:7.2}  max {max:7.2}  ({runs} runs, {bytes} bytes, HTTP on 127.0.0.1)"
            );
        }
        // Query time alone (ReadStore::dashboard on one connection).
        let store = ReadStore::open(&db).unwrap();
        for (range, secs) in [("30d", 30 * 86_400), ("live", 300)] {
            let q = heartbeat_store::RangeQuery {
                from_ms: end_ms - secs * 1000,
                to_ms: end_ms + 1,
                bucket_ms: heartbeat_dashboard::nice_bucket(secs * 1000 / 30),
            };
            let mut t = Vec::new();
            for _ in 0..runs {
                let s = Instant::now();
                store.dashboard(&q).unwrap();
                t.push(s.elapsed().as_secs_f64() * 1e3);
            }
            let (med, min, max) = median(t);
            println!(
                "ReadStore::dashboard {range:<5} median {med:7.2} ms  min {min:7.2}  max {max:7.2}"
            );
        }
    });

    // The real binary's RSS after serving both ranges `runs` times each.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut child = Command::new(env!("CARGO_BIN_EXE_heartbeat-dashboard"))
        .env("DASHBOARD_ADDR", format!("127.0.0.1:{port}"))
        .env("SQLITE_DB_PATH", &db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    rt.block_on(async {
        // Wait (bounded) for the port: the process needs a moment to bind.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let (idle, _) = rss_kb(child.id());
        for _ in 0..runs {
            for range in ["30d", "live", "7d"] {
                http_get(addr, &format!("/api/live?range={range}")).await;
            }
        }
        let (rss, hwm) = rss_kb(child.id());
        println!(
            "heartbeat-dashboard RSS: {:.1} MB idle, {:.1} MB after {} requests (peak {:.1} MB)",
            idle as f64 / 1024.0,
            rss as f64 / 1024.0,
            runs * 3,
            hwm as f64 / 1024.0
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
