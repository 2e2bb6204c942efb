//! Simulated services: one listener per service, a minimal HTTP/1.1 responder per connection.
//!
//! The responder is written by hand (rather than with hyper) because the modes need
//! control below HTTP: never answering, resetting the connection, trickling the body.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::mode::{Effective, Mode};
use crate::state::{ApiError, Mock, ServiceEntry, validate_name};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read and discarded to keep a connection alive.
const MAX_BODY: u64 = 1024 * 1024;
/// A connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(120);
/// Bytes of the slow body.
pub const SLOW_BODY_BYTES: usize = 16;
/// When a port cannot be bound again (someone else took it), retry this often.
const REBIND_RETRY: Duration = Duration::from_millis(500);

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Rebinding after "down" must not fail because of connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Mock {
    /// Creates a service on `port` (0: the OS picks one) and starts its task.
    pub async fn create_service(
        self: &Arc<Self>,
        name: &str,
        port: u16,
        mode: Mode,
    ) -> Result<crate::state::ServiceView, ApiError> {
        validate_name(name)?;
        let exists = || {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("name: a service named {name:?} already exists"),
            )
        };
        if self.lock().services.contains_key(name) {
            return Err(exists());
        }
        let addr = SocketAddr::new(self.bind, port);
        let listener = bind(addr).map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("port: cannot listen on {addr}: {e}"),
            )
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .port();
        let (control, control_rx) = watch::channel(0u64);
        {
            let mut inner = self.lock();
            if inner.services.contains_key(name) {
                return Err(exists());
            }
            inner.services.insert(
                name.to_owned(),
                ServiceEntry {
                    port,
                    mode,
                    mode_since: Instant::now(),
                    requests: 0,
                    listening: true,
                    control,
                },
            );
            inner.push_log(
                "api",
                format!(
                    "{name}: created on {} ({})",
                    SocketAddr::new(self.bind, port),
                    mode.describe()
                ),
            );
        }
        tokio::spawn(run_service(
            self.clone(),
            name.to_owned(),
            SocketAddr::new(self.bind, port),
            listener,
            control_rx,
        ));
        self.service(name)
            .ok_or_else(|| crate::state::not_found(name))
    }

    fn mode_of(&self, name: &str) -> Option<(Mode, Instant)> {
        self.lock()
            .services
            .get(name)
            .map(|s| (s.mode, s.mode_since))
    }

    fn set_listening(&self, name: &str, listening: bool, message: String) {
        let mut inner = self.lock();
        if let Some(s) = inner.services.get_mut(name) {
            s.listening = listening;
        }
        inner.push_log(name, message);
    }

    /// Counts a request and logs what the service does with it.
    fn record_request(&self, name: &str, request: &str, outcome: &str) {
        let mut inner = self.lock();
        if let Some(s) = inner.services.get_mut(name) {
            s.requests += 1;
        }
        inner.push_log(name, format!("{request} -> {outcome}"));
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Owns a service's listener: opens and closes it as the mode (or the flapping phase)
/// requires, and hands connections to [`serve_connection`]. Ends when the service is deleted.
async fn run_service(
    mock: Arc<Mock>,
    name: String,
    addr: SocketAddr,
    listener: TcpListener,
    mut control: watch::Receiver<u64>,
) {
    // Connections watch this; bumping it (or dropping it) closes them all.
    let (close_tx, _) = watch::channel(0u64);
    let mut listener = Some(listener);
    let mut retry_at: Option<Instant> = None;
    loop {
        if control.has_changed().is_err() {
            return; // deleted
        }
        let Some((mode, since)) = mock.mode_of(&name) else {
            return;
        };
        let now = Instant::now();
        let (effective, next_flip) = mode.effective(since, now);
        match effective {
            Effective::Down => {
                if listener.take().is_some() {
                    close_tx.send_modify(|g| *g += 1);
                    mock.set_listening(&name, false, format!("listener on {addr} closed"));
                }
                retry_at = None;
            }
            Effective::Up(_) => {
                if listener.is_none() && retry_at.is_none_or(|t| t <= now) {
                    match bind(addr) {
                        Ok(l) => {
                            listener = Some(l);
                            retry_at = None;
                            mock.set_listening(&name, true, format!("listening on {addr}"));
                        }
                        Err(e) => {
                            retry_at = Some(now + REBIND_RETRY);
                            mock.log(&name, format!("cannot listen on {addr} again: {e}"));
                        }
                    }
                }
            }
        }
        let wake = match (next_flip, retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new mode applies to new connections only: close the old ones
                // (a keep-alive connection must not outlive "down").
                close_tx.send_modify(|g| *g += 1);
            }
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(mock.clone(), name.clone(), stream, peer, close_tx.subscribe()));
                }
                Err(e) => {
                    tracing::warn!(service = %name, error = %e, "accept failed");
                    // EMFILE and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = sleep_until(wake) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn connection(
    mock: Arc<Mock>,
    name: String,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut close: watch::Receiver<u64>,
) {
    let _ = stream.set_nodelay(true);
    tokio::select! {
        _ = close.changed() => {}
        r = serve_connection(&mock, &name, &mut stream, peer) => {
            if let Err(e) = r {
                tracing::debug!(service = %name, error = %e, "connection ended");
            }
        }
    }
    // Dropped here: FIN, or RST when the reset mode set a zero linger.
}

/// A parsed request head.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    keep_alive: bool,
    content_length: u64,
    chunked: bool,
}

enum HeadError {
    Closed,
    TooLarge,
    Malformed(String),
    Io(io::Error),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, HeadError> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(HeadError::Io(e)),
            Err(_) => return Err(HeadError::Closed),
        };
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("malformed request line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed(format!(
            "unsupported version {version:?}"
        )));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut content_length = 0u64;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(HeadError::Malformed("malformed header line".into()));
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = v
                    .parse()
                    .map_err(|_| HeadError::Malformed("invalid content-length".into()))?;
            }
            "connection" => {
                let v = v.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            "transfer-encoding" => chunked = true,
            _ => {}
        }
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.chars().take(200).collect(),
        keep_alive,
        content_length,
        chunked,
    })
}

/// Reads and drops `n` body bytes (part of them may already be in `buf`).
async fn discard_body(stream: &mut TcpStream, buf: &mut Vec<u8>, n: u64) -> io::Result<()> {
    let from_buf = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    buf.drain(..from_buf);
    let mut left = n - from_buf as u64;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(chunk.len())
            .min(chunk.len());
        let got = stream.read(&mut chunk[..want]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= got as u64;
    }
    Ok(())
}

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Unknown")
}

fn response_head(code: u16, name: &str, len: usize, keep_alive: bool, extra: &str) -> String {
    format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\
         x-mock-service: {name}\r\n{extra}connection: {}\r\n\r\n",
        reason(code),
        if keep_alive { "keep-alive" } else { "close" }
    )
}

async fn respond(
    stream: &mut TcpStream,
    head: &Head,
    name: &str,
    code: u16,
    keep_alive: bool,
    extra: &str,
) -> io::Result<()> {
    let body = serde_json::json!({ "service": name, "status": code }).to_string();
    let mut out = response_head(code, name, body.len(), keep_alive, extra);
    if head.method != "HEAD" {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes()).await
}

async fn serve_connection(
    mock: &Mock,
    name: &str,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head = match read_head(stream, &mut buf).await {
            Ok(h) => h,
            Err(HeadError::Closed) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::TooLarge) => {
                mock.log(name, format!("{peer}: request head too large -> 431"));
                let out = response_head(431, name, 0, false, "");
                return stream.write_all(out.as_bytes()).await;
            }
            Err(HeadError::Malformed(why)) => {
                mock.log(name, format!("{peer}: {why} -> 400"));
                let out = response_head(400, name, 0, false, "");
                return stream.write_all(out.as_bytes()).await;
            }
        };
        // Bodies we cannot skip reliably end the connection after the answer.
        let keep_alive = head.keep_alive && !head.chunked && head.content_length <= MAX_BODY;
        if keep_alive && head.content_length > 0 {
            discard_body(stream, &mut buf, head.content_length).await?;
        }
        let request = format!("{} {}", head.method, head.target);
        let Some((mode, since)) = mock.mode_of(name) else {
            return Ok(());
        };
        let Effective::Up(mode) = mode.effective(since, Instant::now()).0 else {
            // Raced with the listener closing: behave like a closed port.
            return Ok(());
        };
        match mode {
            Mode::Healthy | Mode::Flapping { .. } | Mode::Down => {
                mock.record_request(name, &request, "200");
                respond(stream, &head, name, 200, keep_alive, "").await?;
            }
            Mode::Error { code } => {
                mock.record_request(name, &request, &code.to_string());
                respond(stream, &head, name, code, keep_alive, "").await?;
            }
            Mode::Timeout => {
                mock.record_request(name, &request, "no answer (timeout)");
                // Hold the connection open until the client gives up or the mode changes.
                let mut sink = [0u8; 1024];
                loop {
                    if stream.read(&mut sink).await? == 0 {
                        return Ok(());
                    }
                }
            }
            Mode::Reset => {
                mock.record_request(name, &request, "connection reset");
                stream.set_zero_linger()?;
                return Ok(());
            }
            Mode::Slow { ms } => {
                mock.record_request(name, &request, &format!("200 after {ms} ms"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let extra = format!("x-mock-delay-ms: {ms}\r\n");
                respond(stream, &head, name, 200, keep_alive, &extra).await?;
            }
            Mode::Jitter { min_ms, max_ms } => {
                let ms = fastrand::u64(min_ms..=max_ms);
                mock.record_request(name, &request, &format!("200 after {ms} ms (jitter)"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let extra = format!("x-mock-delay-ms: {ms}\r\n");
                respond(stream, &head, name, 200, keep_alive, &extra).await?;
            }
            Mode::SlowBody { ms } => {
                mock.record_request(
                    name,
                    &request,
                    &format!("200, body of {SLOW_BODY_BYTES} bytes, one every {ms} ms"),
                );
                let out = response_head(200, name, SLOW_BODY_BYTES, keep_alive, "")
                    .replace("application/json", "text/plain");
                stream.write_all(out.as_bytes()).await?;
                if head.method != "HEAD" {
                    for _ in 0..SLOW_BODY_BYTES {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        stream.write_all(b".").await?;
                    }
                }
            }
        }
        if !keep_alive {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}
