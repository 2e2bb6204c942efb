//! The per-item debouncing state machine.
//!
//! Pure: no I/O and no clock. Time arrives as UTC milliseconds inside each
//! [`Observation`], so the caller (and the tests) decide what "now" is.

use heartbeat_core::Status;
use serde::{Deserialize, Serialize};

use crate::AlertError;

/// How many consecutive results confirm a change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// `STATUS_CHANGE_THRESHOLD`: consecutive non-healthy results before DOWN.
    pub down_after: u32,
    /// `RECOVERY_THRESHOLD`: consecutive healthy results before UP.
    pub recover_after: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            down_after: 4,
            recover_after: 1,
        }
    }
}

impl Thresholds {
    /// Validated constructor: a threshold of 0 would mean "confirmed before observed".
    pub fn new(down_after: u32, recover_after: u32) -> Result<Self, AlertError> {
        if down_after == 0 {
            return Err(AlertError::ZeroThreshold("down_after"));
        }
        if recover_after == 0 {
            return Err(AlertError::ZeroThreshold("recover_after"));
        }
        Ok(Thresholds {
            down_after,
            recover_after,
        })
    }

    // The fields are public, so a 0 can still sneak in; treat it as 1 rather than panic.
    fn down(&self) -> u32 {
        self.down_after.max(1)
    }

    fn recover(&self) -> u32 {
        self.recover_after.max(1)
    }
}

/// One probe result as the state machine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// UTC milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub status: Status,
    /// Precise reason for a failure, e.g. `HTTP 503`, `timeout after 2 s`.
    pub reason: Option<String>,
    pub latency_ms: Option<f64>,
}

impl Observation {
    pub fn new(at_ms: i64, status: Status) -> Self {
        Observation {
            at_ms,
            status,
            reason: None,
            latency_ms: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_latency(mut self, latency_ms: f64) -> Self {
        self.latency_ms = Some(latency_ms);
        self
    }

    /// Builds an observation from a probe result; the reason is the probe's error message.
    pub fn from_check(at_ms: i64, check: &heartbeat_core::CheckResult) -> Self {
        Observation {
            at_ms,
            status: check.status,
            reason: check.error_message.clone(),
            latency_ms: check.latency_ms,
        }
    }

    // A failure always has a reason to show, even if the probe gave none.
    fn reason_text(&self) -> String {
        match &self.reason {
            Some(r) if !r.trim().is_empty() => r.clone(),
            _ => self.status.as_str().to_owned(),
        }
    }
}

/// The confirmed state of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirmed {
    /// Never confirmed yet (freshly started, no persisted state).
    #[default]
    Pending,
    Up,
    Down,
}

/// An open (or just closed) outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Time of the FIRST failure of the streak that led to DOWN.
    pub started_at_ms: i64,
    pub first_error: String,
    /// Latest failure reason; kept current while the incident stays open.
    pub last_error: String,
    /// Status of the latest failure, paired with `last_error`.
    #[serde(with = "status_text")]
    pub cause: Status,
}

/// Everything the machine remembers about one item.
///
/// The caller persists it after every observation (e.g. with [`ItemState::to_json`]),
/// so a restart neither re-alerts an open incident nor forgets it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemState {
    #[serde(rename = "st")]
    pub state: Confirmed,
    /// Consecutive non-healthy results (any mix of kinds).
    #[serde(rename = "nf", default)]
    pub failures: u32,
    /// Consecutive healthy results.
    #[serde(rename = "ns", default)]
    pub successes: u32,
    /// Time of the first failure of the current failure streak.
    #[serde(rename = "fs", default, skip_serializing_if = "Option::is_none")]
    pub streak_started_ms: Option<i64>,
    /// Reason of the first failure of the current failure streak.
    #[serde(rename = "fe", default, skip_serializing_if = "Option::is_none")]
    pub streak_first_error: Option<String>,
    #[serde(rename = "inc", default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
}

/// The outage that was just confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub incident: Incident,
    /// Time of the observation that confirmed DOWN.
    pub confirmed_at_ms: i64,
    /// Consecutive failures seen when DOWN was confirmed.
    pub consecutive_failures: u32,
}

/// The outage that just ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub started_at_ms: i64,
    pub recovered_at_ms: i64,
    /// `recovered_at_ms - started_at_ms`, never negative.
    pub outage_ms: i64,
    pub first_error: String,
    pub last_error: String,
    pub cause: Status,
    /// Latency of the observation that confirmed recovery.
    pub latency_ms: Option<f64>,
}

/// An item that is still down, for periodic reminders (scheduling is the caller's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub incident: Incident,
    pub at_ms: i64,
    /// `at_ms - incident.started_at_ms`, never negative.
    pub down_for_ms: i64,
}

/// A confirmed change of state worth an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Down(Outage),
    Recovered(Recovery),
}

impl ItemState {
    /// A fresh item: Pending, nothing counted.
    pub fn new() -> Self {
        ItemState::default()
    }

    /// Feeds one result; returns the transition to alert on, if any.
    pub fn observe(&mut self, obs: &Observation, th: &Thresholds) -> Option<Transition> {
        if obs.status.is_healthy() {
            self.observe_healthy(obs, th)
        } else {
            self.observe_failure(obs, th)
        }
    }

    fn observe_healthy(&mut self, obs: &Observation, th: &Thresholds) -> Option<Transition> {
        self.failures = 0;
        self.streak_started_ms = None;
        self.streak_first_error = None;
        // Capped at the threshold: past it the count means nothing, and a state
        // that stops changing need not be persisted again every cycle.
        self.successes = self.successes.saturating_add(1).min(th.recover());
        if self.successes < th.recover() {
            return None;
        }
        match self.state {
            Confirmed::Up => None,
            // Start-up into a healthy item: nothing was wrong, so nothing to announce.
            Confirmed::Pending => {
                self.state = Confirmed::Up;
                None
            }
            Confirmed::Down => {
                self.state = Confirmed::Up;
                // A Down state without an incident can only come from hand-edited
                // persisted data; recover silently rather than invent one.
                let inc = self.incident.take()?;
                Some(Transition::Recovered(Recovery {
                    started_at_ms: inc.started_at_ms,
                    recovered_at_ms: obs.at_ms,
                    outage_ms: obs.at_ms.saturating_sub(inc.started_at_ms).max(0),
                    first_error: inc.first_error,
                    last_error: inc.last_error,
                    cause: inc.cause,
                    latency_ms: obs.latency_ms,
                }))
            }
        }
    }

    fn observe_failure(&mut self, obs: &Observation, th: &Thresholds) -> Option<Transition> {
        let reason = obs.reason_text();
        self.successes = 0;
        // Any kind of failure extends the streak: the replaced system restarted the
        // count when the kind changed, so timeout <-> down flapping never alerted.
        self.failures = self.failures.saturating_add(1).min(th.down());
        let started = *self.streak_started_ms.get_or_insert(obs.at_ms);
        let first_error = self
            .streak_first_error
            .get_or_insert_with(|| reason.clone())
            .clone();

        match self.state {
            Confirmed::Down => {
                if let Some(inc) = self.incident.as_mut() {
                    inc.last_error = reason;
                    inc.cause = obs.status;
                } else {
                    // Repair state persisted without an incident, without alerting again.
                    self.incident = Some(Incident {
                        started_at_ms: started,
                        first_error,
                        last_error: reason,
                        cause: obs.status,
                    });
                }
                None
            }
            // Pending counts too: an item already failing at start-up must still alert.
            Confirmed::Up | Confirmed::Pending => {
                if self.failures < th.down() {
                    return None;
                }
                let incident = Incident {
                    started_at_ms: started,
                    first_error,
                    last_error: reason,
                    cause: obs.status,
                };
                self.state = Confirmed::Down;
                self.incident = Some(incident.clone());
                Some(Transition::Down(Outage {
                    incident,
                    confirmed_at_ms: obs.at_ms,
                    consecutive_failures: self.failures,
                }))
            }
        }
    }

    /// The data for a "still down" reminder at `now_ms`, if an incident is open.
    pub fn reminder(&self, now_ms: i64) -> Option<Reminder> {
        if self.state != Confirmed::Down {
            return None;
        }
        let incident = self.incident.clone()?;
        Some(Reminder {
            down_for_ms: now_ms.saturating_sub(incident.started_at_ms).max(0),
            incident,
            at_ms: now_ms,
        })
    }

    /// Compact JSON for the store.
    pub fn to_json(&self) -> Result<String, AlertError> {
        serde_json::to_string(self).map_err(AlertError::Encode)
    }

    /// Reads back what [`ItemState::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<Self, AlertError> {
        serde_json::from_str(text).map_err(AlertError::Decode)
    }
}

// Status lives in heartbeat-core, which has no serde; persist its stable text form.
mod status_text {
    use heartbeat_core::Status;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(status.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Down as D, Error as E, Healthy as H, Timeout as T, Unknown as U};

    fn obs(i: i64, status: Status) -> Observation {
        let o = Observation::new(i * 10_000, status);
        if status.is_healthy() {
            o.with_latency(12.5)
        } else {
            o.with_reason(format!("{status} #{i}"))
        }
    }

    /// What a step is expected to emit.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Ev {
        No,
        Dn,
        Rec,
    }

    /// Name, start state, thresholds, inputs, expected events, end state.
    type Case = (
        &'static str,
        Confirmed,
        Thresholds,
        Vec<Status>,
        Vec<Ev>,
        Confirmed,
    );

    fn run(start: ItemState, seq: &[Status], th: Thresholds) -> (ItemState, Vec<Ev>) {
        let mut st = start;
        let mut evs = Vec::new();
        for (i, &s) in seq.iter().enumerate() {
            let ev = match st.observe(&obs(i as i64, s), &th) {
                None => Ev::No,
                Some(Transition::Down(_)) => Ev::Dn,
                Some(Transition::Recovered(_)) => Ev::Rec,
            };
            evs.push(ev);
        }
        (st, evs)
    }

    fn state(c: Confirmed) -> ItemState {
        ItemState {
            state: c,
            ..ItemState::default()
        }
    }

    #[test]
    fn table_of_sequences() {
        use Ev::{Dn, No, Rec};
        let def = Thresholds::default();
        let slow = Thresholds {
            down_after: 2,
            recover_after: 3,
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("healthy start is silent", Confirmed::Pending, def,
                vec![H, H], vec![No, No], Confirmed::Up),
            ("already failing at start-up still alerts", Confirmed::Pending, def,
                vec![D, D, D, D, D], vec![No, No, No, Dn, No], Confirmed::Down),
            ("timeout<->down flapping alerts", Confirmed::Up, def,
                vec![T, D, T, D, T], vec![No, No, No, Dn, No], Confirmed::Down),
            ("any mix of failure kinds counts", Confirmed::Up, def,
                vec![E, U, T, D], vec![No, No, No, Dn], Confirmed::Down),
            ("three failures are not enough", Confirmed::Up, def,
                vec![T, T, T, H, T, T, T], vec![No; 7], Confirmed::Up),
            ("recovers on first healthy by default", Confirmed::Up, def,
                vec![D, D, D, D, H, H], vec![No, No, No, Dn, Rec, No], Confirmed::Up),
            ("alerts once per incident", Confirmed::Up, def,
                vec![D, D, D, D, D, D, D, D, D], vec![No, No, No, Dn, No, No, No, No, No], Confirmed::Down),
            ("second incident alerts again", Confirmed::Up, def,
                vec![D, D, D, D, H, T, T, T, T], vec![No, No, No, Dn, Rec, No, No, No, Dn], Confirmed::Down),
            ("recover_after=3 needs three in a row", Confirmed::Up, slow,
                vec![D, D, H, H, D, H, H, H], vec![No, Dn, No, No, No, No, No, Rec], Confirmed::Up),
            ("pending with recover_after=3 confirms Up silently", Confirmed::Pending, slow,
                vec![H, H, H], vec![No, No, No], Confirmed::Up),
            ("down_after=1 alerts at once", Confirmed::Up, Thresholds { down_after: 1, recover_after: 1 },
                vec![T, H], vec![Dn, Rec], Confirmed::Up),
            ("zero thresholds behave as one", Confirmed::Up, Thresholds { down_after: 0, recover_after: 0 },
                vec![T, H], vec![Dn, Rec], Confirmed::Up),
        ];
        for (name, start, th, seq, want, end) in cases {
            let (st, got) = run(state(start), &seq, th);
            assert_eq!(got, want, "{name}");
            assert_eq!(st.state, end, "{name}");
        }
    }

    #[test]
    fn down_carries_the_first_and_latest_failure() {
        let th = Thresholds::default();
        let mut st = state(Confirmed::Up);
        let seq = [
            obs(0, H),
            Observation::new(1_000, T).with_reason("timeout after 2 s"),
            Observation::new(2_000, D).with_reason("connection refused"),
            Observation::new(3_000, T).with_reason("timeout after 2 s"),
        ];
        for o in &seq {
            assert_eq!(st.observe(o, &th), None);
        }
        let last = Observation::new(4_000, E).with_reason("HTTP 503");
        let Some(Transition::Down(out)) = st.observe(&last, &th) else {
            panic!("expected Down");
        };
        assert_eq!(
            out,
            Outage {
                incident: Incident {
                    started_at_ms: 1_000,
                    first_error: "timeout after 2 s".into(),
                    last_error: "HTTP 503".into(),
                    cause: E,
                },
                confirmed_at_ms: 4_000,
                consecutive_failures: 4,
            }
        );
    }

    #[test]
    fn recovery_carries_duration_errors_and_latency() {
        let th = Thresholds::default();
        let mut st = state(Confirmed::Up);
        for i in 0..4 {
            st.observe(
                &Observation::new(60_000 + i * 10_000, D).with_reason(format!("err {i}")),
                &th,
            );
        }
        // Failures after confirmation keep the incident's latest reason current.
        st.observe(
            &Observation::new(120_000, T).with_reason("timeout after 2 s"),
            &th,
        );
        let back = Observation::new(260_000, H).with_latency(12.3);
        let Some(Transition::Recovered(r)) = st.observe(&back, &th) else {
            panic!("expected Recovered");
        };
        assert_eq!(r.started_at_ms, 60_000);
        assert_eq!(r.recovered_at_ms, 260_000);
        assert_eq!(r.outage_ms, 200_000);
        assert_eq!(r.first_error, "err 0");
        assert_eq!(r.last_error, "timeout after 2 s");
        assert_eq!(r.cause, T);
        assert_eq!(r.latency_ms, Some(12.3));
        assert_eq!(st.incident, None);
        assert_eq!(st.reminder(300_000), None);
    }

    #[test]
    fn missing_reason_falls_back_to_the_status() {
        let th = Thresholds {
            down_after: 1,
            recover_after: 1,
        };
        let mut st = ItemState::new();
        let Some(Transition::Down(out)) = st.observe(&Observation::new(0, T), &th) else {
            panic!("expected Down");
        };
        assert_eq!(out.incident.first_error, "timeout");
    }

    #[test]
    fn restart_mid_outage_neither_realerts_nor_forgets() {
        let th = Thresholds::default();
        let mut st = ItemState::new();
        for i in 0..4 {
            st.observe(&obs(i, D), &th);
        }
        assert_eq!(st.state, Confirmed::Down);

        // The caller persisted after each observation; the agent restarts here.
        let saved = st.to_json().expect("encode");
        let mut back = ItemState::from_json(&saved).expect("decode");
        assert_eq!(back, st);

        for i in 4..8 {
            assert_eq!(back.observe(&obs(i, T), &th), None, "no re-alert");
        }
        let rem = back.reminder(100_000).expect("still down");
        assert_eq!(rem.down_for_ms, 100_000);
        let Some(Transition::Recovered(r)) = back.observe(&obs(10, H), &th) else {
            panic!("expected Recovered after restart");
        };
        assert_eq!(r.started_at_ms, 0);
        assert_eq!(r.first_error, "down #0");
        assert_eq!(r.last_error, "timeout #7");
    }

    #[test]
    fn restart_mid_streak_keeps_counting() {
        let th = Thresholds::default();
        let mut st = ItemState::new();
        for i in 0..2 {
            st.observe(&obs(i, T), &th);
        }
        let mut back = ItemState::from_json(&st.to_json().expect("encode")).expect("decode");
        assert_eq!(back.observe(&obs(2, D), &th), None);
        let Some(Transition::Down(out)) = back.observe(&obs(3, D), &th) else {
            panic!("expected Down");
        };
        assert_eq!(out.incident.started_at_ms, 0);
        assert_eq!(out.incident.first_error, "timeout #0");
    }

    #[test]
    fn persisted_form_is_compact_and_validated() {
        assert_eq!(
            ItemState::new().to_json().expect("encode"),
            r#"{"st":"pending","nf":0,"ns":0}"#
        );
        let bad = r#"{"st":"down","inc":{"started_at_ms":0,"first_error":"x","last_error":"x","cause":"sideways"}}"#;
        assert!(matches!(
            ItemState::from_json(bad),
            Err(AlertError::Decode(_))
        ));
    }

    #[test]
    fn threshold_constructor_rejects_zero() {
        assert!(Thresholds::new(0, 1).is_err());
        assert!(Thresholds::new(4, 0).is_err());
        assert_eq!(Thresholds::new(4, 1).ok(), Some(Thresholds::default()));
    }
}
