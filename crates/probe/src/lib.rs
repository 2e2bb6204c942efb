//! HTTP prober for Heartbeat.
//!
//! One [`HttpProber`] holds one shared keep-alive `reqwest` client (plus a
//! second one when some hosts use the TLS-mode DNS override) and turns every
//! probe into a [`CheckResult`] with the five-way taxonomy:
//!
//! * `healthy`: an answer accepted by the target's expected statuses;
//! * `error`: any other answer (`HTTP <code>`, with the code stored);
//! * `timeout`: no response head within the timeout;
//! * `down`: refused, reset, DNS or TLS failure, with a specific message;
//! * `unknown`: the probe itself could not be made.
//!
//! Header values are secrets: they are never logged nor put in messages.

mod classify;
pub mod dns;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use heartbeat_core::{CheckResult, DnsOverrideMode, HttpTarget, ProbeMethod, Status, redact_url};
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Response, Url};
use tokio::time::Instant;
use url::Host;

pub use dns::{DnsError, select_addrs};

/// At most this much of a response body is read (and then dropped).
pub const BODY_READ_CAP: usize = 64 * 1024;

/// Idle keep-alive connections are closed after this long: below the usual
/// server-side keep-alive limits (nginx 75 s, most load balancers 60 s), so we
/// rarely reuse a connection the server is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Idle connections kept per host: one per target. Many targets often share one
/// host (everything behind one reverse proxy); capping the pool would make
/// every cycle reconnect most of them at once, a SYN burst that overflows the
/// server's accept backlog and shows up as timeouts.
const POOL_MAX_IDLE_PER_HOST: usize = usize::MAX;

/// How a prober is built.
#[derive(Debug, Clone, Default)]
pub struct ProberOptions {
    /// Connect over IPv4 only (`FORCE_IPV4`).
    pub force_ipv4: bool,
    /// Hosts probed with the TLS-mode DNS override, each with the IP to
    /// connect to. A target with `dns_override = Some((ip, Tls))` must be
    /// listed here with the same IP.
    pub tls_override_hosts: Vec<(String, IpAddr)>,
    /// Extra trusted root certificates (PEM; each entry may hold several),
    /// added to the embedded Mozilla root store.
    pub extra_root_certs_pem: Vec<Vec<u8>>,
}

/// Failure to build an [`HttpProber`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("extra root certificate #{index} is not usable PEM: {reason}")]
    InvalidRootCertificate { index: usize, reason: String },
    #[error("embedded root certificate #{index} was rejected: {reason}")]
    EmbeddedRootCertificate { index: usize, reason: String },
    #[error("TLS override host {host:?} is not a valid host name")]
    InvalidOverrideHost { host: String },
    #[error("TLS override host {host} is given two addresses ({first} and {second})")]
    ConflictingOverride {
        host: String,
        first: IpAddr,
        second: IpAddr,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Probes HTTP targets. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct HttpProber {
    client: Client,
    /// Client whose resolver pins the TLS-mode override hosts, if any.
    tls_override_client: Option<Client>,
    /// Lower-cased host → IP, as given in [`ProberOptions::tls_override_hosts`].
    tls_overrides: Arc<HashMap<String, IpAddr>>,
    force_ipv4: bool,
}

impl fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProber")
            .field("force_ipv4", &self.force_ipv4)
            .field("tls_overrides", &self.tls_overrides)
            .finish_non_exhaustive()
    }
}

impl HttpProber {
    pub fn new(opts: ProberOptions) -> Result<HttpProber, ProbeError> {
        let roots = root_certificates(&opts.extra_root_certs_pem)?;

        let mut overrides: HashMap<String, IpAddr> = HashMap::new();
        for (host, ip) in &opts.tls_override_hosts {
            let key = normalise_host(host)
                .ok_or_else(|| ProbeError::InvalidOverrideHost { host: host.clone() })?;
            match overrides.get(&key) {
                Some(first) if first != ip => {
                    return Err(ProbeError::ConflictingOverride {
                        host: key,
                        first: *first,
                        second: *ip,
                    });
                }
                _ => {
                    overrides.insert(key, *ip);
                }
            }
        }

        let client =
            build_client(opts.force_ipv4, roots.clone(), &[]).map_err(ProbeError::Client)?;
        let tls_override_client = if overrides.is_empty() {
            None
        } else {
            let pinned: Vec<(String, IpAddr)> =
                overrides.iter().map(|(h, ip)| (h.clone(), *ip)).collect();
            Some(build_client(opts.force_ipv4, roots, &pinned).map_err(ProbeError::Client)?)
        };

        Ok(HttpProber {
            client,
            tls_override_client,
            tls_overrides: Arc::new(overrides),
            force_ipv4: opts.force_ipv4,
        })
    }

    /// Probes `target` once. Never fails: every outcome is a [`CheckResult`].
    pub async fn probe(&self, target: &HttpTarget, timeout: Duration) -> CheckResult {
        let deadline = Instant::now() + timeout;
        let result = match self.plan(target) {
            Ok(plan) => self.run(&plan, target, deadline, timeout).await,
            Err(failed) => failed,
        };
        tracing::debug!(
            url = %redact_url(&target.url),
            status = %result.status,
            status_code = result.status_code,
            latency_ms = result.latency_ms,
            error = result.error_message.as_deref(),
            "http probe"
        );
        result
    }

    /// Decides which client, URL and headers a probe uses.
    fn plan(&self, target: &HttpTarget) -> Result<Plan<'_>, CheckResult> {
        let url = &target.url;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CheckResult::failed(
                Status::Unknown,
                format!("unsupported URL scheme {:?}", url.scheme()),
            ));
        }
        let Some(host) = url.host() else {
            return Err(CheckResult::failed(Status::Unknown, "URL has no host"));
        };
        let host_name = match &host {
            Host::Domain(d) => (*d).to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let headers = build_headers(target)?;

        match target.dns_override {
            None => {
                if self.force_ipv4
                    && let Host::Ipv6(ip) = host
                {
                    return Err(ipv6_forbidden(IpAddr::V6(ip)));
                }
                Ok(Plan {
                    client: &self.client,
                    url: url.clone(),
                    headers,
                    cert_host: host_name,
                })
            }
            Some((ip, DnsOverrideMode::Legacy)) => {
                if self.force_ipv4 && ip.is_ipv6() {
                    return Err(ipv6_forbidden(ip));
                }
                let (rewritten, host_header) = legacy_rewrite(url, ip).map_err(|reason| {
                    CheckResult::failed(Status::Unknown, format!("DNS override: {reason}"))
                })?;
                let mut headers = headers;
                let value = HeaderValue::from_str(&host_header).map_err(|_| {
                    CheckResult::failed(Status::Unknown, "DNS override: invalid Host header")
                })?;
                headers.insert(HOST, value);
                Ok(Plan {
                    client: &self.client,
                    url: rewritten,
                    headers,
                    cert_host: host_name,
                })
            }
            Some((ip, DnsOverrideMode::Tls)) => {
                if self.force_ipv4 && ip.is_ipv6() {
                    return Err(ipv6_forbidden(ip));
                }
                let Host::Domain(domain) = host else {
                    return Err(CheckResult::failed(
                        Status::Unknown,
                        format!(
                            "DNS override (tls mode) needs a host name, not the address {host_name}"
                        ),
                    ));
                };
                let key = domain.to_ascii_lowercase();
                match (self.tls_overrides.get(&key), &self.tls_override_client) {
                    (Some(pinned), Some(client)) if *pinned == ip => Ok(Plan {
                        client,
                        url: url.clone(),
                        headers,
                        cert_host: host_name,
                    }),
                    _ => Err(CheckResult::failed(
                        Status::Unknown,
                        format!(
                            "DNS override (tls mode) for {key} -> {ip} was not registered when the prober was built"
                        ),
                    )),
                }
            }
        }
    }

    async fn run(
        &self,
        plan: &Plan<'_>,
        target: &HttpTarget,
        deadline: Instant,
        timeout: Duration,
    ) -> CheckResult {
        let first = match target.method {
            ProbeMethod::Head => Method::HEAD,
            ProbeMethod::Get => Method::GET,
            ProbeMethod::Post => Method::POST,
        };
        let (response, latency_ms) = match send(plan, first.clone(), deadline, timeout).await {
            Ok(answer) => answer,
            Err(failed) => return failed,
        };
        let code = response.status().as_u16();
        let (response, latency_ms) = if first == Method::HEAD && (code == 405 || code == 501) {
            // Some servers refuse HEAD; ask again with GET within the same deadline.
            drop(response);
            match send(plan, Method::GET, deadline, timeout).await {
                Ok(answer) => answer,
                Err(failed) => return failed,
            }
        } else {
            (response, latency_ms)
        };

        let code = response.status().as_u16();
        drain_body(response, deadline).await;
        if target.expected.accepts(code) {
            CheckResult::healthy(latency_ms, Some(code))
        } else {
            CheckResult {
                status: Status::Error,
                status_code: Some(code),
                latency_ms: Some(latency_ms),
                error_message: Some(format!("HTTP {code}")),
            }
        }
    }
}

/// What one probe sends, and where.
struct Plan<'a> {
    client: &'a Client,
    url: Url,
    headers: HeaderMap,
    /// The name certificates are checked against (for messages).
    cert_host: String,
}

/// Sends one request and waits for the response head until `deadline`.
/// Returns the response and the latency in milliseconds.
async fn send(
    plan: &Plan<'_>,
    method: Method,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Response, f64), CheckResult> {
    let request = plan
        .client
        .request(method, plan.url.clone())
        .headers(plan.headers.clone())
        .build()
        .map_err(|_| CheckResult::failed(Status::Unknown, "could not build the request"))?;
    let started = std::time::Instant::now();
    match tokio::time::timeout_at(deadline, plan.client.execute(request)).await {
        Ok(Ok(response)) => Ok((response, started.elapsed().as_secs_f64() * 1000.0)),
        Ok(Err(err)) => {
            let (status, message) = classify::classify(&err, &plan.cert_host);
            Err(CheckResult::failed(status, message))
        }
        Err(_) => Err(CheckResult::failed(
            Status::Timeout,
            format!("timeout after {}", format_duration(timeout)),
        )),
    }
}

/// Reads at most [`BODY_READ_CAP`] bytes of the body before `deadline`, then
/// drops the rest. A body read in full lets the connection be reused.
async fn drain_body(mut response: Response, deadline: Instant) {
    let mut read = 0usize;
    while read < BODY_READ_CAP {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => read += chunk.len(),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        }
    }
}

fn ipv6_forbidden(ip: IpAddr) -> CheckResult {
    CheckResult::failed(
        Status::Down,
        format!("IPv6 address {ip} cannot be used (FORCE_IPV4 is on)"),
    )
}

/// The target's custom headers. Values are marked sensitive and never shown.
fn build_headers(target: &HttpTarget) -> Result<HeaderMap, CheckResult> {
    let mut map = HeaderMap::with_capacity(target.headers.len() + 1);
    for header in &target.headers {
        let name = HeaderName::from_bytes(header.name.trim().as_bytes()).map_err(|_| {
            CheckResult::failed(
                Status::Unknown,
                format!("invalid header name {:?}", header.name),
            )
        })?;
        let mut value = HeaderValue::from_str(header.value.expose().trim()).map_err(|_| {
            CheckResult::failed(
                Status::Unknown,
                format!(
                    "invalid value for header {} (value not shown)",
                    header.name.trim()
                ),
            )
        })?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// The replaced system's DNS override: plain HTTP to `ip`, keeping the path
/// and query, on the URL's explicit port or else 80. Returns the new URL and
/// the `Host` header (`<original host>[:<explicit port>]`).
pub fn legacy_rewrite(url: &Url, ip: IpAddr) -> Result<(Url, String), String> {
    let host = url
        .host_str()
        .ok_or_else(|| "URL has no host".to_owned())?
        .to_owned();
    let explicit_port = url.port();
    let host_header = match explicit_port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let mut out = url.clone();
    out.set_fragment(None);
    out.set_scheme("http")
        .map_err(|()| "cannot switch the URL to http".to_owned())?;
    out.set_ip_host(ip)
        .map_err(|()| "cannot put the address in the URL".to_owned())?;
    // `set_port(Some(80))` on http stores no port, which is what we want.
    out.set_port(Some(explicit_port.unwrap_or(80)))
        .map_err(|()| "cannot set the port".to_owned())?;
    Ok((out, host_header))
}

/// "2 s", "1.5 s", "500 ms", "1.25 ms".
pub fn format_duration(d: Duration) -> String {
    fn trim(value: f64) -> String {
        let text = format!("{value:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_owned()
    }
    if d >= Duration::from_secs(1) {
        format!("{} s", trim(d.as_secs_f64()))
    } else {
        format!("{} ms", trim(d.as_secs_f64() * 1000.0))
    }
}

/// Lower-cases a host name and checks that it is one.
fn normalise_host(host: &str) -> Option<String> {
    let trimmed = host.trim().trim_end_matches('.');
    match Host::parse(trimmed) {
        Ok(Host::Domain(d)) => Some(d.to_ascii_lowercase()),
        _ => None,
    }
}

/// Embedded Mozilla roots plus the caller's extra roots.
fn root_certificates(extra_pem: &[Vec<u8>]) -> Result<Vec<reqwest::Certificate>, ProbeError> {
    let mut roots =
        Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + extra_pem.len());
    for (index, der) in webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().enumerate() {
        let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| {
            ProbeError::EmbeddedRootCertificate {
                index,
                reason: e.to_string(),
            }
        })?;
        roots.push(cert);
    }
    for (index, pem) in extra_pem.iter().enumerate() {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            ProbeError::InvalidRootCertificate {
                index,
                reason: e.to_string(),
            }
        })?;
        if certs.is_empty() {
            return Err(ProbeError::InvalidRootCertificate {
                index,
                reason: "no certificate found".to_owned(),
            });
        }
        roots.extend(certs);
    }
    Ok(roots)
}

fn build_client(
    force_ipv4: bool,
    roots: Vec<reqwest::Certificate>,
    pinned: &[(String, IpAddr)],
) -> Result<Client, reqwest::Error> {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .user_agent(concat!("heartbeat-probe/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(dns::SystemResolver { force_ipv4 }))
        .tls_certs_only(roots);
    if force_ipv4 {
        // Belt and braces: with only an IPv4 local address, hyper-util drops
        // any IPv6 remote address, whatever produced it.
        builder = builder.local_address(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    for (host, ip) in pinned {
        // Port 0: the URL's port is used (curl --resolve semantics).
        builder = builder.resolve(host, SocketAddr::new(*ip, 0));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }
    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn legacy_rewrite_drops_tls_and_defaults_to_port_80() {
        let (u, host) =
            legacy_rewrite(&url("https://app.example.com/health?x=1#frag"), IP).expect("rewrite");
        assert_eq!(u.as_str(), "http://10.0.0.7/health?x=1");
        assert_eq!(host, "app.example.com");
    }

    #[test]
    fn legacy_rewrite_keeps_an_explicit_port() {
        let (u, host) =
            legacy_rewrite(&url("https://app.example.com:8443/h"), IP).expect("rewrite");
        assert_eq!(u.as_str(), "http://10.0.0.7:8443/h");
        assert_eq!(host, "app.example.com:8443");
    }

    #[test]
    fn legacy_rewrite_handles_ipv6_override() {
        let (u, _) = legacy_rewrite(
            &url("http://app.example.com/"),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        )
        .expect("rewrite");
        assert_eq!(u.as_str(), "http://[::1]/");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500 ms");
        assert_eq!(format_duration(Duration::from_micros(1250)), "1.25 ms");
    }

    #[test]
    fn override_hosts_are_normalised() {
        assert_eq!(
            normalise_host("App.Example.COM."),
            Some("app.example.com".into())
        );
        assert_eq!(normalise_host("10.0.0.1"), None);
        assert_eq!(normalise_host(""), None);
    }

    #[test]
    fn conflicting_overrides_are_rejected() {
        let opts = ProberOptions {
            tls_override_hosts: vec![
                ("a.test".into(), IP),
                ("A.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            ..ProberOptions::default()
        };
        assert!(matches!(
            HttpProber::new(opts),
            Err(ProbeError::ConflictingOverride { .. })
        ));
    }

    #[test]
    fn bad_extra_root_is_reported() {
        let opts = ProberOptions {
            extra_root_certs_pem: vec![b"not a certificate".to_vec()],
            ..ProberOptions::default()
        };
        assert!(matches!(
            HttpProber::new(opts),
            Err(ProbeError::InvalidRootCertificate { index: 0, .. })
        ));
    }

    #[test]
    fn prober_builds_without_a_ca_bundle() {
        // Roots are embedded; nothing is read from the file system.
        assert!(HttpProber::new(ProberOptions::default()).is_ok());
    }
}
