//! SQLite persistence for Heartbeat: the only code in the project that speaks SQL.
//!
//! * [`Store`] is the single writer. It owns the schema (versioned migrations keyed by
//!   `PRAGMA user_version`), adopts a database written by the replaced Python system, and
//!   writes one monitoring cycle per transaction.
//! * [`ReadStore`] is a read-only connection for tests and the dashboard. It works on a
//!   read-only mount because the writer keeps the `-wal`/`-shm` files (`SQLITE_FCNTL_PERSIST_WAL`).
//!
//! Both offer the same read methods (`cycle_count`, `cycles`, `cycles_between`, `latest_cycle`,
//! `target_checks`, `targets`, `integrity_check`, `schema_version`).

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::time::Duration;

use heartbeat_core::{CheckResult, Connectivity, CycleRecord, HostMetrics, TargetRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

mod legacy;
mod read;
mod schema;

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
}

impl Store {
    /// Opens (creating if needed) the database, configures it for a single WAL writer,
    /// adopts a legacy database if it finds one, and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        // Room for the insert statements plus the reads, so none is ever re-prepared.
        conn.set_prepared_statement_cache_capacity(32);
        schema::prepare(&mut conn, path)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            targets: HashMap::new(),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cycle and all its checks in one transaction and returns the cycle id.
    /// Targets are upserted by name (kind and URL follow the latest record).
    pub fn write_cycle(&mut self, cycle: &CycleRecord) -> Result<i64, StoreError> {
        let mut touched = Vec::new();
        let result = write_cycle_tx(&mut self.conn, &mut self.targets, cycle, &mut touched);
        if result.is_err() {
            // The transaction rolled back, so ids cached during it may not exist on disk.
            for name in touched {
                self.targets.remove(&name);
            }
        }
        result
    }
}

fn write_cycle_tx(
    conn: &mut Connection,
    targets: &mut HashMap<String, CachedTarget>,
    cycle: &CycleRecord,
    touched: &mut Vec<String>,
) -> Result<i64, StoreError> {
    // IMMEDIATE takes the write lock up front, so a busy database fails here, not mid-way.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cycle_id = {
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
        let cycle_id = tx.last_insert_rowid();

        let mut upsert_target = tx.prepare_cached(
            "INSERT INTO targets (name, kind, url, created_at_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, url = excluded.url \
             RETURNING id",
        )?;
        let mut insert_check = tx.prepare_cached(
            "INSERT INTO service_checks (cycle_id, target_id, ts_ms, status, status_code, \
             latency_ms, error_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for check in &cycle.checks {
            let t = &check.target;
            let cached = targets
                .get(&t.name)
                .filter(|c| c.kind == t.kind && c.url == t.url)
                .map(|c| c.id);
            let target_id = match cached {
                Some(id) => id,
                None => {
                    let id: i64 = upsert_target
                        .query_row(params![t.name, t.kind, t.url, cycle.started_at_ms], |r| {
                            r.get(0)
                        })?;
                    touched.push(t.name.clone());
                    targets.insert(
                        t.name.clone(),
                        CachedTarget {
                            id,
                            kind: t.kind.clone(),
                            url: t.url.clone(),
                        },
                    );
                    id
                }
            };
            let r = &check.result;
            insert_check.execute(params![
                cycle_id,
                target_id,
                cycle.started_at_ms,
                r.status.code(),
                r.status_code,
                r.latency_ms,
                r.error_message,
            ])?;
        }
        cycle_id
    };
    tx.commit()?;
    Ok(cycle_id)
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
        }
    };
}

read_api!(Store);
read_api!(ReadStore);
