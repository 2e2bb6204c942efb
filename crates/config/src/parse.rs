//! Field parsers. Each records a [`ConfigError`] naming its variable and returns a
//! default, so that one pass finds every mistake.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use heartbeat_core::{
    DnsOverrideMode, ExpectedStatus, Header, HttpTarget, ProbeMethod, Secret, Target, TargetKind,
    Url,
};
use jiff::tz::TimeZone;

use crate::{ConfigError, DnsOverride};

/// Shortest interval or timeout accepted; below this the numbers are almost surely typos.
const MIN_SECONDS: f64 = 0.05;
/// Longest accepted, one day; it keeps `Duration` arithmetic far from overflow.
const MAX_SECONDS: f64 = 86_400.0;

pub(crate) const URL_PREFIX: &str = "SERVICE_URL_";
/// Per-target variables, `<PREFIX><name>`. Longer prefixes first: matching is by prefix.
pub(crate) const PER_TARGET_PREFIXES: &[&str] = &[
    "SERVICE_TIMEOUT_SECONDS_",
    "SERVICE_EXPECTED_STATUS_",
    "SERVICE_DNS_OVERRIDE_",
    "SERVICE_HEADERS_",
    "SERVICE_METHOD_",
    "SERVICE_SCHEDULE_",
    "SERVICE_PERIOD_",
    "SERVICE_GRACE_",
    "SERVICE_TOKEN_",
];
/// Options that only mean something for push targets.
const PUSH_ONLY: &[&str] = &[
    "SERVICE_SCHEDULE_",
    "SERVICE_PERIOD_",
    "SERVICE_GRACE_",
    "SERVICE_TOKEN_",
];

pub(crate) struct Reader<'a> {
    env: &'a BTreeMap<String, String>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(env: &'a BTreeMap<String, String>, errors: &'a mut Vec<ConfigError>) -> Self {
        Reader { env, errors }
    }

    /// The trimmed value, or `None` when unset or blank.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.env
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    /// A secret value; it is never echoed in errors.
    pub(crate) fn secret(&mut self, key: &str) -> Option<Secret> {
        self.get(key).map(Secret::new)
    }

    pub(crate) fn string(&mut self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    pub(crate) fn non_empty(&mut self, key: &str) -> Option<String> {
        self.get(key).map(str::to_owned)
    }

    pub(crate) fn seconds(&mut self, key: &str, default: f64) -> Duration {
        match self.get(key) {
            None => Duration::from_secs_f64(default),
            Some(raw) => match parse_seconds(raw) {
                Ok(d) => d,
                Err(msg) => {
                    self.error(key, msg);
                    Duration::from_secs_f64(default)
                }
            },
        }
    }

    pub(crate) fn positive_int(&mut self, key: &str, default: u32) -> u32 {
        match self.get(key) {
            None => default,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error(
                        key,
                        format!("expected a whole number of at least 1, got {raw:?}"),
                    );
                    default
                }
            },
        }
    }

    pub(crate) fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(raw) => parse_bool(raw).unwrap_or_else(|| {
                self.error(key, format!("expected true or false, got {raw:?}"));
                default
            }),
        }
    }

    pub(crate) fn time_zone(&mut self, key: &str) -> (TimeZone, String) {
        let name = self.get(key).unwrap_or("UTC");
        // POSIX allows a leading ':' ("TZ=:Europe/Paris").
        let name = name.strip_prefix(':').unwrap_or(name);
        match TimeZone::get(name) {
            Ok(tz) => (tz, name.to_owned()),
            Err(_) => {
                self.error(
                    key,
                    format!("unknown time zone {name:?}; use an IANA name such as Europe/Madrid or America/Lima"),
                );
                (TimeZone::UTC, "UTC".to_owned())
            }
        }
    }

    /// A URL with a default; an explicitly empty value disables the feature.
    pub(crate) fn optional_url(&mut self, key: &str, default: &str) -> Option<Url> {
        let raw = match self.env.get(key) {
            None => default,
            Some(v) if v.trim().is_empty() => return None,
            Some(v) => v.trim(),
        };
        match parse_http_url(raw) {
            Ok(url) => Some(url),
            Err(msg) => {
                self.error(key, msg);
                None
            }
        }
    }

    pub(crate) fn dns_override(&mut self) -> Option<DnsOverride> {
        const IP: &str = "INTERNAL_DNS_OVERRIDE_IP";
        const MODE: &str = "INTERNAL_DNS_OVERRIDE_MODE";
        const HOSTS: &str = "INTERNAL_DNS_OVERRIDE_HOSTS";
        let mode = match self.get(MODE) {
            None => DnsOverrideMode::Legacy,
            Some(m) if m.eq_ignore_ascii_case("legacy") => DnsOverrideMode::Legacy,
            Some(m) if m.eq_ignore_ascii_case("tls") => DnsOverrideMode::Tls,
            Some(m) => {
                self.error(MODE, format!("expected legacy or tls, got {m:?}"));
                DnsOverrideMode::Legacy
            }
        };
        let hosts = self.get(HOSTS).map(|h| {
            h.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        let raw_ip = self.get(IP)?;
        match raw_ip.parse::<IpAddr>() {
            Ok(ip) => Some(DnsOverride { ip, mode, hosts }),
            Err(_) => {
                self.error(IP, format!("expected an IP address, got {raw_ip:?}"));
                None
            }
        }
    }
}

pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub(crate) fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {raw:?}"))?;
    if !value.is_finite() || !(MIN_SECONDS..=MAX_SECONDS).contains(&value) {
        return Err(format!(
            "expected between {MIN_SECONDS} and {MAX_SECONDS} seconds, got {raw:?}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

pub(crate) fn parse_http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a valid URL ({e}): {raw:?}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err(format!("URL has no host: {raw:?}")),
        other => Err(format!(
            "unsupported scheme {other:?}; expected http:// or https://"
        )),
    }
}

fn parse_method(raw: &str) -> Result<ProbeMethod, String> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "HEAD" => Ok(ProbeMethod::Head),
        "GET" => Ok(ProbeMethod::Get),
        "POST" => Ok(ProbeMethod::Post),
        _ => Err(format!("expected HEAD, GET or POST, got {raw:?}")),
    }
}

/// `"200-299,418"`: single codes and inclusive ranges of HTTP status codes.
pub(crate) fn parse_expected_status(raw: &str) -> Result<ExpectedStatus, String> {
    let mut ranges = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let code = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    format!("{part:?} is not an HTTP status code or range (100-599, e.g. 200-299)")
                })
        };
        let (lo, hi) = (code(lo)?, code(hi)?);
        if lo > hi {
            return Err(format!("range {part:?} is backwards"));
        }
        ranges.push((lo, hi));
    }
    if ranges.is_empty() {
        return Err("expected status codes such as 200-299,301".into());
    }
    Ok(ExpectedStatus(ranges))
}

/// `"K:V,K:V"`, split on `,` then on the first `:` (values may hold `:`).
/// Error texts never repeat a value: header values are secrets.
pub(crate) fn parse_headers(raw: &str) -> Result<Vec<Header>, String> {
    let mut headers = Vec::new();
    for (index, entry) in raw.split(',').enumerate() {
        let position = index + 1;
        if entry.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = entry.split_once(':') else {
            return Err(format!(
                "entry {position} has no ':' (expected Name:Value,Name:Value)"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("entry {position} has an empty header name"));
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "entry {position}: {name:?} is not a valid header name"
            ));
        }
        let value = value.trim();
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "entry {position} ({name}): the value holds characters a header cannot carry"
            ));
        }
        headers.push(Header {
            name: name.to_owned(),
            value: Secret::new(value),
        });
    }
    Ok(headers)
}

/// The address a target points at, without its per-target options.
enum Address {
    Http(Url),
    Docker(String),
    Push,
}

/// What a `docker:<container>` address starts with (after trimming).
const DOCKER_SCHEME: &str = "docker:";

fn parse_address(raw: &str) -> Result<Address, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(
            "empty value; expected http://, https://, docker:<container> or push://".into(),
        );
    }
    if raw.eq_ignore_ascii_case("push://") || raw.eq_ignore_ascii_case("push:") {
        return Ok(Address::Push);
    }
    if let Some(container) = raw.strip_prefix(DOCKER_SCHEME) {
        let container = container.trim().trim_start_matches("//");
        if container.is_empty() {
            return Err("docker: needs a container name or id, e.g. docker:nginx".into());
        }
        if !container
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("{container:?} is not a valid container name or id"));
        }
        return Ok(Address::Docker(container.to_owned()));
    }
    if let Some((scheme, _)) = raw.split_once(':')
        && !scheme.eq_ignore_ascii_case("http")
        && !scheme.eq_ignore_ascii_case("https")
    {
        return Err(format!(
            "unsupported scheme {scheme:?}; expected http://, https://, docker:<container> or push://"
        ));
    }
    parse_http_url(raw).map(Address::Http)
}

/// Whether the override is meant for this URL: exact host match, IP literals excluded.
fn override_applies(url: &Url, o: &DnsOverride) -> bool {
    let Some(url::Host::Domain(host)) = url.host() else {
        return false;
    };
    match &o.hosts {
        None => true,
        Some(hosts) => hosts.iter().any(|h| h.eq_ignore_ascii_case(host)),
    }
}

/// The per-target options of an HTTP target; a malformed one is reported and its default used.
struct HttpOptions {
    headers: Vec<Header>,
    method: ProbeMethod,
    expected: ExpectedStatus,
    use_override: bool,
}

fn http_options(
    option: &dyn Fn(&str) -> (String, Option<String>),
    fail: &mut dyn FnMut(&str, String),
) -> HttpOptions {
    let headers = match option("SERVICE_HEADERS_") {
        (var, Some(v)) => parse_headers(&v).unwrap_or_else(|m| {
            fail(&var, m);
            Vec::new()
        }),
        (_, None) => Vec::new(),
    };
    let method = match option("SERVICE_METHOD_") {
        (var, Some(v)) => parse_method(&v).unwrap_or_else(|m| {
            fail(&var, m);
            ProbeMethod::Head
        }),
        (_, None) => ProbeMethod::Head,
    };
    let expected = match option("SERVICE_EXPECTED_STATUS_") {
        (var, Some(v)) => parse_expected_status(&v).unwrap_or_else(|m| {
            fail(&var, m);
            ExpectedStatus::default()
        }),
        (_, None) => ExpectedStatus::default(),
    };
    let use_override = match option("SERVICE_DNS_OVERRIDE_") {
        (var, Some(v)) => parse_bool(&v).unwrap_or_else(|| {
            fail(&var, format!("expected true or false, got {v:?}"));
            true
        }),
        (_, None) => true,
    };
    HttpOptions {
        headers,
        method,
        expected,
        use_override,
    }
}

pub(crate) fn targets(
    env: &BTreeMap<String, String>,
    default_timeout: Duration,
    dns_override: Option<&DnsOverride>,
    derive_key: Option<&Secret>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for (key, raw) in env.range(URL_PREFIX.to_owned()..) {
        let Some(name) = key.strip_prefix(URL_PREFIX) else {
            break; // BTreeMap order: past the prefix, nothing more matches.
        };
        if name.is_empty() {
            errors.push(ConfigError::new(
                key,
                "the target name after SERVICE_URL_ is empty",
            ));
            continue;
        }
        let option = |prefix: &str| target_option(env, prefix, name);
        let mut fail = |var: &str, msg: String| errors.push(ConfigError::new(var, msg));

        let timeout = match option("SERVICE_TIMEOUT_SECONDS_") {
            (var, Some(v)) => parse_seconds(&v).unwrap_or_else(|m| {
                fail(&var, m);
                default_timeout
            }),
            (_, None) => default_timeout,
        };
        let address = parse_address(raw);
        if !matches!(address, Ok(Address::Push)) {
            for prefix in PUSH_ONLY {
                if let (var, Some(_)) = option(prefix) {
                    fail(
                        &var,
                        format!("only applies to push targets, but {key} is not push://"),
                    );
                }
            }
        }
        let kind = match address {
            Err(msg) => {
                fail(key, msg);
                // Still check the HTTP options, so every mistake is reported at once
                // rather than one more after each fix.
                if !raw.trim().starts_with(DOCKER_SCHEME) {
                    http_options(&option, &mut fail);
                }
                continue;
            }
            Ok(Address::Push) => {
                for prefix in PER_TARGET_PREFIXES
                    .iter()
                    .filter(|p| !PUSH_ONLY.contains(p))
                {
                    if let (var, Some(_)) = option(prefix) {
                        fail(
                            &var,
                            format!("does not apply to push targets, but {key} is push://"),
                        );
                    }
                }
                TargetKind::Push(crate::push::target(name, env, derive_key, errors))
            }
            Ok(Address::Docker(container)) => {
                for prefix in PER_TARGET_PREFIXES
                    .iter()
                    .filter(|p| **p != "SERVICE_TIMEOUT_SECONDS_" && !PUSH_ONLY.contains(p))
                {
                    if let (var, Some(_)) = option(prefix) {
                        fail(
                            &var,
                            format!("only applies to HTTP targets, but {key} is a docker: target"),
                        );
                    }
                }
                TargetKind::Docker { container }
            }
            Ok(Address::Http(url)) => {
                let HttpOptions {
                    headers,
                    method,
                    expected,
                    use_override,
                } = http_options(&option, &mut fail);
                let dns_override = dns_override
                    .filter(|o| use_override && override_applies(&url, o))
                    .map(|o| (o.ip, o.mode));
                TargetKind::Http(HttpTarget {
                    url,
                    headers,
                    method,
                    expected,
                    dns_override,
                })
            }
        };
        targets.push(Target {
            name: name.to_owned(),
            kind,
            timeout,
        });
    }

    // A per-target option for a target that does not exist is almost always a typo
    // in the name; saying so beats silently probing without the header.
    for key in env.keys() {
        for prefix in PER_TARGET_PREFIXES {
            if let Some(name) = key.strip_prefix(prefix)
                && !env.contains_key(&format!("{URL_PREFIX}{name}"))
            {
                errors.push(ConfigError::new(
                    key,
                    format!("there is no {URL_PREFIX}{name} for this option to apply to (names are case-sensitive)"),
                ));
            }
        }
    }
    targets
}

/// The per-target variable `<prefix><name>` and its trimmed value, `None` when unset or blank.
pub(crate) fn target_option(
    env: &BTreeMap<String, String>,
    prefix: &str,
    name: &str,
) -> (String, Option<String>) {
    let var = format!("{prefix}{name}");
    let value = env
        .get(&var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    (var, value)
}
