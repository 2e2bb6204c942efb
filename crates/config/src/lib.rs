//! The agent's configuration, parsed from an environment-style map.
//!
//! Parsing takes a map rather than reading the process environment so that it is
//! testable and so that only `apps/` touches the real environment. Every problem
//! is reported with the variable that caused it, and all problems are reported at
//! once, so `check-config` can explain a broken `.env` in one run.

mod alerting;
mod parse;
mod push;
mod variables;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use heartbeat_core::{DnsOverrideMode, Target, TargetKind, Url};
use jiff::tz::TimeZone;

pub use alerting::{AlertConfig, Maintenance, OutboundHeartbeat, Window};
pub use push::{
    DEFAULT_AGENT_ADDR, DEFAULT_GRACE, DEFAULT_PERIOD, PushConfig, derive_token, parse_push_span,
    parse_schedule, validate_token,
};
pub use variables::{VARIABLES, Variable, help_text};

/// One configuration mistake, tied to the variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

/// Every mistake found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// `INTERNAL_DNS_OVERRIDE_*`: connect to a fixed IP instead of resolving target hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsOverride {
    pub ip: IpAddr,
    pub mode: DnsOverrideMode,
    /// Exact host names it applies to; `None` means every HTTP target with a host name.
    pub hosts: Option<Vec<String>>,
}

/// Fully validated agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub targets: Vec<Target>,
    pub loop_interval: Duration,
    pub service_timeout: Duration,
    pub status_change_threshold: u32,
    pub time_zone: TimeZone,
    pub time_zone_name: String,
    pub sqlite_db_path: PathBuf,
    pub dns_override: Option<DnsOverride>,
    /// Connectivity check target; `None` when disabled with an empty `PING_URL`.
    pub ping_url: Option<Url>,
    pub force_ipv4: bool,
    pub docker_host: Option<String>,
    pub alerts: AlertConfig,
    pub retention: RetentionConfig,
    pub push: PushConfig,
}

/// How long data is kept: raw checks, per-minute and per-hour rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
}

pub const DEFAULT_PING_URL: &str = "http://www.google.com/";

impl AgentConfig {
    /// Parses and validates a configuration; reports every error found.
    pub fn from_map(env: &BTreeMap<String, String>) -> Result<AgentConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut p = parse::Reader::new(env, &mut errors);

        let loop_interval = p.seconds("LOOP_INTERVAL_SECONDS", 10.0);
        let service_timeout = p.seconds("SERVICE_TIMEOUT_SECONDS", 2.0);
        let status_change_threshold = p.positive_int("STATUS_CHANGE_THRESHOLD", 4);
        let (time_zone, time_zone_name) = p.time_zone("TZ");
        let sqlite_db_path = PathBuf::from(p.string("SQLITE_DB_PATH", "data/metrics.db"));
        let ping_url = p.optional_url("PING_URL", DEFAULT_PING_URL);
        let force_ipv4 = p.boolean("FORCE_IPV4", true);
        let docker_host = p.non_empty("DOCKER_HOST");
        let dns_override = p.dns_override();

        let alerts_partial = {
            // Target names are needed to validate MAINTENANCE_<name>; collect them first.
            let names: Vec<&str> = env
                .keys()
                .filter_map(|k| k.strip_prefix(parse::URL_PREFIX))
                .collect();
            alerting::parse(&mut p, env, &time_zone, &names, status_change_threshold)
        };
        let day = |d: u64| Duration::from_secs(d * 86_400);
        let retention = RetentionConfig {
            raw: p.span("RETENTION_RAW").flatten().unwrap_or(day(14)),
            minute: p.span("RETENTION_MINUTE").flatten().unwrap_or(day(90)),
            hour: p.span("RETENTION_HOUR").flatten().unwrap_or(day(730)),
        };
        let push = PushConfig::parse(&mut p);
        let targets = parse::targets(
            env,
            service_timeout,
            dns_override.as_ref(),
            push.derive_key.as_ref(),
            &mut errors,
        );
        push::check_unique_tokens(&targets, push.admin_token.as_ref(), &mut errors);

        if errors.is_empty() {
            Ok(AgentConfig {
                targets,
                loop_interval,
                service_timeout,
                status_change_threshold,
                time_zone,
                time_zone_name,
                sqlite_db_path,
                dns_override,
                ping_url,
                force_ipv4,
                docker_host,
                alerts: alerts_partial,
                retention,
                push,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Hosts that are reached through the DNS override in `tls` mode; the HTTP
    /// client pins these host names to the override IP.
    pub fn tls_override_hosts(&self) -> Vec<(String, IpAddr)> {
        let mut hosts: Vec<(String, IpAddr)> = self
            .targets
            .iter()
            .filter_map(|t| match &t.kind {
                TargetKind::Http(h) => match h.dns_override {
                    Some((ip, DnsOverrideMode::Tls)) => {
                        h.url.host_str().map(|host| (host.to_owned(), ip))
                    }
                    _ => None,
                },
                TargetKind::Docker { .. } | TargetKind::Push(_) => None,
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// A human-readable table of the resolved configuration, with secrets redacted.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let secs = |d: Duration| format!("{} s", d.as_secs_f64());
        let _ = writeln!(out, "Settings");
        let rows: Vec<(&str, String)> = vec![
            ("LOOP_INTERVAL_SECONDS", secs(self.loop_interval)),
            ("SERVICE_TIMEOUT_SECONDS", secs(self.service_timeout)),
            (
                "STATUS_CHANGE_THRESHOLD",
                self.status_change_threshold.to_string(),
            ),
            ("TZ", self.time_zone_name.clone()),
            ("SQLITE_DB_PATH", self.sqlite_db_path.display().to_string()),
            (
                "PING_URL",
                self.ping_url
                    .as_ref()
                    .map(heartbeat_core::redact_url)
                    .unwrap_or_else(|| "(connectivity check disabled)".into()),
            ),
            ("FORCE_IPV4", self.force_ipv4.to_string()),
            (
                "DOCKER_HOST",
                self.docker_host
                    .clone()
                    .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            ),
            (
                "INTERNAL_DNS_OVERRIDE_IP",
                match &self.dns_override {
                    None => "(off)".into(),
                    Some(o) => format!(
                        "{} ({} mode, {})",
                        o.ip,
                        o.mode.as_str(),
                        match &o.hosts {
                            None => "all HTTP targets with a host name".to_owned(),
                            Some(h) => format!("hosts: {}", h.join(", ")),
                        }
                    ),
                },
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<26} {v}");
        }
        let a = &self.alerts;
        let _ = writeln!(out, "\nAlerts");
        let alert_rows: Vec<(&str, String)> = vec![
            ("RECOVERY_THRESHOLD", a.thresholds.recover_after.to_string()),
            ("ALERT_LANGUAGE", a.language.code().to_owned()),
            ("ALERT_MAX_AGE", secs(a.max_age)),
            (
                "ALERT_REMINDER_INTERVAL",
                a.reminder_interval.map_or_else(|| "off".to_owned(), secs),
            ),
            (
                "HEARTBEAT_URL",
                a.heartbeat.as_ref().map_or_else(
                    || "(off)".to_owned(),
                    |h| {
                        format!(
                            "{} (SECRET_KEY <redacted>)",
                            heartbeat_core::redact_url(&h.url)
                        )
                    },
                ),
            ),
            (
                "maintenance windows",
                (a.maintenance.global.len()
                    + a.maintenance.per_item.values().map(Vec::len).sum::<usize>())
                .to_string(),
            ),
        ];
        for (k, v) in alert_rows {
            let _ = writeln!(out, "  {k:<26} {v}");
        }
        if a.channels.is_empty() {
            let _ = writeln!(
                out,
                "  channels                   (none: alerts are recorded but not sent)"
            );
        }
        for channel in &a.channels {
            let _ = writeln!(out, "  channel                    {}", channel.summary());
        }
        let push = &self.push;
        let _ = writeln!(out, "\nPush listener");
        let push_rows: Vec<(&str, String)> = vec![
            (
                "AGENT_ADDR",
                push.addr
                    .map_or_else(|| "(off)".to_owned(), |a| a.to_string()),
            ),
            (
                "ADMIN_TOKEN",
                if push.admin_token.is_some() {
                    "<redacted> (registration API on)".to_owned()
                } else {
                    "(unset: registration API off)".to_owned()
                },
            ),
            (
                "PUSH_RATE_LIMIT",
                if push.rate_per_sec > 0.0 {
                    format!(
                        "{}/s per token, burst {}",
                        push.rate_per_sec, push.rate_burst
                    )
                } else {
                    "off".to_owned()
                },
            ),
            ("PUSH_BODY_LIMIT", format!("{} bytes", push.body_limit)),
            (
                "PUSH_AUTO_REMOVE_AFTER",
                push.auto_remove_after
                    .map_or_else(|| "off".to_owned(), secs),
            ),
        ];
        for (k, v) in push_rows {
            let _ = writeln!(out, "  {k:<26} {v}");
        }
        let _ = writeln!(out, "\nTargets ({})", self.targets.len());
        let name_w = self
            .targets
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let (name, kind, timeout) = ("NAME", "KIND", "TIMEOUT");
        let _ = writeln!(
            out,
            "  {name:<name_w$}  {kind:<6}  {timeout:<8}  ADDRESS / DETAILS"
        );
        for t in &self.targets {
            let mut details = t.display_url();
            if let TargetKind::Http(h) = &t.kind {
                details.push_str(&format!(
                    "  method={} expect={}",
                    h.method.as_str(),
                    h.expected
                ));
                if let Some((ip, mode)) = h.dns_override {
                    details.push_str(&format!(" via={ip}({})", mode.as_str()));
                }
                if !h.headers.is_empty() {
                    let names: Vec<String> = h
                        .headers
                        .iter()
                        .map(|hd| format!("{}: <redacted>", hd.name))
                        .collect();
                    details.push_str(&format!(" headers=[{}]", names.join(", ")));
                }
            }
            if let TargetKind::Push(p) = &t.kind {
                match &p.schedule {
                    Some(cron) => details.push_str(&format!("  schedule=\"{cron}\" (TZ)")),
                    None => details.push_str(&format!("  period={}", secs(p.period))),
                }
                details.push_str(&format!(" grace={}", secs(p.grace)));
                // A derived token can only be learnt here; a configured one the user already has.
                if p.token_derived {
                    details.push_str(&format!(" token={} (derived)", p.token.expose()));
                } else {
                    details.push_str(" token=<redacted>");
                }
            }
            let _ = writeln!(
                out,
                "  {:<name_w$}  {:<6}  {:<8}  {}",
                t.name,
                t.kind_str(),
                secs(t.timeout),
                details
            );
        }
        if self.targets.is_empty() {
            let _ = writeln!(
                out,
                "  (none: add SERVICE_URL_<name>=https://... or docker:<container>)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
