//! The documented list of every variable the agent reads. `--help` prints it and
//! the README mirrors it, so there is one place to add a new one.

/// One configuration variable, as documented to users.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub description: &'static str,
}

const fn var(name: &'static str, default: &'static str, description: &'static str) -> Variable {
    Variable {
        name,
        default,
        description,
    }
}

pub const VARIABLES: &[Variable] = &[
    var(
        "SERVICE_URL_<name>",
        "",
        "A target: http://..., https://..., docker:<container name or id>, or push:// (it sends heartbeats, see SERVICE_PERIOD_<name>). <name> is the target's id and keeps its case.",
    ),
    var(
        "SERVICE_HEADERS_<name>",
        "",
        "Extra request headers, \"Name:Value,Name:Value\" (split at the first ':'). Values are secrets: never logged or stored.",
    ),
    var(
        "SERVICE_TIMEOUT_SECONDS_<name>",
        "SERVICE_TIMEOUT_SECONDS",
        "Per-target timeout in seconds (fractions allowed).",
    ),
    var(
        "SERVICE_METHOD_<name>",
        "HEAD",
        "HEAD (falls back to GET on 405/501), GET or POST.",
    ),
    var(
        "SERVICE_EXPECTED_STATUS_<name>",
        "200-399",
        "Status codes that count as healthy, e.g. 200-299,401.",
    ),
    var(
        "SERVICE_DNS_OVERRIDE_<name>",
        "true",
        "Set to false to exempt this target from INTERNAL_DNS_OVERRIDE_IP.",
    ),
    var(
        "SERVICE_PERIOD_<name>",
        "60",
        "push:// targets: expected time between pings (seconds, or 5m, 1h, 1d). Late after it, down after it plus the grace.",
    ),
    var(
        "SERVICE_GRACE_<name>",
        "60",
        "push:// targets: extra time before a late target is down; also caps a run after /start.",
    ),
    var(
        "SERVICE_SCHEDULE_<name>",
        "",
        "push:// targets: cron expression (minute hour day month weekday) evaluated in TZ, instead of a period.",
    ),
    var(
        "SERVICE_TOKEN_<name>",
        "derived",
        "push:// targets: the secret token in /ping/<token> (16-128 of A-Z a-z 0-9 - _). Unset: derived from ADMIN_TOKEN and the name (changing ADMIN_TOKEN changes it); check-config shows it.",
    ),
    var(
        "AGENT_ADDR",
        "0.0.0.0:8101",
        "The push listener (pings, registration API, GET /health). off disables it. See docs/push-api.md.",
    ),
    var(
        "ADMIN_TOKEN",
        "",
        "Bearer token for the registration API (POST /api/services ...). Unset: that API answers 403. A secret: never logged or stored.",
    ),
    var(
        "PUSH_RATE_LIMIT",
        "10",
        "Requests per second allowed per token (token bucket); more get 429. 0 = no limit.",
    ),
    var(
        "PUSH_RATE_BURST",
        "60",
        "Requests a token may send at once before PUSH_RATE_LIMIT applies.",
    ),
    var(
        "PUSH_BODY_LIMIT",
        "1048576",
        "Largest request body in bytes (larger: 413). The first 10 KB of a ping body are kept.",
    ),
    var(
        "PUSH_AUTO_REMOVE_AFTER",
        "off",
        "Delete registered (API) push services silent for this long, e.g. 1h or 7d. Environment targets are never removed.",
    ),
    var(
        "LOOP_INTERVAL_SECONDS",
        "10",
        "Seconds between cycle starts (fractions allowed). Cycles run on a fixed grid, with no drift.",
    ),
    var(
        "SERVICE_TIMEOUT_SECONDS",
        "2",
        "Default probe timeout in seconds (fractions allowed).",
    ),
    var(
        "STATUS_CHANGE_THRESHOLD",
        "4",
        "Consecutive failed cycles before a target is considered down.",
    ),
    var(
        "TZ",
        "UTC",
        "IANA time zone for display and alert texts. Storage is always UTC.",
    ),
    var(
        "SQLITE_DB_PATH",
        "data/metrics.db",
        "The SQLite database. A database written by the replaced Python agent is adopted in place.",
    ),
    var(
        "PING_URL",
        "http://www.google.com/",
        "Connectivity check target (HEAD). Set it empty to disable the check.",
    ),
    var(
        "FORCE_IPV4",
        "true",
        "Resolve target host names to IPv4 addresses only.",
    ),
    var(
        "INTERNAL_DNS_OVERRIDE_IP",
        "",
        "Connect to this IP instead of resolving target hosts (for targets behind a local reverse proxy).",
    ),
    var(
        "INTERNAL_DNS_OVERRIDE_MODE",
        "legacy",
        "legacy: plain HTTP to the IP with the original Host header (the replaced system's behaviour). tls: keep https and use the URL's host for SNI and certificate checks.",
    ),
    var(
        "INTERNAL_DNS_OVERRIDE_HOSTS",
        "",
        "Comma-separated exact host names the override applies to. Empty: every HTTP target with a host name.",
    ),
    var(
        "DOCKER_HOST",
        "unix:///var/run/docker.sock",
        "Docker Engine address for docker: targets and the container count.",
    ),
    var(
        "RECOVERY_THRESHOLD",
        "1",
        "Consecutive healthy cycles before a down target counts as recovered.",
    ),
    var(
        "ALERT_LANGUAGE",
        "en",
        "Language of alert texts: en, es or th.",
    ),
    var(
        "ALERT_MAX_AGE",
        "24h",
        "Keep retrying an undelivered alert for this long (e.g. 90m, 24h, 2d).",
    ),
    var(
        "ALERT_REMINDER_INTERVAL",
        "off",
        "While a target stays down, resend its alert after this long, doubling each time (e.g. 1h).",
    ),
    var(
        "MAINTENANCE",
        "",
        "Windows in which no alert is sent (results are still recorded): \"2026-11-23 02:00/2026-11-23 04:00\" in TZ, RFC 3339 instants, or \"daily 02:00-03:30\"; comma-separated.",
    ),
    var(
        "MAINTENANCE_<name>",
        "",
        "Maintenance windows for one target, same format as MAINTENANCE.",
    ),
    var(
        "HEARTBEAT_URL",
        "",
        "Dead-man switch: POST {\"services\": {...}} here every cycle. Needs SECRET_KEY.",
    ),
    var(
        "SECRET_KEY",
        "",
        "Bearer token for HEARTBEAT_URL. A secret: never logged or stored.",
    ),
    var(
        "HEARTBEAT_TIMEOUT_SECONDS",
        "5",
        "Timeout of the outbound heartbeat request.",
    ),
    var(
        "RETENTION_RAW",
        "14d",
        "Keep raw checks this long (e.g. 7d, 30d). Older data stays in the rollups.",
    ),
    var(
        "RETENTION_MINUTE",
        "90d",
        "Keep per-minute rollups this long.",
    ),
    var("RETENTION_HOUR", "730d", "Keep per-hour rollups this long."),
    var("RUST_LOG", "info", "Log filter, e.g. heartbeat=debug."),
    var("LOG_FORMAT", "text", "text or json."),
];

/// The variable reference as printed by `--help`.
pub fn help_text() -> String {
    let mut out = String::from("Configuration (environment variables or .env):\n");
    for v in VARIABLES {
        out.push_str(&format!("  {}\n      {}", v.name, v.description));
        if !v.default.is_empty() {
            out.push_str(&format!(" [default: {}]", v.default));
        }
        out.push('\n');
    }
    out.push_str("\nAlert channels (any number may be active):\n");
    for (name, default, description) in heartbeat_notify::CHANNEL_VARIABLES {
        out.push_str(&format!("  {name}\n      {description}"));
        if !default.is_empty() {
            out.push_str(&format!(" [default: {default}]"));
        }
        out.push('\n');
    }
    out
}
