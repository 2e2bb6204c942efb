//! A push target's status from its persisted state: pure, so every rule is unit-tested
//! without clocks or sockets.

use heartbeat_core::{CheckResult, Status};
use heartbeat_store::PushEventKind;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The newest sign of life (success, fail or unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub ts_ms: i64,
    pub kind: PushEventKind,
    pub message: Option<String>,
    pub duration_ms: Option<f64>,
}

/// What a push target is expected to do.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    pub created_at_ms: i64,
    pub period_ms: i64,
    pub grace_ms: i64,
    pub schedule: Option<&'a jiff_cron::Schedule>,
    pub tz: &'a TimeZone,
}

/// When the next ping is due after `base_ms`: `base + period`, or the schedule's next time.
pub fn due_after(e: &Expectation<'_>, base_ms: i64) -> i64 {
    let Some(schedule) = e.schedule else {
        return base_ms.saturating_add(e.period_ms);
    };
    let Ok(base) = Timestamp::from_millisecond(base_ms) else {
        return base_ms.saturating_add(e.period_ms);
    };
    schedule
        .after(base.to_zoned(e.tz.clone()))
        .next()
        .map_or(i64::MAX, |z| z.timestamp().as_millisecond())
}

/// The check a cycle records for a push target at `now_ms`.
pub fn evaluate(
    e: &Expectation<'_>,
    now_ms: i64,
    last: Option<&Life>,
    open_start_ms: Option<i64>,
) -> CheckResult {
    // A run in progress: the grace caps how long it may take.
    if let Some(start) = open_start_ms.filter(|s| last.is_none_or(|l| *s > l.ts_ms)) {
        let age = now_ms - start;
        if age > e.grace_ms {
            return CheckResult::failed(
                Status::Down,
                format!(
                    "run started {} ago has not finished (grace {})",
                    human(age),
                    human(e.grace_ms)
                ),
            );
        }
        return match last {
            Some(l) => from_event(l),
            None => CheckResult {
                status: Status::Healthy,
                status_code: None,
                latency_ms: None,
                error_message: Some("first run in progress".into()),
            },
        };
    }
    let base = last.map_or(e.created_at_ms, |l| l.ts_ms);
    let due = due_after(e, base);
    let age = now_ms - base;
    let since = match last {
        Some(_) => format!("last ping {} ago", human(age)),
        None => format!("no ping since the target was created {} ago", human(age)),
    };
    let expected = match e.schedule {
        Some(_) => format!("due {} ago by its schedule", human(now_ms - due)),
        None => format!("period {}", human(e.period_ms)),
    };
    if now_ms > due.saturating_add(e.grace_ms) {
        let text = match e.schedule {
            Some(_) => format!(
                "no ping for {} ({expected}, grace {})",
                human(age),
                human(e.grace_ms)
            ),
            None => format!(
                "no ping for {} (period {} + grace {})",
                human(age),
                human(e.period_ms),
                human(e.grace_ms)
            ),
        };
        return CheckResult::failed(Status::Down, text);
    }
    if now_ms > due {
        return CheckResult::failed(Status::Timeout, format!("late: {since}, {expected}"));
    }
    match last {
        Some(l) => from_event(l),
        None => CheckResult {
            status: Status::Healthy,
            status_code: None,
            latency_ms: None,
            error_message: Some("waiting for the first ping".into()),
        },
    }
}

fn from_event(l: &Life) -> CheckResult {
    let status = match l.kind {
        PushEventKind::Fail => Status::Error,
        PushEventKind::Unknown => Status::Unknown,
        _ => Status::Healthy,
    };
    CheckResult {
        status,
        status_code: None,
        latency_ms: l.duration_ms,
        error_message: l.message.clone(),
    }
}

/// "75 s", "5 min", "2 h", "3 d": whole units, rounded down, for alert and dashboard texts.
pub fn human(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if ms < 1000 {
        format!("{:.1} s", ms.max(0) as f64 / 1000.0)
    } else if s < 300 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn exp(tz: &TimeZone) -> Expectation<'_> {
        Expectation {
            created_at_ms: 0,
            period_ms: 60_000,
            grace_ms: 120_000,
            schedule: None,
            tz,
        }
    }

    fn life(ts_ms: i64, kind: PushEventKind, message: Option<&str>) -> Life {
        Life {
            ts_ms,
            kind,
            message: message.map(str::to_owned),
            duration_ms: None,
        }
    }

    #[test]
    fn on_time_late_down() {
        let tz = TimeZone::UTC;
        let e = exp(&tz);
        let ok = life(1_000_000, PushEventKind::Success, None);
        assert_eq!(
            evaluate(&e, 1_030_000, Some(&ok), None).status,
            Status::Healthy
        );
        let late = evaluate(&e, 1_075_000, Some(&ok), None);
        assert_eq!(late.status, Status::Timeout);
        assert_eq!(
            late.error_message.as_deref(),
            Some("late: last ping 75 s ago, period 60 s")
        );
        let down = evaluate(&e, 1_300_000, Some(&ok), None);
        assert_eq!(down.status, Status::Down);
        assert_eq!(
            down.error_message.as_deref(),
            Some("no ping for 5 min (period 60 s + grace 120 s)")
        );
    }

    #[test]
    fn never_pinged_counts_from_creation() {
        let tz = TimeZone::UTC;
        let e = exp(&tz);
        assert_eq!(evaluate(&e, 10_000, None, None).status, Status::Healthy);
        assert_eq!(evaluate(&e, 70_000, None, None).status, Status::Timeout);
        let down = evaluate(&e, 500_000, None, None);
        assert_eq!(down.status, Status::Down);
        assert!(down.error_message.unwrap().starts_with("no ping for 8 min"));
    }

    #[test]
    fn failures_and_unknown_show_with_their_message() {
        let tz = TimeZone::UTC;
        let e = exp(&tz);
        let f = life(0, PushEventKind::Fail, Some("exit status 3: disk full"));
        let r = evaluate(&e, 1000, Some(&f), None);
        assert_eq!(r.status, Status::Error);
        assert_eq!(r.error_message.as_deref(), Some("exit status 3: disk full"));
        let u = life(0, PushEventKind::Unknown, None);
        assert_eq!(evaluate(&e, 1000, Some(&u), None).status, Status::Unknown);
    }

    #[test]
    fn grace_caps_a_run_after_start() {
        let tz = TimeZone::UTC;
        let e = exp(&tz);
        let ok = life(0, PushEventKind::Success, None);
        // Started at 50 s: within grace it shows the previous result, after it is down,
        // even though the period since the last success alone would only make it late.
        assert_eq!(
            evaluate(&e, 100_000, Some(&ok), Some(50_000)).status,
            Status::Healthy
        );
        let r = evaluate(&e, 171_000, Some(&ok), Some(50_000));
        assert_eq!(r.status, Status::Down);
        assert_eq!(
            r.error_message.as_deref(),
            Some("run started 121 s ago has not finished (grace 120 s)")
        );
        // A start older than the last end is not an open run.
        assert_eq!(
            evaluate(&e, 10_000, Some(&ok), Some(-5)).status,
            Status::Healthy
        );
    }

    #[test]
    fn cron_schedule_is_due_at_its_next_time() {
        let tz = TimeZone::get("Europe/Madrid").unwrap();
        let schedule = heartbeat_config::parse_schedule("0 2 * * *").unwrap();
        let e = Expectation {
            schedule: Some(&schedule),
            grace_ms: 3_600_000,
            ..exp(&tz)
        };
        let at = |s: &str| {
            s.parse::<jiff::Zoned>()
                .unwrap()
                .timestamp()
                .as_millisecond()
        };
        let ping = life(
            at("2026-12-01T02:00:30+01:00[Europe/Madrid]"),
            PushEventKind::Success,
            None,
        );
        let now = at("2026-12-02T01:59:00+01:00[Europe/Madrid]");
        assert_eq!(evaluate(&e, now, Some(&ping), None).status, Status::Healthy);
        let now = at("2026-12-02T02:30:00+01:00[Europe/Madrid]");
        assert_eq!(evaluate(&e, now, Some(&ping), None).status, Status::Timeout);
        let now = at("2026-12-02T03:01:00+01:00[Europe/Madrid]");
        assert_eq!(evaluate(&e, now, Some(&ping), None).status, Status::Down);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(500), "0.5 s");
        assert_eq!(human(75_000), "75 s");
        assert_eq!(human(300_000), "5 min");
        assert_eq!(human(3 * 3_600_000), "3 h");
        assert_eq!(human(3 * 86_400_000), "3 d");
    }
}
