//! Alerting persistence (schema v2): the state machine's per-item state, incidents, and the
//! alert outbox with its delivery attempts.
//!
//! The writes here run inside a transaction owned by the caller (`Store`), so the effects of a
//! cycle commit or roll back together with the cycle itself. Every statement is prepared only
//! when there is something for it to do: most cycles carry no effects and must cost nothing extra.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

/// What one evaluation of the alert state machine wants persisted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleEffects {
    /// `(item, opaque state JSON)`, upserted by item.
    pub item_states: Vec<(String, String)>,
    /// Applied in order, so a `Close` followed by an `Open` for the same item works.
    pub incidents: Vec<IncidentChange>,
    pub alerts: Vec<NewAlert>,
}

impl CycleEffects {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.item_states.is_empty() && self.incidents.is_empty() && self.alerts.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum IncidentChange {
    /// Opens an incident. Fails with [`StoreError::IncidentAlreadyOpen`] (rolling back the whole
    /// transaction) if the item already has one open.
    Open {
        item: String,
        started_at_ms: i64,
        cause: String,
        first_error: Option<String>,
        last_error: Option<String>,
        maintenance: bool,
    },
    /// Updates the item's open incident (no-op if none is open). A `None` `last_error` keeps
    /// the stored one.
    Update {
        item: String,
        cause: String,
        last_error: Option<String>,
    },
    /// Closes the item's open incident (no-op if none is open). A `None` `last_error` keeps
    /// the stored one.
    Close {
        item: String,
        ended_at_ms: i64,
        last_error: Option<String>,
    },
}

/// Where an alert is in its life. Stored as the lowercase text of [`AlertStatus::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Waiting for delivery once `next_attempt_ms` is reached.
    Pending,
    /// Not delivered yet because the agent itself is offline; [`crate::Store::release_held`]
    /// makes it pending.
    Held,
    /// Recorded but never delivered (e.g. raised during maintenance).
    Suppressed,
    Sent,
    /// Gave up: retries exhausted or too old.
    Expired,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 5] = [
        AlertStatus::Pending,
        AlertStatus::Held,
        AlertStatus::Suppressed,
        AlertStatus::Sent,
        AlertStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Held => "held",
            AlertStatus::Suppressed => "suppressed",
            AlertStatus::Sent => "sent",
            AlertStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert status {0:?}; expected one of pending, held, suppressed, sent, expired")]
pub struct UnknownAlertStatus(pub String);

impl FromStr for AlertStatus {
    type Err = UnknownAlertStatus;
    /// Exact match: this parses what the store wrote, so anything else is corruption, not a
    /// spelling variant to forgive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownAlertStatus(s.to_owned()))
    }
}

/// An alert to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub channel: String,
    pub item: String,
    pub kind: String,
    pub payload_json: String,
    pub created_ms: i64,
    pub status: AlertStatus,
    pub next_attempt_ms: i64,
    pub expires_ms: i64,
}

/// An alert as stored in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxAlert {
    pub id: i64,
    pub channel: String,
    pub item: String,
    pub kind: String,
    pub payload_json: String,
    pub created_ms: i64,
    pub status: AlertStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub expires_ms: i64,
    /// The error of the latest attempt (`None` after a successful one).
    pub last_error: Option<String>,
    pub sent_ms: Option<i64>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub at_ms: i64,
    pub ok: bool,
    pub status_code: Option<i64>,
    pub error: Option<String>,
}

/// What happens to an alert after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextStep {
    /// Delivered; `sent_ms` becomes the attempt's `at_ms`.
    Sent,
    /// Stays pending, due again at this UTC ms.
    RetryAt(i64),
    Expired,
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIncident {
    pub id: i64,
    pub item: String,
    pub started_at_ms: i64,
    /// `None` while open.
    pub ended_at_ms: Option<i64>,
    pub cause: String,
    pub first_error: Option<String>,
    pub last_error: Option<String>,
    pub maintenance: bool,
}

/// One delivery attempt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttempt {
    pub id: i64,
    pub alert_id: i64,
    pub at_ms: i64,
    pub ok: bool,
    pub status_code: Option<i64>,
    pub error: Option<String>,
}

/// Writes `effects` inside the caller's transaction `tx`.
pub(crate) fn apply(tx: &Connection, effects: &CycleEffects) -> Result<(), StoreError> {
    if !effects.item_states.is_empty() {
        // updated_ms comes from SQLite's clock: effects carry no time of their own, and this
        // column only tells a human when the row last changed.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO item_states (item, state, updated_ms) \
             VALUES (?1, ?2, CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
             ON CONFLICT(item) DO UPDATE SET state = excluded.state, \
             updated_ms = excluded.updated_ms",
        )?;
        for (item, state) in &effects.item_states {
            upsert.execute(params![item, state])?;
        }
    }
    for change in &effects.incidents {
        apply_incident(tx, change)?;
    }
    if !effects.alerts.is_empty() {
        let mut insert = tx.prepare_cached(
            "INSERT INTO alert_outbox (created_ms, channel, item, kind, payload, status, \
             next_attempt_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for a in &effects.alerts {
            insert.execute(params![
                a.created_ms,
                a.channel,
                a.item,
                a.kind,
                a.payload_json,
                a.status.as_str(),
                a.next_attempt_ms,
                a.expires_ms,
            ])?;
        }
    }
    Ok(())
}

fn apply_incident(tx: &Connection, change: &IncidentChange) -> Result<(), StoreError> {
    match change {
        IncidentChange::Open {
            item,
            started_at_ms,
            cause,
            first_error,
            last_error,
            maintenance,
        } => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO incidents (item, started_at_ms, cause, first_error, last_error, \
                 maintenance) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            insert
                .execute(params![
                    item,
                    started_at_ms,
                    cause,
                    first_error,
                    last_error,
                    maintenance
                ])
                .map_err(|e| match e.sqlite_error() {
                    // The only unique key an insert can hit is idx_incidents_open.
                    Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                        StoreError::IncidentAlreadyOpen { item: item.clone() }
                    }
                    _ => StoreError::Sqlite(e),
                })?;
        }
        IncidentChange::Update {
            item,
            cause,
            last_error,
        } => {
            let mut update = tx.prepare_cached(
                "UPDATE incidents SET cause = ?2, last_error = COALESCE(?3, last_error) \
                 WHERE item = ?1 AND ended_at_ms IS NULL",
            )?;
            update.execute(params![item, cause, last_error])?;
        }
        IncidentChange::Close {
            item,
            ended_at_ms,
            last_error,
        } => {
            let mut close = tx.prepare_cached(
                "UPDATE incidents SET ended_at_ms = ?2, last_error = COALESCE(?3, last_error) \
                 WHERE item = ?1 AND ended_at_ms IS NULL",
            )?;
            close.execute(params![item, ended_at_ms, last_error])?;
        }
    }
    Ok(())
}

/// Records one attempt on a pending alert and moves it on, inside the caller's transaction.
pub(crate) fn record_attempt(
    tx: &Connection,
    alert_id: i64,
    outcome: &AttemptOutcome,
    next: NextStep,
) -> Result<(), StoreError> {
    let (status, next_attempt_ms, sent_ms) = match next {
        NextStep::Sent => (AlertStatus::Sent, None, Some(outcome.at_ms)),
        NextStep::RetryAt(at) => (AlertStatus::Pending, Some(at), None),
        NextStep::Expired => (AlertStatus::Expired, None, None),
    };
    // Only a pending alert can be attempted: this refuses a second outcome for an alert that
    // is already sent or expired rather than reviving it.
    let changed = tx
        .prepare_cached(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?2, status = ?3, \
             next_attempt_ms = COALESCE(?4, next_attempt_ms), sent_ms = COALESCE(?5, sent_ms) \
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            alert_id,
            outcome.error,
            status.as_str(),
            next_attempt_ms,
            sent_ms
        ])?;
    if changed == 0 {
        let found: Option<String> = tx
            .query_row(
                "SELECT status FROM alert_outbox WHERE id = ?1",
                [alert_id],
                |r| r.get(0),
            )
            .optional()?;
        return Err(match found {
            None => StoreError::UnknownAlert(alert_id),
            Some(status) => StoreError::AlertNotPending {
                id: alert_id,
                status,
            },
        });
    }
    tx.prepare_cached(
        "INSERT INTO alert_attempts (alert_id, at_ms, ok, status_code, error) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        alert_id,
        outcome.at_ms,
        outcome.ok,
        outcome.status_code,
        outcome.error
    ])?;
    Ok(())
}

/// Held alerts become pending, due at `now_ms`. Returns how many.
pub(crate) fn release_held(conn: &Connection, now_ms: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE alert_outbox SET status = 'pending', next_attempt_ms = ?1 \
             WHERE status = 'held'",
        )?
        .execute([now_ms])?)
}
