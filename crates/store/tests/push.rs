//! Push tables (schema v4) on real SQLite files.
#![allow(clippy::unwrap_used)]

use heartbeat_store::{
    PushDefinition, PushEvent, PushEventKind, PushOp, PushOpError, PushSource, PushTask, ReadStore,
    Store,
};

fn def(name: &str, source: PushSource, hash: u8, created: i64) -> PushDefinition {
    PushDefinition {
        service_id: if source == PushSource::Config {
            name.into()
        } else {
            format!("id-{name}")
        },
        name: name.into(),
        source,
        token_sha256: [hash; 32],
        period_ms: 60_000,
        grace_ms: 30_000,
        schedule: None,
        metadata: Some("{\"v\":1}".into()),
        created_at_ms: created,
    }
}

fn event(service_id: &str, ts_ms: i64, kind: PushEventKind) -> PushEvent {
    PushEvent {
        service_id: service_id.into(),
        ts_ms,
        kind,
        exit_code: None,
        rid: None,
        source: "hc".into(),
        duration_ms: None,
        message: None,
        body: Some("body".into()),
    }
}

#[test]
fn configured_targets_keep_their_creation_time_across_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store
        .push_sync_config(
            &[
                def("a", PushSource::Config, 1, 0),
                def("b", PushSource::Config, 2, 0),
            ],
            1_000,
        )
        .unwrap();
    // A later start with a new token for a and without b.
    store
        .push_sync_config(&[def("a", PushSource::Config, 3, 0)], 9_000)
        .unwrap();
    let loaded = store.push_targets().unwrap();
    assert_eq!(loaded.len(), 1);
    let a = &loaded[0].definition;
    assert_eq!(
        (a.name.as_str(), a.created_at_ms, a.token_sha256),
        ("a", 1_000, [3; 32])
    );
    assert_eq!(a.metadata, None);
}

#[test]
fn a_batch_commits_every_op_and_reports_each_failure_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store
        .push_sync_config(&[def("cfg", PushSource::Config, 1, 0)], 1_000)
        .unwrap();
    let results = store
        .push_apply(&[
            PushOp::Register(def("api", PushSource::Api, 2, 2_000)),
            PushOp::Register(def("cfg", PushSource::Api, 9, 2_000)),
            PushOp::Event(event("cfg", 3_000, PushEventKind::Start)),
            PushOp::Event(event("id-api", 3_500, PushEventKind::Success)),
            PushOp::Event(event("missing", 3_600, PushEventKind::Success)),
            PushOp::Event(event("cfg", 4_000, PushEventKind::Fail)),
            PushOp::Event(event("cfg", 5_000, PushEventKind::Log)),
            PushOp::Event(event("cfg", 6_000, PushEventKind::Start)),
        ])
        .unwrap();
    assert_eq!(
        results,
        [
            Ok(()),
            Err(PushOpError::NameTaken("cfg".into())),
            Ok(()),
            Ok(()),
            Err(PushOpError::UnknownTarget),
            Ok(()),
            Ok(()),
            Ok(()),
        ]
    );
    drop(store);
    let read = ReadStore::open(&path).unwrap();
    let loaded = read.push_targets().unwrap();
    let names: Vec<&str> = loaded.iter().map(|l| l.definition.name.as_str()).collect();
    assert_eq!(names, ["cfg", "api"]);
    let cfg = &loaded[0];
    // The newest sign of life is the failure (log and start are not), and the later start is open.
    assert_eq!(cfg.last_life.as_ref().unwrap().kind, PushEventKind::Fail);
    assert_eq!(cfg.open_start.as_ref().unwrap().ts_ms, 6_000);
    assert_eq!(read.push_events("cfg", 10).unwrap().len(), 4);
    assert_eq!(loaded[1].last_life.as_ref().unwrap().ts_ms, 3_500);
    assert!(loaded[1].open_start.is_none());
}

#[test]
fn deleting_a_target_takes_its_events_and_tasks_and_pruning_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open(&path).unwrap();
    store
        .push_apply(&[PushOp::Register(def("w", PushSource::Api, 5, 0))])
        .unwrap();
    let mut ops: Vec<PushOp> = (0..10)
        .map(|i| PushOp::Event(event("id-w", i * 1_000, PushEventKind::Success)))
        .collect();
    ops.push(PushOp::Task(PushTask {
        task_id: "t".into(),
        service_id: "id-w".into(),
        task_name: "import".into(),
        description: None,
        total_steps: 4,
        current_step: 1,
        status: "running".into(),
        message: None,
        metadata: None,
        started_at_ms: 100,
        updated_at_ms: 100,
        completed_at_ms: None,
    }));
    assert!(store.push_apply(&ops).unwrap().iter().all(Result::is_ok));
    assert_eq!(
        store.push_latest_task("w").unwrap().unwrap().current_step,
        1
    );

    // Events before 5 s, at most 3 per call.
    assert!(store.push_prune(5_000, 3).unwrap());
    assert_eq!(store.push_events("id-w", 50).unwrap().len(), 7);
    while store.push_prune(5_000, 3).unwrap() {}
    assert_eq!(store.push_events("id-w", 50).unwrap().len(), 5);

    let r = store
        .push_apply(&[
            PushOp::Delete {
                service_id: "id-w".into(),
            },
            PushOp::Delete {
                service_id: "id-w".into(),
            },
        ])
        .unwrap();
    assert_eq!(r, [Ok(()), Err(PushOpError::UnknownTarget)]);
    assert!(store.push_events("id-w", 50).unwrap().is_empty());
    assert!(store.push_latest_task("w").unwrap().is_none());
    assert!(store.integrity_check().unwrap());
}

#[test]
fn pruning_keeps_a_slow_jobs_last_success_and_start_and_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    store
        .push_apply(&[PushOp::Register(def("monthly", PushSource::Api, 7, 0))])
        .unwrap();
    let task = |id: &str, status: &str| {
        PushOp::Task(PushTask {
            task_id: id.into(),
            service_id: "id-monthly".into(),
            task_name: id.into(),
            description: None,
            total_steps: 4,
            current_step: 1,
            status: status.into(),
            message: None,
            metadata: None,
            started_at_ms: 100,
            updated_at_ms: 100,
            completed_at_ms: None,
        })
    };
    let ops = [
        PushOp::Event(event("id-monthly", 1_000, PushEventKind::Start)),
        PushOp::Event(event("id-monthly", 2_000, PushEventKind::Log)),
        PushOp::Event(event("id-monthly", 3_000, PushEventKind::Success)),
        task("running", "running"),
        task("done", "completed"),
    ];
    assert!(store.push_apply(&ops).unwrap().iter().all(Result::is_ok));
    // Everything is older than the retention: only the log and the finished task go.
    while store.push_prune(1_000_000, 100).unwrap() {}
    let kinds = |store: &Store| -> Vec<PushEventKind> {
        let mut k: Vec<_> = store
            .push_events("id-monthly", 50)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        k.reverse();
        k
    };
    assert_eq!(
        kinds(&store),
        [PushEventKind::Start, PushEventKind::Success]
    );
    let loaded = store.push_targets().unwrap();
    assert_eq!(loaded[0].last_life.as_ref().unwrap().ts_ms, 3_000);
    assert_eq!(
        store.push_latest_task("monthly").unwrap().unwrap().task_id,
        "running"
    );

    // A newer success makes the old one prunable; the start stays (newest of its kind).
    store
        .push_apply(&[PushOp::Event(event(
            "id-monthly",
            2_000_000,
            PushEventKind::Fail,
        ))])
        .unwrap();
    while store.push_prune(1_000_000, 100).unwrap() {}
    assert_eq!(kinds(&store), [PushEventKind::Start, PushEventKind::Fail]);
}
