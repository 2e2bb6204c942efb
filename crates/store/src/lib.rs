//! SQLite persistence for Heartbeat: the only code in the project that speaks SQL.
//!
//! * [`Store`] is the single writer. It owns the schema (versioned migrations keyed by
//!   `PRAGMA user_version`), adopts a database written by the replaced Python system, and
//!   writes one monitoring cycle per transaction, together with the alerting effects it caused
//!   (item states, incidents, outbox alerts), then records alert delivery attempts.
//! * [`ReadStore`] is a read-only connection for tests and the dashboard. It works on a
//!   read-only mount because the writer keeps the `-wal`/`-shm` files (`SQLITE_FCNTL_PERSIST_WAL`).
//!
//! Both offer the same read methods (`cycle_count`, `cycles`, `cycles_between`, `latest_cycle`,
//! `target_checks`, `targets`, `integrity_check`, `schema_version`, and for alerting
//! `item_states`, `incidents`, `open_incidents`, `alerts`, `alert_attempts`, and for the
//! dashboard `dashboard` and `target_detail`, answered from raw rows or the rollups of schema v3).
//! [`Store::prune`] applies [`Retention`] in bounded batches.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::time::Duration;

use heartbeat_core::{CheckResult, Connectivity, CycleRecord, HostMetrics, TargetRef};
use rusqlite::{CachedStatement, Connection, OpenFlags, TransactionBehavior, params};

mod alerting;
mod dashboard;
mod legacy;
mod push;
mod read;
mod rollup;
mod schema;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

pub use alerting::{
    AlertStatus, AttemptOutcome, CycleEffects, IncidentChange, NewAlert, NextStep, OutboxAlert,
    StoredAttempt, StoredIncident, UnknownAlertStatus,
};
pub use dashboard::{
    CheckBucket, CheckStats, Coverage, CycleBucket, CycleStats, DashboardData, ErrorSummary,
    LatencyAgg, LatestCheck, LatestCycle, MAX_BUCKETS, RangeQuery, Source, StatusCounts,
    TargetDetail, TargetSeries, WorkerCounts,
};
pub use push::{
    PushDefinition, PushEvent, PushEventKind, PushLoaded, PushOp, PushOpError, PushSource,
    PushTask, TASKS_KEPT,
};
pub use rollup::{PRUNE_BATCH, Retention};
pub use schema::LATEST_VERSION;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database does not exist yet, or holds no Heartbeat schema yet (the writer has
    /// not started). Readers should show "no data yet" and retry later.
    #[error("no data yet: {} does not hold a Heartbeat database yet", path.display())]
    NotReady { path: PathBuf },

    /// The file holds tables this program does not recognise; it is left untouched.
    #[error("{} holds a database that is not Heartbeat's, left untouched: {detail}", path.display())]
    ForeignSchema { path: PathBuf, detail: String },

    /// The schema was written by a newer Heartbeat; refusing to write to it.
    #[error("database schema version {found} is newer than this program supports ({supported})")]
    TooNew { found: u32, supported: u32 },

    /// SQLite refused to switch to WAL (e.g. a network filesystem); readers would block the writer.
    #[error("cannot enable WAL journal mode (got {0:?}); is the database on a network filesystem?")]
    NotWal(String),

    #[error("cannot set SQLITE_FCNTL_PERSIST_WAL (sqlite code {0})")]
    PersistWal(c_int),

    /// A legacy row cannot be adopted without losing or inventing data; nothing was changed.
    #[error("cannot adopt the legacy database, nothing was changed: {0}")]
    Legacy(String),

    /// A stored value is outside its domain (e.g. an unknown status code).
    #[error("invalid value in {table}.{column} (row {id}): {detail}")]
    InvalidValue {
        table: &'static str,
        column: &'static str,
        id: i64,
        detail: String,
    },

    /// `IncidentChange::Open` for an item whose incident is still open (at most one may be).
    #[error("incident for {item:?} is already open")]
    IncidentAlreadyOpen { item: String },

    /// `record_attempt` for an alert id that does not exist.
    #[error("no alert with id {0}")]
    UnknownAlert(i64),

    /// A dashboard range that cannot be answered (empty, inverted, or too many buckets).
    #[error("invalid range query: {0}")]
    InvalidQuery(String),

    /// `record_attempt` for an alert that is not pending (already sent, expired, held, ...).
    #[error("alert {id} is {status}, not pending; attempt not recorded")]
    AlertNotPending { id: i64, status: String },
}

/// One check as stored, with the target it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheck {
    pub id: i64,
    /// For rows adopted from the replaced system whose URL differs from the target's current
    /// one, `target.url` is the URL recorded with that check.
    pub target: TargetRef,
    pub result: CheckResult,
    /// UTC ms; the start of the cycle the check belongs to.
    pub ts_ms: i64,
}

/// One cycle as stored, with all its checks (ordered by check id).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCycle {
    pub id: i64,
    /// UTC milliseconds since the Unix epoch at which the cycle started.
    pub ts_ms: i64,
    pub host: HostMetrics,
    pub connectivity: Connectivity,
    pub worker_status: Option<i64>,
    pub worker_error: Option<String>,
    /// `NaN` when unknown (only possible for adopted legacy rows or a NaN written by a caller).
    pub cycle_duration_ms: f64,
    /// The replaced system's cycle uuid, for adopted rows.
    pub legacy_id: Option<String>,
    /// The replaced system's original local timestamp text, for adopted rows.
    pub timestamp_lima: Option<String>,
    pub checks: Vec<StoredCheck>,
}

/// Cached identity of a target row, so steady-state writes do no lookups.
#[derive(Debug)]
struct CachedTarget {
    id: i64,
    kind: String,
    url: String,
}

/// The single writer. Not `Clone`: exactly one should exist per database file.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    targets: HashMap<String, CachedTarget>,
    /// The schema has the rollup tables (always, except for tests that build old versions).
    rollups: bool,
    prune_progress: rollup::PruneProgress,
}

impl Store {
    /// Opens (creating if needed) the database, configures it for a single WAL writer,
    /// adopts a legacy database if it finds one, and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_at(path, LATEST_VERSION)
    }

    /// [`Store::open`], stopping the migrations at `version`, so tests can build a database
    /// exactly as an older release left it and prove it upgrades.
    #[cfg(test)]
    pub(crate) fn open_at_version(path: &Path, version: u32) -> Result<Store, StoreError> {
        Store::open_at(path, version)
    }

    fn open_at(path: &Path, version: u32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal(mode));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        persist_wal(&conn)?;
        // Room for every write and read statement (about 30), so none is ever re-prepared.
        conn.set_prepared_statement_cache_capacity(64);
        schema::prepare(&mut conn, path, version)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            targets: HashMap::new(),
            rollups: version >= 3,
            prune_progress: rollup::PruneProgress::default(),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cycle and all its checks in one transaction and returns the cycle id.
    /// Targets are upserted by name (kind and URL follow the latest record).
    pub fn write_cycle(&mut self, cycle: &CycleRecord) -> Result<i64, StoreError> {
        self.write_cycle_with(cycle, &CycleEffects::default())
    }

    /// The cycle, its checks, and all `effects` in ONE transaction: if any part fails, nothing
    /// is written. Returns the cycle id. Empty effects prepare and run no extra statement.
    pub fn write_cycle_with(
        &mut self,
        cycle: &CycleRecord,
        effects: &CycleEffects,
    ) -> Result<i64, StoreError> {
        let mut touched = Vec::new();
        let result = write_cycle_tx(
            &mut self.conn,
            &mut self.targets,
            cycle,
            effects,
            self.rollups,
            &mut touched,
        );
        if result.is_err() {
            // The transaction rolled back, so ids cached during it may not exist on disk.
            for name in touched {
                self.targets.remove(&name);
            }
        }
        result
    }

    /// Effects without a cycle (e.g. from push heartbeats), in one transaction.
    pub fn apply_effects(&mut self, effects: &CycleEffects) -> Result<(), StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        alerting::apply(&tx, effects)?;
        tx.commit()?;
        Ok(())
    }

    /// Pending alerts whose `next_attempt_ms <= now_ms`, oldest first (by id), at most `limit`.
    pub fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxAlert>, StoreError> {
        read::due_alerts(&self.conn, now_ms, limit)
    }

    /// Earliest `next_attempt_ms` among pending alerts; `None` when nothing is pending.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        read::next_due_ms(&self.conn)
    }

    /// Records one attempt on a pending alert and moves it on, in one transaction: attempts
    /// += 1, `last_error` = the outcome's error, and status sent (`sent_ms` = `at_ms`) /
    /// pending due at the retry time / expired. An unknown or non-pending alert gives
    /// [`StoreError::UnknownAlert`] / [`StoreError::AlertNotPending`] and writes nothing.
    pub fn record_attempt(
        &mut self,
        alert_id: i64,
        outcome: &AttemptOutcome,
        next: NextStep,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        alerting::record_attempt(&tx, alert_id, outcome, next)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes rows older than `retention` (raw checks and cycles, then minute and hour
    /// rollups), oldest first, at most [`PRUNE_BATCH`] rows per call in one short transaction,
    /// so it never stalls a cycle. Returns `true` when the batch limit was reached and more
    /// rows may remain: call again (e.g. between cycles) until it returns `false`.
    pub fn prune(&mut self, now_ms: i64, retention: &Retention) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let more = rollup::prune(
            &tx,
            now_ms,
            retention,
            PRUNE_BATCH,
            &mut self.prune_progress,
        )?;
        tx.commit()?;
        Ok(more)
    }

    /// Held alerts become pending, due at `now_ms`. Returns how many.
    pub fn release_held(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        // One UPDATE statement is atomic on its own; no explicit transaction needed.
        alerting::release_held(&self.conn, now_ms)
    }
}

fn write_cycle_tx(
    conn: &mut Connection,
    targets: &mut HashMap<String, CachedTarget>,
    cycle: &CycleRecord,
    effects: &CycleEffects,
    rollups: bool,
    touched: &mut Vec<String>,
) -> Result<i64, StoreError> {
    // IMMEDIATE takes the write lock up front, so a busy database fails here, not mid-way.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cycle_id = insert_raw(&tx, targets, cycle, touched)?;
    if rollups {
        rollup::apply_cycle(&tx, cycle_id, cycle.started_at_ms)?;
    }
    alerting::apply(&tx, effects)?;
    tx.commit()?;
    Ok(cycle_id)
}

/// Inserts the cycle row and its check rows (upserting targets, caching their ids in
/// `targets` and recording newly cached names in `touched`) in the caller's transaction;
/// returns the cycle id. The raw half of `write_cycle`; the bulk generator
/// (`synthetic.rs`) composes the same three steps.
fn insert_raw(
    tx: &Connection,
    targets: &mut HashMap<String, CachedTarget>,
    cycle: &CycleRecord,
    touched: &mut Vec<String>,
) -> Result<i64, StoreError> {
    let cycle_id = insert_cycle_row(tx, cycle)?;
    let mut insert_check = prepare_check_insert(tx)?;
    for check in &cycle.checks {
        let target_id = resolve_target(tx, targets, &check.target, cycle.started_at_ms, touched)?;
        insert_check_row(
            &mut insert_check,
            cycle_id,
            target_id,
            cycle.started_at_ms,
            &check.result,
        )?;
    }
    Ok(cycle_id)
}

/// The `monitoring_cycles` row of `cycle`; returns its id.
pub(crate) fn insert_cycle_row(tx: &Connection, cycle: &CycleRecord) -> Result<i64, StoreError> {
    let mut insert_cycle = tx.prepare_cached(
        "INSERT INTO monitoring_cycles (ts_ms, cpu_percent, ram_percent, ram_used_mb, \
         disk_percent, uptime_seconds, container_count, internet_status, ping_ms, \
         worker_status, worker_error, cycle_duration_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let h = &cycle.host;
    let c = &cycle.connectivity;
    insert_cycle.execute(params![
        cycle.started_at_ms,
        h.cpu_percent,
        h.ram_percent,
        h.ram_used_mb,
        h.disk_percent,
        h.uptime_seconds,
        h.container_count,
        c.internet_status,
        c.ping_ms,
        cycle.worker_status,
        cycle.worker_error,
        cycle.cycle_duration_ms,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The id of target `t`, from the cache when its kind and URL are unchanged, otherwise
/// upserted by name (kind and URL follow the latest record; `created_at_ms` = `ts_ms` for a
/// new row) and cached, with its name pushed to `touched`.
pub(crate) fn resolve_target(
    tx: &Connection,
    targets: &mut HashMap<String, CachedTarget>,
    t: &TargetRef,
    ts_ms: i64,
    touched: &mut Vec<String>,
) -> Result<i64, StoreError> {
    if let Some(c) = targets
        .get(&t.name)
        .filter(|c| c.kind == t.kind && c.url == t.url)
    {
        return Ok(c.id);
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO targets (name, kind, url, created_at_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, url = excluded.url \
             RETURNING id",
        )?
        .query_row(params![t.name, t.kind, t.url, ts_ms], |r| r.get(0))?;
    touched.push(t.name.clone());
    targets.insert(
        t.name.clone(),
        CachedTarget {
            id,
            kind: t.kind.clone(),
            url: t.url.clone(),
        },
    );
    Ok(id)
}

/// The statement [`insert_check_row`] runs, prepared once per cycle by the caller.
pub(crate) fn prepare_check_insert(tx: &Connection) -> Result<CachedStatement<'_>, StoreError> {
    Ok(tx.prepare_cached(
        "INSERT INTO service_checks (cycle_id, target_id, ts_ms, status, status_code, \
         latency_ms, error_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?)
}

/// One `service_checks` row, through `insert` from [`prepare_check_insert`].
pub(crate) fn insert_check_row(
    insert: &mut CachedStatement<'_>,
    cycle_id: i64,
    target_id: i64,
    ts_ms: i64,
    r: &CheckResult,
) -> Result<(), StoreError> {
    insert.execute(params![
        cycle_id,
        target_id,
        ts_ms,
        r.status.code(),
        r.status_code,
        r.latency_ms,
        r.error_message,
    ])?;
    Ok(())
}

/// Keeps `-wal` and `-shm` on disk after a clean close, so that a reader on a read-only
/// mount can still open the database (it cannot create them itself).
#[allow(unsafe_code)]
fn persist_wal(conn: &Connection) -> Result<(), StoreError> {
    let mut on: c_int = 1;
    // SAFETY: the handle is live for `conn`'s lifetime, "main" is a NUL-terminated schema name,
    // and PERSIST_WAL reads/writes exactly one c_int through the pointer, which outlives the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut c_int).cast::<c_void>(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(StoreError::PersistWal(rc))
    }
}

/// A read-only connection. Cheap to open; keep it short-lived (a long read transaction
/// stops the writer from checkpointing the WAL).
#[derive(Debug)]
pub struct ReadStore {
    conn: Connection,
}

impl ReadStore {
    /// Opens with `SQLITE_OPEN_READ_ONLY` (never `immutable=1`, which returns wrong results
    /// on a live database). A missing file, one SQLite cannot open, or one the writer has not
    /// initialised yet gives [`StoreError::NotReady`].
    pub fn open(path: &Path) -> Result<ReadStore, StoreError> {
        let not_ready = || StoreError::NotReady {
            path: path.to_owned(),
        };
        if !path.exists() {
            return Err(not_ready());
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| map_cantopen(e, path))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The first statement is where SQLite actually opens -wal/-shm.
        let version = read::schema_version(&conn).map_err(|e| match e {
            StoreError::Sqlite(e) => map_cantopen(e, path),
            other => other,
        })?;
        if version == 0 {
            return Err(not_ready());
        }
        Ok(ReadStore { conn })
    }
}

fn map_cantopen(e: rusqlite::Error, path: &Path) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen) => StoreError::NotReady {
            path: path.to_owned(),
        },
        _ => StoreError::Sqlite(e),
    }
}

/// The read API, identical on [`Store`] and [`ReadStore`]; the SQL lives in `read.rs`.
macro_rules! read_api {
    ($ty:ty) => {
        impl $ty {
            /// Number of cycles stored.
            pub fn cycle_count(&self) -> Result<u64, StoreError> {
                read::cycle_count(&self.conn)
            }

            /// `ts_ms` of the newest cycle, if any, without its checks.
            pub fn latest_cycle_ts_ms(&self) -> Result<Option<i64>, StoreError> {
                read::latest_cycle_ts_ms(&self.conn)
            }

            /// Number of checks stored.
            pub fn check_count(&self) -> Result<u64, StoreError> {
                read::check_count(&self.conn)
            }

            /// The `limit` newest cycles (by `ts_ms`, then id), newest first, with their checks.
            pub fn cycles(&self, limit: usize) -> Result<Vec<StoredCycle>, StoreError> {
                read::cycles(&self.conn, limit)
            }

            /// The newest cycle, if any.
            pub fn latest_cycle(&self) -> Result<Option<StoredCycle>, StoreError> {
                Ok(read::cycles(&self.conn, 1)?.into_iter().next())
            }

            /// Cycles with `from_ms <= ts_ms < to_ms`, oldest first, with their checks.
            pub fn cycles_between(
                &self,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<StoredCycle>, StoreError> {
                read::cycles_between(&self.conn, from_ms, to_ms)
            }

            /// Checks of the target named `name` with `from_ms <= ts_ms < to_ms`, oldest first.
            /// An unknown name gives an empty list.
            pub fn target_checks(
                &self,
                name: &str,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<StoredCheck>, StoreError> {
                read::target_checks(&self.conn, name, from_ms, to_ms)
            }

            /// All targets ever seen, by id, with their latest kind and URL.
            pub fn targets(&self) -> Result<Vec<(i64, TargetRef)>, StoreError> {
                read::targets(&self.conn)
            }

            /// `PRAGMA integrity_check` reports "ok".
            pub fn integrity_check(&self) -> Result<bool, StoreError> {
                read::integrity_check(&self.conn)
            }

            /// `PRAGMA user_version`: the last migration applied.
            pub fn schema_version(&self) -> Result<u32, StoreError> {
                read::schema_version(&self.conn)
            }

            /// Every item's persisted state machine JSON, `(item, state)`, by item.
            pub fn item_states(&self) -> Result<Vec<(String, String)>, StoreError> {
                read::item_states(&self.conn)
            }

            /// The `limit` newest incidents (by start, then id), newest first; only `item`'s
            /// when given.
            pub fn incidents(
                &self,
                item: Option<&str>,
                limit: usize,
            ) -> Result<Vec<StoredIncident>, StoreError> {
                read::incidents(&self.conn, item, limit)
            }

            /// Incidents still open (at most one per item), oldest first.
            pub fn open_incidents(&self) -> Result<Vec<StoredIncident>, StoreError> {
                read::open_incidents(&self.conn)
            }

            /// The `limit` newest outbox alerts (by id), newest first, in every status.
            pub fn alerts(&self, limit: usize) -> Result<Vec<OutboxAlert>, StoreError> {
                read::alerts(&self.conn, limit)
            }

            /// Everything the dashboard shows for a range, read in one snapshot: per-bucket
            /// series and window statistics of every target and of the cycles, coverage, and
            /// the latest cycle and check. See [`RangeQuery`] for alignment and source choice.
            pub fn dashboard(&self, q: &RangeQuery) -> Result<DashboardData, StoreError> {
                dashboard::dashboard(&self.conn, q)
            }

            /// One target's series, statistics, incidents and recent errors for a range;
            /// `None` for a target never seen.
            pub fn target_detail(
                &self,
                name: &str,
                q: &RangeQuery,
            ) -> Result<Option<TargetDetail>, StoreError> {
                dashboard::target_detail(&self.conn, name, q)
            }

            /// Delivery attempts of one alert, oldest first.
            pub fn alert_attempts(&self, alert_id: i64) -> Result<Vec<StoredAttempt>, StoreError> {
                read::alert_attempts(&self.conn, alert_id)
            }
        }
    };
}

read_api!(Store);
read_api!(ReadStore);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use heartbeat_core::{CheckResult, Status, TargetCheck};

    fn cycle(ts_ms: i64) -> CycleRecord {
        CycleRecord {
            started_at_ms: ts_ms,
            host: HostMetrics::default(),
            connectivity: Connectivity::default(),
            worker_status: Some(200),
            worker_error: None,
            cycle_duration_ms: 1.5,
            checks: vec![TargetCheck {
                target: TargetRef {
                    name: "web".into(),
                    kind: "http".into(),
                    url: "http://web/health".into(),
                },
                result: CheckResult::failed(Status::Down, "refused"),
            }],
        }
    }

    fn tables(store: &Store) -> Vec<String> {
        let mut stmt = store
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn v1_database_upgrades_in_place_to_latest() {
        assert_eq!(LATEST_VERSION, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let before = {
            // Exactly what the v1 release left on disk: only MIGRATIONS[..1], written by the
            // same write_cycle code path.
            let mut v1 = Store::open_at_version(&path, 1).unwrap();
            assert_eq!(v1.schema_version().unwrap(), 1);
            assert!(!tables(&v1).contains(&"alert_outbox".to_owned()));
            v1.write_cycle(&cycle(1_000)).unwrap();
            v1.write_cycle(&cycle(2_000)).unwrap();
            v1.cycles(10).unwrap()
        };

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
        assert!(store.integrity_check().unwrap());
        assert_eq!(
            store.cycles(10).unwrap(),
            before,
            "v1 rows survive untouched"
        );
        let t = tables(&store);
        for table in ["item_states", "incidents", "alert_outbox", "alert_attempts"] {
            assert!(t.contains(&table.to_owned()), "{table} missing: {t:?}");
        }

        // The new tables work on the upgraded file, and target ids cached from v1 rows still hold.
        let effects = CycleEffects {
            item_states: vec![("web".into(), "{\"down\":true}".into())],
            incidents: vec![IncidentChange::Open {
                item: "web".into(),
                started_at_ms: 3_000,
                cause: "down".into(),
                first_error: Some("refused".into()),
                last_error: None,
                maintenance: false,
            }],
            alerts: Vec::new(),
        };
        store.write_cycle_with(&cycle(3_000), &effects).unwrap();
        assert_eq!(store.cycle_count().unwrap(), 3);
        assert_eq!(store.open_incidents().unwrap().len(), 1);
        assert_eq!(store.item_states().unwrap(), effects.item_states);
        drop(store);

        // And reopening the upgraded file is a no-op.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
        assert_eq!(store.cycle_count().unwrap(), 3);
    }

    fn mixed_cycle(i: i64) -> CycleRecord {
        let base = 1_699_999_200_000 + i * 10_000;
        let mut c = cycle(base);
        c.host.cpu_percent = Some(0.5 * (i % 7) as f64);
        c.connectivity.ping_ms = (i % 3 != 0).then_some(0.25 * (i % 9) as f64);
        c.connectivity.internet_status = Some(i % 4 != 0);
        c.worker_status = [Some(200), Some(220), None, Some(500)][(i % 4) as usize];
        c.checks.push(TargetCheck {
            target: TargetRef {
                name: "api".into(),
                kind: "http".into(),
                url: "http://api/health".into(),
            },
            result: if i % 5 == 0 {
                CheckResult::failed(Status::Timeout, "timeout")
            } else {
                CheckResult::healthy(1.0 + 0.25 * (i % 13) as f64, Some(200))
            },
        });
        c
    }

    #[test]
    fn v2_database_backfills_rollups_that_match_write_time_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let (old, fresh) = (dir.path().join("v2.db"), dir.path().join("v3.db"));
        {
            let mut v2 = Store::open_at_version(&old, 2).unwrap();
            assert!(!tables(&v2).contains(&"check_rollup_1m".to_owned()));
            let mut v3 = Store::open(&fresh).unwrap();
            for i in 0..800 {
                v2.write_cycle(&mixed_cycle(i)).unwrap();
                v3.write_cycle(&mixed_cycle(i)).unwrap();
            }
        }
        let upgraded = Store::open(&old).unwrap();
        assert_eq!(upgraded.schema_version().unwrap(), LATEST_VERSION);
        let reference = ReadStore::open(&fresh).unwrap();
        for bucket_ms in [3_600_000, 600_000, 60_000, 20_000] {
            let q = RangeQuery {
                from_ms: 1_699_999_200_000,
                to_ms: 1_699_999_200_000 + 3 * 3_600_000,
                bucket_ms,
            };
            let mut a = upgraded.dashboard(&q).unwrap();
            let mut b = reference.dashboard(&q).unwrap();
            assert!(a.cycle_stats.n == 800 && !a.targets.is_empty());
            // Ids differ between the two files only if targets were created in another order.
            a.latest_cycle = None;
            b.latest_cycle = None;
            assert_eq!(a, b, "bucket {bucket_ms}");
        }
        let tables = tables(&upgraded);
        for t in [
            "check_rollup_1m",
            "check_rollup_1h",
            "cycle_rollup_1m",
            "cycle_rollup_1h",
        ] {
            assert!(tables.contains(&t.to_owned()), "{t}");
        }
    }
}
