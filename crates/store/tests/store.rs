#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use heartbeat_core::{CheckResult, Connectivity, CycleRecord, HostMetrics, Status, TargetCheck};
use heartbeat_store::{LATEST_VERSION, ReadStore, Store, StoreError, StoredCycle};
use rusqlite::Connection;

fn assert_same(stored: &StoredCycle, written: &CycleRecord) {
    assert_eq!(stored.ts_ms, written.started_at_ms);
    assert_eq!(stored.host, written.host);
    assert_eq!(stored.connectivity, written.connectivity);
    assert_eq!(stored.worker_status, written.worker_status);
    assert_eq!(stored.worker_error, written.worker_error);
    assert_eq!(stored.cycle_duration_ms, written.cycle_duration_ms);
    assert_eq!(stored.legacy_id, None);
    assert_eq!(stored.timestamp_lima, None);
    assert_eq!(stored.checks.len(), written.checks.len());
    for (s, w) in stored.checks.iter().zip(&written.checks) {
        assert_eq!(s.target, w.target);
        assert_eq!(s.result, w.result);
        assert_eq!(s.ts_ms, written.started_at_ms);
    }
}

#[test]
fn open_creates_directories_schema_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/metrics.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert!(store.integrity_check().unwrap());
    assert_eq!(store.cycle_count().unwrap(), 0);
    assert!(store.latest_cycle().unwrap().is_none());
    assert_eq!(store.path(), path);

    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn cycles_round_trip_with_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();

    let first = common::cycle(1_700_000_000_000, 12);
    let mut second = common::cycle(1_700_000_010_000, 3);
    second.host = HostMetrics::default();
    second.connectivity = Connectivity {
        internet_status: Some(false),
        ping_ms: None,
    };
    second.worker_status = None;
    second.worker_error = Some("connect timeout".into());
    second.checks[0].result = CheckResult {
        status: Status::Error,
        status_code: Some(404),
        latency_ms: Some(0.125),
        error_message: Some("HTTP 404 – ünïcode".into()),
    };
    let id1 = store.write_cycle(&first).unwrap();
    let id2 = store.write_cycle(&second).unwrap();
    assert!(id2 > id1);

    let cycles = store.cycles(10).unwrap();
    assert_eq!(cycles.len(), 2);
    assert_eq!(cycles[0].id, id2, "newest first");
    assert_same(&cycles[0], &second);
    assert_same(&cycles[1], &first);
    assert_eq!(store.cycles(1).unwrap().len(), 1);
    assert_eq!(store.latest_cycle().unwrap().unwrap().id, id2);
    assert_eq!(store.cycle_count().unwrap(), 2);
    assert_eq!(store.check_count().unwrap(), 15);

    // Same reads through a separate read-only connection.
    let reader = ReadStore::open(&path).unwrap();
    assert_eq!(reader.cycles(10).unwrap(), cycles);
    let targets = reader.targets().unwrap();
    assert_eq!(targets.len(), 12);
    assert_eq!(targets[0].1, common::target(0));
}

#[test]
fn targets_are_upserted_by_name_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut c = common::cycle(1_000, 2);
    {
        let mut store = Store::open(&path).unwrap();
        store.write_cycle(&c).unwrap();
        c.started_at_ms = 2_000;
        c.checks[1].target.url = "docker:web".into();
        c.checks[1].target.kind = "docker".into();
        store.write_cycle(&c).unwrap();
    }
    // A new writer has an empty cache and must find the existing rows, not duplicate them.
    let mut store = Store::open(&path).unwrap();
    c.started_at_ms = 3_000;
    store.write_cycle(&c).unwrap();
    let targets = store.targets().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[1].0, targets[0].0 + 1);
    assert_eq!(targets[1].1.url, "docker:web");
    assert_eq!(targets[1].1.kind, "docker");
    for cycle in store.cycles(3).unwrap() {
        assert_eq!(cycle.checks[1].target.url, "docker:web");
    }
}

#[test]
fn range_and_per_target_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    for ts in [10_000, 20_000, 30_000, 40_000] {
        store.write_cycle(&common::cycle(ts, 3)).unwrap();
    }
    let between = store.cycles_between(20_000, 40_000).unwrap();
    assert_eq!(
        between.iter().map(|c| c.ts_ms).collect::<Vec<_>>(),
        [20_000, 30_000],
        "half-open range, oldest first"
    );
    let checks = store.target_checks("svc1", 0, i64::MAX).unwrap();
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c.target.name == "svc1"));
    assert!(checks.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
    assert!(store.target_checks("nope", 0, i64::MAX).unwrap().is_empty());
}

#[test]
fn odd_values_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let mut c = common::cycle(i64::MIN, 0);
    c.cycle_duration_ms = f64::NAN;
    c.host.cpu_percent = Some(f64::NAN);
    c.checks.push(TargetCheck {
        target: heartbeat_core::TargetRef {
            name: String::new(),
            kind: "http".into(),
            url: "x\0y".into(),
        },
        result: CheckResult::failed(Status::Unknown, "nul \0 inside"),
    });
    store.write_cycle(&c).unwrap();
    let back = store.latest_cycle().unwrap().unwrap();
    // SQLite stores NaN as NULL.
    assert!(back.cycle_duration_ms.is_nan());
    assert_eq!(back.host.cpu_percent, None);
    assert_eq!(back.checks[0].target.url, "x\0y");
    assert_eq!(
        back.checks[0].result.error_message.as_deref(),
        Some("nul \0 inside")
    );
}

#[test]
fn large_cycle_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    for i in 0..3 {
        store
            .write_cycle(&common::cycle(i * 10_000, 10_000))
            .unwrap();
    }
    assert_eq!(store.check_count().unwrap(), 30_000);
    assert_eq!(store.targets().unwrap().len(), 10_000);
    let latest = store.latest_cycle().unwrap().unwrap();
    assert_eq!(latest.checks.len(), 10_000);
}

#[test]
fn legacy_view_has_the_old_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    let c = common::cycle(1_741_000_000_000, 5);
    let id = store.write_cycle(&c).unwrap();
    drop(store);
    let raw = Connection::open(&path).unwrap();
    let rows: Vec<(String, String, String, Option<i64>, i64, i64)> = raw
        .prepare(
            "SELECT service_name, service_url, status, status_code, cycle_id, ts_ms \
             FROM service_checks_legacy ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 5);
    for (row, check) in rows.iter().zip(&c.checks) {
        assert_eq!(row.0, check.target.name);
        assert_eq!(row.1, check.target.url);
        assert_eq!(row.2, check.result.status.as_str());
        assert_eq!(row.3, check.result.status_code.map(i64::from));
        assert_eq!(row.4, id);
        assert_eq!(row.5, c.started_at_ms);
    }
}

#[test]
fn reopening_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store.write_cycle(&common::cycle(5, 4)).unwrap();
    let before = store.cycles(10).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(store.cycles(10).unwrap(), before);
}

fn tables(path: &Path) -> Vec<String> {
    let raw = Connection::open(path).unwrap();
    raw.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn foreign_databases_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();

    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("invoices"), "{err}");
    assert_eq!(tables(&path), ["invoices"]);

    // Same table names as ours but another program's shape.
    let path = dir.path().join("lookalike.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE monitoring_cycles (id INTEGER PRIMARY KEY, at TEXT);
             CREATE TABLE service_checks (id INTEGER PRIMARY KEY, what TEXT);",
        )
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::ForeignSchema { .. }), "{err}");
    assert_eq!(tables(&path), ["monitoring_cycles", "service_checks"]);

    // Versioned, but not by us.
    let path = dir.path().join("versioned.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::ForeignSchema { .. }), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn missing_or_uninitialised_file_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    assert!(matches!(
        ReadStore::open(&path),
        Err(StoreError::NotReady { .. })
    ));
    assert!(!path.exists(), "a reader must not create the file");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        ReadStore::open(&path),
        Err(StoreError::NotReady { .. })
    ));
}

#[test]
fn reader_works_during_writes_and_after_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("metrics.db");
    let mut store = Store::open(&path).unwrap();
    store.write_cycle(&common::cycle(1_000, 5)).unwrap();

    let reader = ReadStore::open(&path).unwrap();
    assert_eq!(reader.cycle_count().unwrap(), 1);
    store.write_cycle(&common::cycle(2_000, 5)).unwrap();
    assert_eq!(reader.cycle_count().unwrap(), 2, "reader sees new commits");
    // A reader holding a connection does not block the writer.
    store.write_cycle(&common::cycle(3_000, 5)).unwrap();
    assert_eq!(reader.cycles(10).unwrap().len(), 3);
    drop(reader);

    drop(store); // clean close
    let wal = data.join("metrics.db-wal");
    let shm = data.join("metrics.db-shm");
    assert!(wal.exists(), "-wal must survive a clean close");
    assert!(shm.exists(), "-shm must survive a clean close");

    // Simulate the dashboard's read-only mount. As root chmod does not restrict, and the
    // file checks above are what matters.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let result = ReadStore::open(&path).and_then(|r| {
        assert!(r.integrity_check()?);
        r.cycle_count()
    });
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(result.unwrap(), 3);
}

#[test]
fn failed_cycle_leaves_nothing_and_cache_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store.write_cycle(&common::cycle(1_000, 2)).unwrap();
    // Make the insert of one check fail mid-cycle, after new targets were upserted.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON service_checks
         WHEN NEW.error_message = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
    )
    .unwrap();
    let mut bad = common::cycle(2_000, 6);
    bad.checks[4].result.error_message = Some("poison".into());
    assert!(store.write_cycle(&bad).is_err());
    assert_eq!(store.cycle_count().unwrap(), 1);
    assert_eq!(store.check_count().unwrap(), 2);
    assert_eq!(store.targets().unwrap().len(), 2);

    raw.execute_batch("DROP TRIGGER poison;").unwrap();
    // Targets created by the rolled-back transaction must be created again, not taken from
    // the cache (the foreign keys would reject stale ids).
    bad.checks[4].result.error_message = None;
    store.write_cycle(&bad).unwrap();
    assert_eq!(store.targets().unwrap().len(), 6);
    assert_same(&store.latest_cycle().unwrap().unwrap(), &bad);
    assert!(store.integrity_check().unwrap());
}
