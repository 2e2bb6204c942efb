//! Versioned migrations keyed by `PRAGMA user_version`.
//!
//! To change the schema, append a [`Migration`] to [`MIGRATIONS`]; never edit a released one.
//! Migration `i` (0-based) brings the database to version `i + 1`, in its own transaction.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{StoreError, legacy};

/// Marks the file as Heartbeat's (`PRAGMA application_id`, "HBT1"), so a database of some
/// other program with a non-zero `user_version` is never mistaken for ours.
pub(crate) const APPLICATION_ID: i32 = 0x4842_5431;

pub(crate) struct Migration {
    /// What the step does, for humans reading the list.
    #[allow(dead_code)]
    pub description: &'static str,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        description: "v1: targets, monitoring_cycles, service_checks, service_checks_legacy view",
        sql: V1_SQL,
    },
    Migration {
        description: "v2: item_states, incidents, alert_outbox, alert_attempts (alerting)",
        sql: V2_SQL,
    },
    Migration {
        description: "v3: per-minute and per-hour rollups of checks and cycles, backfilled",
        sql: V3_SQL,
    },
    Migration {
        description: "v4: push_targets, push_events, push_tasks (push heartbeats)",
        sql: crate::push::V4_SQL,
    },
];

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Times are integer UTC milliseconds so range scans use plain integer indexes (the replaced
/// system compared local-time strings). Status is `Status::code()`; names and URLs live once in
/// `targets`, which keeps a check row at a few dozen bytes.
const V1_SQL: &str = "
CREATE TABLE targets (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    url           TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE monitoring_cycles (
    id                INTEGER PRIMARY KEY,
    ts_ms             INTEGER NOT NULL, -- UTC ms since the epoch, cycle start
    cpu_percent       REAL,
    ram_percent       REAL,
    ram_used_mb       REAL,
    disk_percent      REAL,
    uptime_seconds    REAL,
    container_count   INTEGER,
    internet_status   INTEGER,
    ping_ms           REAL,
    worker_status     INTEGER,
    worker_error      TEXT,
    cycle_duration_ms REAL,
    legacy_id         TEXT,             -- replaced system's uuid (adopted rows only)
    timestamp_lima    TEXT              -- replaced system's local timestamp (adopted rows only)
);
CREATE INDEX idx_monitoring_cycles_ts ON monitoring_cycles (ts_ms);

CREATE TABLE service_checks (
    id                 INTEGER PRIMARY KEY,
    cycle_id           INTEGER NOT NULL REFERENCES monitoring_cycles (id),
    target_id          INTEGER NOT NULL REFERENCES targets (id),
    ts_ms              INTEGER NOT NULL, -- copy of the cycle's ts_ms, for per-target range scans
    status             INTEGER NOT NULL, -- 0 healthy, 1 down, 2 error, 3 timeout, 4 unknown
    status_code        INTEGER,
    latency_ms         REAL,
    error_message      TEXT,
    legacy_service_url TEXT              -- adopted rows whose URL differs from targets.url
);
-- (ts_ms, target_id), not (target_id, ts_ms): with the target first every cycle dirties one
-- index page per target (measured: 10 000 checks/cycle grew from 20 ms to 300 ms after 100
-- cycles); time first appends, and per-target range scans filter target_id inside the index.
CREATE INDEX idx_service_checks_ts_target ON service_checks (ts_ms, target_id);
CREATE INDEX idx_service_checks_cycle ON service_checks (cycle_id);

-- The replaced system's shape, for people who query by hand.
CREATE VIEW service_checks_legacy AS
SELECT sc.id,
       t.name                                   AS service_name,
       COALESCE(sc.legacy_service_url, t.url)   AS service_url,
       CASE sc.status WHEN 0 THEN 'healthy' WHEN 1 THEN 'down' WHEN 2 THEN 'error'
                      WHEN 3 THEN 'timeout' ELSE 'unknown' END AS status,
       sc.status_code,
       sc.latency_ms,
       sc.error_message,
       sc.cycle_id,
       sc.ts_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', sc.ts_ms / 1000.0, 'unixepoch') AS ts_utc
FROM service_checks sc JOIN targets t ON t.id = sc.target_id;

PRAGMA application_id = 1212306481;
";

/// Alerting state. Only adds tables, so a v1 database upgrades in place without rewriting rows.
///
/// * `item_states` holds the state machine's opaque JSON per item, so a restart resumes where
///   it left off instead of re-alerting.
/// * At most one incident per item is open: the unique partial index enforces what
///   `IncidentChange::Update`/`Close` ("the item's open incident") rely on, and serves
///   `open_incidents` without scanning closed history.
/// * `alert_outbox` is a transactional outbox: alerts commit with the cycle that raised them and
///   are delivered afterwards. The CHECK keeps `status` inside `AlertStatus` even for rows
///   edited by hand; (status, next_attempt_ms) serves both `due_alerts` and `next_due_ms`.
const V2_SQL: &str = "
CREATE TABLE item_states (
    item       TEXT PRIMARY KEY,  -- target name, or an agent item such as 'agent:connectivity'
    state      TEXT NOT NULL,     -- opaque JSON owned by the alert state machine
    updated_ms INTEGER NOT NULL   -- UTC ms of the last write
);

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY,
    item          TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,           -- NULL while open
    cause         TEXT NOT NULL,     -- status name
    first_error   TEXT,
    last_error    TEXT,
    maintenance   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_incidents_item_started ON incidents (item, started_at_ms);
CREATE UNIQUE INDEX idx_incidents_open ON incidents (item) WHERE ended_at_ms IS NULL;

CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    created_ms      INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    item            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,   -- JSON
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'held', 'suppressed', 'sent', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    last_error      TEXT,
    sent_ms         INTEGER
);
CREATE INDEX idx_alert_outbox_status_next ON alert_outbox (status, next_attempt_ms);

CREATE TABLE alert_attempts (
    id          INTEGER PRIMARY KEY,
    alert_id    INTEGER NOT NULL REFERENCES alert_outbox (id),
    at_ms       INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT
);
CREATE INDEX idx_alert_attempts_alert ON alert_attempts (alert_id);
";

/// Rollups for the dashboard, maintained by `write_cycle` in the cycle's own transaction
/// (see `rollup.rs`) and backfilled here from the raw rows already on disk.
///
/// * `check_rollup_1m` / `check_rollup_1h`: per target and UTC-aligned minute / hour, the number
///   of checks per status and the latency aggregates (`lat_n` counts checks that have a latency;
///   `lat_min`/`lat_max` are NULL when none has). WITHOUT ROWID with the key the dashboard reads
///   by, so a target's range is one contiguous B-tree range.
/// * `cycle_rollup_1m` / `cycle_rollup_1h`: per bucket, the cycle count and sums of the host
///   metrics (`*_n` counts non-NULL values, so averages never treat a missing value as 0),
///   cycle duration and ping aggregates, connectivity and outbound heartbeat answer counts.
///
/// Bucket starts are `ts - (ts mod size)` with a non-negative modulo, i.e. floor alignment.
const V3_SQL: &str = "
CREATE TABLE check_rollup_1m (
    target_id INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    n_healthy INTEGER NOT NULL,
    n_down    INTEGER NOT NULL,
    n_error   INTEGER NOT NULL,
    n_timeout INTEGER NOT NULL,
    n_unknown INTEGER NOT NULL,
    lat_n     INTEGER NOT NULL,
    lat_sum   REAL NOT NULL,
    lat_min   REAL,
    lat_max   REAL,
    PRIMARY KEY (target_id, bucket_ms)
) WITHOUT ROWID;

CREATE TABLE check_rollup_1h (
    target_id INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    n_healthy INTEGER NOT NULL,
    n_down    INTEGER NOT NULL,
    n_error   INTEGER NOT NULL,
    n_timeout INTEGER NOT NULL,
    n_unknown INTEGER NOT NULL,
    lat_n     INTEGER NOT NULL,
    lat_sum   REAL NOT NULL,
    lat_min   REAL,
    lat_max   REAL,
    PRIMARY KEY (target_id, bucket_ms)
) WITHOUT ROWID;

CREATE TABLE cycle_rollup_1m (
    bucket_ms INTEGER PRIMARY KEY,
    n         INTEGER NOT NULL,
    cpu_n     INTEGER NOT NULL,
    cpu_sum   REAL NOT NULL,
    ram_n     INTEGER NOT NULL,
    ram_sum   REAL NOT NULL,
    disk_n    INTEGER NOT NULL,
    disk_sum  REAL NOT NULL,
    dur_n     INTEGER NOT NULL,
    dur_sum   REAL NOT NULL,
    dur_min   REAL,
    dur_max   REAL,
    ping_n    INTEGER NOT NULL,
    ping_sum  REAL NOT NULL,
    ping_min  REAL,
    ping_max  REAL,
    online_n  INTEGER NOT NULL,
    offline_n INTEGER NOT NULL,
    w200_n    INTEGER NOT NULL,
    w220_n    INTEGER NOT NULL,
    w221_n    INTEGER NOT NULL,
    w500_n    INTEGER NOT NULL,
    wother_n  INTEGER NOT NULL,
    wnull_n   INTEGER NOT NULL
);

CREATE TABLE cycle_rollup_1h (
    bucket_ms INTEGER PRIMARY KEY,
    n         INTEGER NOT NULL,
    cpu_n     INTEGER NOT NULL,
    cpu_sum   REAL NOT NULL,
    ram_n     INTEGER NOT NULL,
    ram_sum   REAL NOT NULL,
    disk_n    INTEGER NOT NULL,
    disk_sum  REAL NOT NULL,
    dur_n     INTEGER NOT NULL,
    dur_sum   REAL NOT NULL,
    dur_min   REAL,
    dur_max   REAL,
    ping_n    INTEGER NOT NULL,
    ping_sum  REAL NOT NULL,
    ping_min  REAL,
    ping_max  REAL,
    online_n  INTEGER NOT NULL,
    offline_n INTEGER NOT NULL,
    w200_n    INTEGER NOT NULL,
    w220_n    INTEGER NOT NULL,
    w221_n    INTEGER NOT NULL,
    w500_n    INTEGER NOT NULL,
    wother_n  INTEGER NOT NULL,
    wnull_n   INTEGER NOT NULL
);

INSERT INTO check_rollup_1m
SELECT target_id, ts_ms - ((ts_ms % 60000) + 60000) % 60000 AS b,
       count(*), sum(status = 0), sum(status = 1), sum(status = 2), sum(status = 3),
       sum(status NOT IN (0, 1, 2, 3)),
       count(latency_ms), total(latency_ms), min(latency_ms), max(latency_ms)
FROM service_checks GROUP BY target_id, b;

INSERT INTO check_rollup_1h
SELECT target_id, bucket_ms - ((bucket_ms % 3600000) + 3600000) % 3600000 AS b,
       sum(n), sum(n_healthy), sum(n_down), sum(n_error), sum(n_timeout), sum(n_unknown),
       sum(lat_n), total(lat_sum), min(lat_min), max(lat_max)
FROM check_rollup_1m GROUP BY target_id, b;

INSERT INTO cycle_rollup_1m
SELECT ts_ms - ((ts_ms % 60000) + 60000) % 60000 AS b, count(*),
       count(cpu_percent), total(cpu_percent), count(ram_percent), total(ram_percent),
       count(disk_percent), total(disk_percent),
       count(cycle_duration_ms), total(cycle_duration_ms), min(cycle_duration_ms),
       max(cycle_duration_ms),
       count(ping_ms), total(ping_ms), min(ping_ms), max(ping_ms),
       total(internet_status IS NOT NULL AND internet_status <> 0), total(internet_status = 0),
       total(worker_status = 200), total(worker_status = 220), total(worker_status = 221),
       total(worker_status = 500), total(worker_status NOT IN (200, 220, 221, 500)),
       total(worker_status IS NULL)
FROM monitoring_cycles GROUP BY b;

INSERT INTO cycle_rollup_1h
SELECT bucket_ms - ((bucket_ms % 3600000) + 3600000) % 3600000 AS b, sum(n),
       sum(cpu_n), total(cpu_sum), sum(ram_n), total(ram_sum), sum(disk_n), total(disk_sum),
       sum(dur_n), total(dur_sum), min(dur_min), max(dur_max),
       sum(ping_n), total(ping_sum), min(ping_min), max(ping_max),
       sum(online_n), sum(offline_n), sum(w200_n), sum(w220_n), sum(w221_n), sum(w500_n),
       sum(wother_n), sum(wnull_n)
FROM cycle_rollup_1m GROUP BY b;
";

pub(crate) fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

fn application_id(conn: &Connection) -> Result<i32, StoreError> {
    Ok(conn.pragma_query_value(None, "application_id", |r| r.get(0))?)
}

/// Brings the database at `path` to version `upto` (normally [`LATEST_VERSION`]; lower only in
/// tests that need an old-version file): creates it, adopts a legacy one, or refuses a foreign
/// or newer one without touching it.
pub(crate) fn prepare(conn: &mut Connection, path: &Path, upto: u32) -> Result<(), StoreError> {
    let foreign = |detail: String| StoreError::ForeignSchema {
        path: path.to_owned(),
        detail,
    };
    {
        // IMMEDIATE: classify and adopt under the write lock, so two starting writers
        // cannot both adopt the same legacy tables.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        let app_id = application_id(&tx)?;
        if version < 0 {
            return Err(foreign(format!("negative user_version {version}")));
        }
        if version > 0 && app_id != APPLICATION_ID {
            return Err(foreign(format!(
                "user_version {version} with application_id {app_id:#x}, not Heartbeat's"
            )));
        }
        if version > i64::from(LATEST_VERSION) {
            return Err(StoreError::TooNew {
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: LATEST_VERSION,
            });
        }
        if version == 0 {
            let tables = user_tables(&tx)?;
            if !tables.is_empty() {
                // legacy.rs does not know the path; fill it into its ForeignSchema errors.
                let with_path = |e| match e {
                    StoreError::ForeignSchema { detail, .. } => foreign(detail),
                    other => other,
                };
                match legacy::shape(&tx).map_err(with_path)? {
                    Some(shape) => legacy::adopt(&tx, &shape).map_err(with_path)?,
                    None => {
                        return Err(foreign(format!(
                            "user_version 0 and unrecognised tables: {}",
                            tables.join(", ")
                        )));
                    }
                }
            }
        }
        tx.commit()?;
    }
    migrate(conn, upto)
}

/// Applies every migration above the current version up to `upto`, each in its own transaction.
fn migrate(conn: &mut Connection, upto: u32) -> Result<(), StoreError> {
    let upto = usize::try_from(upto).unwrap_or(usize::MAX);
    for (index, migration) in MIGRATIONS.iter().enumerate().take(upto) {
        let target = i64::try_from(index + 1).unwrap_or(i64::MAX);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read inside the lock: another writer may have migrated meanwhile.
        if user_version(&tx)? >= target {
            continue;
        }
        apply(&tx, index, migration)?;
        tx.commit()?;
    }
    Ok(())
}

/// Runs one migration and records its version; the caller holds the transaction.
pub(crate) fn apply(tx: &Connection, index: usize, m: &Migration) -> Result<(), StoreError> {
    tx.execute_batch(m.sql)?;
    tx.pragma_update(
        None,
        "user_version",
        i64::try_from(index + 1).unwrap_or(i64::MAX),
    )?;
    Ok(())
}

/// Tables other than SQLite's own (`sqlite_sequence`, `sqlite_stat1`, ...).
fn user_tables(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_id_literal_matches_constant() {
        // The SQL cannot interpolate the constant, so pin them together here.
        assert!(V1_SQL.contains(&format!("application_id = {APPLICATION_ID};")));
    }

    #[test]
    fn outbox_check_lists_every_alert_status() {
        // The CHECK cannot interpolate AlertStatus either; a status missing from it would make
        // every insert of that status fail.
        for status in crate::AlertStatus::ALL {
            assert!(
                V2_SQL.contains(&format!("'{}'", status.as_str())),
                "{status:?}"
            );
        }
    }
}
