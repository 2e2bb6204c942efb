//! Turns each cycle's results into state changes, incidents and outbox alerts.
//!
//! The state machine itself lives in `heartbeat-alerts`; this module applies it
//! per item, decides maintenance and connectivity hold-backs, renders the texts
//! and produces the [`CycleEffects`] that commit with the cycle.

use std::collections::HashMap;

use heartbeat_alerts::{
    Alert as AlertText, Confirmed, ItemState, Observation, Transition, WorkerAlert, WorkerState,
    render, render_held_back,
};
use heartbeat_config::AlertConfig;
use heartbeat_core::{CycleRecord, Status};
use heartbeat_notify::Alert as Payload;
use heartbeat_store::{AlertStatus, CycleEffects, IncidentChange, NewAlert};
use jiff::tz::TimeZone;
use tracing::{info, warn};

/// Item key of the agent's own connectivity check.
pub const CONNECTIVITY_ITEM: &str = "agent:connectivity";
/// Item key of the outbound heartbeat.
pub const WORKER_ITEM: &str = "agent:worker";

#[derive(Debug)]
pub struct Alerting {
    config: AlertConfig,
    tz: TimeZone,
    channels: Vec<String>,
    states: HashMap<String, ItemState>,
    /// Reminders sent per open incident, and when the last one (or the alert) went out.
    reminders: HashMap<String, (u32, i64)>,
}

impl Alerting {
    /// `saved`: item states persisted by earlier runs, so a restart neither
    /// re-alerts an open incident nor forgets it.
    pub fn new(config: AlertConfig, tz: TimeZone, saved: Vec<(String, String)>) -> Self {
        let mut states = HashMap::new();
        for (item, json) in saved {
            match ItemState::from_json(&json) {
                Ok(state) => {
                    states.insert(item, state);
                }
                // Starting fresh costs at most one late alert; refusing to start would cost monitoring.
                Err(e) => warn!(item, error = %e, "ignoring unreadable saved state"),
            }
        }
        let channels = config
            .channels
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        Alerting {
            config,
            tz,
            channels,
            states,
            reminders: HashMap::new(),
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Applies one cycle. Everything returned must commit with the cycle.
    pub fn evaluate(&mut self, record: &CycleRecord) -> CycleEffects {
        let at = record.started_at_ms;
        let offline = record.connectivity.internet_status == Some(false);
        let mut fx = CycleEffects::default();

        if let Some(online) = record.connectivity.internet_status {
            let mut obs = Observation::new(
                at,
                if online {
                    Status::Healthy
                } else {
                    Status::Down
                },
            );
            if !online {
                obs = obs.with_reason("connectivity check failed");
            }
            if let Some(ping) = record.connectivity.ping_ms {
                obs = obs.with_latency(ping);
            }
            if let Some(t) = self.observe(CONNECTIVITY_ITEM, &obs, &mut fx) {
                let text = AlertText::connectivity(t.clone());
                self.raise(
                    &mut fx,
                    CONNECTIVITY_ITEM,
                    "connectivity",
                    &text,
                    &t,
                    at,
                    false,
                );
            }
        }

        if self.config.heartbeat.is_some() {
            let code = record.worker_status.and_then(|c| u16::try_from(c).ok());
            let state = WorkerState::from_answer(code, record.worker_error.as_deref());
            let obs = Observation::new(at, state.status()).with_reason(state.reason());
            if let Some(t) = self.observe(WORKER_ITEM, &obs, &mut fx) {
                let shown = match &t {
                    Transition::Down(_) => state.clone(),
                    Transition::Recovered(_) => WorkerState::Ok,
                };
                let text = AlertText::Worker(WorkerAlert {
                    at_ms: at,
                    state: shown,
                });
                self.raise(&mut fx, WORKER_ITEM, "worker", &text, &t, at, false);
            }
        }

        for check in &record.checks {
            let item = check.target.name.as_str();
            let obs = Observation::from_check(at, &check.result);
            if let Some(t) = self.observe(item, &obs, &mut fx) {
                let kind = match t {
                    Transition::Down(_) => "down",
                    Transition::Recovered(_) => "recovered",
                };
                let text = AlertText::from(t.clone());
                self.raise(&mut fx, item, kind, &text, &t, at, offline);
            }
            self.maybe_remind(item, at, offline, &mut fx);
        }
        fx
    }

    /// Runs the state machine for one item, recording state and incident changes.
    fn observe(
        &mut self,
        item: &str,
        obs: &Observation,
        fx: &mut CycleEffects,
    ) -> Option<Transition> {
        let state = self.states.entry(item.to_owned()).or_default();
        let before = state.clone();
        let transition = state.observe(obs, &self.config.thresholds);
        if *state == before {
            return transition;
        }
        match (&transition, &state.incident) {
            (Some(Transition::Down(o)), _) => fx.incidents.push(IncidentChange::Open {
                item: item.to_owned(),
                started_at_ms: o.incident.started_at_ms,
                cause: o.incident.cause.as_str().to_owned(),
                first_error: Some(o.incident.first_error.clone()),
                last_error: Some(o.incident.last_error.clone()),
                maintenance: self.config.maintenance.active(item, obs.at_ms, &self.tz),
            }),
            (Some(Transition::Recovered(r)), _) => fx.incidents.push(IncidentChange::Close {
                item: item.to_owned(),
                ended_at_ms: r.recovered_at_ms,
                last_error: Some(r.last_error.clone()),
            }),
            (None, Some(now)) if before.incident.as_ref() != Some(now) => {
                fx.incidents.push(IncidentChange::Update {
                    item: item.to_owned(),
                    cause: now.cause.as_str().to_owned(),
                    last_error: Some(now.last_error.clone()),
                })
            }
            _ => {}
        }
        match state.to_json() {
            Ok(json) => fx.item_states.push((item.to_owned(), json)),
            Err(e) => warn!(item, error = %e, "cannot persist state"),
        }
        transition
    }

    /// Queues an alert for every channel: suppressed in maintenance, held back
    /// while the agent's own connectivity check fails.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        fx: &mut CycleEffects,
        item: &str,
        kind: &str,
        text: &AlertText,
        transition: &Transition,
        at: i64,
        held_back: bool,
    ) {
        let maintenance = self.config.maintenance.active(item, at, &self.tz);
        let language = self.config.language;
        let rendered = if held_back {
            render_held_back(text, item, &self.tz, language)
        } else {
            render(text, item, &self.tz, language)
        };
        let (reason, started, duration_s, latency) = match transition {
            Transition::Down(o) => (
                Some(o.incident.last_error.clone()),
                Some(o.incident.started_at_ms),
                None,
                None,
            ),
            Transition::Recovered(r) => (
                Some(r.last_error.clone()),
                Some(r.started_at_ms),
                Some(r.outage_ms as f64 / 1000.0),
                r.latency_ms,
            ),
        };
        match transition {
            Transition::Down(_) => {
                self.reminders.insert(item.to_owned(), (0, at));
            }
            Transition::Recovered(_) => {
                self.reminders.remove(item);
            }
        }
        info!(item, kind, maintenance, held_back, reason = ?reason, "state change");
        let payload = Payload {
            id: 0,
            target: item.to_owned(),
            state: kind.to_owned(),
            reason,
            title: rendered.title,
            message: rendered.message,
            started_at_ms: started,
            occurred_at_ms: at,
            duration_s,
            latency_ms: latency,
            maintenance,
            held_back,
        };
        self.enqueue(fx, item, kind, &payload, maintenance, held_back);
    }

    fn enqueue(
        &self,
        fx: &mut CycleEffects,
        item: &str,
        kind: &str,
        payload: &Payload,
        maintenance: bool,
        held_back: bool,
    ) {
        let Ok(json) = serde_json::to_string(payload) else {
            warn!(item, "cannot encode alert");
            return;
        };
        let status = if maintenance {
            AlertStatus::Suppressed
        } else if held_back {
            AlertStatus::Held
        } else {
            AlertStatus::Pending
        };
        let at = payload.occurred_at_ms;
        let expires = at.saturating_add(self.config.max_age.as_millis() as i64);
        for channel in &self.channels {
            fx.alerts.push(NewAlert {
                channel: channel.clone(),
                item: item.to_owned(),
                kind: kind.to_owned(),
                payload_json: json.clone(),
                created_ms: at,
                status,
                next_attempt_ms: at,
                expires_ms: expires,
            });
        }
    }

    /// `ALERT_REMINDER_INTERVAL`: while an item stays down, remind after the
    /// interval, then after twice that, and so on.
    fn maybe_remind(&mut self, item: &str, at: i64, offline: bool, fx: &mut CycleEffects) {
        let Some(interval) = self.config.reminder_interval else {
            return;
        };
        let Some(state) = self.states.get(item) else {
            return;
        };
        if state.state != Confirmed::Down {
            return;
        }
        // After a restart the incident is known but not when it was last announced.
        let (sent, last) = *self.reminders.entry(item.to_owned()).or_insert((0, at));
        let wait = interval.as_millis() as i64 * (1_i64 << sent.min(20));
        if at - last < wait {
            return;
        }
        let Some(reminder) = state.reminder(at) else {
            return;
        };
        let maintenance = self.config.maintenance.active(item, at, &self.tz);
        let text = AlertText::Reminder(reminder.clone());
        let rendered = if offline {
            render_held_back(&text, item, &self.tz, self.config.language)
        } else {
            render(&text, item, &self.tz, self.config.language)
        };
        let payload = Payload {
            id: 0,
            target: item.to_owned(),
            state: "reminder".to_owned(),
            reason: Some(reminder.incident.last_error.clone()),
            title: rendered.title,
            message: rendered.message,
            started_at_ms: Some(reminder.incident.started_at_ms),
            occurred_at_ms: at,
            duration_s: Some(reminder.down_for_ms as f64 / 1000.0),
            latency_ms: None,
            maintenance,
            held_back: offline,
        };
        self.reminders.insert(item.to_owned(), (sent + 1, at));
        self.enqueue(fx, item, "reminder", &payload, maintenance, offline);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use heartbeat_config::AgentConfig;
    use heartbeat_core::{Connectivity, HostMetrics};

    fn alerting(extra: &[(&str, &str)]) -> Alerting {
        let mut env: std::collections::BTreeMap<String, String> = [
            ("HEARTBEAT_URL", "https://worker.example/api/heartbeat"),
            ("SECRET_KEY", "sk_test_secret"),
            ("WEBHOOK_URL", "https://hooks.example/x"),
            ("STATUS_CHANGE_THRESHOLD", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = AgentConfig::from_map(&env).unwrap();
        Alerting::new(config.alerts, config.time_zone, Vec::new())
    }

    fn cycle(at: i64, worker_status: Option<i64>, worker_error: Option<&str>) -> CycleRecord {
        CycleRecord {
            started_at_ms: at,
            host: HostMetrics::default(),
            connectivity: Connectivity::default(),
            worker_status,
            worker_error: worker_error.map(str::to_owned),
            cycle_duration_ms: 1.0,
            checks: Vec::new(),
        }
    }

    fn worker_alerts(fx: &CycleEffects) -> Vec<Payload> {
        fx.alerts
            .iter()
            .filter(|a| a.item == WORKER_ITEM)
            .map(|a| serde_json::from_str(&a.payload_json).unwrap())
            .collect()
    }

    #[test]
    fn worker_codes_are_debounced_and_alerted_with_their_meaning() {
        let mut a = alerting(&[]);
        assert!(worker_alerts(&a.evaluate(&cycle(0, Some(200), None))).is_empty());
        assert!(worker_alerts(&a.evaluate(&cycle(1, Some(500), None))).is_empty());
        let down = worker_alerts(&a.evaluate(&cycle(2, Some(500), None)));
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].state, "worker");
        assert_eq!(down[0].reason.as_deref(), Some("HTTP 500"));
        let back = worker_alerts(&a.evaluate(&cycle(3, Some(200), None)));
        assert_eq!(back.len(), 1);

        // 220 "blind" and an unreachable worker count as failures too.
        a.evaluate(&cycle(4, Some(220), None));
        let blind =
            worker_alerts(&a.evaluate(&cycle(5, None, Some("heartbeat: connection refused"))));
        assert_eq!(blind.len(), 1);
        assert!(!blind[0].message.contains("sk_test_secret"));
    }

    #[test]
    fn maintenance_suppresses_but_still_records() {
        let mut a = alerting(&[("MAINTENANCE", "2000-01-01T00:00:00Z/2100-01-01T00:00:00Z")]);
        let now = 1_767_225_600_000; // 2026-01-01, inside the window
        a.evaluate(&cycle(now, Some(500), None));
        let fx = a.evaluate(&cycle(now + 10_000, Some(500), None));
        assert!(!fx.alerts.is_empty());
        assert!(
            fx.alerts
                .iter()
                .all(|x| x.status == AlertStatus::Suppressed)
        );
        assert!(
            fx.incidents
                .iter()
                .any(|i| matches!(i, IncidentChange::Open { .. }))
        );
    }
}
