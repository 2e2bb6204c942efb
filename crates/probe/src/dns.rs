//! Name resolution for probes.
//!
//! The prober always installs [`SystemResolver`] so that DNS failures carry a
//! typed [`DnsError`] that the classifier can recognise, and so that
//! `FORCE_IPV4` can drop IPv6 addresses before hyper ever sees them.

use std::io;
use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a host name could not be turned into addresses we may connect to.
///
/// The `Display` form is the probe's `error_message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN / `EAI_NONAME` / `EAI_NODATA`).
    #[error("dns: no such host")]
    NoSuchHost { host: String },
    /// The name exists but has only IPv6 addresses, and IPv4 is forced.
    #[error("dns: {host} has no IPv4 address (FORCE_IPV4 is on)")]
    NoIpv4 { host: String },
    /// The resolver answered with an empty address list.
    #[error("dns: {host} has no address")]
    NoAddress { host: String },
    /// The resolver could not be reached or asked us to try again (`EAI_AGAIN`).
    #[error("dns: temporary failure resolving {host}")]
    Temporary { host: String },
    /// Any other resolver failure.
    #[error("dns: lookup of {host} failed: {reason}")]
    Other { host: String, reason: String },
}

/// Keeps the addresses a probe may use, in resolver order, without duplicates.
///
/// With `force_ipv4` only IPv4 addresses survive; a name that had addresses but
/// no IPv4 one gives [`DnsError::NoIpv4`], so the operator sees why.
pub fn select_addrs(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    force_ipv4: bool,
) -> Result<Vec<SocketAddr>, DnsError> {
    let mut seen_any = false;
    let mut kept: Vec<SocketAddr> = Vec::new();
    for addr in addrs {
        seen_any = true;
        if force_ipv4 && !addr.is_ipv4() {
            continue;
        }
        if !kept.contains(&addr) {
            kept.push(addr);
        }
    }
    if !kept.is_empty() {
        Ok(kept)
    } else if seen_any {
        Err(DnsError::NoIpv4 {
            host: host.to_owned(),
        })
    } else {
        Err(DnsError::NoAddress {
            host: host.to_owned(),
        })
    }
}

/// Maps a failed system lookup to a [`DnsError`].
///
/// `getaddrinfo` failures reach us only as text (std gives them no usable
/// `ErrorKind`), so the known glibc, musl and BSD wordings are matched here.
pub fn lookup_error(host: &str, err: &io::Error) -> DnsError {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    const NO_SUCH_HOST: [&str; 6] = [
        "name or service not known",           // glibc EAI_NONAME
        "no address associated with hostname", // glibc EAI_NODATA
        "name does not resolve",               // musl EAI_NONAME
        "nodename nor servname provided",      // BSD / macOS EAI_NONAME
        "no such host",                        // Windows and others
        "not known",
    ];
    const TEMPORARY: [&str; 3] = [
        "temporary failure in name resolution", // glibc EAI_AGAIN
        "try again",                            // musl EAI_AGAIN
        "temporary failure",
    ];
    if NO_SUCH_HOST.iter().any(|p| lower.contains(p)) {
        DnsError::NoSuchHost {
            host: host.to_owned(),
        }
    } else if TEMPORARY.iter().any(|p| lower.contains(p)) {
        DnsError::Temporary {
            host: host.to_owned(),
        }
    } else {
        let reason = text
            .strip_prefix("failed to lookup address information: ")
            .unwrap_or(&text)
            .to_owned();
        DnsError::Other {
            host: host.to_owned(),
            reason,
        }
    }
}

/// Resolves through the system resolver (`getaddrinfo`, so `/etc/hosts` is
/// honoured) and applies [`select_addrs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemResolver {
    pub(crate) force_ipv4: bool,
}

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let force_ipv4 = self.force_ipv4;
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| lookup_error(&host, &e))?;
            let kept = select_addrs(&host, found, force_ipv4)?;
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)
    }
    fn v6() -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)
    }

    #[test]
    fn dual_stack_keeps_only_ipv4_when_forced() {
        assert_eq!(
            select_addrs("h", [v6(), v4(1), v6(), v4(2)], true),
            Ok(vec![v4(1), v4(2)])
        );
    }

    #[test]
    fn dual_stack_keeps_everything_in_order_when_not_forced() {
        assert_eq!(
            select_addrs("h", [v6(), v4(1), v6()], false),
            Ok(vec![v6(), v4(1)])
        );
    }

    #[test]
    fn ipv6_only_name_is_an_explained_error_when_forced() {
        let err = select_addrs("only6.test", [v6()], true);
        assert_eq!(
            err,
            Err(DnsError::NoIpv4 {
                host: "only6.test".into()
            })
        );
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("dns: only6.test has no IPv4 address (FORCE_IPV4 is on)")
        );
        assert_eq!(select_addrs("only6.test", [v6()], false), Ok(vec![v6()]));
    }

    #[test]
    fn empty_answer_is_no_address() {
        assert_eq!(
            select_addrs("e", [], true),
            Err(DnsError::NoAddress { host: "e".into() })
        );
    }

    #[test]
    fn lookup_failures_are_classified_by_resolver_wording() {
        let nx =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(lookup_error("x", &nx).to_string(), "dns: no such host");
        let musl = io::Error::other("failed to lookup address information: Name does not resolve");
        assert_eq!(lookup_error("x", &musl).to_string(), "dns: no such host");
        let again = io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert_eq!(
            lookup_error("x", &again).to_string(),
            "dns: temporary failure resolving x"
        );
        let odd = io::Error::other("failed to lookup address information: System error");
        assert_eq!(
            lookup_error("x", &odd).to_string(),
            "dns: lookup of x failed: System error"
        );
    }
}
