//! `heartbeat run`: wrap a command, pass its output through, report start and end.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heartbeat_client::{Client, Ping, Signal, Url, new_run_id};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

/// What the server keeps of a body (healthchecks.io's 10 KB).
pub const DEFAULT_TAIL: usize = 10 * 1024;
/// After the command exits, how long output still held open by its own children is read.
const DRAIN: Duration = Duration::from_secs(2);

/// Waits for the pipe readers to finish, for at most `limit` in all: a background process
/// of the job may keep a pipe open for ever. One deadline for every pipe, so a job that
/// holds both costs `limit`, not twice that.
async fn drain(readers: Vec<tokio::task::JoinHandle<()>>, limit: Duration) {
    let drained_by = tokio::time::Instant::now() + limit;
    for r in readers {
        let _ = tokio::time::timeout_at(drained_by, r).await;
    }
}

/// The last `cap` bytes of the output, stdout and stderr interleaved as they arrived.
#[derive(Debug)]
struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    /// The tail, starting at a UTF-8 character boundary when it was cut.
    fn into_body(self, cut: bool) -> Vec<u8> {
        let mut v: Vec<u8> = self.buf.into();
        if cut {
            let skip = v
                .iter()
                .take(3)
                .take_while(|b| (**b & 0xC0) == 0x80)
                .count();
            v.drain(..skip);
        }
        v
    }
}

/// Copies `from` to `to` (our own stdout or stderr), keeping the tail.
async fn tee(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    tail: Arc<Mutex<(Tail, u64)>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        {
            let mut t = tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            t.0.push(&buf[..n]);
            t.1 += n as u64;
        }
        // A closed terminal must not stop the job: keep reading, stop writing.
        if to.write_all(&buf[..n]).await.is_ok() {
            let _ = to.flush().await;
        }
    }
}

fn warn(what: &str, e: &heartbeat_client::ClientError) {
    eprintln!("heartbeat: warning: {what} ping failed: {e}");
}

/// The exit code a shell would report: the code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig).min(255)).unwrap_or(255),
        _ => 1,
    }
}

/// Runs `command`, reporting to `url`; returns the command's exit code.
pub async fn run(client: &Client, url: &Url, command: &[OsString], tail_cap: usize) -> u8 {
    let rid = new_run_id();
    if let Err(e) = client.ping(url, &Ping::new(Signal::Start).rid(&rid)).await {
        warn("start", &e);
    }
    let Some((program, args)) = command.split_first() else {
        return 2; // clap requires a command; kept for safety
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            // The shell's codes: 127 not found, 126 found but not executable.
            let code: u8 = if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            };
            let reason = format!("heartbeat: cannot start {}: {e}", program.to_string_lossy());
            eprintln!("{reason}");
            let ping = Ping::new(Signal::Fail).rid(&rid).body(reason.into_bytes());
            if let Err(e) = client.ping(url, &ping).await {
                warn("fail", &e);
            }
            return code;
        }
    };
    let tail = Arc::new(Mutex::new((
        Tail {
            buf: VecDeque::with_capacity(tail_cap.min(1 << 20)),
            cap: tail_cap,
        },
        0u64,
    )));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(tee(out, tokio::io::stdout(), tail.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(tee(err, tokio::io::stderr(), tail.clone())));
    }
    let status = wait_forwarding_signals(&mut child).await;
    drain(readers, DRAIN).await;
    let code = match status {
        Ok(st) => exit_code(st),
        Err(e) => {
            eprintln!("heartbeat: cannot wait for the command: {e}");
            1
        }
    };
    let (t, total) = {
        let mut guard = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = std::mem::replace(
            &mut guard.0,
            Tail {
                buf: VecDeque::new(),
                cap: 0,
            },
        );
        (t, guard.1)
    };
    let body = t.into_body(total > tail_cap as u64);
    let ping = Ping::new(Signal::Exit(code)).rid(&rid).body(body);
    if let Err(e) = client.ping(url, &ping).await {
        warn("end", &e);
    }
    code
}

/// Waits for the child; SIGTERM and SIGHUP sent to `heartbeat` are passed on to it.
/// SIGINT is not: a terminal's Ctrl-C reaches the whole process group already, and
/// `heartbeat` must outlive the command to report how it ended.
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> std::io::Result<ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return child.wait().await;
    };
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    let forward = |sig| {
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, sig);
        }
    };
    loop {
        tokio::select! {
            st = child.wait() => return st,
            _ = term.recv() => forward(rustix::process::Signal::TERM),
            _ = hup.recv() => forward(rustix::process::Signal::HUP),
            _ = int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pipes_held_open_are_drained_for_one_limit_in_all() {
        let held_open = || tokio::spawn(std::future::pending::<()>());
        let finished = tokio::spawn(async {});
        let started = tokio::time::Instant::now();
        drain(
            vec![held_open(), finished, held_open()],
            Duration::from_secs(2),
        )
        .await;
        // Paused time: exactly the virtual time waited.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn tail_keeps_the_last_bytes_across_pushes() {
        let mut t = Tail {
            buf: VecDeque::new(),
            cap: 5,
        };
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(Vec::from(t.buf.clone()), b"cdefg");
        t.push(b"0123456789");
        assert_eq!(Vec::from(t.buf.clone()), b"56789");
    }

    #[test]
    fn a_cut_tail_starts_on_a_character() {
        let mut t = Tail {
            buf: VecDeque::new(),
            cap: 4,
        };
        t.push("aé€".as_bytes()); // 1 + 2 + 3 bytes; the last 4 start inside é
        assert_eq!(t.into_body(true), "€".as_bytes());
    }
}
