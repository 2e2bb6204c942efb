//! Reads shared by `Store` and `ReadStore`. Multi-statement reads run in one read
//! transaction so they see a single snapshot, and stay short so checkpoints are not blocked.

use heartbeat_core::{CheckResult, Connectivity, HostMetrics, Status, TargetRef};
use rusqlite::{Connection, Row, params};

use crate::{StoreError, StoredCheck, StoredCycle};

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

fn check_from_row(r: &Row<'_>) -> Result<StoredCheck, StoreError> {
    let id: i64 = r.get(0)?;
    let invalid = |column: &'static str, detail: String| StoreError::InvalidValue {
        table: "service_checks",
        column,
        id,
        detail,
    };
    let code: i64 = r.get(5)?;
    let status = u8::try_from(code)
        .ok()
        .and_then(Status::from_code)
        .ok_or_else(|| invalid("status", format!("unknown status code {code}")))?;
    let status_code = r
        .get::<_, Option<i64>>(6)?
        .map(|c| {
            u16::try_from(c)
                .map_err(|_| invalid("status_code", format!("{c} is not an HTTP status")))
        })
        .transpose()?;
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
