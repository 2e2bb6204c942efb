//! The push listener's connection handling, on a real socket: slow and idle connections
//! are closed after the header timeout, and connections over the bound wait for a slot.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use heartbeat_push::{Health, Listener, PushState, RateLimit, Registry, Settings, TokenHash};
use heartbeat_store::{PushDefinition, PushLoaded, PushSource};
use jiff::tz::TimeZone;

/// A listener on 127.0.0.1:0 with these limits, served on its own runtime thread until
/// `stop` fires (or is dropped); the thread ends when `serve` returns.
struct Served {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

const TOKEN: &str = "listener-token-for-tests-0001";

fn serve(max_connections: usize, header_timeout: Duration) -> Served {
    serve_with(max_connections, max_connections, header_timeout)
}

fn serve_with(max_connections: usize, per_peer: usize, header_timeout: Duration) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let target = PushLoaded {
        definition: PushDefinition {
            service_id: "job".into(),
            name: "job".into(),
            source: PushSource::Config,
            token_sha256: TokenHash::of(TOKEN).0,
            period_ms: 60_000,
            grace_ms: 60_000,
            schedule: None,
            metadata: None,
            created_at_ms: 0,
        },
        last_life: None,
        open_start: None,
        tasks: Vec::new(),
    };
    let registry = Arc::new(Registry::new(
        vec![target],
        TimeZone::UTC,
        RateLimit {
            rate_per_sec: 0.0,
            burst: 1,
        },
    ));
    let settings = Settings {
        admin: None,
        body_limit: 1 << 20,
        max_connections,
        max_connections_per_peer: per_peer,
        header_timeout,
        // Bodies in these tests either come at once or never, and so do reads of answers.
        body_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        default_period: Duration::from_secs(60),
        default_grace: Duration::from_secs(60),
        db_path: dir.path().join("metrics.db"),
    };
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            // Nothing is ever written: no request here reaches the writer.
            let (jobs, _unused) = tokio::sync::mpsc::channel(1);
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let state = Arc::new(PushState {
                registry,
                jobs,
                health: Arc::new(Health::new(Duration::from_secs(10), now_ms)),
                settings,
            });
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let shutdown = async move {
                let _ = stopped.await;
            };
            Listener { listener, state }.serve(shutdown).await.unwrap();
        });
    });
    Served {
        addr,
        stop,
        thread,
        _dir: dir,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    // Far longer than any timeout under test: a server that never closes fails the test.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent first.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => text,
        Err(e) => panic!("the server kept the connection open: {e} (got {text:?})"),
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: push\r\n\r\n";

/// Sends `GET /health` and checks that the answer starts with a 200 status line
/// (the connection stays open).
fn assert_served(stream: &mut TcpStream, what: &str) {
    stream.write_all(HEALTH).unwrap();
    let mut head = [0u8; 15];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK", "{what}");
}

#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let served = serve(16, Duration::from_millis(300));
    let addr = served.addr;
    // Nothing sent at all.
    let mut silent = connect(addr);
    assert_eq!(read_until_closed(&mut silent), "");
    // Half a request head, then nothing.
    let mut slow = connect(addr);
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: pu").unwrap();
    assert_eq!(read_until_closed(&mut slow), "");
    // A whole request is answered; the kept-alive connection is then closed when idle.
    let mut idle = connect(addr);
    idle.write_all(HEALTH).unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
}

#[test]
fn connections_over_the_bound_wait_until_one_closes() {
    let served = serve(2, Duration::from_secs(60));
    let addr = served.addr;
    // Two idle connections take both slots (accepted in order from the kernel's queue).
    let first = connect(addr);
    let mut second = connect(addr);
    assert_served(&mut second, "the second connection is served");
    // A third waits in the accept queue: not answered while both are open.
    let mut third = connect(addr);
    third.write_all(HEALTH).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waiting = third.read(&mut byte);
    assert!(
        matches!(&waiting, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the third connection was served while both slots were taken: {waiting:?}"
    );
    // Closing one frees its slot, and the third is served.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = [0u8; 15];
    third.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
}

#[test]
fn shutdown_closes_idle_connections_refuses_new_ones_and_returns() {
    let served = serve(16, Duration::from_secs(60));
    let addr = served.addr;
    let mut silent = connect(addr);
    let mut kept_alive = connect(addr);
    assert_served(&mut kept_alive, "before the shutdown");
    served.stop.send(()).unwrap();
    // `serve` returns although both connections were open (joined, not timed).
    served.thread.join().unwrap();
    assert_eq!(read_until_closed(&mut silent), "");
    let rest = read_until_closed(&mut kept_alive);
    assert!(!rest.contains("HTTP/1.1"), "no second answer: {rest:?}");
    let refused = TcpStream::connect(addr);
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

/// A connection to `addr` from the loopback address `from` (any of 127.0.0.0/8).
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

#[test]
fn one_address_cannot_take_every_connection() {
    let served = serve_with(16, 2, Duration::from_secs(60));
    let addr = served.addr;
    let _first = connect_from("127.0.0.1", addr);
    let _second = connect_from("127.0.0.1", addr);
    // A third from the same address is closed without an answer...
    let mut third = connect_from("127.0.0.1", addr);
    let _ = third.write_all(HEALTH);
    let mut answer = Vec::new();
    let read = third.read_to_end(&mut answer);
    assert!(
        answer.is_empty()
            && (read.is_ok()
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset)),
        "{read:?} {answer:?}"
    );
    // ...while another address is served.
    let mut other = connect_from("127.0.0.2", addr);
    assert_served(&mut other, "another address");
}

#[test]
fn a_body_that_never_comes_gets_408() {
    let served = serve(16, Duration::from_secs(60));
    let mut stream = connect(served.addr);
    write!(
        stream,
        "POST /ping/{TOKEN} HTTP/1.1\r\nHost: push\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 24];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408 Request Tim");
}

#[test]
fn a_client_that_stops_reading_its_answers_is_disconnected() {
    let served = serve(16, Duration::from_secs(60));
    let addr = served.addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A small receive buffer, so the answers back up quickly.
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    // If the server waited for ever, our own writes would block for ever too.
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let batch = HEALTH.repeat(1000);
    let ended = loop {
        if let Err(e) = stream.write_all(&batch) {
            break e;
        }
    };
    assert!(
        matches!(
            ended.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "the server kept the connection: {ended}"
    );
}
