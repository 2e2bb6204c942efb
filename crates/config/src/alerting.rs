//! Alerting settings: thresholds, language, delivery limits, channels,
//! maintenance windows and the outbound heartbeat.

use std::collections::BTreeMap;
use std::time::Duration;

use heartbeat_alerts::{Language, Thresholds};
use heartbeat_core::{Secret, Url};
use heartbeat_notify::Channel;
use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;

use crate::parse::Reader;

pub(crate) const MAINTENANCE_PREFIX: &str = "MAINTENANCE_";

/// The dead-man switch: `POST HEARTBEAT_URL` every cycle with `Bearer SECRET_KEY`.
#[derive(Debug, Clone)]
pub struct OutboundHeartbeat {
    pub url: Url,
    pub secret: Secret,
    pub timeout: Duration,
}

/// A period during which alerts are suppressed (results are still recorded).
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// An absolute period, `[start, end)`, UTC ms.
    Between { start_ms: i64, end_ms: i64 },
    /// Every day between two wall-clock times in `TZ`; may wrap past midnight.
    Daily { start: Time, end: Time },
}

impl Window {
    fn contains(&self, at_ms: i64, tz: &TimeZone) -> bool {
        match self {
            Window::Between { start_ms, end_ms } => (*start_ms..*end_ms).contains(&at_ms),
            Window::Daily { start, end } => {
                let Ok(ts) = Timestamp::from_millisecond(at_ms) else {
                    return false;
                };
                let now = ts.to_zoned(tz.clone()).time();
                if start <= end {
                    *start <= now && now < *end
                } else {
                    now >= *start || now < *end
                }
            }
        }
    }
}

/// `MAINTENANCE` (every item) and `MAINTENANCE_<name>` windows.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    pub global: Vec<Window>,
    pub per_item: BTreeMap<String, Vec<Window>>,
}

impl Maintenance {
    pub fn active(&self, item: &str, at_ms: i64, tz: &TimeZone) -> bool {
        self.global.iter().any(|w| w.contains(at_ms, tz))
            || self
                .per_item
                .get(item)
                .is_some_and(|ws| ws.iter().any(|w| w.contains(at_ms, tz)))
    }
}

#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub thresholds: Thresholds,
    pub language: Language,
    /// Give up delivering an alert this long after it was raised.
    pub max_age: Duration,
    /// Resend while a target stays down (with backoff); `None` = off.
    pub reminder_interval: Option<Duration>,
    pub channels: Vec<Channel>,
    pub maintenance: Maintenance,
    pub heartbeat: Option<OutboundHeartbeat>,
}

pub(crate) fn parse(
    p: &mut Reader<'_>,
    env: &BTreeMap<String, String>,
    tz: &TimeZone,
    target_names: &[&str],
    down_after: u32,
) -> AlertConfig {
    let recover_after = p.positive_int("RECOVERY_THRESHOLD", 1);
    let language = match p.non_empty("ALERT_LANGUAGE") {
        None => Language::default(),
        Some(raw) => raw.parse().unwrap_or_else(|e| {
            p.error("ALERT_LANGUAGE", format!("{e}"));
            Language::default()
        }),
    };
    let max_age = p
        .span("ALERT_MAX_AGE")
        .flatten()
        .unwrap_or(Duration::from_secs(24 * 3600));
    let reminder_interval = p.span("ALERT_REMINDER_INTERVAL").flatten();

    let channels = match heartbeat_notify::channels_from_map(env) {
        Ok(channels) => channels,
        Err(errors) => {
            for e in errors {
                p.error(&e.variable, e.message);
            }
            Vec::new()
        }
    };

    let heartbeat = {
        let url = p.non_empty("HEARTBEAT_URL");
        let secret = p.secret("SECRET_KEY");
        let timeout = p.seconds("HEARTBEAT_TIMEOUT_SECONDS", 5.0);
        match (url, secret) {
            (None, None) => None,
            (Some(_), None) => {
                p.error(
                    "SECRET_KEY",
                    "HEARTBEAT_URL is set but SECRET_KEY is not; the heartbeat needs both",
                );
                None
            }
            (None, Some(_)) => {
                p.error(
                    "HEARTBEAT_URL",
                    "SECRET_KEY is set but HEARTBEAT_URL is not; the heartbeat needs both",
                );
                None
            }
            (Some(raw), Some(secret)) => match crate::parse::parse_http_url(&raw) {
                Ok(url) => Some(OutboundHeartbeat {
                    url,
                    secret,
                    timeout,
                }),
                Err(msg) => {
                    p.error("HEARTBEAT_URL", msg);
                    None
                }
            },
        }
    };

    let mut maintenance = Maintenance::default();
    if let Some(raw) = p.non_empty("MAINTENANCE") {
        maintenance.global = windows(p, "MAINTENANCE", &raw, tz);
    }
    for (key, raw) in env.range(MAINTENANCE_PREFIX.to_owned()..) {
        let Some(name) = key.strip_prefix(MAINTENANCE_PREFIX) else {
            break;
        };
        if !target_names.contains(&name) {
            p.error(
                key,
                format!("there is no target {name:?} (SERVICE_URL_{name}) for this window; names are case-sensitive"),
            );
            continue;
        }
        let parsed = windows(p, key, raw, tz);
        maintenance.per_item.insert(name.to_owned(), parsed);
    }

    AlertConfig {
        thresholds: Thresholds {
            down_after,
            recover_after,
        },
        language,
        max_age,
        reminder_interval,
        channels,
        maintenance,
        heartbeat,
    }
}

/// `start/end` (RFC 3339, or local date-times in `TZ`) or `daily HH:MM-HH:MM`,
/// several separated by commas.
fn windows(p: &mut Reader<'_>, key: &str, raw: &str, tz: &TimeZone) -> Vec<Window> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse_window(part, tz) {
            Ok(w) => out.push(w),
            Err(msg) => p.error(key, msg),
        }
    }
    out
}

fn parse_window(part: &str, tz: &TimeZone) -> Result<Window, String> {
    let hint = "expected \"2026-11-23 02:00/2026-11-23 04:00\" or \"daily 02:00-03:30\"";
    if let Some(times) = part
        .strip_prefix("daily ")
        .or_else(|| part.strip_prefix("DAILY "))
    {
        let (a, b) = times
            .split_once('-')
            .ok_or_else(|| format!("{part:?}: {hint}"))?;
        let time = |s: &str| {
            s.trim()
                .parse::<Time>()
                .map_err(|_| format!("{s:?} is not a time of day (HH:MM); {hint}"))
        };
        return Ok(Window::Daily {
            start: time(a)?,
            end: time(b)?,
        });
    }
    let (a, b) = part
        .split_once('/')
        .ok_or_else(|| format!("{part:?}: {hint}"))?;
    let instant = |s: &str| -> Result<i64, String> {
        let s = s.trim();
        if let Ok(ts) = s.parse::<Timestamp>() {
            return Ok(ts.as_millisecond());
        }
        let civil: DateTime = s
            .parse()
            .map_err(|_| format!("{s:?} is not a date and time; {hint}"))?;
        civil
            .to_zoned(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| format!("{s:?}: {e}"))
    };
    let (start_ms, end_ms) = (instant(a)?, instant(b)?);
    if end_ms <= start_ms {
        return Err(format!("{part:?}: the window ends before it starts"));
    }
    Ok(Window::Between { start_ms, end_ms })
}

/// `"90"` (seconds), `"30s"`, `"15m"`, `"24h"`, `"7d"`; `"off"`/`"0"` = none.
pub(crate) fn parse_span(raw: &str) -> Result<Option<Duration>, String> {
    let raw = raw.trim().to_ascii_lowercase();
    if raw == "off" || raw == "0" || raw == "none" {
        return Ok(None);
    }
    let (number, unit) = match raw.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => raw.split_at(i),
        None => (raw.as_str(), "s"),
    };
    let factor = match unit.trim() {
        "s" | "sec" | "secs" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit in {raw:?}; use s, m, h or d (e.g. 30m)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 30m, 24h or off, got {raw:?}"))?;
    // Ten years: long enough for any retention, short enough to stay far from
    // overflowing a millisecond timestamp.
    if !value.is_finite() || value <= 0.0 || value * factor > 3660.0 * 86_400.0 {
        return Err(format!(
            "{raw:?} is out of range (more than 0, at most ten years)"
        ));
    }
    Ok(Some(Duration::from_secs_f64(value * factor)))
}

impl Reader<'_> {
    pub(crate) fn span(&mut self, key: &str) -> Option<Option<Duration>> {
        let raw = self.non_empty(key)?;
        match parse_span(&raw) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(key, msg);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("90").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_span("15m").unwrap(), Some(Duration::from_secs(900)));
        assert_eq!(
            parse_span("24h").unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_span("off").unwrap(), None);
        assert!(parse_span("5 fortnights").is_err());
        assert!(parse_span("-3h").is_err());
    }

    #[test]
    fn windows_absolute_and_daily() {
        let tz = TimeZone::get("America/Lima").unwrap();
        let w = parse_window("2026-11-23 02:00/2026-11-23 04:00", &tz).unwrap();
        // 02:00 in Lima (UTC-5) is 07:00 UTC.
        let at = |s: &str| s.parse::<Timestamp>().unwrap().as_millisecond();
        assert!(w.contains(at("2026-11-23T07:30:00Z"), &tz));
        assert!(!w.contains(at("2026-11-23T09:00:00Z"), &tz));
        let d = parse_window("daily 23:30-00:30", &tz).unwrap();
        assert!(d.contains(at("2026-11-24T05:00:00Z"), &tz)); // 00:00 Lima
        assert!(!d.contains(at("2026-11-24T06:00:00Z"), &tz)); // 01:00 Lima
        assert!(parse_window("tomorrow", &tz).is_err());
        assert!(parse_window("2026-11-23 04:00/2026-11-23 02:00", &tz).is_err());
    }
}
