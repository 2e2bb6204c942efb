//! Median time of `Store::write_cycle` for cycles of 1 000 and 10 000 checks.
//! Run with `cargo bench -p heartbeat-store`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use heartbeat_store::Store;

const RUNS: usize = 30;

fn main() {
    for checks in [1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("bench.db")).unwrap();
        // Warm-up: creates the targets, as the agent's first cycle does.
        store.write_cycle(&common::cycle(0, checks)).unwrap();
        let mut times: Vec<f64> = (1..=RUNS)
            .map(|i| {
                let cycle = common::cycle(i as i64 * 10_000, checks);
                let start = Instant::now();
                store.write_cycle(&cycle).unwrap();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "write_cycle {checks:>6} checks: median {:.2} ms, min {:.2} ms, max {:.2} ms ({RUNS} runs)",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
    }
}
