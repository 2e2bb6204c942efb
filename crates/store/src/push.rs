//! Push targets (schema v4): their definitions, ping events and progress tasks.
//!
//! Tokens are never stored, only their SHA-256. Ping events are written in batches (group
//! commit, [`Store::push_apply`]); the state a push target's status is computed from (last sign
//! of life, open run, latest tasks) is read back from these rows at start-up, so a restart never
//! resets a silent job's clock.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::{ReadStore, Store, StoreError};

/// Where a push target was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushSource {
    /// `SERVICE_URL_<name>=push://`; synced from the configuration at start-up.
    Config,
    /// Registered through `POST /api/services`.
    Api,
}

impl PushSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PushSource::Config => "config",
            PushSource::Api => "api",
        }
    }
    fn parse(s: &str) -> PushSource {
        if s == "config" {
            PushSource::Config
        } else {
            PushSource::Api
        }
    }
}

/// A push target's definition as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PushDefinition {
    /// A UUID for registered services, the target name for configured ones.
    pub service_id: String,
    pub name: String,
    pub source: PushSource,
    /// SHA-256 of the token; the token itself is never stored.
    pub token_sha256: [u8; 32],
    pub period_ms: i64,
    pub grace_ms: i64,
    pub schedule: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
    /// The clock of a never-pinged target starts here, not at agent start.
    pub created_at_ms: i64,
}

/// What a ping reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEventKind {
    Success,
    Start,
    Fail,
    Log,
    /// LaneSwap's `unknown`: alive, but its health is not known.
    Unknown,
}

impl PushEventKind {
    pub const ALL: [PushEventKind; 5] = [
        PushEventKind::Success,
        PushEventKind::Start,
        PushEventKind::Fail,
        PushEventKind::Log,
        PushEventKind::Unknown,
    ];
    pub fn code(self) -> u8 {
        match self {
            PushEventKind::Success => 0,
            PushEventKind::Start => 1,
            PushEventKind::Fail => 2,
            PushEventKind::Log => 3,
            PushEventKind::Unknown => 4,
        }
    }
    pub fn from_code(code: u8) -> Option<PushEventKind> {
        PushEventKind::ALL.into_iter().find(|k| k.code() == code)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PushEventKind::Success => "success",
            PushEventKind::Start => "start",
            PushEventKind::Fail => "fail",
            PushEventKind::Log => "log",
            PushEventKind::Unknown => "unknown",
        }
    }
    /// Counts as a sign of life for lateness (a start does not: a hung run must go down).
    pub fn is_life(self) -> bool {
        matches!(
            self,
            PushEventKind::Success | PushEventKind::Fail | PushEventKind::Unknown
        )
    }
    /// Ends a run opened by a start.
    pub fn is_end(self) -> bool {
        self.is_life()
    }
}

/// One ping, as written and as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    pub service_id: String,
    pub ts_ms: i64,
    pub kind: PushEventKind,
    pub exit_code: Option<u8>,
    pub rid: Option<String>,
    /// Which convention sent it: `hc`, `kuma`, `laneswap`, `central`, `progress`.
    pub source: String,
    /// Run duration (start → end) or the sender's own latency (Kuma `ping=`).
    pub duration_ms: Option<f64>,
    /// The check message this event implies (`"exit status 3: ..."`).
    pub message: Option<String>,
    /// At most 10 KB of the request body.
    pub body: Option<String>,
}

/// A LaneSwap progress task.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTask {
    pub task_id: String,
    pub service_id: String,
    pub task_name: String,
    pub description: Option<String>,
    pub total_steps: i64,
    pub current_step: i64,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    pub message: Option<String>,
    pub metadata: Option<String>,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

impl PushTask {
    /// Progress in percent, 0-100 to one decimal; 0 for a task without steps.
    pub fn percentage(&self) -> f64 {
        if self.total_steps <= 0 {
            return 0.0;
        }
        let p = (self.current_step as f64 / self.total_steps as f64 * 100.0).clamp(0.0, 100.0);
        (p * 10.0).round() / 10.0
    }
}

/// One change for the writer; [`Store::push_apply`] commits a batch of them at once.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOp {
    Event(PushEvent),
    Register(PushDefinition),
    Delete { service_id: String },
    Task(PushTask),
}

/// A push target and the state derived from its rows, read at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct PushLoaded {
    pub definition: PushDefinition,
    /// The newest sign-of-life event (success, fail, unknown).
    pub last_life: Option<PushEvent>,
    /// The newest start, if newer than the newest end.
    pub open_start: Option<PushEvent>,
    /// Newest first, at most [`TASKS_KEPT`].
    pub tasks: Vec<PushTask>,
}

/// Progress tasks loaded per target at start-up and listed by the API.
pub const TASKS_KEPT: usize = 20;

/// Why one op of a batch was not applied (the rest of the batch still commits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushOpError {
    #[error("the name {0:?} is already used by another target")]
    NameTaken(String),
    #[error("no push target with that id")]
    UnknownTarget,
    #[error("database: {0}")]
    Database(String),
}

pub(crate) const V4_SQL: &str = "
CREATE TABLE push_targets (
    id            INTEGER PRIMARY KEY,
    service_id    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL UNIQUE,
    source        TEXT NOT NULL CHECK (source IN ('config', 'api')),
    token_sha256  BLOB NOT NULL UNIQUE,
    period_ms     INTEGER NOT NULL,
    grace_ms      INTEGER NOT NULL,
    schedule      TEXT,
    metadata      TEXT,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE push_events (
    id             INTEGER PRIMARY KEY,
    push_target_id INTEGER NOT NULL REFERENCES push_targets (id) ON DELETE CASCADE,
    ts_ms          INTEGER NOT NULL,
    kind           INTEGER NOT NULL, -- 0 success, 1 start, 2 fail, 3 log, 4 unknown
    exit_code      INTEGER,
    rid            TEXT,
    source         TEXT NOT NULL,
    duration_ms    REAL,
    message        TEXT,
    body           TEXT
);
-- Per-target history and start-up state; ts_ms alone serves retention.
CREATE INDEX idx_push_events_target_ts ON push_events (push_target_id, ts_ms);
CREATE INDEX idx_push_events_ts ON push_events (ts_ms);

CREATE TABLE push_tasks (
    id              INTEGER PRIMARY KEY,
    task_id         TEXT NOT NULL UNIQUE,
    push_target_id  INTEGER NOT NULL REFERENCES push_targets (id) ON DELETE CASCADE,
    task_name       TEXT NOT NULL,
    description     TEXT,
    total_steps     INTEGER NOT NULL,
    current_step    INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    message         TEXT,
    metadata        TEXT,
    started_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    completed_at_ms INTEGER
);
CREATE INDEX idx_push_tasks_target ON push_tasks (push_target_id, started_at_ms);
CREATE INDEX idx_push_tasks_updated ON push_tasks (updated_at_ms);
";

const DEF_COLUMNS: &str = "service_id, name, source, token_sha256, period_ms, grace_ms, schedule, \
                           metadata, created_at_ms";
const EVENT_COLUMNS: &str = "t.service_id, e.ts_ms, e.kind, e.exit_code, e.rid, e.source, \
                             e.duration_ms, e.message, e.body";
const TASK_COLUMNS: &str = "k.task_id, t.service_id, k.task_name, k.description, k.total_steps, \
                            k.current_step, k.status, k.message, k.metadata, k.started_at_ms, \
                            k.updated_at_ms, k.completed_at_ms";

fn definition(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushDefinition> {
    let hash: Vec<u8> = r.get(3)?;
    let mut token_sha256 = [0u8; 32];
    if hash.len() == 32 {
        token_sha256.copy_from_slice(&hash);
    }
    Ok(PushDefinition {
        service_id: r.get(0)?,
        name: r.get(1)?,
        source: PushSource::parse(&r.get::<_, String>(2)?),
        token_sha256,
        period_ms: r.get(4)?,
        grace_ms: r.get(5)?,
        schedule: r.get(6)?,
        metadata: r.get(7)?,
        created_at_ms: r.get(8)?,
    })
}

fn event(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushEvent> {
    let code: u8 = r.get(2)?;
    Ok(PushEvent {
        service_id: r.get(0)?,
        ts_ms: r.get(1)?,
        // Only this module writes the column; an unknown code would be a hand edit.
        kind: PushEventKind::from_code(code).unwrap_or(PushEventKind::Log),
        exit_code: r.get(3)?,
        rid: r.get(4)?,
        source: r.get(5)?,
        duration_ms: r.get(6)?,
        message: r.get(7)?,
        body: r.get(8)?,
    })
}

fn task(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushTask> {
    Ok(PushTask {
        task_id: r.get(0)?,
        service_id: r.get(1)?,
        task_name: r.get(2)?,
        description: r.get(3)?,
        total_steps: r.get(4)?,
        current_step: r.get(5)?,
        status: r.get(6)?,
        message: r.get(7)?,
        metadata: r.get(8)?,
        started_at_ms: r.get(9)?,
        updated_at_ms: r.get(10)?,
        completed_at_ms: r.get(11)?,
    })
}

fn insert_definition(tx: &Connection, d: &PushDefinition) -> rusqlite::Result<usize> {
    tx.prepare_cached(&format!(
        "INSERT INTO push_targets ({DEF_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
    .execute(params![
        d.service_id,
        d.name,
        d.source.as_str(),
        &d.token_sha256[..],
        d.period_ms,
        d.grace_ms,
        d.schedule,
        d.metadata,
        d.created_at_ms
    ])
}

fn apply_op(tx: &Connection, op: &PushOp) -> Result<(), PushOpError> {
    let db = |e: rusqlite::Error| PushOpError::Database(e.to_string());
    match op {
        PushOp::Event(e) => {
            let n = tx
                .prepare_cached(
                    "INSERT INTO push_events (push_target_id, ts_ms, kind, exit_code, rid, source, \
                     duration_ms, message, body) \
                     SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM push_targets WHERE service_id = ?1",
                )
                .map_err(db)?
                .execute(params![
                    e.service_id,
                    e.ts_ms,
                    e.kind.code(),
                    e.exit_code,
                    e.rid,
                    e.source,
                    e.duration_ms,
                    e.message,
                    e.body
                ])
                .map_err(db)?;
            if n == 0 {
                return Err(PushOpError::UnknownTarget);
            }
        }
        PushOp::Register(d) => match insert_definition(tx, d) {
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                return Err(PushOpError::NameTaken(d.name.clone()));
            }
            Err(e) => return Err(db(e)),
        },
        PushOp::Delete { service_id } => {
            let n = tx
                .prepare_cached("DELETE FROM push_targets WHERE service_id = ?1")
                .map_err(db)?
                .execute([service_id])
                .map_err(db)?;
            if n == 0 {
                return Err(PushOpError::UnknownTarget);
            }
        }
        PushOp::Task(k) => {
            let n = tx
                .prepare_cached(
                    "INSERT INTO push_tasks (task_id, push_target_id, task_name, description, \
                     total_steps, current_step, status, message, metadata, started_at_ms, \
                     updated_at_ms, completed_at_ms) \
                     SELECT ?1, id, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 \
                     FROM push_targets WHERE service_id = ?2 \
                     ON CONFLICT (task_id) DO UPDATE SET current_step = excluded.current_step, \
                     status = excluded.status, message = excluded.message, \
                     metadata = excluded.metadata, updated_at_ms = excluded.updated_at_ms, \
                     completed_at_ms = excluded.completed_at_ms",
                )
                .map_err(db)?
                .execute(params![
                    k.task_id,
                    k.service_id,
                    k.task_name,
                    k.description,
                    k.total_steps,
                    k.current_step,
                    k.status,
                    k.message,
                    k.metadata,
                    k.started_at_ms,
                    k.updated_at_ms,
                    k.completed_at_ms
                ])
                .map_err(db)?;
            if n == 0 {
                return Err(PushOpError::UnknownTarget);
            }
        }
    }
    Ok(())
}

impl Store {
    /// Commits every op of `ops` in ONE transaction (group commit) and returns each op's own
    /// outcome. An op that fails (a taken name, a deleted target) is rolled back alone through
    /// its savepoint; the others still commit. `Err` means the transaction itself failed and
    /// nothing was written.
    pub fn push_apply(
        &mut self,
        ops: &[PushOp],
    ) -> Result<Vec<Result<(), PushOpError>>, StoreError> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(apply_savepointed(&mut tx, op)?);
        }
        tx.commit()?;
        Ok(results)
    }

    /// Makes the stored configured push targets match `configured` (source `config`): new ones
    /// are created at `now_ms`, existing ones keep their creation time (and so their clock)
    /// but take the new token hash, period, grace and schedule; ones no longer configured are
    /// deleted. A registered service holding a configured name is taken over by the config.
    pub fn push_sync_config(
        &mut self,
        configured: &[PushDefinition],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare(&format!(
                "INSERT INTO push_targets ({DEF_COLUMNS}) VALUES (?1, ?2, 'config', ?3, ?4, ?5, ?6, NULL, ?7) \
                 ON CONFLICT (name) DO UPDATE SET service_id = excluded.service_id, source = 'config', \
                 token_sha256 = excluded.token_sha256, period_ms = excluded.period_ms, \
                 grace_ms = excluded.grace_ms, schedule = excluded.schedule"
            ))?;
            // A token moved between targets would trip the UNIQUE index mid-way; clear first.
            tx.execute(
                "UPDATE push_targets SET token_sha256 = randomblob(32) WHERE source = 'config'",
                [],
            )?;
            for d in configured {
                upsert.execute(params![
                    d.service_id,
                    d.name,
                    &d.token_sha256[..],
                    d.period_ms,
                    d.grace_ms,
                    d.schedule,
                    now_ms
                ])?;
            }
            let names: Vec<&str> = configured.iter().map(|d| d.name.as_str()).collect();
            let mut stale = tx.prepare("SELECT name FROM push_targets WHERE source = 'config'")?;
            let existing = stale
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            for name in existing.iter().filter(|n| !names.contains(&n.as_str())) {
                tx.execute("DELETE FROM push_targets WHERE name = ?1", [name])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes up to `limit` ping events and finished tasks older than `before_ms`, in one short
    /// transaction. Returns `true` when more may remain.
    pub fn push_prune(&mut self, before_ms: i64, limit: usize) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A target's newest sign of life and newest start are kept however old: a monthly
        // job's last success is what a restart rebuilds its state from (logs go by age).
        let events = tx.execute(
            "DELETE FROM push_events WHERE id IN \
             (SELECT e.id FROM push_events e WHERE e.ts_ms < ?1 \
                AND (e.kind = 3 OR EXISTS (SELECT 1 FROM push_events n \
                     WHERE n.push_target_id = e.push_target_id AND n.ts_ms >= e.ts_ms \
                       AND n.id > e.id AND n.kind != 3 AND (n.kind = 1) = (e.kind = 1))) \
              ORDER BY e.ts_ms LIMIT ?2)",
            params![before_ms, limit],
        )?;
        // Only finished tasks go; a running one stays whatever its age.
        let tasks = tx.execute(
            "DELETE FROM push_tasks WHERE id IN \
             (SELECT id FROM push_tasks WHERE updated_at_ms < ?1 \
                AND status IN ('completed', 'failed') ORDER BY updated_at_ms LIMIT ?2)",
            params![before_ms, limit],
        )?;
        tx.commit()?;
        Ok(i64::try_from(events.max(tasks)).unwrap_or(i64::MAX) >= limit)
    }
}

fn apply_savepointed(
    tx: &mut Transaction<'_>,
    op: &PushOp,
) -> Result<Result<(), PushOpError>, StoreError> {
    // Events cannot fail halfway (one statement), so they skip the savepoint's cost.
    if let PushOp::Event(_) = op {
        return Ok(apply_op(tx, op));
    }
    let sp = tx.savepoint()?;
    let outcome = apply_op(&sp, op);
    if outcome.is_ok() {
        sp.commit()?;
    }
    // Dropping an uncommitted savepoint rolls it back.
    Ok(outcome)
}

pub(crate) fn load(conn: &Connection) -> Result<Vec<PushLoaded>, StoreError> {
    let mut defs = conn.prepare(&format!(
        "SELECT {DEF_COLUMNS}, id FROM push_targets ORDER BY id"
    ))?;
    let rows = defs
        .query_map([], |r| Ok((definition(r)?, r.get::<_, i64>(9)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut latest_of = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM push_events e JOIN push_targets t ON t.id = e.push_target_id \
         WHERE e.push_target_id = ?1 AND e.kind IN (0, 2, 4) ORDER BY e.ts_ms DESC, e.id DESC LIMIT 1"
    ))?;
    let mut latest_start = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM push_events e JOIN push_targets t ON t.id = e.push_target_id \
         WHERE e.push_target_id = ?1 AND e.kind = 1 \
           AND e.id > coalesce((SELECT max(id) FROM push_events \
                                WHERE push_target_id = ?1 AND kind IN (0, 2, 4)), 0) \
         ORDER BY e.ts_ms DESC, e.id DESC LIMIT 1"
    ))?;
    let mut tasks = conn.prepare(&format!(
        "SELECT {TASK_COLUMNS} FROM push_tasks k JOIN push_targets t ON t.id = k.push_target_id \
         WHERE k.push_target_id = ?1 ORDER BY k.started_at_ms DESC, k.id DESC LIMIT ?2"
    ))?;
    let mut out = Vec::with_capacity(rows.len());
    for (definition, id) in rows {
        let last_life = latest_of.query_row([id], event).optional()?;
        // Open = started after the last end in commit order (ids), not by time: a start in
        // the same millisecond as the success before it is still a run in progress.
        let open_start = latest_start.query_row([id], event).optional()?;
        let tasks = tasks
            .query_map(params![id, TASKS_KEPT as i64], task)?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(PushLoaded {
            definition,
            last_life,
            open_start,
            tasks,
        });
    }
    Ok(out)
}

pub(crate) fn events(
    conn: &Connection,
    service_id: &str,
    limit: usize,
) -> Result<Vec<PushEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM push_events e JOIN push_targets t ON t.id = e.push_target_id \
         WHERE t.service_id = ?1 ORDER BY e.ts_ms DESC, e.id DESC LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(
            params![service_id, i64::try_from(limit).unwrap_or(i64::MAX)],
            event,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The newest progress task of the target named `name`, for the dashboard.
pub(crate) fn latest_task(conn: &Connection, name: &str) -> Result<Option<PushTask>, StoreError> {
    // A database from before v4 has no push tables: no task.
    let has_tables: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'push_tasks'",
        [],
        |r| r.get(0),
    )?;
    if !has_tables {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            &format!(
                "SELECT {TASK_COLUMNS} FROM push_tasks k JOIN push_targets t ON t.id = k.push_target_id \
                 WHERE t.name = ?1 ORDER BY k.started_at_ms DESC, k.id DESC LIMIT 1"
            ),
            [name],
            task,
        )
        .optional()?)
}

macro_rules! push_read_api {
    ($ty:ty) => {
        impl $ty {
            /// Every push target with the state derived from its rows (see [`PushLoaded`]).
            pub fn push_targets(&self) -> Result<Vec<PushLoaded>, StoreError> {
                load(&self.conn)
            }

            /// The `limit` newest ping events of a push target, newest first.
            pub fn push_events(
                &self,
                service_id: &str,
                limit: usize,
            ) -> Result<Vec<PushEvent>, StoreError> {
                events(&self.conn, service_id, limit)
            }

            /// The newest progress task of the push target named `name`.
            pub fn push_latest_task(&self, name: &str) -> Result<Option<PushTask>, StoreError> {
                latest_task(&self.conn, name)
            }
        }
    };
}

push_read_api!(Store);
push_read_api!(ReadStore);
