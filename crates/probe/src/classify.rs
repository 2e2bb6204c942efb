//! Turns a failed request into the taxonomy's status and a specific message.
//!
//! reqwest wraps the real cause several layers deep (reqwest → hyper-util →
//! connector → `io::Error` → rustls / our resolver), so the chain is walked and
//! each link downcast. `io::Error::source()` skips the error it wraps, so the
//! walk steps into `io::Error::get_ref()` explicitly.

use std::error::Error as StdError;
use std::io;

use heartbeat_core::Status;
use rustls::CertificateError;

use crate::dns::DnsError;

/// The next link of an error chain, looking inside `io::Error` wrappers.
fn next_link<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = err.downcast_ref::<io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    err.source()
}

/// Status and message for a request that produced no HTTP answer.
///
/// `host` is the host the certificate was checked against (the URL's host).
pub(crate) fn classify(err: &reqwest::Error, host: &str) -> (Status, String) {
    if err.is_builder() {
        return (Status::Unknown, "could not build the request".to_owned());
    }
    let mut io_kind: Option<io::ErrorKind> = None;
    let mut hyper_hint: Option<&'static str> = None;
    let mut deepest: Option<String> = None;

    let mut link: Option<&(dyn StdError + 'static)> = Some(err);
    // A chain is finite, but a cap guards against a pathological cycle.
    let mut steps = 0;
    while let Some(e) = link {
        steps += 1;
        if steps > 32 {
            break;
        }
        if let Some(dns) = e.downcast_ref::<DnsError>() {
            return (Status::Down, dns.to_string());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return (Status::Down, tls_message(tls, host));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // The deepest kind wins: outer wrappers tend to be generic.
            if io.kind() != io::ErrorKind::Other {
                io_kind = Some(io.kind());
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                hyper_hint = Some("connection closed before a response");
            } else if h.is_parse() || h.is_parse_status() {
                hyper_hint = Some("invalid HTTP response");
            } else if h.is_closed() || h.is_canceled() {
                hyper_hint.get_or_insert("connection closed before a response");
            }
        }
        // reqwest's own layer prints the URL (which may hold credentials); skip it.
        if e.downcast_ref::<reqwest::Error>().is_none() {
            deepest = Some(e.to_string());
        }
        link = next_link(e);
    }

    if let Some(found) = io_kind.and_then(io_kind_message) {
        return found;
    }
    if let Some(hint) = hyper_hint {
        return (Status::Down, hint.to_owned());
    }
    let detail = deepest.unwrap_or_else(|| "unexpected error".to_owned());
    if err.is_connect() {
        (Status::Down, format!("connection failed: {detail}"))
    } else {
        (Status::Down, format!("request failed: {detail}"))
    }
}

fn io_kind_message(kind: io::ErrorKind) -> Option<(Status, String)> {
    use io::ErrorKind as K;
    let msg = match kind {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::BrokenPipe => "connection closed by peer (broken pipe)",
        K::UnexpectedEof => "connection closed before a response",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::NetworkDown => "network down",
        K::AddrNotAvailable => "address not available",
        K::PermissionDenied => "connection not permitted",
        K::TimedOut => return Some((Status::Timeout, "connect timed out".to_owned())),
        _ => return None,
    };
    Some((Status::Down, msg.to_owned()))
}

/// A short, specific message for a TLS failure.
pub(crate) fn tls_message(err: &rustls::Error, host: &str) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "tls: certificate expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "tls: certificate not yet valid".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("tls: certificate not valid for {host}")
            }
            CertificateError::UnknownIssuer => "tls: unknown issuer".to_owned(),
            CertificateError::Revoked => "tls: certificate revoked".to_owned(),
            CertificateError::BadSignature => "tls: bad certificate signature".to_owned(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "tls: certificate not valid for server authentication".to_owned()
            }
            CertificateError::BadEncoding => "tls: malformed certificate".to_owned(),
            _ => format!("tls: {err}"),
        },
        rustls::Error::AlertReceived(alert) => format!("tls: server sent alert {alert:?}"),
        rustls::Error::NoCertificatesPresented => "tls: server presented no certificate".to_owned(),
        _ => format!("tls: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_have_specific_messages() {
        let h = "svc.example";
        let cases = [
            (CertificateError::Expired, "tls: certificate expired"),
            (CertificateError::UnknownIssuer, "tls: unknown issuer"),
            (
                CertificateError::NotValidForName,
                "tls: certificate not valid for svc.example",
            ),
            (
                CertificateError::NotValidYet,
                "tls: certificate not yet valid",
            ),
            (CertificateError::Revoked, "tls: certificate revoked"),
        ];
        for (cert, want) in cases {
            assert_eq!(
                tls_message(&rustls::Error::InvalidCertificate(cert), h),
                want
            );
        }
    }

    #[test]
    fn io_kinds_map_to_down_or_timeout() {
        assert_eq!(
            io_kind_message(io::ErrorKind::ConnectionRefused),
            Some((Status::Down, "connection refused".to_owned()))
        );
        assert_eq!(
            io_kind_message(io::ErrorKind::TimedOut).map(|(s, _)| s),
            Some(Status::Timeout)
        );
        assert_eq!(io_kind_message(io::ErrorKind::Other), None);
    }

    #[test]
    fn chain_walk_looks_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, inner);
        // `io::Error::source()` would skip the rustls error; `next_link` must not.
        let next = next_link(&io);
        assert!(next.is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some()));
    }
}
