//! Turns alerts into a localised title and a Markdown message.

use heartbeat_core::Status;
use jiff::tz::TimeZone;

use crate::format;
use crate::lang::{Language, Strings};
use crate::machine::{Outage, Recovery, Reminder, Transition};

/// What the webhook receives: `{"title": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Plain text.
    pub title: String,
    /// Markdown.
    pub message: String,
}

/// Outcome of one outbound heartbeat ("dead-man switch") request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// 200.
    Ok,
    /// 220: accepted, but the worker had no previous state.
    Blind,
    /// 221: the worker could not record a recovery update.
    RecoveryUpdateFailed,
    /// 500: critical worker error.
    Critical,
    /// Any other HTTP answer.
    Unexpected(u16),
    /// No answer; carries the transport error.
    Unreachable(String),
}

impl WorkerState {
    /// Classifies an answer: `code` is `None` when no answer came, then `error` says why.
    pub fn from_answer(code: Option<u16>, error: Option<&str>) -> Self {
        match code {
            Some(200) => WorkerState::Ok,
            Some(220) => WorkerState::Blind,
            Some(221) => WorkerState::RecoveryUpdateFailed,
            Some(500) => WorkerState::Critical,
            Some(other) => WorkerState::Unexpected(other),
            None => WorkerState::Unreachable(error.unwrap_or("no answer").to_owned()),
        }
    }

    /// The HTTP code, when there was an answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            WorkerState::Ok => Some(200),
            WorkerState::Blind => Some(220),
            WorkerState::RecoveryUpdateFailed => Some(221),
            WorkerState::Critical => Some(500),
            WorkerState::Unexpected(c) => Some(*c),
            WorkerState::Unreachable(_) => None,
        }
    }

    /// How the worker item should be fed to the state machine: only 200 is healthy.
    pub fn status(&self) -> Status {
        match self {
            WorkerState::Ok => Status::Healthy,
            WorkerState::Unreachable(_) => Status::Down,
            _ => Status::Error,
        }
    }

    /// The precise reason: `HTTP 220`, or the transport error.
    pub fn reason(&self) -> String {
        match self {
            WorkerState::Unreachable(e) => e.clone(),
            other => format!("HTTP {}", other.code().unwrap_or_default()),
        }
    }
}

/// One outbound-heartbeat alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAlert {
    pub at_ms: i64,
    pub state: WorkerState,
}

/// Every kind of alert the agent sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// A target was confirmed down.
    Down(Outage),
    /// A target recovered.
    Recovered(Recovery),
    /// A target is still down.
    Reminder(Reminder),
    /// The outbound heartbeat's answer changed.
    Worker(WorkerAlert),
    /// The agent's own connectivity check was confirmed failing.
    ConnectivityLost(Outage),
    /// The agent's own connectivity check works again.
    ConnectivityRestored(Recovery),
}

impl From<Transition> for Alert {
    /// A target's transition.
    fn from(t: Transition) -> Self {
        match t {
            Transition::Down(o) => Alert::Down(o),
            Transition::Recovered(r) => Alert::Recovered(r),
        }
    }
}

impl Alert {
    /// A transition of the "connectivity" item.
    pub fn connectivity(t: Transition) -> Self {
        match t {
            Transition::Down(o) => Alert::ConnectivityLost(o),
            Transition::Recovered(r) => Alert::ConnectivityRestored(r),
        }
    }
}

/// Renders `alert` about `target` (a target name, or the agent-level item's name).
pub fn render(alert: &Alert, target: &str, tz: &TimeZone, lang: Language) -> Rendered {
    let s = lang.strings();
    let ctx = Ctx {
        s,
        tz,
        title_target: format::one_line(target),
        md_target: format!("**{}**", format::escape(target)),
    };
    match alert {
        Alert::Down(o) => ctx.outage(o, "🔴", s.down_title, s.down_headline),
        Alert::ConnectivityLost(o) => ctx.outage(
            o,
            "🌐",
            s.connectivity_lost_title,
            s.connectivity_lost_headline,
        ),
        Alert::Recovered(r) => ctx.recovery(r, "🟢", s.recovered_title, s.recovered_headline),
        Alert::ConnectivityRestored(r) => ctx.recovery(
            r,
            "🌐",
            s.connectivity_restored_title,
            s.connectivity_restored_headline,
        ),
        Alert::Reminder(r) => ctx.reminder(r),
        Alert::Worker(w) => ctx.worker(w),
    }
}

/// Like [`render`], marked as raised while the agent's own connectivity check was failing.
pub fn render_held_back(alert: &Alert, target: &str, tz: &TimeZone, lang: Language) -> Rendered {
    let s = lang.strings();
    let plain = render(alert, target, tz, lang);
    Rendered {
        title: format!("[{}] {}", s.held_back_tag, plain.title),
        // First, so nobody acts on the alert before reading the caveat.
        message: format!("> ⚠️ {}\n\n{}", s.held_back_note, plain.message),
    }
}

struct Ctx<'a> {
    s: &'static Strings,
    tz: &'a TimeZone,
    title_target: String,
    md_target: String,
}

impl Ctx<'_> {
    fn title(&self, emoji: &str, template: &str, vars: &[(&str, &str)]) -> String {
        let mut all = vec![("target", self.title_target.as_str())];
        all.extend_from_slice(vars);
        format!("{emoji} {}", format::fill(template, &all))
    }

    fn headline(&self, template: &str, vars: &[(&str, &str)]) -> String {
        let mut all = vec![("target", self.md_target.as_str())];
        all.extend_from_slice(vars);
        format::fill(template, &all)
    }

    fn state(&self, word: &str, status: Status) -> String {
        format!("**{word}** ({})", (self.s.status)(status))
    }

    /// `reason`, plus the first error when the failure kind changed along the way.
    fn errors(&self, fields: &mut Vec<(&'static str, String)>, first: &str, last: &str) {
        fields.push((self.s.label_reason, format::code(last)));
        if first != last {
            fields.push((self.s.label_first_error, format::code(first)));
        }
    }

    fn outage(&self, o: &Outage, emoji: &str, title: &str, headline: &str) -> Rendered {
        let s = self.s;
        let inc = &o.incident;
        let mut fields = vec![(s.label_state, self.state(s.state_down, inc.cause))];
        self.errors(&mut fields, &inc.first_error, &inc.last_error);
        fields.push((s.label_since, format::time(inc.started_at_ms, self.tz)));
        fields.push((
            s.label_confirmed_at,
            format::time(o.confirmed_at_ms, self.tz),
        ));
        let count = o.consecutive_failures.to_string();
        fields.push((
            s.label_failed_checks,
            format::fill(s.checks_in_a_row, &[("count", &count)]),
        ));
        Rendered {
            title: self.title(emoji, title, &[]),
            message: message(&self.headline(headline, &[]), &fields),
        }
    }

    fn recovery(&self, r: &Recovery, emoji: &str, title: &str, headline: &str) -> Rendered {
        let s = self.s;
        let dur = format::duration(r.outage_ms, s);
        let vars = [("duration", dur.as_str())];
        let mut fields = vec![
            (s.label_state, format!("**{}**", s.state_up)),
            (s.label_duration, dur.clone()),
            (s.label_latency, format::latency(r.latency_ms, s)),
        ];
        self.errors(&mut fields, &r.first_error, &r.last_error);
        fields.push((
            s.label_outage_started,
            format::time(r.started_at_ms, self.tz),
        ));
        fields.push((
            s.label_recovered_at,
            format::time(r.recovered_at_ms, self.tz),
        ));
        Rendered {
            title: self.title(emoji, title, &vars),
            message: message(&self.headline(headline, &vars), &fields),
        }
    }

    fn reminder(&self, r: &Reminder) -> Rendered {
        let s = self.s;
        let inc = &r.incident;
        let dur = format::duration(r.down_for_ms, s);
        let vars = [("duration", dur.as_str())];
        let mut fields = vec![
            (s.label_state, self.state(s.state_down, inc.cause)),
            (s.label_down_for, dur.clone()),
        ];
        self.errors(&mut fields, &inc.first_error, &inc.last_error);
        fields.push((s.label_since, format::time(inc.started_at_ms, self.tz)));
        fields.push((s.label_time, format::time(r.at_ms, self.tz)));
        Rendered {
            title: self.title("⏰", s.reminder_title, &vars),
            message: message(&self.headline(s.reminder_headline, &vars), &fields),
        }
    }

    fn worker(&self, w: &WorkerAlert) -> Rendered {
        let s = self.s;
        let (emoji, level, word, text) = match &w.state {
            WorkerState::Ok => ("✅", s.state_ok, s.worker_state_ok, s.worker_ok),
            WorkerState::Blind => ("⚠️", s.state_warning, s.worker_state_blind, s.worker_blind),
            WorkerState::RecoveryUpdateFailed => (
                "⚠️",
                s.state_warning,
                s.worker_state_recovery_failed,
                s.worker_recovery_failed,
            ),
            WorkerState::Critical => (
                "🚨",
                s.state_critical,
                s.worker_state_critical,
                s.worker_critical,
            ),
            WorkerState::Unexpected(_) => (
                "🚨",
                s.state_critical,
                s.worker_state_unexpected,
                s.worker_unexpected,
            ),
            WorkerState::Unreachable(_) => (
                "🚨",
                s.state_critical,
                s.worker_state_unreachable,
                s.worker_unreachable,
            ),
        };
        let vars = [("state", word)];
        let fields = vec![
            (s.label_state, format!("**{level}** ({word})")),
            (s.label_reason, format::code(&w.state.reason())),
            (s.label_time, format::time(w.at_ms, self.tz)),
        ];
        Rendered {
            title: self.title(emoji, s.worker_title, &vars),
            message: message(&self.headline(text, &vars), &fields),
        }
    }
}

// A list, not bare lines: Markdown folds single newlines into spaces.
fn message(headline: &str, fields: &[(&str, String)]) -> String {
    let mut out = String::from(headline);
    out.push_str("\n\n");
    let lines: Vec<String> = fields
        .iter()
        .map(|(label, value)| format!("- **{label}:** {value}"))
        .collect();
    out.push_str(&lines.join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Incident;

    const T0: i64 = 1_784_127_600_000; // 2026-07-15 15:00:00 UTC

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).expect("bundled tzdb")
    }

    fn incident() -> Incident {
        Incident {
            started_at_ms: T0,
            first_error: "timeout after 2 s".into(),
            last_error: "HTTP 503".into(),
            cause: Status::Error,
        }
    }

    fn outage() -> Outage {
        Outage {
            incident: incident(),
            confirmed_at_ms: T0 + 30_000,
            consecutive_failures: 4,
        }
    }

    fn recovery() -> Recovery {
        Recovery {
            started_at_ms: T0,
            recovered_at_ms: T0 + 200_000,
            outage_ms: 200_000,
            first_error: "timeout after 2 s".into(),
            last_error: "HTTP 503".into(),
            cause: Status::Error,
            latency_ms: Some(12.34),
        }
    }

    /// Every alert kind, with the reason and duration text each must show.
    fn all_alerts() -> Vec<(&'static str, Alert, &'static str, Option<i64>, bool)> {
        vec![
            ("down", Alert::Down(outage()), "HTTP 503", None, false),
            (
                "recovered",
                Alert::Recovered(recovery()),
                "HTTP 503",
                Some(200_000),
                true,
            ),
            (
                "reminder",
                Alert::Reminder(Reminder {
                    incident: incident(),
                    at_ms: T0 + 7_500_000,
                    down_for_ms: 7_500_000,
                }),
                "HTTP 503",
                Some(7_500_000),
                false,
            ),
            (
                "connectivity lost",
                Alert::ConnectivityLost(outage()),
                "HTTP 503",
                None,
                false,
            ),
            (
                "connectivity restored",
                Alert::ConnectivityRestored(recovery()),
                "HTTP 503",
                Some(200_000),
                true,
            ),
            (
                "worker ok",
                Alert::Worker(WorkerAlert {
                    at_ms: T0,
                    state: WorkerState::from_answer(Some(200), None),
                }),
                "HTTP 200",
                None,
                false,
            ),
            (
                "worker blind",
                Alert::Worker(WorkerAlert {
                    at_ms: T0,
                    state: WorkerState::from_answer(Some(220), None),
                }),
                "HTTP 220",
                None,
                false,
            ),
            (
                "worker 221",
                Alert::Worker(WorkerAlert {
                    at_ms: T0,
                    state: WorkerState::from_answer(Some(221), None),
                }),
                "HTTP 221",
                None,
                false,
            ),
            (
                "worker critical",
                Alert::Worker(WorkerAlert {
                    at_ms: T0,
                    state: WorkerState::from_answer(Some(500), None),
                }),
                "HTTP 500",
                None,
                false,
            ),
            (
                "worker unreachable",
                Alert::Worker(WorkerAlert {
                    at_ms: T0,
                    state: WorkerState::from_answer(None, Some("connection refused")),
                }),
                "connection refused",
                None,
                false,
            ),
        ]
    }

    #[test]
    fn every_language_renders_every_kind_completely() {
        let lima = tz("America/Lima");
        for &lang in Language::ALL {
            let s = lang.strings();
            for (kind, alert, reason, duration, latency) in all_alerts() {
                let r = render(&alert, "billing-api", &lima, lang);
                let ctx = format!("{lang} {kind}: {r:#?}");
                // Connectivity titles name the agent, not the probed item.
                if !kind.starts_with("connectivity") {
                    assert!(r.title.contains("billing-api"), "{ctx}");
                }
                assert!(r.message.contains("**billing-api**"), "{ctx}");
                assert!(r.message.contains(&format!("`{reason}`")), "{ctx}");
                assert!(
                    r.message.contains("2026-07-15 10:00:00 -05 (America/Lima)"),
                    "{ctx}"
                );
                assert!(r.message.contains(s.label_state), "{ctx}");
                if let Some(ms) = duration {
                    let d = format::duration(ms, s);
                    assert!(r.message.contains(&d) && r.title.contains(&d), "{ctx}");
                }
                if latency {
                    assert!(r.message.contains("12.3 ms"), "{ctx}");
                }
                // No template placeholder may leak through untranslated.
                for text in [&r.title, &r.message] {
                    assert!(!text.contains("{target}"), "{ctx}");
                    assert!(!text.contains("{duration}"), "{ctx}");
                    assert!(!text.contains("{state}"), "{ctx}");
                    assert!(!text.contains("{count}"), "{ctx}");
                }
            }
        }
    }

    #[test]
    fn english_down_alert_reads_well() {
        let r = render(
            &Alert::Down(outage()),
            "billing-api",
            &tz("America/Lima"),
            Language::English,
        );
        assert_eq!(r.title, "🔴 billing-api is DOWN");
        assert_eq!(
            r.message,
            "**billing-api** is **DOWN**.\n\n\
             - **State:** **DOWN** (error)\n\
             - **Reason:** `HTTP 503`\n\
             - **First error:** `timeout after 2 s`\n\
             - **Failing since:** 2026-07-15 10:00:00 -05 (America/Lima)\n\
             - **Confirmed at:** 2026-07-15 10:00:30 -05 (America/Lima)\n\
             - **Failed checks:** 4 in a row"
        );
    }

    #[test]
    fn english_recovery_carries_duration_and_latency() {
        let r = render(
            &Alert::Recovered(recovery()),
            "billing-api",
            &tz("UTC"),
            Language::English,
        );
        assert_eq!(r.title, "🟢 billing-api is back UP after 3 min 20 s");
        assert!(
            r.message
                .starts_with("**billing-api** is **UP** again after 3 min 20 s of outage.")
        );
        assert!(r.message.contains("- **Outage duration:** 3 min 20 s"));
        assert!(r.message.contains("- **Latency:** 12.3 ms"));
        assert!(
            r.message
                .contains("- **Recovered at:** 2026-07-15 15:03:20 +00 (UTC)")
        );
    }

    #[test]
    fn time_follows_dst() {
        let ny = tz("America/New_York");
        let jan = T0 - 181 * 86_400_000; // 2026-01-15 15:00:00 UTC
        assert_eq!(
            format::time(T0, &ny),
            "2026-07-15 11:00:00 -04 (America/New_York)"
        );
        assert_eq!(
            format::time(jan, &ny),
            "2026-01-15 10:00:00 -05 (America/New_York)"
        );
        let madrid = tz("Europe/Madrid");
        assert_eq!(
            format::time(T0, &madrid),
            "2026-07-15 17:00:00 +02 (Europe/Madrid)"
        );
        assert_eq!(
            format::time(jan, &madrid),
            "2026-01-15 16:00:00 +01 (Europe/Madrid)"
        );
        // Half-hour offsets keep their minutes.
        assert_eq!(
            format::time(T0, &tz("Asia/Kolkata")),
            "2026-07-15 20:30:00 +05:30 (Asia/Kolkata)"
        );
        // And the rendered alert uses it.
        let r = render(&Alert::Down(outage()), "x", &ny, Language::Spanish);
        assert!(
            r.message
                .contains("2026-07-15 11:00:00 -04 (America/New_York)")
        );
    }

    #[test]
    fn held_back_note_comes_first() {
        for &lang in Language::ALL {
            let s = lang.strings();
            let r = render_held_back(&Alert::Down(outage()), "db", &TimeZone::UTC, lang);
            assert!(r.title.starts_with(&format!("[{}] ", s.held_back_tag)));
            assert!(r.message.starts_with(&format!("> ⚠️ {}", s.held_back_note)));
            assert!(r.message.contains("`HTTP 503`"));
        }
        let en = render_held_back(
            &Alert::Down(outage()),
            "db",
            &TimeZone::UTC,
            Language::English,
        );
        assert!(en.message.contains(
            "the agent's own connectivity check is failing, this may be the agent's network"
        ));
    }

    #[test]
    fn precise_reasons_are_shown_verbatim() {
        for reason in [
            "HTTP 503",
            "timeout after 2 s",
            "connection refused",
            "container exited (137)",
            "unhealthy: curl: (7) Failed to connect",
        ] {
            let mut o = outage();
            o.incident.last_error = reason.into();
            let r = render(&Alert::Down(o), "svc", &TimeZone::UTC, Language::Thai);
            assert!(r.message.contains(&format!("`{reason}`")), "{r:#?}");
        }
    }

    #[test]
    fn hostile_names_and_reasons_cannot_break_markdown() {
        let mut o = outage();
        o.incident.last_error = "bad `output`\nwith {target} and **stars**".into();
        let r = render(
            &Alert::Down(o),
            "my_*svc*\n[x]",
            &TimeZone::UTC,
            Language::English,
        );
        assert!(r.title.contains("my_*svc* [x]"), "{}", r.title);
        assert!(!r.title.contains('\n'));
        assert!(
            r.message.contains("**my\\_\\*svc\\* \\[x\\]**"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("``bad `output` with {target} and **stars**``"),
            "{}",
            r.message
        );
    }

    #[test]
    fn worker_states_classify_and_feed_the_machine() {
        assert_eq!(
            WorkerState::from_answer(Some(200), None).status(),
            Status::Healthy
        );
        assert_eq!(
            WorkerState::from_answer(Some(220), None),
            WorkerState::Blind
        );
        assert_eq!(
            WorkerState::from_answer(Some(401), None),
            WorkerState::Unexpected(401)
        );
        let none = WorkerState::from_answer(None, None);
        assert_eq!(none.reason(), "no answer");
        assert_eq!(none.status(), Status::Down);
        assert_eq!(none.code(), None);
    }

    #[test]
    fn transitions_map_to_alerts() {
        let t = Transition::Down(outage());
        assert_eq!(Alert::from(t.clone()), Alert::Down(outage()));
        assert_eq!(Alert::connectivity(t), Alert::ConnectivityLost(outage()));
        let r = Transition::Recovered(recovery());
        assert_eq!(
            Alert::connectivity(r),
            Alert::ConnectivityRestored(recovery())
        );
    }
}
