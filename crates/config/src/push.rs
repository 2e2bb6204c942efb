//! Push targets (`SERVICE_URL_<name>=push://`) and the agent's push listener settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use heartbeat_core::{PushTarget, Secret};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ConfigError;
use crate::alerting::parse_span;
use crate::parse::Reader;

pub const DEFAULT_AGENT_ADDR: &str = "0.0.0.0:8101";
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Shortest period or grace accepted (tests use sub-second ones; humans rarely want < 1 s).
pub const MIN_PUSH_SPAN: Duration = Duration::from_millis(100);
/// Longest period or grace accepted: a year (weekly and monthly jobs fit easily).
pub const MAX_PUSH_SPAN: Duration = Duration::from_secs(366 * 86_400);
pub const MIN_TOKEN_LEN: usize = 16;
pub const MAX_TOKEN_LEN: usize = 128;
/// Domain separation for derived tokens; bump the version to rotate every derived token.
const DERIVE_CONTEXT: &str = "heartbeat push token v1:";

/// The push listener's settings.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// `None` when `AGENT_ADDR=off`.
    pub addr: Option<SocketAddr>,
    pub admin_token: Option<Secret>,
    /// Requests per second per token; 0 = no limit.
    pub rate_per_sec: f64,
    pub rate_burst: u32,
    /// Largest request body accepted, bytes; larger gets 413.
    pub body_limit: usize,
    pub auto_remove_after: Option<Duration>,
    /// Key that derives tokens for push targets without `SERVICE_TOKEN_<name>`.
    pub(crate) derive_key: Option<Secret>,
}

impl PushConfig {
    pub(crate) fn parse(p: &mut Reader<'_>) -> PushConfig {
        const ADDR: &str = "AGENT_ADDR";
        let addr = match p.non_empty(ADDR) {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            raw => {
                let raw = raw.unwrap_or_else(|| DEFAULT_AGENT_ADDR.to_owned());
                match raw.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        p.error(
                            ADDR,
                            format!("expected an address such as 0.0.0.0:8101 or off, got {raw:?}"),
                        );
                        None
                    }
                }
            }
        };
        let admin_token = p.secret("ADMIN_TOKEN");
        if let Some(t) = &admin_token
            && let Err(msg) = validate_token(t.expose())
        {
            p.error("ADMIN_TOKEN", msg);
        }
        let rate_per_sec = match p.non_empty("PUSH_RATE_LIMIT") {
            None => 10.0,
            Some(raw) => match raw.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => {
                    p.error(
                        "PUSH_RATE_LIMIT",
                        format!("expected requests per second (0 = no limit), got {raw:?}"),
                    );
                    10.0
                }
            },
        };
        let rate_burst = p.positive_int("PUSH_RATE_BURST", 60);
        let body_limit = match p.non_empty("PUSH_BODY_LIMIT") {
            None => 1 << 20,
            Some(raw) => match raw.parse::<usize>() {
                Ok(v) if (1024..=64 << 20).contains(&v) => v,
                _ => {
                    p.error(
                        "PUSH_BODY_LIMIT",
                        format!("expected a size in bytes between 1024 and 67108864, got {raw:?}"),
                    );
                    1 << 20
                }
            },
        };
        let auto_remove_after = p.span("PUSH_AUTO_REMOVE_AFTER").flatten();
        // Never SECRET_KEY: it is sent to HEARTBEAT_URL every cycle, so its receiver could
        // compute every derived token and fake success pings.
        let derive_key = admin_token.clone();
        PushConfig {
            addr,
            admin_token,
            rate_per_sec,
            rate_burst,
            body_limit,
            auto_remove_after,
            derive_key,
        }
    }
}

/// Tokens travel in URLs: keep them to URL-safe characters and long enough to be unguessable.
/// The error never repeats the value.
pub fn validate_token(raw: &str) -> Result<(), String> {
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&raw.len()) {
        return Err(format!(
            "must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long (it has {})",
            raw.len()
        ));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("may only hold A-Z, a-z, 0-9, '-' and '_'".into());
    }
    Ok(())
}

/// The stable token of a push target without `SERVICE_TOKEN_<name>`: an HMAC of its name,
/// so it survives restarts and `check-config` can show it without touching the database.
pub fn derive_token(key: &Secret, name: &str) -> Secret {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(DERIVE_CONTEXT.as_bytes());
    mac.update(name.as_bytes());
    let bytes = mac.finalize().into_bytes();
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A cron schedule: standard 5 fields (minute hour day-of-month month day-of-week),
/// or 6/7 fields with seconds (and year) first.
pub fn parse_schedule(raw: &str) -> Result<jiff_cron::Schedule, String> {
    let fields = raw.split_whitespace().count();
    let expr = match fields {
        5 => {
            let mut parts: Vec<&str> = raw.split_whitespace().collect();
            let weekdays = unix_weekdays(parts[4])?;
            parts[4] = &weekdays;
            format!("0 {}", parts.join(" "))
        }
        6 | 7 => raw.trim().to_owned(),
        _ => {
            return Err(format!(
                "expected a cron expression of 5 fields (minute hour day month weekday), got {fields} in {raw:?}"
            ));
        }
    };
    let schedule = jiff_cron::Schedule::from_str(&expr)
        .map_err(|e| format!("not a valid cron expression {raw:?}: {e}"))?;
    // A schedule with no next time (e.g. 30 February) would keep its target healthy forever.
    if schedule.upcoming(jiff::tz::TimeZone::UTC).next().is_none() {
        return Err(format!("the cron expression {raw:?} never fires"));
    }
    Ok(schedule)
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// crontab(5) numbers weekdays 0-7 with Sunday as 0 and 7, but the cron crate counts
/// 1-7 from Sunday; rewriting the field as day names keeps `1` meaning Monday.
fn unix_weekdays(field: &str) -> Result<String, String> {
    let day = |s: &str| -> Result<usize, String> {
        if let Some(i) = DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s)) {
            return Ok(i);
        }
        // 7 stays 7 here (the end of a range such as 0-7); bits are set modulo 7 below.
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(format!(
                "weekday {s:?} is not 0-7 or SUN-SAT (0 and 7 are Sunday)"
            )),
        }
    };
    let mut set = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("weekday step {s:?} is not a positive number"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    // "5-7" (Friday to Sunday): 7 is the end of the week, not day 0.
                    let b = if b == 0 && a > 0 { 7 } else { b };
                    if a > b {
                        return Err(format!("weekday range {r:?} is backwards"));
                    }
                    (a, b)
                }
                None if step > 1 => (day(r)?, 6),
                None => (day(r)?, day(r)?),
            },
        };
        for d in (lo..=hi).step_by(step) {
            set[d % 7] = true;
        }
    }
    if set.iter().all(|d| *d) {
        return Ok("*".into());
    }
    let names: Vec<&str> = (0..7).filter(|d| set[*d]).map(|d| DAY_NAMES[d]).collect();
    Ok(names.join(","))
}

/// A period or grace: seconds, or a duration with a unit (`90`, `15m`, `1d`).
pub fn parse_push_span(raw: &str) -> Result<Duration, String> {
    match parse_span(raw)? {
        Some(d) if (MIN_PUSH_SPAN..=MAX_PUSH_SPAN).contains(&d) => Ok(d),
        _ => Err(format!(
            "expected a duration between 0.1 s and 366 d (e.g. 60, 5m, 1d), got {raw:?}"
        )),
    }
}

/// The push settings of `SERVICE_URL_<name>=push://`; records errors naming the variable.
pub(crate) fn target(
    name: &str,
    env: &BTreeMap<String, String>,
    derive_key: Option<&Secret>,
    errors: &mut Vec<ConfigError>,
) -> PushTarget {
    let option = |prefix: &str| crate::parse::target_option(env, prefix, name);
    let mut span = |prefix: &str, default: Duration| match option(prefix) {
        (var, Some(v)) => parse_push_span(&v).unwrap_or_else(|m| {
            errors.push(ConfigError::new(var, m));
            default
        }),
        (_, None) => default,
    };
    let period = span("SERVICE_PERIOD_", DEFAULT_PERIOD);
    let grace = span("SERVICE_GRACE_", DEFAULT_GRACE);
    let schedule = match option("SERVICE_SCHEDULE_") {
        (var, Some(v)) => {
            if let Err(m) = parse_schedule(&v) {
                errors.push(ConfigError::new(&var, m));
            }
            if let (pvar, Some(_)) = option("SERVICE_PERIOD_") {
                errors.push(ConfigError::new(
                    pvar,
                    format!("set either a period or {var}, not both"),
                ));
            }
            Some(v)
        }
        (_, None) => None,
    };
    let (token, token_derived) = match option("SERVICE_TOKEN_") {
        (var, Some(v)) => {
            if let Err(m) = validate_token(&v) {
                errors.push(ConfigError::new(var, m));
            }
            (Secret::new(v), false)
        }
        (var, None) => match derive_key {
            Some(key) => (derive_token(key, name), true),
            None => {
                errors.push(ConfigError::new(
                    var,
                    "a push target needs a token: set it, or set ADMIN_TOKEN to derive one",
                ));
                (Secret::default(), false)
            }
        },
    };
    PushTarget {
        period,
        grace,
        schedule,
        token,
        token_derived,
    }
}

/// Two targets sharing a token (or one using the admin token) could not be told apart.
pub(crate) fn check_unique_tokens(
    targets: &[heartbeat_core::Target],
    admin: Option<&Secret>,
    errors: &mut Vec<ConfigError>,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for t in targets {
        let heartbeat_core::TargetKind::Push(p) = &t.kind else {
            continue;
        };
        if p.token.expose().is_empty() {
            continue;
        }
        let var = format!("SERVICE_TOKEN_{}", t.name);
        if admin.is_some_and(|a| a.expose() == p.token.expose()) {
            errors.push(ConfigError::new(var, "must differ from ADMIN_TOKEN"));
        } else if let Some(other) = seen.insert(p.token.expose(), &t.name) {
            errors.push(ConfigError::new(
                var,
                format!("the same token is already used by push target {other}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn five_field_cron_uses_unix_weekdays() {
        // 2026-11-29 is a Sunday; "1" must mean Monday as in crontab(5).
        let s = parse_schedule("30 2 * * 1").unwrap();
        let after = jiff::civil::date(2026, 11, 29)
            .at(12, 0, 0, 0)
            .in_tz("Europe/Madrid")
            .unwrap();
        let next = s.after(after).next().unwrap();
        assert_eq!(next.to_string(), "2026-11-30T02:30:00+01:00[Europe/Madrid]");
        assert!(parse_schedule("* * *").unwrap_err().contains("5 fields"));
        assert!(parse_schedule("61 * * * *").is_err());
        assert_eq!(unix_weekdays("1-5").unwrap(), "MON,TUE,WED,THU,FRI");
        assert_eq!(unix_weekdays("5-7").unwrap(), "SUN,FRI,SAT");
        assert_eq!(unix_weekdays("0,6").unwrap(), "SUN,SAT");
        assert_eq!(unix_weekdays("*/2").unwrap(), "SUN,TUE,THU,SAT");
        assert_eq!(unix_weekdays("mon-sun").unwrap(), "*");
        assert!(unix_weekdays("8").is_err());
    }

    #[test]
    fn derived_tokens_are_stable_valid_and_distinct() {
        let key = Secret::new("k".repeat(20));
        let a = derive_token(&key, "backup");
        assert_eq!(a, derive_token(&key, "backup"));
        assert_ne!(a, derive_token(&key, "Backup"));
        assert_ne!(a, derive_token(&Secret::new("j".repeat(20)), "backup"));
        validate_token(a.expose()).unwrap();
        assert_eq!(a.expose().len(), 43);
    }
}
