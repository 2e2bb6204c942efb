//! E-mail against a real SMTP server (Python's aiosmtpd) and STARTTLS checks
//! against a minimal fake server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use heartbeat_notify::{Alert, DeliveryErrorKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const T: Duration = Duration::from_secs(10);

/// aiosmtpd server writing each accepted message as JSON into a directory.
/// Recipients starting with "reject" are refused with 550.
const SERVER_PY: &str = r#"
import email, email.policy, json, os, socket, sys, time
from aiosmtpd.controller import Controller

out_dir, port_file = sys.argv[1], sys.argv[2]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "alert_id": str(msg["x-heartbeat-alert-id"]),
            "content_type": msg.get_content_type(),
            "body": msg.get_content(),
        }
        n = len([f for f in os.listdir(out_dir) if f.endswith(".json")])
        tmp = os.path.join(out_dir, f".{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out_dir, f"{n}.json"))
        return "250 Message accepted for delivery"

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.rename(port_file + ".tmp", port_file)
# Stop when the test closes our stdin (or kills us).
sys.stdin.read()
controller.stop()
"#;

struct SmtpServer {
    child: Child,
    port: u16,
    out_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_has_aiosmtpd() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes aiosmtpd available, installing it with pip if needed.
fn ensure_aiosmtpd() -> Result<(), String> {
    if python_has_aiosmtpd() {
        return Ok(());
    }
    for extra in [&[][..], &["--user", "--break-system-packages"][..]] {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg("aiosmtpd")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) && python_has_aiosmtpd() {
            return Ok(());
        }
    }
    Err("python3 with aiosmtpd is not available and `pip install aiosmtpd` failed".into())
}

/// Starts the server, or returns `None` (skip) with a printed reason unless
/// HEARTBEAT_REQUIRE_SMTP=1, in which case the test fails.
fn start_smtp_server() -> Option<SmtpServer> {
    let fail_or_skip = |reason: String| -> Option<SmtpServer> {
        if std::env::var("HEARTBEAT_REQUIRE_SMTP").is_ok_and(|v| v == "1") {
            panic!("SMTP test required (HEARTBEAT_REQUIRE_SMTP=1): {reason}");
        }
        eprintln!("SKIPPED: real-SMTP e-mail test: {reason}");
        None
    };
    if let Err(reason) = ensure_aiosmtpd() {
        return fail_or_skip(reason);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("smtp_server.py");
    std::fs::write(&script, SERVER_PY).expect("write script");
    let out_dir = dir.path().join("mail");
    std::fs::create_dir(&out_dir).expect("mail dir");
    let port_file = dir.path().join("port");
    let child = match Command::new("python3")
        .arg(&script)
        .arg(&out_dir)
        .arg(&port_file)
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail_or_skip(format!("cannot start python3: {e}")),
    };
    let mut server = SmtpServer {
        child,
        port: 0,
        out_dir,
        _dir: dir,
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse()
        {
            server.port = port;
            return Some(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return fail_or_skip(format!("the aiosmtpd server exited early: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fail_or_skip("the aiosmtpd server did not start within 30 s".into())
}

fn received(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("mail dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
        .collect()
}

fn smtp_env(port: u16, to: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", port.to_string()),
        ("SMTP_SECURITY", "none".to_owned()),
        ("SMTP_FROM", "Heartbeat <heartbeat@example.com>".to_owned()),
        ("SMTP_TO", to.to_owned()),
    ]
}

fn email_channel(pairs: &[(&'static str, String)]) -> heartbeat_notify::Channel {
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    channel(&refs)
}

#[tokio::test]
async fn email_arrives_at_a_real_smtp_server() {
    let Some(server) = start_smtp_server() else {
        return;
    };
    let ch = email_channel(&smtp_env(
        server.port,
        "ops@example.com, Oncall <oncall@example.org>",
    ));
    assert_eq!(ch.name(), "email");
    let alert = Alert {
        message: "**db_primary** is down: `HTTP 500`\nsince 12:00".into(),
        ..down_alert()
    };
    let d = notifier().deliver(&ch, &alert, T).await.expect("sent");
    assert_eq!(d.status, Some(250));

    let mails = received(&server.out_dir);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["mail_from"], "heartbeat@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.org"])
    );
    assert_eq!(m["subject"], "🔴 db_primary is DOWN");
    assert_eq!(m["from"], "Heartbeat <heartbeat@example.com>");
    assert_eq!(m["alert_id"], "42");
    assert_eq!(m["content_type"], "text/plain");
    let body = m["body"].as_str().expect("body");
    // SMTP carries CRLF line ends.
    assert_eq!(
        body.replace("\r\n", "\n").trim_end(),
        alert.message,
        "{body:?}"
    );
}

#[tokio::test]
async fn smtp_rejection_is_a_permanent_failure() {
    let Some(server) = start_smtp_server() else {
        return;
    };
    let ch = email_channel(&smtp_env(server.port, "reject-me@example.com"));
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("recipient refused");
    assert_eq!(err.channel, "email");
    assert_eq!(err.status(), Some(550), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        matches!(
            &err.kind,
            DeliveryErrorKind::Smtp {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("email: SMTP 550"), "{err}");
    assert!(received(&server.out_dir).is_empty());
}

/// A minimal ESMTP server that never offers STARTTLS.
async fn fake_smtp_without_starttls() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                if w.write_all(b"220 fake ESMTP ready\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => {
                            b"250-fake greets you\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n"
                        }
                        "HELO" => b"250 fake\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"502 5.5.2 not implemented\r\n",
                    };
                    if w.write_all(reply).await.is_err() || verb == "QUIT" {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let port = fake_smtp_without_starttls().await;
    let ch = channel(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &port.to_string()),
        ("SMTP_USERNAME", "me"),
        ("SMTP_PASSWORD", "smtp-pass-SECRET"),
        ("SMTP_FROM", "hb@example.com"),
        ("SMTP_TO", "ops@example.com"),
    ]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("no STARTTLS offered");
    assert!(matches!(&err.kind, DeliveryErrorKind::Tls(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("STARTTLS"), "{shown}");
    assert!(
        shown.starts_with("email: TLS error: the server does not offer STARTTLS"),
        "{shown}"
    );
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn smtp_closed_port_is_a_connection_error() {
    let port = closed_port();
    let ch = email_channel(&smtp_env(port, "ops@example.com"));
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("nothing listens");
    assert_eq!(err.to_string(), "email: connection refused", "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn smtp_hanging_server_times_out() {
    let addr = hanging_receiver().await;
    let ch = email_channel(&smtp_env(addr.port(), "ops@example.com"));
    let timeout = Duration::from_millis(600);
    let start = Instant::now();
    let err = notifier()
        .deliver(&ch, &down_alert(), timeout)
        .await
        .expect_err("no greeting");
    assert!(matches!(err.kind, DeliveryErrorKind::Timeout(_)), "{err:?}");
    assert!(start.elapsed() < timeout + Duration::from_millis(500));
}
