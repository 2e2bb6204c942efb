//! Domain types shared by the agent, the store and the dashboard.
//!
//! Nothing here does I/O; everything is plain data with stable string forms,
//! because those strings are what the database and the APIs carry.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use url::Url;

/// Outcome of one probe, with the replaced system's five-way taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Healthy,
    Down,
    Error,
    Timeout,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Healthy,
        Status::Down,
        Status::Error,
        Status::Timeout,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Down => "down",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Unknown => "unknown",
        }
    }

    /// Compact code used as the on-disk representation (see the store's schema).
    pub fn code(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Down => 1,
            Status::Error => 2,
            Status::Timeout => 3,
            Status::Unknown => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn is_healthy(self) -> bool {
        self == Status::Healthy
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected one of healthy, down, error, timeout, unknown")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The result of probing one target once.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub status: Status,
    /// HTTP status code of *every* answer, including errors (the replaced system lost it).
    pub status_code: Option<u16>,
    /// Milliseconds from request start to response head, sub-millisecond precision.
    pub latency_ms: Option<f64>,
    pub error_message: Option<String>,
}

impl CheckResult {
    pub fn healthy(latency_ms: f64, status_code: Option<u16>) -> Self {
        CheckResult {
            status: Status::Healthy,
            status_code,
            latency_ms: Some(latency_ms),
            error_message: None,
        }
    }

    pub fn failed(status: Status, message: impl Into<String>) -> Self {
        CheckResult {
            status,
            status_code: None,
            latency_ms: None,
            error_message: Some(message.into()),
        }
    }
}

/// A header sent with HTTP probes. The value is a secret: its `Debug` is redacted
/// so that it cannot leak through logs or error texts by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Secret,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// A string that never prints itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value; grep for it when auditing secret handling.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// HTTP method used by a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMethod {
    /// `HEAD`, falling back to `GET` when the server answers 405 or 501.
    Head,
    Get,
    Post,
}

impl ProbeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Head => "HEAD",
            ProbeMethod::Get => "GET",
            ProbeMethod::Post => "POST",
        }
    }
}

/// Which HTTP answers count as healthy. Default: 200–399.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStatus(pub Vec<(u16, u16)>);

impl Default for ExpectedStatus {
    fn default() -> Self {
        ExpectedStatus(vec![(200, 399)])
    }
}

impl ExpectedStatus {
    pub fn accepts(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

impl fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// How `INTERNAL_DNS_OVERRIDE_IP` is applied to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsOverrideMode {
    /// The replaced system's behaviour: plain HTTP to the IP, `Host` set to the original host.
    Legacy,
    /// Keep `https`; connect to the IP but use the URL's host for SNI and certificate checks.
    Tls,
}

impl DnsOverrideMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsOverrideMode::Legacy => "legacy",
            DnsOverrideMode::Tls => "tls",
        }
    }
}

/// What a target points at.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    Http(HttpTarget),
    Docker {
        container: String,
    },
    /// Not probed: the target reports in over the agent's push listener.
    Push(PushTarget),
}

/// A target that sends heartbeats (`SERVICE_URL_<name>=push://`).
#[derive(Debug, Clone, PartialEq)]
pub struct PushTarget {
    /// Expected time between pings (ignored when `schedule` is set).
    pub period: Duration,
    /// Extra time before a late target counts as down; also caps a run after `/start`.
    pub grace: Duration,
    /// Cron expression (evaluated in `TZ`), instead of `period`.
    pub schedule: Option<String>,
    pub token: Secret,
    /// The token was derived from `ADMIN_TOKEN`/`SECRET_KEY` rather than set, so
    /// `check-config` may show it (the user has no other way to learn it).
    pub token_derived: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    pub url: Url,
    pub headers: Vec<Header>,
    pub method: ProbeMethod,
    pub expected: ExpectedStatus,
    /// Connect to this IP instead of resolving the host, in the given mode.
    pub dns_override: Option<(std::net::IpAddr, DnsOverrideMode)>,
}

/// One monitored target, fully resolved from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The `<name>` of `SERVICE_URL_<name>`, case preserved.
    pub name: String,
    pub kind: TargetKind,
    pub timeout: Duration,
}

impl Target {
    /// `http`, `docker` or `push`, the dashboard's `service_type`.
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            TargetKind::Http(_) => "http",
            TargetKind::Docker { .. } => "docker",
            TargetKind::Push(_) => "push",
        }
    }

    /// The address as it may be shown and stored: never carries credentials.
    pub fn display_url(&self) -> String {
        match &self.kind {
            TargetKind::Http(h) => redact_url(&h.url),
            TargetKind::Docker { container } => format!("docker:{container}"),
            TargetKind::Push(_) => "push://".to_owned(),
        }
    }
}

/// Drops user-info (passwords) from a URL before it is shown or stored.
/// The wall clock in UTC milliseconds since the Unix epoch (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        // Setting these cannot fail on http(s) URLs, the only ones that reach here.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// Host-level measurements recorded with each cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMetrics {
    pub cpu_percent: Option<f64>,
    pub ram_percent: Option<f64>,
    pub ram_used_mb: Option<f64>,
    pub disk_percent: Option<f64>,
    pub uptime_seconds: Option<f64>,
    /// Running containers, or `None` when Docker cannot be reached.
    pub container_count: Option<i64>,
}

/// Result of the agent's own connectivity check (`PING_URL`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connectivity {
    /// `None` when the check is disabled.
    pub internet_status: Option<bool>,
    pub ping_ms: Option<f64>,
}

/// Everything one cycle produced; written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleRecord {
    /// UTC milliseconds since the Unix epoch at which the cycle started.
    pub started_at_ms: i64,
    pub host: HostMetrics,
    pub connectivity: Connectivity,
    /// HTTP code of the outbound heartbeat, when one was sent and answered.
    pub worker_status: Option<i64>,
    pub worker_error: Option<String>,
    pub cycle_duration_ms: f64,
    pub checks: Vec<TargetCheck>,
}

/// One target's result within a cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    pub target: TargetRef,
    pub result: CheckResult,
}

/// What the store needs to know about a target to file its checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetRef {
    pub name: String,
    pub kind: String,
    pub url: String,
}

impl From<&Target> for TargetRef {
    fn from(t: &Target) -> Self {
        TargetRef {
            name: t.name.clone(),
            kind: t.kind_str().to_owned(),
            url: t.display_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text_and_code() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert!("sideways".parse::<Status>().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let h = Header {
            name: "Authorization".into(),
            value: Secret::new("Bearer hunter2"),
        };
        assert!(!format!("{h:?}").contains("hunter2"));
        assert!(!format!("{}", h.value).contains("hunter2"));
    }

    #[test]
    fn urls_lose_credentials_when_shown() {
        let url = Url::parse("https://bob:pw@example.com/x").expect("valid url");
        assert_eq!(redact_url(&url), "https://example.com/x");
    }

    #[test]
    fn expected_status_ranges() {
        let e = ExpectedStatus(vec![(200, 299), (418, 418)]);
        assert!(e.accepts(204) && e.accepts(418) && !e.accepts(301));
        assert_eq!(e.to_string(), "200-299,418");
    }
}
