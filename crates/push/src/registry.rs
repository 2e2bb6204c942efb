//! The in-memory view of every push target: definitions, token index, the state the status
//! is computed from, rate-limit buckets and recent progress tasks.
//!
//! It only ever reflects COMMITTED rows: handlers update it after the writer acknowledged
//! the commit, and start-up fills it from the database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use heartbeat_core::{CheckResult, Status, TargetCheck, TargetRef};
use heartbeat_store::{PushDefinition, PushEvent, PushEventKind, PushLoaded, PushSource, PushTask};
use jiff::tz::TimeZone;
use subtle::ConstantTimeEq as _;

use crate::status::{Expectation, Life, evaluate};
use crate::token::TokenHash;

/// Open runs remembered per target for `?rid=` pairing; older ones are forgotten.
const OPEN_RUNS_KEPT: usize = 64;

/// Token bucket settings; `rate_per_sec == 0` disables limiting.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub rate_per_sec: f64,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst),
            at: Instant::now(),
        }
    }

    /// Takes one request; `Err(seconds)` says when the next one would be allowed.
    fn take(&mut self, limit: RateLimit) -> Result<(), u64> {
        if limit.rate_per_sec <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * limit.rate_per_sec;
        self.tokens = (self.tokens + refill).min(f64::from(limit.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / limit.rate_per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub def: PushDefinition,
    schedule: Option<jiff_cron::Schedule>,
    pub last_life: Option<Life>,
    pub open_start_ms: Option<i64>,
    /// Start times of open runs by run id ("" = started without `rid`), oldest first.
    open_runs: VecDeque<(String, i64)>,
    pub tasks: VecDeque<PushTask>,
    /// The status the latest cycle computed (the API shows it).
    pub last_result: Option<CheckResult>,
    bucket: Bucket,
}

impl Entry {
    fn new(def: PushDefinition, limit: RateLimit) -> Entry {
        let schedule = def
            .schedule
            .as_deref()
            .and_then(|s| heartbeat_config::parse_schedule(s).ok());
        Entry {
            def,
            schedule,
            last_life: None,
            open_start_ms: None,
            open_runs: VecDeque::new(),
            tasks: VecDeque::new(),
            last_result: None,
            bucket: Bucket::new(limit),
        }
    }

    /// The sign of life the status rules use, newest wins.
    pub fn last_heartbeat_ms(&self) -> Option<i64> {
        self.last_life.as_ref().map(|l| l.ts_ms)
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    by_token: HashMap<[u8; 32], String>,
}

/// Shared by the listener's handlers and the monitor's cycle.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Held across a progress task's read, change and commit, so an update racing the
    /// task's completion cannot reopen it.
    pub(crate) task_changes: tokio::sync::Mutex<()>,
    tz: TimeZone,
    limit: RateLimit,
    admin_bucket: Mutex<Bucket>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NotFound,
    /// Seconds until a retry may succeed.
    RateLimited(u64),
}

impl Registry {
    pub fn new(loaded: Vec<PushLoaded>, tz: TimeZone, limit: RateLimit) -> Registry {
        let mut inner = Inner::default();
        for l in loaded {
            let mut entry = Entry::new(l.definition, limit);
            entry.last_life = l.last_life.as_ref().map(life_of);
            if let Some(s) = &l.open_start {
                entry.open_start_ms = Some(s.ts_ms);
                entry
                    .open_runs
                    .push_back((s.rid.clone().unwrap_or_default(), s.ts_ms));
            }
            entry.tasks = l.tasks.into();
            inner
                .by_token
                .insert(entry.def.token_sha256, entry.def.service_id.clone());
            inner.by_id.insert(entry.def.service_id.clone(), entry);
        }
        Registry {
            inner: Mutex::new(inner),
            task_changes: tokio::sync::Mutex::new(()),
            tz,
            limit,
            admin_bucket: Mutex::new(Bucket::new(limit)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service id a token belongs to, after its rate limit. Unknown tokens and wrong ones
    /// are indistinguishable to the caller.
    pub fn authorize(&self, token: &TokenHash) -> Result<String, Denied> {
        let mut inner = self.lock();
        let id = inner
            .by_token
            .get(&token.0)
            .cloned()
            .ok_or(Denied::NotFound)?;
        let limit = self.limit;
        let entry = inner.by_id.get_mut(&id).ok_or(Denied::NotFound)?;
        // The map lookup already matched; the constant-time compare keeps the final decision
        // free of data-dependent timing should the index ever change.
        if !bool::from(entry.def.token_sha256.ct_eq(&token.0)) {
            return Err(Denied::NotFound);
        }
        entry.bucket.take(limit).map_err(Denied::RateLimited)?;
        Ok(id)
    }

    /// The admin token's own bucket.
    pub fn admin_rate(&self) -> Result<(), Denied> {
        self.admin_bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(self.limit)
            .map_err(Denied::RateLimited)
    }

    /// The start of the run an end event closes: the open start with the same `rid` (or,
    /// without one, the newest start without one). Changes nothing: [`record`] closes
    /// exactly that run once the end is committed, so an end whose commit fails leaves it
    /// open.
    ///
    /// [`record`]: Registry::record
    pub fn open_run_start(&self, service_id: &str, rid: Option<&str>) -> Option<i64> {
        let inner = self.lock();
        let entry = inner.by_id.get(service_id)?;
        let key = rid.unwrap_or("");
        let (_, start) = entry.open_runs.iter().rev().find(|(r, _)| r == key)?;
        Some(*start)
    }

    /// Applies a committed event; `closes` is the start of the run it ended, as
    /// [`open_run_start`](Registry::open_run_start) found it.
    pub fn record(&self, e: &PushEvent, closes: Option<i64>) {
        let mut inner = self.lock();
        let Some(entry) = inner.by_id.get_mut(&e.service_id) else {
            return;
        };
        match e.kind {
            PushEventKind::Start => {
                entry.open_start_ms = Some(entry.open_start_ms.map_or(e.ts_ms, |s| s.max(e.ts_ms)));
                if entry.open_runs.len() >= OPEN_RUNS_KEPT {
                    entry.open_runs.pop_front();
                }
                entry
                    .open_runs
                    .push_back((e.rid.clone().unwrap_or_default(), e.ts_ms));
            }
            PushEventKind::Log => {}
            _ => {
                let key = e.rid.as_deref().unwrap_or("");
                if let Some(start) = closes
                    && let Some(pos) = entry
                        .open_runs
                        .iter()
                        .position(|(r, s)| r == key && *s == start)
                {
                    entry.open_runs.remove(pos);
                }
                if entry.last_life.as_ref().is_none_or(|l| l.ts_ms <= e.ts_ms) {
                    entry.last_life = Some(life_of(e));
                }
                // Any end closes the displayed run; other open rids only keep their start for
                // pairing durations.
                if entry.open_start_ms.is_some_and(|s| s <= e.ts_ms) {
                    entry.open_start_ms = None;
                }
            }
        }
    }

    /// Applies a committed registration.
    pub fn insert(&self, def: PushDefinition) {
        let mut inner = self.lock();
        inner
            .by_token
            .insert(def.token_sha256, def.service_id.clone());
        let id = def.service_id.clone();
        inner.by_id.insert(id, Entry::new(def, self.limit));
    }

    /// Applies a committed deletion.
    pub fn remove(&self, service_id: &str) -> bool {
        let mut inner = self.lock();
        match inner.by_id.remove(service_id) {
            Some(e) => {
                inner.by_token.remove(&e.def.token_sha256);
                true
            }
            None => false,
        }
    }

    /// Applies a committed task change; newest task first, bounded.
    pub fn record_task(&self, task: &PushTask) {
        let mut inner = self.lock();
        let Some(entry) = inner.by_id.get_mut(&task.service_id) else {
            return;
        };
        match entry.tasks.iter_mut().find(|t| t.task_id == task.task_id) {
            Some(t) => *t = task.clone(),
            None => {
                entry.tasks.push_front(task.clone());
                entry.tasks.truncate(heartbeat_store::TASKS_KEPT);
            }
        }
    }

    pub fn name_taken(&self, name: &str) -> bool {
        self.lock().by_id.values().any(|e| e.def.name == name)
    }

    /// Reads one entry under the lock.
    pub(crate) fn with<T>(&self, service_id: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.lock().by_id.get(service_id).map(f)
    }

    /// Reads every entry under the lock, in name order.
    pub(crate) fn each<T>(&self, mut f: impl FnMut(&Entry) -> T) -> Vec<T> {
        let inner = self.lock();
        let mut entries: Vec<&Entry> = inner.by_id.values().collect();
        entries.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        entries.into_iter().map(&mut f).collect()
    }

    /// One check per push target for the cycle at `now_ms`, in name order.
    pub fn evaluate(&self, now_ms: i64) -> Vec<TargetCheck> {
        let mut inner = self.lock();
        let mut checks: Vec<TargetCheck> = inner
            .by_id
            .values_mut()
            .map(|entry| {
                let e = Expectation {
                    created_at_ms: entry.def.created_at_ms,
                    period_ms: entry.def.period_ms,
                    grace_ms: entry.def.grace_ms,
                    schedule: entry.schedule.as_ref(),
                    tz: &self.tz,
                };
                let result = evaluate(&e, now_ms, entry.last_life.as_ref(), entry.open_start_ms);
                entry.last_result = Some(result.clone());
                TargetCheck {
                    target: TargetRef {
                        name: entry.def.name.clone(),
                        kind: "push".into(),
                        url: "push://".into(),
                    },
                    result,
                }
            })
            .collect();
        checks.sort_by(|a, b| a.target.name.cmp(&b.target.name));
        checks
    }

    /// Registered services whose last sign of life (or creation) is before `before_ms`.
    pub fn silent_registered(&self, before_ms: i64) -> Vec<String> {
        self.lock()
            .by_id
            .values()
            .filter(|e| e.def.source == PushSource::Api)
            .filter(|e| e.last_heartbeat_ms().unwrap_or(e.def.created_at_ms) < before_ms)
            .map(|e| e.def.service_id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn life_of(e: &PushEvent) -> Life {
    Life {
        ts_ms: e.ts_ms,
        kind: e.kind,
        message: e.message.clone(),
        duration_ms: e.duration_ms,
    }
}

/// The status names the API shows, "unknown" before the first cycle.
pub(crate) fn status_name(result: Option<&CheckResult>) -> &'static str {
    result.map_or(Status::Unknown.as_str(), |r| r.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let definition = PushDefinition {
            service_id: "backup".into(),
            name: "backup".into(),
            source: PushSource::Config,
            token_sha256: [7; 32],
            period_ms: 60_000,
            grace_ms: 60_000,
            schedule: None,
            metadata: None,
            created_at_ms: 0,
        };
        let loaded = PushLoaded {
            definition,
            last_life: None,
            open_start: None,
            tasks: Vec::new(),
        };
        let limit = RateLimit {
            rate_per_sec: 0.0,
            burst: 1,
        };
        Registry::new(vec![loaded], TimeZone::UTC, limit)
    }

    fn event(kind: PushEventKind, rid: Option<&str>, ts_ms: i64) -> PushEvent {
        PushEvent {
            service_id: "backup".into(),
            ts_ms,
            kind,
            exit_code: None,
            rid: rid.map(str::to_owned),
            source: "hc".into(),
            duration_ms: None,
            message: None,
            body: None,
        }
    }

    #[test]
    fn a_run_stays_open_until_its_end_is_committed() {
        let r = registry();
        r.record(&event(PushEventKind::Start, Some("a"), 1_000), None);
        r.record(&event(PushEventKind::Start, None, 2_000), None);
        // An end whose commit then fails: looking up its run closes nothing.
        assert_eq!(r.open_run_start("backup", Some("a")), Some(1_000));
        assert_eq!(r.open_run_start("backup", Some("a")), Some(1_000));
        // A newer start with the same id arrives before the end commits: the end still
        // closes the run it was paired with, and the newer one stays open.
        r.record(&event(PushEventKind::Start, Some("a"), 3_000), None);
        r.record(
            &event(PushEventKind::Success, Some("a"), 6_000),
            Some(1_000),
        );
        assert_eq!(r.open_run_start("backup", Some("a")), Some(3_000));
        // Only run "a" was touched; the run without an id is still open.
        assert_eq!(r.open_run_start("backup", None), Some(2_000));
        r.record(&event(PushEventKind::Fail, None, 7_000), Some(2_000));
        assert_eq!(r.open_run_start("backup", None), None);
        // An end with its own duration (no paired start) closes nothing.
        r.record(&event(PushEventKind::Success, Some("a"), 8_000), None);
        assert_eq!(r.open_run_start("backup", Some("a")), Some(3_000));
        assert_eq!(r.open_run_start("unknown", None), None);
    }
}
