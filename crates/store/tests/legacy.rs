//! Adoption of a database written by the replaced Python system.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use heartbeat_core::Status;
use heartbeat_store::{LATEST_VERSION, ReadStore, Store, StoreError, StoredCycle};
use rusqlite::{Connection, params};

/// The replaced system's schema, column types as in seed 002. One index deliberately reuses a
/// name of ours, to prove old index names cannot collide.
const LEGACY_SCHEMA: &str = "
CREATE TABLE monitoring_cycles (
    id TEXT PRIMARY KEY,
    timestamp_lima TEXT,
    cpu_percent REAL,
    ram_percent REAL,
    ram_used_mb REAL,
    disk_percent REAL,
    uptime_seconds REAL,
    container_count INTEGER,
    internet_status BOOLEAN,
    ping_ms REAL,
    worker_status INTEGER,
    cycle_duration_ms INTEGER
);
CREATE TABLE service_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle_id TEXT,
    service_name TEXT,
    service_url TEXT,
    status TEXT,
    status_code INTEGER,
    latency_ms REAL,
    error_message TEXT
);
CREATE INDEX idx_monitoring_cycles_ts ON monitoring_cycles (timestamp_lima);
CREATE INDEX idx_service_name ON service_checks (service_name);
CREATE INDEX idx_cycle_id ON service_checks (cycle_id);
";

struct Cycle {
    id: &'static str,
    ts: &'static str,
    cpu: Option<f64>,
    ram: Option<f64>,
    ram_mb: Option<f64>,
    disk: Option<f64>,
    up: Option<f64>,
    containers: Option<i64>,
    internet: Option<bool>,
    ping: Option<f64>,
    worker: Option<i64>,
    duration: Option<f64>,
}

struct Check {
    id: i64,
    cycle: Option<&'static str>,
    name: &'static str,
    url: Option<&'static str>,
    status: Option<&'static str>,
    code: Option<i64>,
    latency: Option<f64>,
    error: Option<&'static str>,
}

fn full(id: &'static str, ts: &'static str) -> Cycle {
    Cycle {
        id,
        ts,
        cpu: Some(3.5),
        ram: Some(61.2),
        ram_mb: Some(1834.25),
        disk: Some(47.0),
        up: Some(86_400.5),
        containers: Some(9),
        internet: Some(true),
        ping: Some(21.75),
        worker: Some(200),
        duration: Some(1234.0),
    }
}

fn cycles() -> Vec<Cycle> {
    vec![
        full("0b7a-lima", "2025-03-01T10:00:00.123456-05:00"),
        // No fraction.
        full("1c8b-nofrac", "2025-03-01T10:00:10-05:00"),
        // Just before the US spring-forward, with a fraction that must not roll over.
        Cycle {
            worker: Some(220),
            duration: Some(15.7),
            ..full("2d9c-dst-before", "2025-03-09T01:59:59.999999-05:00")
        },
        // Just after it, in the new offset.
        Cycle {
            worker: None,
            internet: Some(false),
            ping: None,
            ..full("3ead-dst-after", "2025-03-09T03:00:00.000400-04:00")
        },
        // The ambiguous autumn hour, both occurrences.
        full("4fbe-fold-1", "2025-10-26T02:30:00.500600+02:00"),
        full("5acf-fold-2", "2025-10-26T02:30:00.500600+01:00"),
        // Quarter-hour offset and UTC.
        full("6bd0-nepal", "2025-06-01T12:00:00.000001+05:45"),
        full("7ce1-utc", "2025-06-01T12:00:00Z"),
        // Docker unreachable, everything else missing.
        Cycle {
            id: "8df2-nulls",
            ts: "2025-06-02T00:00:00.250000-05:00",
            cpu: None,
            ram: None,
            ram_mb: None,
            disk: None,
            up: None,
            containers: Some(-1),
            internet: None,
            ping: None,
            worker: None,
            duration: None,
        },
    ]
}

fn checks() -> Vec<Check> {
    let c = |id, cycle, name, url, status, code, latency, error| Check {
        id,
        cycle,
        name,
        url,
        status,
        code,
        latency,
        error,
    };
    let web = Some("https://example.com/health");
    let web_new = Some("https://new.example.com/health");
    let nginx = Some("docker:my-nginx");
    vec![
        c(
            1,
            Some("0b7a-lima"),
            "web",
            web,
            Some("healthy"),
            None,
            Some(48.2),
            None,
        ),
        c(
            2,
            Some("0b7a-lima"),
            "nginx",
            nginx,
            Some("healthy"),
            None,
            Some(3.1),
            None,
        ),
        c(
            3,
            Some("0b7a-lima"),
            "API",
            Some("http://10.0.0.5:8080/"),
            Some("error"),
            None,
            None,
            Some("HTTP 500"),
        ),
        c(
            4,
            Some("1c8b-nofrac"),
            "web",
            web,
            Some("timeout"),
            None,
            None,
            Some("Timeout"),
        ),
        c(
            5,
            Some("1c8b-nofrac"),
            "nginx",
            nginx,
            Some("down"),
            None,
            None,
            Some("Container state: exited"),
        ),
        c(
            6,
            Some("1c8b-nofrac"),
            "API",
            Some("http://10.0.0.5:8080/"),
            Some("unknown"),
            None,
            None,
            Some("boom"),
        ),
        // Gaps in the ids, as AUTOINCREMENT leaves after failed inserts.
        c(
            10,
            Some("2d9c-dst-before"),
            "web",
            web,
            Some("Healthy "),
            Some(200),
            Some(12.0),
            None,
        ),
        c(
            11,
            Some("2d9c-dst-before"),
            "nginx",
            nginx,
            Some("unknown"),
            None,
            None,
            Some("Docker Socket Unavailable"),
        ),
        // Unrecognised status text: kept in error_message when that is empty...
        c(
            12,
            Some("3ead-dst-after"),
            "web",
            web,
            Some("degraded"),
            Some(299),
            Some(7.5),
            None,
        ),
        // ...and not when it is not.
        c(
            13,
            Some("3ead-dst-after"),
            "nginx",
            nginx,
            Some("sideways"),
            None,
            None,
            Some("real error"),
        ),
        c(
            14,
            Some("3ead-dst-after"),
            "API",
            None,
            None,
            None,
            None,
            None,
        ),
        c(
            20,
            Some("4fbe-fold-1"),
            "web",
            web,
            Some("down"),
            None,
            None,
            Some("Connection refused"),
        ),
        c(
            21,
            Some("5acf-fold-2"),
            "web",
            web,
            Some("healthy"),
            None,
            Some(0.004),
            None,
        ),
        c(
            22,
            Some("6bd0-nepal"),
            "web",
            web,
            Some("error"),
            Some(503),
            Some(100.0),
            Some("HTTP 503"),
        ),
        c(
            23,
            Some("7ce1-utc"),
            "web",
            web_new,
            Some("healthy"),
            None,
            Some(9.0),
            None,
        ),
        c(
            24,
            Some("8df2-nulls"),
            "web",
            web_new,
            Some("healthy"),
            None,
            Some(11.0),
            None,
        ),
        c(
            25,
            Some("8df2-nulls"),
            "nginx",
            nginx,
            Some("healthy"),
            None,
            Some(1.0),
            None,
        ),
        // Orphans: a cycle id that does not exist, and none at all.
        c(
            30,
            Some("ghost-cycle"),
            "web",
            web_new,
            Some("timeout"),
            None,
            None,
            Some("Timeout"),
        ),
        c(
            31,
            None,
            "nginx",
            nginx,
            Some("down"),
            None,
            None,
            Some("Container not found"),
        ),
    ]
}

fn build_legacy(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(LEGACY_SCHEMA).unwrap();
    for c in cycles() {
        conn.execute(
            "INSERT INTO monitoring_cycles VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                c.id, c.ts, c.cpu, c.ram, c.ram_mb, c.disk, c.up, c.containers, c.internet, c.ping,
                c.worker, c.duration
            ],
        )
        .unwrap();
    }
    for k in checks() {
        conn.execute(
            "INSERT INTO service_checks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                k.id, k.cycle, k.name, k.url, k.status, k.code, k.latency, k.error
            ],
        )
        .unwrap();
    }
}

/// Independent oracle for SQLite's conversion: nearest millisecond, never past .999.
fn expected_ms(text: &str) -> i64 {
    let ts: jiff::Timestamp = text.parse().unwrap();
    let ns = ts.as_nanosecond();
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).unwrap();
    let sub = i64::try_from(ns.rem_euclid(1_000_000_000)).unwrap();
    secs * 1000 + ((sub + 500_000) / 1_000_000).min(999)
}

fn expected_status(text: Option<&str>) -> (Status, bool) {
    match text.map(|t| t.trim().parse::<Status>()) {
        Some(Ok(s)) => (s, false),
        Some(Err(_)) => (Status::Unknown, true),
        None => (Status::Unknown, false),
    }
}

fn read_all(path: &Path) -> Vec<StoredCycle> {
    let reader = ReadStore::open(path).unwrap();
    let n = reader.cycle_count().unwrap();
    reader.cycles(usize::try_from(n).unwrap()).unwrap()
}

#[test]
fn adoption_keeps_every_row_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db");
    build_legacy(&path);
    assert!(
        matches!(ReadStore::open(&path), Err(StoreError::NotReady { .. })),
        "an unadopted legacy file is not ready for readers"
    );

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert!(store.integrity_check().unwrap());
    drop(store);

    let stored = read_all(&path);
    let legacy_cycles = cycles();
    // Every legacy cycle plus one placeholder per orphan group (ghost-cycle, NULL).
    assert_eq!(stored.len(), legacy_cycles.len() + 2);
    let by_legacy = |id: &str| {
        stored
            .iter()
            .find(|c| c.legacy_id.as_deref() == Some(id) && c.timestamp_lima.is_some())
            .unwrap_or_else(|| panic!("cycle {id} lost"))
    };

    for lc in &legacy_cycles {
        let c = by_legacy(lc.id);
        assert_eq!(c.timestamp_lima.as_deref(), Some(lc.ts));
        assert_eq!(c.ts_ms, expected_ms(lc.ts), "{}", lc.ts);
        assert_eq!(c.host.cpu_percent, lc.cpu);
        assert_eq!(c.host.ram_percent, lc.ram);
        assert_eq!(c.host.ram_used_mb, lc.ram_mb);
        assert_eq!(c.host.disk_percent, lc.disk);
        assert_eq!(c.host.uptime_seconds, lc.up);
        assert_eq!(c.host.container_count, lc.containers);
        assert_eq!(c.connectivity.internet_status, lc.internet);
        assert_eq!(c.connectivity.ping_ms, lc.ping);
        assert_eq!(c.worker_status, lc.worker);
        assert_eq!(c.worker_error, None);
        match lc.duration {
            Some(d) => assert_eq!(c.cycle_duration_ms, d),
            None => assert!(c.cycle_duration_ms.is_nan()),
        }
    }
    // Spot-check the oracle itself on the tricky ones.
    assert_eq!(by_legacy("2d9c-dst-before").ts_ms % 1000, 999);
    assert_eq!(
        by_legacy("3ead-dst-after").ts_ms - by_legacy("2d9c-dst-before").ts_ms,
        1,
        "01:59:59.999 EST and 03:00:00.000 EDT are 1 ms apart"
    );
    assert_eq!(
        by_legacy("5acf-fold-2").ts_ms - by_legacy("4fbe-fold-1").ts_ms,
        3_600_000
    );

    // Newest first by real time, not by text.
    assert!(stored.windows(2).all(|w| w[0].ts_ms >= w[1].ts_ms));

    // Targets: one per name, URL and kind from the newest check, ids in order of appearance.
    let targets = ReadStore::open(&path).unwrap().targets().unwrap();
    let names: Vec<&str> = targets.iter().map(|(_, t)| t.name.as_str()).collect();
    assert_eq!(names, ["web", "nginx", "API"]);
    assert_eq!(targets[0].1.url, "https://new.example.com/health");
    assert_eq!(targets[0].1.kind, "http");
    assert_eq!(targets[1].1.url, "docker:my-nginx");
    assert_eq!(targets[1].1.kind, "docker");
    assert_eq!(targets[2].1.kind, "http");

    // Every check, by id.
    let all_checks: Vec<(&StoredCycle, &heartbeat_store::StoredCheck)> = stored
        .iter()
        .flat_map(|c| c.checks.iter().map(move |k| (c, k)))
        .collect();
    let legacy_checks = checks();
    assert_eq!(all_checks.len(), legacy_checks.len());
    for lk in &legacy_checks {
        let (cycle, k) = all_checks
            .iter()
            .find(|(_, k)| k.id == lk.id)
            .unwrap_or_else(|| panic!("check {} lost", lk.id));
        assert_eq!(k.target.name, lk.name);
        let url = lk.url.unwrap_or("");
        assert_eq!(k.target.url, url, "check {}", lk.id);
        let (status, keep_text) = expected_status(lk.status);
        assert_eq!(k.result.status, status, "check {}", lk.id);
        let error = if keep_text && lk.error.is_none() {
            lk.status
        } else {
            lk.error
        };
        assert_eq!(k.result.error_message.as_deref(), error, "check {}", lk.id);
        assert_eq!(
            k.result.status_code,
            lk.code.map(|c| u16::try_from(c).unwrap())
        );
        assert_eq!(k.result.latency_ms, lk.latency);
        assert_eq!(k.ts_ms, cycle.ts_ms);
        match lk.cycle {
            Some(id) if id != "ghost-cycle" => {
                assert_eq!(cycle.legacy_id.as_deref(), Some(id));
                assert_eq!(
                    k.ts_ms,
                    expected_ms(cycles().iter().find(|c| c.id == id).unwrap().ts)
                );
            }
            orphan => {
                // Placeholder: no metrics, named after the missing cycle, timed like its
                // nearest earlier check.
                assert_eq!(cycle.legacy_id.as_deref(), orphan);
                assert_eq!(cycle.timestamp_lima, None);
                assert_eq!(cycle.host, Default::default());
                assert_eq!(cycle.ts_ms, expected_ms("2025-06-02T00:00:00.250000-05:00"));
            }
        }
    }

    // The old tables are gone, the new ones hold everything, and new ids do not collide.
    let raw = Connection::open(&path).unwrap();
    let legacy_left: i64 = raw
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'legacy%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(legacy_left, 0);
    drop(raw);
    let mut store = Store::open(&path).unwrap();
    let mut next = heartbeat_core::CycleRecord {
        started_at_ms: expected_ms("2025-11-01T00:00:00Z"),
        host: Default::default(),
        connectivity: Default::default(),
        worker_status: None,
        worker_error: None,
        cycle_duration_ms: 1.0,
        checks: Vec::new(),
    };
    next.checks.push(heartbeat_core::TargetCheck {
        target: targets[0].1.clone(),
        result: heartbeat_core::CheckResult::healthy(5.0, Some(200)),
    });
    store.write_cycle(&next).unwrap();
    let latest = store.latest_cycle().unwrap().unwrap();
    assert!(latest.checks[0].id > 31, "{latest:?}");
    assert_eq!(store.targets().unwrap().len(), 3, "adopted target reused");
}

#[test]
fn reopening_an_adopted_database_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db");
    build_legacy(&path);
    drop(Store::open(&path).unwrap());
    let before = read_all(&path);
    drop(Store::open(&path).unwrap());
    let after = read_all(&path);
    // NaN != NaN, so compare the debug text.
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
}

fn legacy_state(path: &Path) -> (i64, Vec<String>, i64, i64) {
    let raw = Connection::open(path).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let names: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let cycles: i64 = raw
        .query_row("SELECT count(*) FROM monitoring_cycles", [], |r| r.get(0))
        .unwrap();
    let checks: i64 = raw
        .query_row("SELECT count(*) FROM service_checks", [], |r| r.get(0))
        .unwrap();
    (version, names, cycles, checks)
}

#[test]
fn unparseable_timestamp_aborts_without_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db");
    build_legacy(&path);
    // Offset-less text would be read as UTC and misplace the cycle by hours.
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO monitoring_cycles (id, timestamp_lima) VALUES ('naive', '2025-03-01T10:00:00')",
            [],
        )
        .unwrap();
    let before = legacy_state(&path);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Legacy(_)), "{err}");
    assert!(err.to_string().contains("naive"), "{err}");
    assert_eq!(legacy_state(&path), before);
}

#[test]
fn unknown_legacy_column_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db");
    build_legacy(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE service_checks ADD COLUMN region TEXT;")
        .unwrap();
    let before = legacy_state(&path);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("region"), "{err}");
    assert_eq!(legacy_state(&path), before);
}

#[test]
fn older_legacy_without_optional_columns_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE monitoring_cycles (id TEXT PRIMARY KEY, timestamp_lima TEXT, cpu_percent REAL);
             CREATE TABLE service_checks (id INTEGER PRIMARY KEY AUTOINCREMENT, cycle_id TEXT,
                 service_name TEXT, service_url TEXT, status TEXT);
             INSERT INTO monitoring_cycles VALUES ('a', '2024-01-01T00:00:00-05:00', 1.5);
             INSERT INTO service_checks (cycle_id, service_name, service_url, status)
                 VALUES ('a', 'web', 'http://x', 'healthy');",
        )
        .unwrap();
    let store = Store::open(&path).unwrap();
    let cycles = store.cycles(10).unwrap();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].host.cpu_percent, Some(1.5));
    assert_eq!(cycles[0].host.ram_used_mb, None);
    assert_eq!(cycles[0].ts_ms, expected_ms("2024-01-01T05:00:00Z"));
    assert_eq!(cycles[0].checks[0].result.status, Status::Healthy);
}
