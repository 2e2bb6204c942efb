//! Issue 2's scenario: the real agent binary against targets that go down,
//! flap between timeout and refused, recover, and are down at start-up, with a
//! webhook receiver that is itself down for the first 20 seconds, a `kill -9`
//! in the middle, and a target in maintenance.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heartbeat_store::{AlertStatus, ReadStore};
use support::{Agent, closed_port, status_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Healthy,
    Unavailable,
    Hang,
    Closed,
}

/// A target on a fixed port whose behaviour the test switches; `Closed`
/// really closes the listener, so connections are refused.
struct Switchable {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Switchable {
    async fn start(initial: Mode) -> Switchable {
        let addr = closed_port();
        let (mode, mut rx) = watch::channel(initial);
        tokio::spawn(async move {
            loop {
                let current = *rx.borrow_and_update();
                if current == Mode::Closed {
                    if rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                let socket = TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                socket.bind(addr).unwrap();
                let listener = socket.listen(1024).unwrap();
                let mut held = Vec::new();
                loop {
                    tokio::select! {
                        changed = rx.changed() => {
                            if changed.is_err() { return; }
                            break; // re-evaluate the mode; dropping the listener closes the port
                        }
                        accepted = listener.accept() => {
                            let Ok((mut stream, _)) = accepted else { continue };
                            match current {
                                Mode::Hang => held.push(stream),
                                Mode::Healthy | Mode::Unavailable => {
                                    let status = if current == Mode::Healthy { "200 OK" } else { "503 Unavailable" };
                                    tokio::spawn(async move {
                                        let mut buf = [0u8; 2048];
                                        let _ = stream.read(&mut buf).await;
                                        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                                        let _ = stream.write_all(reply.as_bytes()).await;
                                    });
                                }
                                Mode::Closed => {}
                            }
                        }
                    }
                }
            }
        });
        Switchable { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Received {
    id: i64,
    target: String,
    state: String,
}

/// A webhook receiver whose port refuses connections until `down_for` has passed.
async fn late_receiver(down_for: Duration) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let addr = closed_port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&received);
    tokio::spawn(async move {
        tokio::time::sleep(down_for).await;
        let listener = TcpListener::bind(addr).await.unwrap();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() < head_end + 4 + length {
                        continue;
                    }
                    let body = &data[head_end + 4..head_end + 4 + length];
                    let alert: Received = serde_json::from_slice(body).unwrap();
                    store.lock().unwrap().push(alert);
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            });
        }
    });
    (addr, received)
}

fn wait_until<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
}

fn open_items(db: &std::path::Path) -> Vec<String> {
    ReadStore::open(db)
        .and_then(|s| s.open_incidents())
        .map(|v| v.into_iter().map(|i| i.item).collect())
        .unwrap_or_default()
}

#[test]
fn every_alert_arrives_once_in_order_across_receiver_outage_and_kill_9() {
    let rt = support::runtime();
    let started = Instant::now();
    let (receiver, received) = rt.block_on(late_receiver(Duration::from_secs(20)));
    let steady = rt.block_on(status_server(200));
    let goes_down = rt.block_on(Switchable::start(Mode::Healthy));
    let flappy = rt.block_on(Switchable::start(Mode::Hang));
    let maint = closed_port();
    let down_at_start = closed_port();

    let vars = vec![
        ("LOOP_INTERVAL_SECONDS", "0.4".to_owned()),
        ("SERVICE_TIMEOUT_SECONDS", "0.2".to_owned()),
        ("STATUS_CHANGE_THRESHOLD", "3".to_owned()),
        ("WEBHOOK_URL", format!("http://{receiver}/hook")),
        ("SERVICE_URL_steady", format!("http://{steady}/")),
        (
            "SERVICE_URL_goes_down",
            format!("http://{}/", goes_down.addr),
        ),
        ("SERVICE_URL_flappy", format!("http://{}/", flappy.addr)),
        (
            "SERVICE_URL_down_at_start",
            format!("http://{down_at_start}/"),
        ),
        ("SERVICE_URL_maint", format!("http://{maint}/")),
        (
            "MAINTENANCE_maint",
            "2020-01-01T00:00:00Z/2100-01-01T00:00:00Z".to_owned(),
        ),
    ];
    let mut agent = Agent::start(&vars);
    let db = agent.db.clone();

    // Flap between timeout and refused every cycle: any mix must count.
    let flip = |agent: &mut Agent, cycles: u64| {
        let mode = if cycles.is_multiple_of(2) {
            Mode::Hang
        } else {
            Mode::Closed
        };
        flappy.set(mode);
        agent.wait_for_cycles(cycles + 1, Duration::from_secs(20));
    };
    let mut cycles = 0;
    while !open_items(&db).contains(&"flappy".to_owned()) {
        flip(&mut agent, cycles);
        cycles += 1;
        assert!(cycles < 40, "flapping target never confirmed down");
    }
    wait_until(
        "down_at_start and maint incidents",
        Duration::from_secs(20),
        || {
            let open = open_items(&db);
            (open.contains(&"down_at_start".to_owned()) && open.contains(&"maint".to_owned()))
                .then_some(())
        },
    );

    goes_down.set(Mode::Unavailable);
    wait_until("goes_down incident", Duration::from_secs(20), || {
        open_items(&db)
            .contains(&"goes_down".to_owned())
            .then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the receiver must still be down at this point; the scenario ran too slowly"
    );

    // kill -9 with alerts still undelivered, then restart on the same database.
    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(5));
    let mut agent = agent.restart(&vars);

    goes_down.set(Mode::Healthy);
    flappy.set(Mode::Healthy);
    wait_until("recoveries", Duration::from_secs(30), || {
        let open = open_items(&db);
        (!open.contains(&"goes_down".to_owned()) && !open.contains(&"flappy".to_owned()))
            .then_some(())
    });

    // Everything queued is delivered once the receiver is up.
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("down_at_start", vec!["down"]),
        ("flappy", vec!["down", "recovered"]),
        ("goes_down", vec!["down", "recovered"]),
    ]);
    let expected_count: usize = expected.values().map(Vec::len).sum();
    let got = wait_until("deliveries", Duration::from_secs(60), || {
        let got = received.lock().unwrap().clone();
        (got.len() >= expected_count).then_some(got)
    });
    // Give a duplicate the chance to show up before judging: the outbox must be drained.
    wait_until("outbox drained", Duration::from_secs(30), || {
        let store = ReadStore::open(&db).ok()?;
        let alerts = store.alerts(1000).ok()?;
        alerts
            .iter()
            .all(|a| matches!(a.status, AlertStatus::Sent | AlertStatus::Suppressed))
            .then_some(())
    });
    let got = {
        let after = received.lock().unwrap().clone();
        assert_eq!(after.len(), got.len(), "more deliveries arrived: {after:?}");
        after
    };

    let mut by_target: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &got {
        by_target
            .entry(r.target.as_str())
            .or_default()
            .push(r.state.as_str());
    }
    assert_eq!(by_target, expected, "deliveries: {got:?}");
    let ids: Vec<i64> = got.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "out of order or duplicated: {got:?}");

    // Maintenance suppressed the alert but recorded it.
    let store = ReadStore::open(&db).unwrap();
    let maint_alerts: Vec<_> = store
        .alerts(1000)
        .unwrap()
        .into_iter()
        .filter(|a| a.item == "maint")
        .collect();
    assert!(!maint_alerts.is_empty());
    assert!(
        maint_alerts
            .iter()
            .all(|a| a.status == AlertStatus::Suppressed)
    );
    let maint_incident = store.incidents(Some("maint"), 10).unwrap();
    assert!(maint_incident.iter().all(|i| i.maintenance));

    // Delivery attempts made while the receiver was down are on record.
    let first = store
        .alerts(1000)
        .unwrap()
        .into_iter()
        .min_by_key(|a| a.id)
        .unwrap();
    let attempts = store.alert_attempts(first.id).unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(
        !attempts[0].ok && attempts.last().unwrap().ok,
        "{attempts:?}"
    );

    agent.signal("TERM");
    agent.wait_exit(Duration::from_secs(5));
}

#[derive(Debug, Clone, serde::Deserialize)]
struct HeldFlag {
    target: String,
    state: String,
    held_back: bool,
}

#[test]
fn alerts_are_held_back_while_the_agents_own_connectivity_fails() {
    let rt = support::runtime();
    let (receiver, received) = rt.block_on(late_receiver(Duration::ZERO));
    let ping = rt.block_on(Switchable::start(Mode::Closed));
    let broken = closed_port();
    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.3".to_owned()),
        ("SERVICE_TIMEOUT_SECONDS", "0.2".to_owned()),
        ("STATUS_CHANGE_THRESHOLD", "2".to_owned()),
        ("PING_URL", format!("http://{}/", ping.addr)),
        ("WEBHOOK_URL", format!("http://{receiver}/hook")),
        ("SERVICE_URL_broken", format!("http://{broken}/")),
    ]);
    let db = agent.db.clone();
    let held = wait_until("a held alert", Duration::from_secs(20), || {
        let alerts = ReadStore::open(&db).ok()?.alerts(100).ok()?;
        alerts
            .into_iter()
            .find(|a| a.item == "broken" && a.status == AlertStatus::Held)
    });
    // Several more cycles with connectivity down: the target's alert stays held.
    // (The agent's own "connectivity lost" alert is not held; it may reach a local receiver.)
    let seen = ReadStore::open(&db).unwrap().cycle_count().unwrap();
    agent.wait_for_cycles(seen + 5, Duration::from_secs(20));
    let sent_for_target = |r: &Received| r.target == "broken";
    assert!(
        !received.lock().unwrap().iter().any(sent_for_target),
        "sent while offline"
    );

    ping.set(Mode::Healthy);
    let got = wait_until("the held alert", Duration::from_secs(20), || {
        let got: Vec<Received> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| sent_for_target(r))
            .cloned()
            .collect();
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got[0].id, held.id);
    assert_eq!(
        (got[0].target.as_str(), got[0].state.as_str()),
        ("broken", "down")
    );
    let flags: HeldFlag = serde_json::from_str(&held.payload_json).unwrap();
    assert!(flags.held_back, "{flags:?}");
    assert_eq!(
        (flags.target.as_str(), flags.state.as_str()),
        ("broken", "down")
    );
    agent.signal("TERM");
    agent.wait_exit(Duration::from_secs(5));
}

#[test]
fn reminders_repeat_with_backoff_while_a_target_stays_down() {
    let rt = support::runtime();
    let (receiver, received) = rt.block_on(late_receiver(Duration::ZERO));
    let mut agent = Agent::start(&[
        ("LOOP_INTERVAL_SECONDS", "0.2".to_owned()),
        ("STATUS_CHANGE_THRESHOLD", "2".to_owned()),
        ("ALERT_REMINDER_INTERVAL", "1s".to_owned()),
        ("WEBHOOK_URL", format!("http://{receiver}/hook")),
        ("SERVICE_URL_gone", format!("http://{}/", closed_port())),
    ]);
    let got = wait_until("two reminders", Duration::from_secs(20), || {
        let got = received.lock().unwrap().clone();
        (got.len() >= 3).then_some(got)
    });
    let states: Vec<&str> = got.iter().take(3).map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["down", "reminder", "reminder"]);
    // Backoff: the second reminder comes about twice as late as the first.
    let store = ReadStore::open(&agent.db).unwrap();
    let mut sent: Vec<i64> = store
        .alerts(100)
        .unwrap()
        .into_iter()
        .filter(|a| a.item == "gone")
        .map(|a| a.created_ms)
        .collect();
    sent.sort_unstable();
    let (first_gap, second_gap) = (sent[1] - sent[0], sent[2] - sent[1]);
    assert!(first_gap >= 1_000, "first reminder after {first_gap} ms");
    assert!(second_gap >= 2_000, "second reminder after {second_gap} ms");
    agent.signal("TERM");
    agent.wait_exit(Duration::from_secs(5));
}
