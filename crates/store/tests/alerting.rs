//! Schema v2: item states, incidents, and the alert outbox, on real database files.
#![allow(clippy::unwrap_used)]

mod common;

use heartbeat_store::{
    AlertStatus, AttemptOutcome, CycleEffects, IncidentChange, NewAlert, NextStep, ReadStore,
    Store, StoreError,
};

fn open(item: &str, started_at_ms: i64) -> IncidentChange {
    IncidentChange::Open {
        item: item.into(),
        started_at_ms,
        cause: "down".into(),
        first_error: Some("connection refused".into()),
        last_error: Some("connection refused".into()),
        maintenance: false,
    }
}

fn alert(item: &str, status: AlertStatus, next_attempt_ms: i64) -> NewAlert {
    NewAlert {
        channel: "ops".into(),
        item: item.into(),
        kind: "down".into(),
        payload_json: format!("{{\"item\":\"{item}\"}}"),
        created_ms: 1_000,
        status,
        next_attempt_ms,
        expires_ms: 1_000_000,
    }
}

fn alerts_only(alerts: Vec<NewAlert>) -> CycleEffects {
    CycleEffects {
        alerts,
        ..CycleEffects::default()
    }
}

fn failed(at_ms: i64, error: &str) -> AttemptOutcome {
    AttemptOutcome {
        at_ms,
        ok: false,
        status_code: Some(503),
        error: Some(error.into()),
    }
}

#[test]
fn fresh_database_has_alerting_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("m.db")).unwrap();
    assert!(store.schema_version().unwrap() >= 2);
    assert!(store.item_states().unwrap().is_empty());
    assert!(store.incidents(None, 10).unwrap().is_empty());
    assert!(store.open_incidents().unwrap().is_empty());
    assert!(store.alerts(10).unwrap().is_empty());
    assert_eq!(store.next_due_ms().unwrap(), None);
}

#[test]
fn write_cycle_with_commits_everything_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    let effects = CycleEffects {
        item_states: vec![("svc1".into(), "{\"s\":\"down\"}".into())],
        incidents: vec![open("svc1", 1_000)],
        alerts: vec![alert("svc1", AlertStatus::Pending, 1_000)],
    };
    let id = store
        .write_cycle_with(&common::cycle(1_000, 3), &effects)
        .unwrap();
    assert_eq!(store.latest_cycle().unwrap().unwrap().id, id);

    let reader = ReadStore::open(&path).unwrap();
    assert_eq!(reader.item_states().unwrap(), effects.item_states);
    assert_eq!(reader.open_incidents().unwrap().len(), 1);
    let alerts = reader.alerts(10).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    let want = &effects.alerts[0];
    assert_eq!(
        (&a.channel, &a.item, &a.kind, &a.payload_json),
        (&want.channel, &want.item, &want.kind, &want.payload_json)
    );
    assert_eq!(
        (a.created_ms, a.status, a.next_attempt_ms, a.expires_ms),
        (1_000, AlertStatus::Pending, 1_000, 1_000_000)
    );
    assert_eq!((a.attempts, &a.last_error, a.sent_ms), (0, &None, None));
}

#[test]
fn failing_effect_rolls_back_the_cycle_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    let first = CycleEffects {
        item_states: vec![("svc0".into(), "v1".into())],
        incidents: vec![open("svc0", 1_000)],
        alerts: vec![],
    };
    store
        .write_cycle_with(&common::cycle(1_000, 1), &first)
        .unwrap();

    // A second Open for an item whose incident is still open breaks the one-open-incident
    // invariant. It comes after a new target, an item state and an alert were written in the
    // same transaction, so all of them must disappear with the cycle.
    let bad = CycleEffects {
        item_states: vec![("svc0".into(), "v2".into())],
        alerts: vec![alert("svc0", AlertStatus::Pending, 2_000)],
        incidents: vec![open("svc0", 2_000)],
    };
    let cycle = common::cycle(2_000, 4);
    let err = store.write_cycle_with(&cycle, &bad).unwrap_err();
    assert!(
        matches!(&err, StoreError::IncidentAlreadyOpen { item } if item == "svc0"),
        "{err}"
    );
    let reader = ReadStore::open(&path).unwrap();
    assert_eq!(reader.cycle_count().unwrap(), 1, "cycle row rolled back");
    assert_eq!(reader.check_count().unwrap(), 1, "its checks too");
    assert_eq!(reader.targets().unwrap().len(), 1, "and its new targets");
    assert_eq!(reader.item_states().unwrap(), first.item_states);
    assert!(reader.alerts(10).unwrap().is_empty());
    assert_eq!(reader.incidents(None, 10).unwrap().len(), 1);

    // The target cache was invalidated, so the same cycle with sound effects writes whole.
    let good = CycleEffects {
        incidents: vec![],
        ..bad
    };
    store.write_cycle_with(&cycle, &good).unwrap();
    assert_eq!(reader.cycle_count().unwrap(), 2);
    assert_eq!(reader.targets().unwrap().len(), 4);
    assert_eq!(reader.alerts(10).unwrap().len(), 1);
    assert_eq!(reader.item_states().unwrap()[0].1, "v2");
    assert!(reader.integrity_check().unwrap());

    // apply_effects is just as atomic.
    let err = store
        .apply_effects(&CycleEffects {
            item_states: vec![("svc0".into(), "v3".into())],
            incidents: vec![open("svc0", 3_000)],
            alerts: vec![],
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IncidentAlreadyOpen { .. }),
        "{err}"
    );
    assert_eq!(reader.item_states().unwrap()[0].1, "v2");
}

#[test]
fn item_states_are_upserted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store.apply_effects(&CycleEffects::default()).unwrap();
    let states = |pairs: &[(&str, &str)]| CycleEffects {
        item_states: pairs
            .iter()
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect(),
        ..CycleEffects::default()
    };
    store
        .apply_effects(&states(&[("web", "a"), ("agent:connectivity", "b")]))
        .unwrap();
    store
        .apply_effects(&states(&[("web", "c"), ("agent:worker", "d")]))
        .unwrap();
    let want: Vec<(String, String)> = [
        ("agent:connectivity", "b"),
        ("agent:worker", "d"),
        ("web", "c"),
    ]
    .iter()
    .map(|(i, s)| (i.to_string(), s.to_string()))
    .collect();
    assert_eq!(
        store.item_states().unwrap(),
        want,
        "one row per item, by item"
    );
    drop(store);
    // State must survive a restart: that is its purpose.
    assert_eq!(Store::open(&path).unwrap().item_states().unwrap(), want);
}

#[test]
fn incident_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let apply = |store: &mut Store, changes: Vec<IncidentChange>| {
        store
            .apply_effects(&CycleEffects {
                incidents: changes,
                ..CycleEffects::default()
            })
            .unwrap()
    };
    // Update and Close without an open incident are no-ops.
    apply(
        &mut store,
        vec![
            IncidentChange::Update {
                item: "web".into(),
                cause: "timeout".into(),
                last_error: None,
            },
            IncidentChange::Close {
                item: "web".into(),
                ended_at_ms: 5,
                last_error: None,
            },
        ],
    );
    assert!(store.incidents(None, 10).unwrap().is_empty());

    apply(&mut store, vec![open("web", 1_000)]);
    apply(
        &mut store,
        vec![IncidentChange::Open {
            item: "db".into(),
            started_at_ms: 1_500,
            cause: "error".into(),
            first_error: None,
            last_error: None,
            maintenance: true,
        }],
    );
    apply(
        &mut store,
        vec![IncidentChange::Update {
            item: "web".into(),
            cause: "timeout".into(),
            last_error: Some("timed out".into()),
        }],
    );
    // A None last_error keeps what is stored.
    apply(
        &mut store,
        vec![IncidentChange::Update {
            item: "web".into(),
            cause: "timeout".into(),
            last_error: None,
        }],
    );
    let open_now = store.open_incidents().unwrap();
    assert_eq!(
        open_now.iter().map(|i| i.item.as_str()).collect::<Vec<_>>(),
        ["web", "db"],
        "oldest first"
    );
    let web = &open_now[0];
    assert_eq!(web.cause, "timeout");
    assert_eq!(web.first_error.as_deref(), Some("connection refused"));
    assert_eq!(web.last_error.as_deref(), Some("timed out"));
    assert_eq!(web.ended_at_ms, None);
    assert!(!web.maintenance);
    assert!(open_now[1].maintenance);

    // Close, then reopen in the same batch: applied in order.
    apply(
        &mut store,
        vec![
            IncidentChange::Close {
                item: "web".into(),
                ended_at_ms: 2_000,
                last_error: Some("refused again".into()),
            },
            open("web", 3_000),
        ],
    );
    let web_history = store.incidents(Some("web"), 10).unwrap();
    assert_eq!(web_history.len(), 2);
    assert_eq!(web_history[0].started_at_ms, 3_000, "newest first");
    assert_eq!(web_history[0].ended_at_ms, None);
    assert_eq!(web_history[1].ended_at_ms, Some(2_000));
    assert_eq!(web_history[1].last_error.as_deref(), Some("refused again"));
    assert_eq!(web_history[1].id, web.id);

    let all = store.incidents(None, 10).unwrap();
    assert_eq!(
        all.iter().map(|i| i.started_at_ms).collect::<Vec<_>>(),
        [3_000, 1_500, 1_000]
    );
    assert_eq!(store.incidents(None, 1).unwrap(), all[..1]);
    assert!(store.incidents(Some("nope"), 10).unwrap().is_empty());
    assert_eq!(store.open_incidents().unwrap().len(), 2);
}

#[test]
fn due_alerts_and_next_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    store
        .apply_effects(&alerts_only(vec![
            alert("a", AlertStatus::Pending, 5_000),
            alert("b", AlertStatus::Pending, 1_000),
            alert("c", AlertStatus::Held, 500),
            alert("d", AlertStatus::Suppressed, 500),
            alert("e", AlertStatus::Pending, 9_000),
            alert("f", AlertStatus::Pending, 3_000),
        ]))
        .unwrap();
    let items =
        |v: Vec<heartbeat_store::OutboxAlert>| v.into_iter().map(|a| a.item).collect::<Vec<_>>();
    assert_eq!(
        store.next_due_ms().unwrap(),
        Some(1_000),
        "held/suppressed ignored"
    );
    assert!(store.due_alerts(999, 10).unwrap().is_empty());
    assert_eq!(
        items(store.due_alerts(5_000, 10).unwrap()),
        ["a", "b", "f"],
        "by id, not by due time"
    );
    assert_eq!(items(store.due_alerts(5_000, 2).unwrap()), ["a", "b"]);
    assert_eq!(
        items(store.due_alerts(i64::MAX, usize::MAX).unwrap()),
        ["a", "b", "e", "f"]
    );
    assert_eq!(
        items(store.alerts(10).unwrap()),
        ["f", "e", "d", "c", "b", "a"],
        "newest first, every status"
    );
    assert_eq!(store.alerts(2).unwrap().len(), 2);
}

#[test]
fn record_attempt_retry_then_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store
        .apply_effects(&alerts_only(vec![alert(
            "web",
            AlertStatus::Pending,
            1_000,
        )]))
        .unwrap();
    let id = store.due_alerts(1_000, 10).unwrap()[0].id;

    store
        .record_attempt(id, &failed(1_000, "HTTP 503"), NextStep::RetryAt(6_000))
        .unwrap();
    let a = &store.alerts(1).unwrap()[0];
    assert_eq!(a.status, AlertStatus::Pending);
    assert_eq!(a.attempts, 1);
    assert_eq!(a.next_attempt_ms, 6_000);
    assert_eq!(a.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(a.sent_ms, None);
    assert!(store.due_alerts(5_999, 10).unwrap().is_empty());
    assert_eq!(store.next_due_ms().unwrap(), Some(6_000));

    let ok = AttemptOutcome {
        at_ms: 6_100,
        ok: true,
        status_code: Some(204),
        error: None,
    };
    store.record_attempt(id, &ok, NextStep::Sent).unwrap();
    let a = &store.alerts(1).unwrap()[0];
    assert_eq!(a.status, AlertStatus::Sent);
    assert_eq!(a.attempts, 2);
    assert_eq!(a.sent_ms, Some(6_100));
    assert_eq!(a.last_error, None, "the latest attempt succeeded");
    assert_eq!(store.next_due_ms().unwrap(), None);
    assert!(store.due_alerts(i64::MAX, 10).unwrap().is_empty());

    let attempts = ReadStore::open(&path).unwrap().alert_attempts(id).unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|t| t.alert_id == id));
    assert_eq!(
        (attempts[0].at_ms, attempts[0].ok, attempts[0].status_code),
        (1_000, false, Some(503))
    );
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 503"));
    assert_eq!(
        (attempts[1].at_ms, attempts[1].ok, attempts[1].status_code),
        (6_100, true, Some(204))
    );
    assert_eq!(attempts[1].error, None);

    // A sent alert cannot be attempted again, and nothing is recorded for the try.
    let err = store
        .record_attempt(id, &failed(7_000, "late"), NextStep::RetryAt(8_000))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlertNotPending { id: i, status } if *i == id && status == "sent"),
        "{err}"
    );
    assert_eq!(store.alert_attempts(id).unwrap().len(), 2);
    let err = store
        .record_attempt(id + 100, &failed(7_000, "x"), NextStep::Expired)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownAlert(i) if i == id + 100),
        "{err}"
    );
}

#[test]
fn record_attempt_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    store
        .apply_effects(&alerts_only(vec![alert(
            "web",
            AlertStatus::Pending,
            1_000,
        )]))
        .unwrap();
    let id = store.alerts(1).unwrap()[0].id;
    store
        .record_attempt(id, &failed(2_000, "gave up"), NextStep::Expired)
        .unwrap();
    let a = &store.alerts(1).unwrap()[0];
    assert_eq!(a.status, AlertStatus::Expired);
    assert_eq!(a.attempts, 1);
    assert_eq!(a.sent_ms, None);
    assert_eq!(a.last_error.as_deref(), Some("gave up"));
    assert_eq!(store.alert_attempts(id).unwrap().len(), 1);
    assert!(store.due_alerts(i64::MAX, 10).unwrap().is_empty());
    assert!(store.alert_attempts(id + 1).unwrap().is_empty());
}

#[test]
fn release_held_makes_held_alerts_due_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    assert_eq!(store.release_held(1_000).unwrap(), 0);
    store
        .apply_effects(&alerts_only(vec![
            alert("a", AlertStatus::Held, 100),
            alert("b", AlertStatus::Suppressed, 100),
            alert("c", AlertStatus::Held, 90_000),
            alert("d", AlertStatus::Pending, 50_000),
        ]))
        .unwrap();
    assert!(store.due_alerts(i64::MAX, 10).unwrap().len() == 1);
    assert_eq!(store.release_held(7_000).unwrap(), 2);
    let due = store.due_alerts(7_000, 10).unwrap();
    assert_eq!(
        due.iter()
            .map(|a| (a.item.as_str(), a.status, a.next_attempt_ms))
            .collect::<Vec<_>>(),
        [
            ("a", AlertStatus::Pending, 7_000),
            ("c", AlertStatus::Pending, 7_000)
        ]
    );
    assert_eq!(store.next_due_ms().unwrap(), Some(7_000));
    assert_eq!(store.release_held(8_000).unwrap(), 0);
    let suppressed = store.alerts(10).unwrap();
    assert_eq!(
        suppressed.iter().find(|a| a.item == "b").unwrap().status,
        AlertStatus::Suppressed
    );
}

#[test]
fn alert_status_text() {
    for status in AlertStatus::ALL {
        assert_eq!(status.as_str().parse::<AlertStatus>().unwrap(), status);
        assert_eq!(status.to_string(), status.as_str());
    }
    assert_eq!("held".parse::<AlertStatus>().unwrap(), AlertStatus::Held);
    assert!("Sent".parse::<AlertStatus>().is_err());
    assert!("".parse::<AlertStatus>().is_err());
}
