//! Real servers on loopback that misbehave on purpose.
//!
//! Each server accepts on its own task, reads one request head per
//! connection, reports it on a channel and then acts out its [`Behaviour`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use heartbeat_core::{ExpectedStatus, Header, HttpTarget, ProbeMethod, Secret, Url};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One request head as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// SNI of the TLS handshake, for TLS servers.
    pub sni: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer with this status (and extra header lines), empty body.
    Status(u16, Vec<(String, String)>),
    /// 405 to HEAD, 200 to anything else.
    RejectHead,
    /// Read the request, then never answer.
    Hang,
    /// Send the first line of the head, then never finish it.
    PartialHead,
    /// Read the request, then close with SO_LINGER 0 (an RST).
    Reset,
    /// 200 with a body of this many bytes, streamed as fast as possible;
    /// the number of bytes actually written is sent on `written` when the
    /// writer stops (finished or failed).
    HugeBody { len: u64 },
    /// 200 announcing a large body, of which only a few bytes ever arrive.
    SlowBody,
}

pub struct Server {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub accepted: Arc<AtomicUsize>,
    /// For `HugeBody`: bytes written per connection, reported when it stops.
    pub written: mpsc::UnboundedReceiver<u64>,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Next request head the server reported, if one has already arrived.
    pub fn try_seen(&mut self) -> Option<Seen> {
        self.seen.try_recv().ok()
    }
}

pub async fn serve(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, behaviour)
}

pub fn serve_on(listener: TcpListener, behaviour: Behaviour) -> Server {
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (written_tx, written) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let behaviour = behaviour.clone();
            let seen_tx = seen_tx.clone();
            let written_tx = written_tx.clone();
            tokio::spawn(async move {
                handle_tcp(stream, behaviour, seen_tx, written_tx).await;
            });
        }
    });
    Server {
        addr,
        seen,
        accepted,
        written,
    }
}

async fn handle_tcp(
    mut stream: TcpStream,
    behaviour: Behaviour,
    seen_tx: mpsc::UnboundedSender<Seen>,
    written_tx: mpsc::UnboundedSender<u64>,
) {
    if let Behaviour::Reset = behaviour {
        if let Some(seen) = read_head(&mut stream, None).await {
            let _ = seen_tx.send(seen);
        }
        stream.set_zero_linger().unwrap();
        drop(stream);
        return;
    }
    handle(stream, behaviour, None, seen_tx, written_tx).await;
}

/// Serves requests on one connection (keep-alive) until the peer goes away.
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    behaviour: Behaviour,
    sni: Option<String>,
    seen_tx: mpsc::UnboundedSender<Seen>,
    written_tx: mpsc::UnboundedSender<u64>,
) {
    loop {
        let Some(seen) = read_head(&mut stream, sni.clone()).await else {
            return;
        };
        let method = seen.method.clone();
        let _ = seen_tx.send(seen);
        match &behaviour {
            Behaviour::Status(code, extra) => {
                let mut head = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n");
                for (n, v) in extra {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
            }
            Behaviour::RejectHead => {
                let code = if method == "HEAD" { 405 } else { 200 };
                let head = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\n");
                let body: &[u8] = if method == "HEAD" { b"" } else { b"ok" };
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body).await.is_err()
                {
                    return;
                }
            }
            Behaviour::Hang => {
                // Hold the connection open and silent for as long as the test runs.
                std::future::pending::<()>().await;
            }
            Behaviour::PartialHead => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let _ = stream.flush().await;
                std::future::pending::<()>().await;
            }
            Behaviour::Reset => return,
            Behaviour::HugeBody { len } => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    let _ = written_tx.send(0);
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent: u64 = 0;
                while sent < *len {
                    let n = usize::try_from((*len - sent).min(chunk.len() as u64)).unwrap();
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                }
                let _ = written_tx.send(sent);
                return;
            }
            Behaviour::SlowBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nstart")
                    .await;
                let _ = stream.flush().await;
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Reads one request head (and discards any `content-length` body).
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, sni: Option<String>) -> Option<Seen> {
    let mut buf: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let seen = Seen {
        method,
        target,
        headers,
        sni,
    };
    if let Some(len) = seen
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0u8; len.min(1 << 20)];
        stream.read_exact(&mut body).await.ok()?;
    }
    Some(seen)
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn target(url: Url) -> HttpTarget {
    HttpTarget {
        url,
        headers: Vec::new(),
        method: ProbeMethod::Head,
        expected: ExpectedStatus::default(),
        dns_override: None,
    }
}

pub fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: Secret::new(value),
    }
}

/// Waits for the next request head the server reports.
pub async fn next_seen(server: &mut Server) -> Seen {
    tokio::time::timeout(std::time::Duration::from_secs(10), server.seen.recv())
        .await
        .expect("server saw no request within 10 s")
        .expect("server task ended")
}

/// A self-signed certificate and its key, for `names`.
pub struct TestCert {
    pub cert_pem: String,
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

pub fn self_signed(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    TestCert {
        cert_pem: ck.cert.pem(),
        cert_der: ck.cert.der().clone(),
        key_der: ck.signing_key.serialize_der(),
    }
}

/// A self-signed certificate for `names` that expired in 2001.
pub fn expired_self_signed(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A TLS server on 127.0.0.1:0 presenting `cert`; it records the SNI of
/// every ClientHello in `Seen::sni` (and on `snis`, even when the handshake
/// later fails).
pub struct TlsServer {
    pub server: Server,
    pub snis: mpsc::UnboundedReceiver<Option<String>>,
}

pub async fn serve_tls(cert: &TestCert, behaviour: Behaviour) -> TlsServer {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], key)
        .unwrap();
    let config = Arc::new(config);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (written_tx, written) = mpsc::unbounded_channel();
    let (sni_tx, snis) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let (config, behaviour) = (config.clone(), behaviour.clone());
            let (seen_tx, written_tx, sni_tx) =
                (seen_tx.clone(), written_tx.clone(), sni_tx.clone());
            tokio::spawn(async move {
                let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                    rustls::server::Acceptor::default(),
                    stream,
                );
                let Ok(start) = acceptor.await else { return };
                let sni = start.client_hello().server_name().map(str::to_owned);
                let _ = sni_tx.send(sni.clone());
                let Ok(tls) = start.into_stream(config).await else {
                    return;
                };
                handle(tls, behaviour, sni, seen_tx, written_tx).await;
            });
        }
    });
    TlsServer {
        server: Server {
            addr,
            seen,
            accepted,
            written,
        },
        snis,
    }
}
