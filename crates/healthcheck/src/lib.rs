//! The body of each binary's `healthcheck` subcommand.
//!
//! The runtime images hold nothing but the binary (no shell, no curl), so Docker's
//! `HEALTHCHECK` runs the binary itself: `heartbeat-dashboard healthcheck` GETs its
//! own `/health` over loopback and exits 0 on a 2xx answer, 1 otherwise. Plain
//! HTTP/1.1 over a std `TcpStream`: no async runtime, no HTTP client, no TLS stack
//! is started for a probe that runs every few seconds.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long one probe may take in all (connect, write, read the status line).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} did not answer HTTP: {line:?}")]
    NotHttp { addr: SocketAddr, line: String },
    #[error("GET {path} on {addr} answered {code}")]
    Status {
        addr: SocketAddr,
        path: String,
        code: u16,
    },
    /// A check that is not an HTTP request failed (e.g. the agent's database is stale).
    #[error("{0}")]
    Other(String),
}

/// The address to probe for a listen address: a wildcard (`0.0.0.0`, `::`) becomes the
/// loopback address of the same family; a specific address is probed as it is.
pub fn loopback(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// What each binary's `healthcheck` does: `GET path` (within [`TIMEOUT`]) on the loopback
/// address of `listen`, described for [`report`].
pub fn probe(listen: SocketAddr, path: &str) -> Result<String, HealthError> {
    let addr = loopback(listen);
    http_get(addr, path, TIMEOUT).map(|code| format!("GET {path} on {addr}: {code}"))
}

/// `GET path` on `addr`; `Ok` with the status code when it is 2xx.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, HealthError> {
    let io = |source| HealthError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| HealthError::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: heartbeat-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need; read until its end (or the peer closes).
    let mut head = Vec::with_capacity(128);
    let mut buf = [0_u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let code = parse_status_line(line).ok_or_else(|| HealthError::NotHttp {
        addr,
        line: line.chars().take(80).collect(),
    })?;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(HealthError::Status {
            addr,
            path: path.to_owned(),
            code,
        })
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

/// Prints the outcome (stdout when healthy, stderr otherwise; Docker keeps both in
/// `docker inspect`) and turns it into the exit code Docker expects: 0 healthy, 1 not.
pub fn report(program: &str, outcome: Result<String, HealthError>) -> ExitCode {
    match outcome {
        Ok(what) => {
            println!("{program}: healthy: {what}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server on 127.0.0.1:0 that answers `answer` to the first request
    /// and hands back what it received.
    fn serve_once(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0_u8; 512];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_request_is_a_plain_get() {
        let (addr, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let code = http_get(addr, "/health", TIMEOUT).expect("healthy");
        assert_eq!(code, 200);
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Connection: close"), "{request}");
    }

    #[test]
    fn a_503_answer_is_unhealthy_with_the_code() {
        let (addr, server) = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = http_get(addr, "/health", TIMEOUT).expect_err("unhealthy");
        assert!(
            matches!(err, HealthError::Status { code: 503, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("answered 503"), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        };
        let err = http_get(addr, "/health", TIMEOUT).expect_err("refused");
        assert!(matches!(err, HealthError::Connect { .. }), "{err}");
    }

    #[test]
    fn garbage_is_not_http() {
        let (addr, server) = serve_once("SSH-2.0-OpenSSH\r\n");
        let err = http_get(addr, "/", TIMEOUT).expect_err("not http");
        assert!(matches!(err, HealthError::NotHttp { .. }), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8100".parse().expect("addr");
        let v6: SocketAddr = "[::]:8100".parse().expect("addr");
        let specific: SocketAddr = "127.0.0.2:8099".parse().expect("addr");
        assert_eq!(loopback(v4).to_string(), "127.0.0.1:8100");
        assert_eq!(loopback(v6).to_string(), "[::1]:8100");
        assert_eq!(loopback(specific), specific);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line("HTTP/1.1 abc"), None);
        assert_eq!(parse_status_line("HTTP/1.1 999 x"), None);
        assert_eq!(parse_status_line(""), None);
    }
}
