//! Dashboard reads over known rows written through `Store::write_cycle_with`.
#![allow(clippy::unwrap_used)]

use heartbeat_core::{
    CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck, TargetRef,
};
use heartbeat_store::{
    CheckBucket, CycleEffects, IncidentChange, RangeQuery, ReadStore, Retention, Source, Store,
    StoreError,
};

/// An hour boundary (UTC), so minute and hour alignment are easy to reason about.
const T: i64 = 1_699_999_200_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn target(name: &str) -> TargetRef {
    TargetRef {
        name: name.to_owned(),
        kind: "http".to_owned(),
        url: format!("http://{name}.internal/health"),
    }
}

fn check(name: &str, result: CheckResult) -> TargetCheck {
    TargetCheck {
        target: target(name),
        result,
    }
}

fn cycle(ts_ms: i64, checks: Vec<TargetCheck>) -> CycleRecord {
    CycleRecord {
        started_at_ms: ts_ms,
        host: HostMetrics {
            cpu_percent: Some(10.0),
            ram_percent: Some(50.0),
            ram_used_mb: Some(1024.0),
            disk_percent: None,
            uptime_seconds: Some(100.0),
            container_count: Some(3),
        },
        connectivity: Connectivity {
            internet_status: Some(true),
            ping_ms: Some(20.0),
        },
        worker_status: Some(200),
        worker_error: None,
        cycle_duration_ms: 8.0,
        checks,
    }
}

fn healthy(ms: f64) -> CheckResult {
    CheckResult::healthy(ms, Some(200))
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("m.db")).unwrap();
    (dir, store)
}

#[test]
fn buckets_align_to_utc_multiples_and_gaps_are_null() {
    let (dir, mut store) = open();
    store
        .write_cycle(&cycle(T + 5 * SEC, vec![check("web", healthy(10.0))]))
        .unwrap();
    store
        .write_cycle(&cycle(T + 15 * SEC, vec![check("web", healthy(30.0))]))
        .unwrap();
    // Nothing in minute 1.
    store
        .write_cycle(&cycle(T + 125 * SEC, vec![check("web", healthy(4.0))]))
        .unwrap();

    let read = ReadStore::open(&dir.path().join("m.db")).unwrap();
    // Unaligned edges widen to whole minutes; 120 s and 60 s buckets give the same alignment.
    let q = RangeQuery {
        from_ms: T + 30 * SEC,
        to_ms: T + 150 * SEC,
        bucket_ms: MIN,
    };
    let d = read.dashboard(&q).unwrap();
    assert_eq!(d.source, Source::Minute);
    assert_eq!((d.from_ms, d.to_ms), (T, T + 3 * MIN));
    assert_eq!(d.bucket_starts, vec![T, T + MIN, T + 2 * MIN]);
    let web = &d.targets[0];
    assert_eq!(web.target.name, "web");
    assert_eq!(web.buckets.len(), 3);
    let b0 = web.buckets[0].unwrap();
    assert_eq!(b0.start_ms, T);
    assert_eq!(b0.counts.healthy, 2);
    assert_eq!(b0.latency.avg(), Some(20.0));
    assert_eq!(b0.latency.min, Some(10.0));
    assert_eq!(b0.latency.max, Some(30.0));
    assert_eq!(b0.latency.jitter(), Some(20.0));
    assert_eq!(web.buckets[1], None, "an empty bucket is null, not zero");
    assert_eq!(web.buckets[2].unwrap().latency.jitter(), Some(0.0));
    assert_eq!(d.cycles[1], None);
    assert_eq!(d.cycles[0].unwrap().n, 2);
    assert_eq!(d.cycles[0].unwrap().cpu, Some(10.0));
    assert_eq!(
        d.cycles[0].unwrap().disk,
        None,
        "never recorded: null, not 0"
    );

    // The same from raw rows (10 s buckets).
    let raw = read
        .dashboard(&RangeQuery {
            bucket_ms: 10 * SEC,
            ..q
        })
        .unwrap();
    assert_eq!(raw.source, Source::Raw);
    assert_eq!(raw.from_ms, T + 30 * SEC);
    assert_eq!(raw.bucket_starts.len(), 12);
    let filled: Vec<usize> = raw.targets[0]
        .buckets
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.map(|_| i))
        .collect();
    assert_eq!(filled, vec![9], "only T+125 s falls in [T+30 s, T+150 s)");
}

#[test]
fn window_stats_uptime_and_latest_values() {
    let (_dir, mut store) = open();
    let results = [
        healthy(10.0),
        healthy(20.0),
        CheckResult::failed(Status::Down, "connection refused"),
        CheckResult {
            status: Status::Error,
            status_code: Some(500),
            latency_ms: Some(60.0),
            error_message: Some("HTTP 500".into()),
        },
        CheckResult::failed(Status::Timeout, "timed out"),
    ];
    for (i, r) in results.iter().enumerate() {
        let mut c = cycle(T + i as i64 * 10 * SEC, vec![check("api", r.clone())]);
        c.connectivity.internet_status = Some(i != 1);
        c.worker_status = if i == 2 { None } else { Some(200) };
        c.cycle_duration_ms = 5.0 + i as f64;
        store.write_cycle(&c).unwrap();
    }
    let d = store
        .dashboard(&RangeQuery {
            from_ms: T,
            to_ms: T + HOUR,
            bucket_ms: 2 * MIN,
        })
        .unwrap();
    let api = &d.targets[0];
    let s = api.stats;
    assert_eq!(s.counts.total(), 5);
    assert_eq!(
        (
            s.counts.healthy,
            s.counts.down,
            s.counts.error,
            s.counts.timeout,
            s.counts.unknown
        ),
        (2, 1, 1, 1, 0)
    );
    assert_eq!(s.uptime_pct(), Some(40.0));
    assert_eq!(s.latency.min, Some(10.0));
    assert_eq!(s.latency.max, Some(60.0));
    assert_eq!(s.latency.avg(), Some(30.0));
    assert_eq!(s.latency.jitter(), Some(50.0));

    let latest = api.latest.as_ref().unwrap();
    assert_eq!(latest.ts_ms, T + 40 * SEC);
    assert_eq!(latest.status, Status::Timeout);
    assert_eq!(latest.error_message.as_deref(), Some("timed out"));

    let cs = d.cycle_stats;
    assert_eq!(cs.n, 5);
    assert_eq!((cs.online, cs.offline), (4, 1));
    assert_eq!((cs.worker.ok_200, cs.worker.none), (4, 1));
    assert_eq!(cs.duration.min, Some(5.0));
    assert_eq!(cs.duration.max, Some(9.0));
    let lc = d.latest_cycle.unwrap();
    assert_eq!(lc.ts_ms, T + 40 * SEC);
    assert_eq!(lc.host.container_count, Some(3));
    assert_eq!(lc.cycle_duration_ms, Some(9.0));

    // Coverage: 5 cycles, 10 s apart, over a 1 h range.
    assert_eq!(d.coverage.cycles, 5);
    assert_eq!(d.coverage.interval_ms, Some(10 * SEC));
    assert_eq!(d.coverage.covered_ms, Some(50 * SEC));
    assert_eq!(d.coverage.range_ms, HOUR);
}

#[test]
fn targets_shown_are_those_with_checks_in_range_or_in_the_latest_cycle() {
    let (_dir, mut store) = open();
    store
        .write_cycle(&cycle(
            T,
            vec![check("old", healthy(1.0)), check("web", healthy(1.0))],
        ))
        .unwrap();
    store
        .write_cycle(&cycle(T + 2 * HOUR, vec![check("web", healthy(2.0))]))
        .unwrap();
    // A window after the last cycle: no checks in it, but "web" is in the latest cycle.
    let d = store
        .dashboard(&RangeQuery {
            from_ms: T + 3 * HOUR,
            to_ms: T + 4 * HOUR,
            bucket_ms: 2 * MIN,
        })
        .unwrap();
    let names: Vec<&str> = d.targets.iter().map(|t| t.target.name.as_str()).collect();
    assert_eq!(names, vec!["web"]);
    assert!(d.targets[0].buckets.iter().all(Option::is_none));
    assert_eq!(d.targets[0].latest.as_ref().unwrap().ts_ms, T + 2 * HOUR);
    assert_eq!(d.coverage.cycles, 0);
    assert_eq!(d.coverage.covered_ms, Some(0));
}

/// Three hours of 10 s cycles, three targets, latencies that are exact binary fractions
/// (so sums agree bit for bit whatever the order).
fn three_hours(store: &mut Store) {
    for i in 0..(3 * 360) {
        let ts = T + i * 10 * SEC;
        let checks = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let x = i + k as i64 * 7;
                let r = match x % 11 {
                    3 => CheckResult::failed(Status::Down, "refused"),
                    7 => CheckResult::failed(Status::Timeout, "timeout"),
                    9 => CheckResult {
                        status: Status::Error,
                        status_code: Some(503),
                        latency_ms: Some(0.5 * (x % 5) as f64),
                        error_message: Some("HTTP 503".into()),
                    },
                    _ => healthy(1.25 + 0.25 * (x % 97) as f64),
                };
                check(name, r)
            })
            .collect();
        let mut c = cycle(ts, checks);
        c.host.cpu_percent = Some(0.5 * (i % 13) as f64);
        c.connectivity.ping_ms = (i % 17 != 0).then_some(0.25 * (i % 31) as f64);
        c.worker_status = match i % 5 {
            0 => Some(220),
            1 => None,
            _ => Some(200),
        };
        store.write_cycle(&c).unwrap();
    }
}

fn merge(buckets: &[Option<CheckBucket>]) -> Option<CheckBucket> {
    buckets.iter().flatten().copied().reduce(|mut a, b| {
        a.counts.healthy += b.counts.healthy;
        a.counts.down += b.counts.down;
        a.counts.error += b.counts.error;
        a.counts.timeout += b.counts.timeout;
        a.counts.unknown += b.counts.unknown;
        a.latency.n += b.latency.n;
        a.latency.sum += b.latency.sum;
        a.latency.min = match (a.latency.min, b.latency.min) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.latency.max = match (a.latency.max, b.latency.max) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        a
    })
}

#[test]
fn rollups_and_raw_rows_give_the_same_answer() {
    let (_dir, mut store) = open();
    three_hours(&mut store);
    let q = |bucket_ms| RangeQuery {
        from_ms: T,
        to_ms: T + 3 * HOUR,
        bucket_ms,
    };
    let hour = store.dashboard(&q(HOUR)).unwrap();
    let minute = store.dashboard(&q(10 * MIN)).unwrap();
    let raw = store.dashboard(&q(20 * SEC)).unwrap();
    assert_eq!(
        (hour.source, minute.source, raw.source),
        (Source::Hour, Source::Minute, Source::Raw)
    );
    assert_eq!(hour.bucket_starts.len(), 3);
    for d in [&minute, &raw] {
        assert_eq!(d.targets.len(), 3);
        assert_eq!(d.cycle_stats, hour.cycle_stats);
        assert_eq!(d.coverage, hour.coverage);
        let per_hour = d.bucket_starts.len() / 3;
        for (t, ht) in d.targets.iter().zip(&hour.targets) {
            assert_eq!(t.stats, ht.stats, "{}", t.target.name);
            for h in 0..3 {
                let mut merged = merge(&t.buckets[h * per_hour..(h + 1) * per_hour]).unwrap();
                merged.start_ms = T + h as i64 * HOUR;
                assert_eq!(Some(merged), ht.buckets[h], "{} hour {h}", t.target.name);
            }
        }
    }
    assert_eq!(hour.cycle_stats.n, 1080);
    assert_eq!(hour.cycle_stats.worker.blind_220, 216);
    assert_eq!(hour.cycles[0].unwrap().n, 360);
    assert_eq!(minute.cycles[0].unwrap().n, 60);
    assert_eq!(raw.cycles[0].unwrap().n, 2);
    // Host averages agree as well.
    let cpu = |d: &heartbeat_store::DashboardData| {
        d.cycles
            .iter()
            .flatten()
            .map(|c| c.cpu.unwrap() * c.n as f64)
            .sum::<f64>()
    };
    assert_eq!(cpu(&raw), cpu(&hour));
    assert_eq!(hour.coverage.ratio, Some(1.0));
}

#[test]
fn target_detail_has_distribution_incidents_and_distinct_errors() {
    let (dir, mut store) = open();
    let hostile = "<script>alert(1)</script> \"quoted\" \u{0}";
    let errors = ["HTTP 502", hostile, "HTTP 502", "HTTP 502"];
    for (i, e) in errors.iter().enumerate() {
        let effects = if i == 0 {
            CycleEffects {
                incidents: vec![IncidentChange::Open {
                    item: "api".into(),
                    started_at_ms: T,
                    cause: "error".into(),
                    first_error: Some((*e).into()),
                    last_error: None,
                    maintenance: false,
                }],
                ..CycleEffects::default()
            }
        } else {
            CycleEffects::default()
        };
        let r = CheckResult {
            status: Status::Error,
            status_code: Some(502),
            latency_ms: Some(3.0),
            error_message: Some((*e).into()),
        };
        store
            .write_cycle_with(
                &cycle(
                    T + i as i64 * 30 * SEC,
                    vec![check("api", r), check("ok", healthy(1.0))],
                ),
                &effects,
            )
            .unwrap();
    }
    let read = ReadStore::open(&dir.path().join("m.db")).unwrap();
    let q = RangeQuery {
        from_ms: T,
        to_ms: T + HOUR,
        bucket_ms: 2 * MIN,
    };
    let d = read.target_detail("api", &q).unwrap().unwrap();
    assert_eq!(d.series.stats.counts.error, 4);
    assert_eq!(d.series.stats.uptime_pct(), Some(0.0));
    assert_eq!(d.incidents.len(), 1);
    assert_eq!(d.incidents[0].item, "api");
    assert_eq!(d.errors.len(), 2);
    assert_eq!(d.errors[0].message, "HTTP 502");
    assert_eq!(
        (d.errors[0].count, d.errors[0].last_seen_ms),
        (3, T + 90 * SEC)
    );
    assert_eq!(
        d.errors[1].message, hostile,
        "stored text comes back verbatim"
    );
    assert_eq!(d.errors[1].count, 1);

    let ok = read.target_detail("ok", &q).unwrap().unwrap();
    assert!(ok.incidents.is_empty() && ok.errors.is_empty());
    assert_eq!(ok.series.stats.uptime_pct(), Some(100.0));

    // An incident wholly before the window is not listed.
    let later = RangeQuery {
        from_ms: T + 2 * HOUR,
        to_ms: T + 3 * HOUR,
        bucket_ms: 2 * MIN,
    };
    assert_eq!(
        read.target_detail("api", &later)
            .unwrap()
            .unwrap()
            .incidents
            .len(),
        1,
        "still open"
    );
    assert!(read.target_detail("nope", &q).unwrap().is_none());
    assert!(matches!(
        read.target_detail("api", &RangeQuery { bucket_ms: 0, ..q }),
        Err(StoreError::InvalidQuery(_))
    ));
}

#[test]
fn prune_deletes_in_bounded_batches_and_keeps_recent_data() {
    let (_dir, mut store) = open();
    // 2 000 cycles × 3 checks, 10 s apart (~5.5 h), then one recent cycle.
    for i in 0..2_000 {
        let checks = ["a", "b", "c"]
            .iter()
            .map(|n| check(n, healthy(1.0)))
            .collect();
        store.write_cycle(&cycle(T + i * 10 * SEC, checks)).unwrap();
    }
    let now = T + 10 * HOUR;
    store
        .write_cycle(&cycle(now, vec![check("a", healthy(1.0))]))
        .unwrap();
    let retention = Retention {
        raw: std::time::Duration::from_secs(3600),
        minute: std::time::Duration::from_secs(4 * 3600),
        hour: std::time::Duration::from_secs(24 * 3600),
    };
    assert_eq!(Retention::default().raw.as_secs(), 14 * 86_400);
    let before = store
        .dashboard(&RangeQuery {
            from_ms: T,
            to_ms: now + 1,
            bucket_ms: HOUR,
        })
        .unwrap();

    let mut calls = 0;
    while store.prune(now, &retention).unwrap() {
        calls += 1;
        assert!(calls < 100, "prune never finished");
    }
    // 8 000 raw rows + minute rollups: more than one batch of PRUNE_BATCH.
    assert!(calls >= 1, "needed {calls} extra calls");
    assert_eq!(store.cycle_count().unwrap(), 1);
    assert_eq!(store.check_count().unwrap(), 1);
    assert!(!store.prune(now, &retention).unwrap(), "nothing left");

    // Hour rollups survive (24 h retention): the hourly answer is unchanged.
    let after = store
        .dashboard(&RangeQuery {
            from_ms: T,
            to_ms: now + 1,
            bucket_ms: HOUR,
        })
        .unwrap();
    assert_eq!(after.cycle_stats, before.cycle_stats);
    assert_eq!(after.targets.len(), 3);
    for (a, b) in after.targets.iter().zip(&before.targets) {
        assert_eq!(a.stats, b.stats);
    }
    // Minute rollups older than 4 h are gone: only the recent cycle's minute remains.
    let minutes = store
        .dashboard(&RangeQuery {
            from_ms: T,
            to_ms: now + 1,
            bucket_ms: MIN,
        })
        .unwrap();
    assert_eq!(minutes.cycle_stats.n, 1);
    assert!(store.integrity_check().unwrap());
}

#[test]
fn steady_state_prune_removes_each_minute_once_its_bucket_is_past_the_cutoff() {
    let (_dir, mut store) = open();
    // Three minutes of 10 s cycles for one target: minute rollups at T, T+1m, T+2m.
    for i in 0..18 {
        store
            .write_cycle(&cycle(T + i * 10 * SEC, vec![check("a", healthy(1.0))]))
            .unwrap();
    }
    let retention = Retention {
        raw: std::time::Duration::from_secs(4 * 3600),
        minute: std::time::Duration::from_secs(3600),
        hour: std::time::Duration::from_secs(24 * 3600),
    };
    let minutes_left = |store: &Store| -> Vec<i64> {
        let d = store
            .dashboard(&RangeQuery {
                from_ms: T,
                to_ms: T + 3 * MIN,
                bucket_ms: MIN,
            })
            .unwrap();
        d.targets[0]
            .buckets
            .iter()
            .flatten()
            .map(|b| b.start_ms)
            .collect()
    };
    assert_eq!(minutes_left(&store), vec![T, T + MIN, T + 2 * MIN]);
    // Cutoff T+30s: the minute at T is wholly older, the others are not.
    store.prune(T + HOUR + 30 * SEC, &retention).unwrap();
    assert_eq!(minutes_left(&store), vec![T + MIN, T + 2 * MIN]);
    // Cutoff T+60s: no rollup starts before it that is not gone already.
    store.prune(T + HOUR + 60 * SEC, &retention).unwrap();
    assert_eq!(minutes_left(&store), vec![T + MIN, T + 2 * MIN]);
    // Cutoff T+70s: the minute at T+1m is now older; a later call must still find it.
    store.prune(T + HOUR + 70 * SEC, &retention).unwrap();
    assert_eq!(minutes_left(&store), vec![T + 2 * MIN]);
    store.prune(T + HOUR + 150 * SEC, &retention).unwrap();
    assert!(minutes_left(&store).is_empty());
}
