//! English alert texts.

use heartbeat_core::Status;

use super::{Strings, Unit};

pub const STRINGS: Strings = Strings {
    code: "en",
    aliases: &["eng", "english"],
    name: "English",
    decimal_separator: '.',
    unit,
    status,

    state_down: "DOWN",
    state_up: "UP",
    state_ok: "OK",
    state_warning: "WARNING",
    state_critical: "CRITICAL",

    down_title: "{target} is DOWN",
    down_headline: "{target} is **DOWN**.",
    recovered_title: "{target} is back UP after {duration}",
    recovered_headline: "{target} is **UP** again after {duration} of outage.",
    reminder_title: "{target} is still DOWN ({duration})",
    reminder_headline: "{target} is still **DOWN**, for {duration} now.",

    connectivity_lost_title: "Agent connectivity lost",
    connectivity_lost_headline: "The agent's own connectivity check ({target}) is **failing**. \
        Alerts raised meanwhile may be caused by the agent's network.",
    connectivity_restored_title: "Agent connectivity restored after {duration}",
    connectivity_restored_headline: "The agent's own connectivity check ({target}) **works** \
        again after {duration}.",

    worker_title: "Outbound heartbeat {target}: {state}",
    worker_state_ok: "OK",
    worker_state_blind: "blind",
    worker_state_recovery_failed: "recovery update failed",
    worker_state_critical: "critical error",
    worker_state_unreachable: "unreachable",
    worker_state_unexpected: "unexpected answer",
    worker_ok: "The heartbeat worker ({target}) accepted the report.",
    worker_blind: "The heartbeat worker ({target}) accepted the report but had no previous \
        state to compare it with (blind).",
    worker_recovery_failed: "The heartbeat worker ({target}) could not record a recovery update.",
    worker_critical: "The heartbeat worker ({target}) reported a critical error.",
    worker_unreachable: "The heartbeat worker ({target}) could not be reached.",
    worker_unexpected: "The heartbeat worker ({target}) gave an unexpected answer.",

    label_state: "State",
    label_reason: "Reason",
    label_first_error: "First error",
    label_since: "Failing since",
    label_outage_started: "Outage started",
    label_confirmed_at: "Confirmed at",
    label_recovered_at: "Recovered at",
    label_time: "Time",
    label_duration: "Outage duration",
    label_down_for: "Down for",
    label_latency: "Latency",
    label_failed_checks: "Failed checks",
    checks_in_a_row: "{count} in a row",
    not_available: "n/a",

    held_back_tag: "held back",
    held_back_note: "Held back: the agent's own connectivity check is failing, \
        this may be the agent's network rather than the target.",
};

fn unit(unit: Unit, _n: u64) -> &'static str {
    // Abbreviations read the same in singular and plural.
    match unit {
        Unit::Day => "d",
        Unit::Hour => "h",
        Unit::Minute => "min",
        Unit::Second => "s",
    }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Healthy => "healthy",
        Status::Down => "down",
        Status::Error => "error",
        Status::Timeout => "timeout",
        Status::Unknown => "unknown",
    }
}
