//! Adoption of a database written by the replaced Python system (user_version 0, tables
//! `monitoring_cycles` with a TEXT uuid `id` and `timestamp_lima`, and `service_checks` with
//! `service_name`/`service_url`/`status` text).
//!
//! Everything happens inside the caller's transaction: the old tables are renamed, schema v1 is
//! created, every row is copied, counts are verified, and only then are the old tables dropped.
//! Any failure rolls the file back to exactly what it was.
//!
//! Mapping rules (no row and no value is dropped):
//! * `timestamp_lima` (ISO-8601 with offset, with or without fraction) becomes UTC `ts_ms` via
//!   SQLite's date parser (`unixepoch(.., 'subsec')`), which rounds the fraction to the nearest
//!   millisecond but never past .999 into the next second; the text is kept in
//!   `timestamp_lima` and the uuid in `legacy_id`. A timestamp without offset or that SQLite
//!   cannot parse aborts the adoption with [`StoreError::Legacy`] naming the row.
//! * Each distinct `service_name` becomes a target; its URL and kind (`docker` for `docker:`
//!   URLs, else `http`) come from its newest check. A check whose URL differs from that keeps its
//!   own in `service_checks.legacy_service_url`.
//! * `status` text maps to `Status::code()` (case-insensitive, trimmed). Unrecognised text maps
//!   to `unknown`; the original text is kept in `error_message` when that is NULL (when it is
//!   not, the original error message wins and the status text is not kept).
//! * Check ids are kept. Checks whose `cycle_id` matches no cycle (or is NULL) get a
//!   placeholder cycle (metrics NULL, `legacy_id` = that cycle_id, `ts_ms` taken from the
//!   nearest check by id that has a real cycle).

use heartbeat_core::Status;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::schema;

const CYCLE_REQUIRED: &[&str] = &["id", "timestamp_lima"];
const CYCLE_OPTIONAL: &[&str] = &[
    "cpu_percent",
    "ram_percent",
    "ram_used_mb",
    "disk_percent",
    "uptime_seconds",
    "container_count",
    "internet_status",
    "ping_ms",
    "worker_status",
    "cycle_duration_ms",
];
const CHECK_REQUIRED: &[&str] = &["id", "cycle_id", "service_name", "status"];
const CHECK_OPTIONAL: &[&str] = &["service_url", "status_code", "latency_ms", "error_message"];

/// Which optional legacy columns exist (older versions of the replaced system lacked some).
#[derive(Debug)]
pub(crate) struct Shape {
    cycle_cols: Vec<String>,
    check_cols: Vec<String>,
}

impl Shape {
    /// The column if the legacy table has it, else NULL.
    fn cycle(&self, col: &str) -> String {
        col_or_null(&self.cycle_cols, col)
    }
    fn check(&self, col: &str) -> String {
        col_or_null(&self.check_cols, col)
    }
}

fn col_or_null(cols: &[String], col: &str) -> String {
    if cols.iter().any(|c| c.eq_ignore_ascii_case(col)) {
        format!("s.{col}")
    } else {
        "NULL".to_owned()
    }
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let cols = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

fn foreign(detail: String) -> StoreError {
    // The caller fills in the path.
    StoreError::ForeignSchema {
        path: Default::default(),
        detail,
    }
}

/// `Some` when both legacy tables exist with only columns we know how to carry over.
/// `Err(ForeignSchema)` when they exist but carry something adoption would lose.
pub(crate) fn shape(conn: &Connection) -> Result<Option<Shape>, StoreError> {
    let cycle_cols = columns(conn, "monitoring_cycles")?;
    let check_cols = columns(conn, "service_checks")?;
    if cycle_cols.is_empty() || check_cols.is_empty() {
        return Ok(None);
    }
    let has = |cols: &[String], c: &str| cols.iter().any(|x| x.eq_ignore_ascii_case(c));
    if !CYCLE_REQUIRED.iter().all(|c| has(&cycle_cols, c))
        || !CHECK_REQUIRED.iter().all(|c| has(&check_cols, c))
    {
        return Ok(None);
    }
    for (table, cols, known) in [
        (
            "monitoring_cycles",
            &cycle_cols,
            [CYCLE_REQUIRED, CYCLE_OPTIONAL],
        ),
        (
            "service_checks",
            &check_cols,
            [CHECK_REQUIRED, CHECK_OPTIONAL],
        ),
    ] {
        if let Some(extra) = cols.iter().find(|c| {
            !known
                .iter()
                .flat_map(|k| k.iter())
                .any(|k| k.eq_ignore_ascii_case(c))
        }) {
            return Err(foreign(format!(
                "legacy table {table} has an unknown column {extra:?}; adopting it would lose data"
            )));
        }
    }
    // A view or trigger over the old tables would break when they are replaced.
    let dependants: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT type || ' ' || name FROM sqlite_schema WHERE type IN ('view', 'trigger') ORDER BY name",
        )?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
    };
    if !dependants.is_empty() {
        return Err(foreign(format!(
            "legacy database has {}; drop them before Heartbeat adopts it",
            dependants.join(", ")
        )));
    }
    Ok(Some(Shape {
        cycle_cols,
        check_cols,
    }))
}

/// SQL expression turning legacy `status` text into a code, from `Status` itself so the two
/// cannot drift apart.
fn status_code_sql() -> String {
    let arms: String = Status::ALL
        .iter()
        .map(|s| format!(" WHEN '{}' THEN {}", s.as_str(), s.code()))
        .collect();
    format!(
        "CASE lower(trim(s.status)){arms} ELSE {} END",
        Status::Unknown.code()
    )
}

fn known_status_list() -> String {
    Status::ALL
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the legacy tables into schema v1 inside `tx` (the caller commits).
pub(crate) fn adopt(tx: &Connection, shape: &Shape) -> Result<(), StoreError> {
    precheck(tx, shape)?;

    // Old index names might collide with ours; the old tables go away anyway.
    let indexes: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL \
             AND tbl_name IN ('monitoring_cycles', 'service_checks')",
        )?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
    };
    for index in indexes {
        tx.execute_batch(&format!("DROP INDEX \"{}\"", index.replace('"', "\"\"")))?;
    }
    tx.execute_batch(
        "ALTER TABLE service_checks RENAME TO legacy_service_checks;
         ALTER TABLE monitoring_cycles RENAME TO legacy_monitoring_cycles;",
    )?;
    let v1 = schema::MIGRATIONS
        .first()
        .ok_or_else(|| StoreError::Legacy("no schema v1 to adopt into".to_owned()))?;
    schema::apply(tx, 0, v1)?;

    // Cycles, in time order so new ids are chronological.
    tx.execute_batch(&format!(
        "INSERT INTO monitoring_cycles (ts_ms, cpu_percent, ram_percent, ram_used_mb, disk_percent,
             uptime_seconds, container_count, internet_status, ping_ms, worker_status, worker_error,
             cycle_duration_ms, legacy_id, timestamp_lima)
         SELECT CAST(round(unixepoch(s.timestamp_lima, 'subsec') * 1000.0) AS INTEGER) AS ts,
                {cpu}, {ram}, {ram_mb}, {disk}, {up}, {cc}, {inet}, {ping}, {ws}, NULL, {dur},
                s.id, s.timestamp_lima
         FROM legacy_monitoring_cycles s ORDER BY ts, s.rowid;
         CREATE TEMP TABLE legacy_cycle_map (old_id TEXT PRIMARY KEY, new_id INTEGER NOT NULL,
                                             ts_ms INTEGER NOT NULL) WITHOUT ROWID;
         INSERT INTO temp.legacy_cycle_map SELECT legacy_id, id, ts_ms FROM monitoring_cycles
         WHERE legacy_id IS NOT NULL;",
        cpu = shape.cycle("cpu_percent"),
        ram = shape.cycle("ram_percent"),
        ram_mb = shape.cycle("ram_used_mb"),
        disk = shape.cycle("disk_percent"),
        up = shape.cycle("uptime_seconds"),
        cc = shape.cycle("container_count"),
        inet = shape.cycle("internet_status"),
        ping = shape.cycle("ping_ms"),
        ws = shape.cycle("worker_status"),
        dur = shape.cycle("cycle_duration_ms"),
    ))?;

    let null_cycle = placeholder_cycles(tx)?;

    // Targets from each name's newest check; created_at_ms is fixed up once checks exist.
    let url = shape.check("service_url");
    tx.execute_batch(&format!(
        "INSERT INTO targets (name, kind, url, created_at_ms)
         SELECT g.name,
                CASE WHEN substr({url}, 1, 7) = 'docker:' THEN 'docker' ELSE 'http' END,
                COALESCE({url}, ''), 0
         FROM (SELECT service_name AS name, min(id) AS first_id, max(id) AS last_id
               FROM legacy_service_checks GROUP BY service_name) g
         JOIN legacy_service_checks s ON s.id = g.last_id
         ORDER BY g.first_id;"
    ))?;

    let select_checks = format!(
        "SELECT s.id, {{cycle}}, t.id, {{ts}}, {code},
                {status_code}, {latency},
                CASE WHEN {err} IS NULL AND s.status IS NOT NULL
                          AND lower(trim(s.status)) NOT IN ({known})
                     THEN s.status ELSE {err} END,
                CASE WHEN {url} IS t.url THEN NULL ELSE {url} END
         FROM legacy_service_checks s JOIN targets t ON t.name = s.service_name",
        code = status_code_sql(),
        status_code = shape.check("status_code"),
        latency = shape.check("latency_ms"),
        err = shape.check("error_message"),
        known = known_status_list(),
    );
    let insert = "INSERT INTO service_checks (id, cycle_id, target_id, ts_ms, status, status_code,
                      latency_ms, error_message, legacy_service_url) ";
    tx.execute(
        &format!(
            "{insert}{} JOIN temp.legacy_cycle_map m ON m.old_id = s.cycle_id",
            select_checks
                .replace("{cycle}", "m.new_id")
                .replace("{ts}", "m.ts_ms")
        ),
        [],
    )?;
    if let Some((id, ts)) = null_cycle {
        tx.execute(
            &format!(
                "{insert}{} WHERE s.cycle_id IS NULL",
                select_checks.replace("{cycle}", "?1").replace("{ts}", "?2")
            ),
            params![id, ts],
        )?;
    }

    verify_counts(tx)?;
    tx.execute_batch(
        "UPDATE targets SET created_at_ms =
             COALESCE((SELECT min(ts_ms) FROM service_checks WHERE target_id = targets.id), 0);
         DROP TABLE temp.legacy_cycle_map;
         DROP TABLE legacy_service_checks;
         DROP TABLE legacy_monitoring_cycles;",
    )?;
    Ok(())
}

/// Refuses, before anything changes, rows that cannot be carried over faithfully.
fn precheck(conn: &Connection, _shape: &Shape) -> Result<(), StoreError> {
    // SQLite's date functions also accept bare numbers and offset-less text (read as UTC); both would
    // silently misplace a cycle, so demand a date followed, at the end, by an offset or Z.
    let bad_ts: Option<(Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT CAST(id AS TEXT), CAST(timestamp_lima AS TEXT) FROM monitoring_cycles
             WHERE typeof(timestamp_lima) <> 'text'
                OR timestamp_lima NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
                OR NOT (timestamp_lima GLOB '*[+-][0-9][0-9]:[0-9][0-9]'
                        OR timestamp_lima GLOB '*[Zz]')
                OR unixepoch(timestamp_lima) IS NULL
             LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, ts)) = bad_ts {
        return Err(StoreError::Legacy(format!(
            "cycle {id:?} has timestamp_lima {ts:?}, which is not an ISO-8601 time with offset"
        )));
    }
    let unnamed: Option<i64> = conn
        .query_row(
            "SELECT id FROM service_checks WHERE service_name IS NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = unnamed {
        return Err(StoreError::Legacy(format!(
            "service check {id} has no service_name, so it cannot be filed under a target"
        )));
    }
    Ok(())
}

/// Creates a placeholder cycle for each group of checks whose `cycle_id` matches no cycle, and
/// maps it. Returns the placeholder for checks with a NULL `cycle_id` (which no map can key).
fn placeholder_cycles(tx: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    let orphans: Vec<(Option<String>, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT s.cycle_id, min(s.id) FROM legacy_service_checks s
             LEFT JOIN temp.legacy_cycle_map m ON m.old_id = s.cycle_id
             WHERE m.old_id IS NULL GROUP BY s.cycle_id",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut null_cycle = None;
    for (old_id, first_check) in orphans {
        let near = |sql: &str| -> Result<Option<i64>, StoreError> {
            Ok(tx.query_row(sql, [first_check], |r| r.get(0)).optional()?)
        };
        let ts = match near(
            "SELECT m.ts_ms FROM legacy_service_checks s
             JOIN temp.legacy_cycle_map m ON m.old_id = s.cycle_id
             WHERE s.id < ?1 ORDER BY s.id DESC LIMIT 1",
        )? {
            Some(ts) => ts,
            None => near(
                "SELECT m.ts_ms FROM legacy_service_checks s
                 JOIN temp.legacy_cycle_map m ON m.old_id = s.cycle_id
                 WHERE s.id > ?1 ORDER BY s.id LIMIT 1",
            )?
            .unwrap_or(0),
        };
        tx.execute(
            "INSERT INTO monitoring_cycles (ts_ms, legacy_id) VALUES (?1, ?2)",
            params![ts, old_id],
        )?;
        let id = tx.last_insert_rowid();
        match old_id {
            Some(old) => {
                tx.execute(
                    "INSERT INTO temp.legacy_cycle_map (old_id, new_id, ts_ms) VALUES (?1, ?2, ?3)",
                    params![old, id, ts],
                )?;
            }
            None => null_cycle = Some((id, ts)),
        }
    }
    Ok(null_cycle)
}

/// Aborts (and so rolls back) unless every legacy row has its counterpart.
fn verify_counts(tx: &Connection) -> Result<(), StoreError> {
    let count = |sql: &str| -> Result<i64, StoreError> { Ok(tx.query_row(sql, [], |r| r.get(0))?) };
    let old_checks = count("SELECT count(*) FROM legacy_service_checks")?;
    let new_checks = count("SELECT count(*) FROM service_checks")?;
    let old_cycles = count("SELECT count(*) FROM legacy_monitoring_cycles")?;
    let new_real_cycles =
        count("SELECT count(*) FROM monitoring_cycles WHERE timestamp_lima IS NOT NULL")?;
    if old_checks != new_checks || old_cycles != new_real_cycles {
        return Err(StoreError::Legacy(format!(
            "copy incomplete: {new_cycles}/{old_cycles} cycles, {new_checks}/{old_checks} checks",
            new_cycles = new_real_cycles
        )));
    }
    Ok(())
}
