//! Reads shared by `Store` and `ReadStore`. Multi-statement reads run in one read
//! transaction so they see a single snapshot, and stay short so checkpoints are not blocked.

use heartbeat_core::{CheckResult, Connectivity, HostMetrics, Status, TargetRef};
use rusqlite::{Connection, Row, params};

use crate::{
    AlertStatus, OutboxAlert, StoreError, StoredAttempt, StoredCheck, StoredCycle, StoredIncident,
};

const CYCLE_COLUMNS: &str = "id, ts_ms, cpu_percent, ram_percent, ram_used_mb, disk_percent, \
     uptime_seconds, container_count, internet_status, ping_ms, worker_status, worker_error, \
     cycle_duration_ms, legacy_id, timestamp_lima";

const CHECK_SELECT: &str = "SELECT sc.id, t.name, t.kind, COALESCE(sc.legacy_service_url, t.url), \
     sc.ts_ms, sc.status, sc.status_code, sc.latency_ms, sc.error_message \
     FROM service_checks sc JOIN targets t ON t.id = sc.target_id";

fn count(conn: &Connection, sql: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn cycle_count(conn: &Connection) -> Result<u64, StoreError> {
    count(conn, "SELECT count(*) FROM monitoring_cycles")
}

/// `ts_ms` of the newest cycle, without loading its checks (health checks poll this).
pub(crate) fn latest_cycle_ts_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .prepare_cached("SELECT ts_ms FROM monitoring_cycles ORDER BY ts_ms DESC, id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?)
}

pub(crate) fn check_count(conn: &Connection) -> Result<u64, StoreError> {
    count(conn, "SELECT count(*) FROM service_checks")
}

pub(crate) fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let v = crate::schema::user_version(conn)?;
    u32::try_from(v).map_err(|_| StoreError::InvalidValue {
        table: "pragma",
        column: "user_version",
        id: 0,
        detail: format!("negative schema version {v}"),
    })
}

pub(crate) fn integrity_check(conn: &Connection) -> Result<bool, StoreError> {
    let first: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok(first == "ok")
}

pub(crate) fn targets(conn: &Connection) -> Result<Vec<(i64, TargetRef)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name, kind, url FROM targets ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                TargetRef {
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    url: r.get(3)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) fn cycles(conn: &Connection, limit: usize) -> Result<Vec<StoredCycle>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction()?;
    let sql = format!(
        "SELECT {CYCLE_COLUMNS} FROM monitoring_cycles ORDER BY ts_ms DESC, id DESC LIMIT ?1"
    );
    let cycles = load_cycles(&tx, &sql, params![limit])?;
    tx.finish()?;
    Ok(cycles)
}

pub(crate) fn cycles_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<StoredCycle>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let sql = format!(
        "SELECT {CYCLE_COLUMNS} FROM monitoring_cycles WHERE ts_ms >= ?1 AND ts_ms < ?2 \
         ORDER BY ts_ms, id"
    );
    let cycles = load_cycles(&tx, &sql, params![from_ms, to_ms])?;
    tx.finish()?;
    Ok(cycles)
}

pub(crate) fn target_checks(
    conn: &Connection,
    name: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<StoredCheck>, StoreError> {
    // The (ts_ms, target_id) index serves the range and filters the target without table reads.
    let mut stmt = conn.prepare_cached(&format!(
        "{CHECK_SELECT} WHERE sc.ts_ms >= ?2 AND sc.ts_ms < ?3 \
         AND sc.target_id = (SELECT id FROM targets WHERE name = ?1) ORDER BY sc.ts_ms, sc.id"
    ))?;
    let mut rows = stmt.query(params![name, from_ms, to_ms])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(check_from_row(row)?);
    }
    Ok(out)
}

fn load_cycles(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredCycle>, StoreError> {
    let mut cycles = Vec::new();
    {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            cycles.push(cycle_from_row(row)?);
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "{CHECK_SELECT} WHERE sc.cycle_id = ?1 ORDER BY sc.id"
    ))?;
    for cycle in &mut cycles {
        let mut rows = stmt.query([cycle.id])?;
        while let Some(row) = rows.next()? {
            cycle.checks.push(check_from_row(row)?);
        }
    }
    Ok(cycles)
}

fn cycle_from_row(r: &Row<'_>) -> Result<StoredCycle, StoreError> {
    Ok(StoredCycle {
        id: r.get(0)?,
        ts_ms: r.get(1)?,
        host: HostMetrics {
            cpu_percent: r.get(2)?,
            ram_percent: r.get(3)?,
            ram_used_mb: r.get(4)?,
            disk_percent: r.get(5)?,
            uptime_seconds: r.get(6)?,
            container_count: r.get(7)?,
        },
        connectivity: Connectivity {
            internet_status: r.get(8)?,
            ping_ms: r.get(9)?,
        },
        worker_status: r.get(10)?,
        worker_error: r.get(11)?,
        cycle_duration_ms: r.get::<_, Option<f64>>(12)?.unwrap_or(f64::NAN),
        legacy_id: r.get(13)?,
        timestamp_lima: r.get(14)?,
        checks: Vec::new(),
    })
}

/// Decodes a `service_checks` row's `status` code and HTTP `status_code`,
/// naming the row and column when a stored value is out of range.
pub(crate) fn decode_status(
    id: i64,
    code: i64,
    status_code: Option<i64>,
) -> Result<(Status, Option<u16>), StoreError> {
    let invalid = |column: &'static str, detail: String| StoreError::InvalidValue {
        table: "service_checks",
        column,
        id,
        detail,
    };
    let status = u8::try_from(code)
        .ok()
        .and_then(Status::from_code)
        .ok_or_else(|| invalid("status", format!("unknown status code {code}")))?;
    let status_code = status_code
        .map(|c| {
            u16::try_from(c)
                .map_err(|_| invalid("status_code", format!("{c} is not an HTTP status")))
        })
        .transpose()?;
    Ok((status, status_code))
}

fn check_from_row(r: &Row<'_>) -> Result<StoredCheck, StoreError> {
    let id: i64 = r.get(0)?;
    let (status, status_code) = decode_status(id, r.get(5)?, r.get(6)?)?;
    Ok(StoredCheck {
        id,
        target: TargetRef {
            name: r.get(1)?,
            kind: r.get(2)?,
            url: r.get(3)?,
        },
        ts_ms: r.get(4)?,
        result: CheckResult {
            status,
            status_code,
            latency_ms: r.get(7)?,
            error_message: r.get(8)?,
        },
    })
}

/// `LIMIT` takes an i64; a usize beyond it means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn item_states(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT item, state FROM item_states ORDER BY item")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) const INCIDENT_SELECT: &str = "SELECT id, item, started_at_ms, ended_at_ms, cause, first_error, \
     last_error, maintenance FROM incidents";

pub(crate) fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<StoredIncident> {
    Ok(StoredIncident {
        id: r.get(0)?,
        item: r.get(1)?,
        started_at_ms: r.get(2)?,
        ended_at_ms: r.get(3)?,
        cause: r.get(4)?,
        first_error: r.get(5)?,
        last_error: r.get(6)?,
        maintenance: r.get(7)?,
    })
}

pub(crate) fn incidents(
    conn: &Connection,
    item: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredIncident>, StoreError> {
    // Two statements rather than `?1 IS NULL OR item = ?1`, which would stop SQLite from
    // using the (item, started_at_ms) index for the per-item case.
    let rows = match item {
        Some(item) => conn
            .prepare_cached(&format!(
                "{INCIDENT_SELECT} WHERE item = ?1 ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![item, sql_limit(limit)], incident_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        None => conn
            .prepare_cached(&format!(
                "{INCIDENT_SELECT} ORDER BY started_at_ms DESC, id DESC LIMIT ?1"
            ))?
            .query_map([sql_limit(limit)], incident_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

pub(crate) fn open_incidents(conn: &Connection) -> Result<Vec<StoredIncident>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "{INCIDENT_SELECT} WHERE ended_at_ms IS NULL ORDER BY started_at_ms, id"
        ))?
        .query_map([], incident_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

const ALERT_SELECT: &str = "SELECT id, channel, item, kind, payload, created_ms, status, \
     attempts, next_attempt_ms, expires_ms, last_error, sent_ms FROM alert_outbox";

fn alert_from_row(r: &Row<'_>) -> Result<OutboxAlert, StoreError> {
    let id: i64 = r.get(0)?;
    let invalid = |column: &'static str, detail: String| StoreError::InvalidValue {
        table: "alert_outbox",
        column,
        id,
        detail,
    };
    let status: String = r.get(6)?;
    let status = status
        .parse::<AlertStatus>()
        .map_err(|e| invalid("status", e.to_string()))?;
    let attempts: i64 = r.get(7)?;
    let attempts = u32::try_from(attempts)
        .map_err(|_| invalid("attempts", format!("{attempts} is not a count")))?;
    Ok(OutboxAlert {
        id,
        channel: r.get(1)?,
        item: r.get(2)?,
        kind: r.get(3)?,
        payload_json: r.get(4)?,
        created_ms: r.get(5)?,
        status,
        attempts,
        next_attempt_ms: r.get(8)?,
        expires_ms: r.get(9)?,
        last_error: r.get(10)?,
        sent_ms: r.get(11)?,
    })
}

fn load_alerts(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<OutboxAlert>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(alert_from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn alerts(conn: &Connection, limit: usize) -> Result<Vec<OutboxAlert>, StoreError> {
    load_alerts(
        conn,
        &format!("{ALERT_SELECT} ORDER BY id DESC LIMIT ?1"),
        [sql_limit(limit)],
    )
}

pub(crate) fn due_alerts(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<OutboxAlert>, StoreError> {
    load_alerts(
        conn,
        &format!(
            "{ALERT_SELECT} WHERE status = 'pending' AND next_attempt_ms <= ?1 \
             ORDER BY id LIMIT ?2"
        ),
        params![now_ms, sql_limit(limit)],
    )
}

pub(crate) fn next_due_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    // min() over the (status, next_attempt_ms) index is a single seek.
    let next: Option<i64> = conn
        .prepare_cached("SELECT min(next_attempt_ms) FROM alert_outbox WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?;
    Ok(next)
}

pub(crate) fn alert_attempts(
    conn: &Connection,
    alert_id: i64,
) -> Result<Vec<StoredAttempt>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, alert_id, at_ms, ok, status_code, error FROM alert_attempts \
             WHERE alert_id = ?1 ORDER BY id",
        )?
        .query_map([alert_id], |r| {
            Ok(StoredAttempt {
                id: r.get(0)?,
                alert_id: r.get(1)?,
                at_ms: r.get(2)?,
                ok: r.get(3)?,
                status_code: r.get(4)?,
                error: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
