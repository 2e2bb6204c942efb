//! Scenarios: a timeline of mode changes, run by one task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::jobs::{JOB_MODES, JobMode};
use crate::mode::{Fields, Mode, SinkMode, WORKER_MODES, WorkerMode};
use crate::state::{ApiError, Mock, now_ms};

/// The longest scenario accepted: one week.
const MAX_AT_S: f64 = 7.0 * 86_400.0;

/// What a step changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Action {
    Service { service: String, mode: Mode },
    Worker { worker: WorkerMode },
    Sink { sink: SinkMode },
    Job { job: String, mode: JobMode },
}

/// One step: at `at_s` seconds after the start, apply `action`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at_s: f64,
    #[serde(flatten)]
    pub action: Action,
}

impl Step {
    fn describe(&self) -> String {
        match &self.action {
            Action::Service { service, mode } => format!("{service} -> {}", mode.describe()),
            Action::Worker { worker } => format!("worker receiver -> {}", worker.as_str()),
            Action::Sink { sink } => format!("webhook sink -> {}", sink.as_str()),
            Action::Job { job, mode } => format!("job {job} -> {}", mode.as_str()),
        }
    }
}

/// Parses a scenario: `[step, ...]` or `{"steps": [step, ...]}`. Steps are sorted by `at_s`.
pub fn parse_scenario(value: &Value) -> Result<Vec<Step>, ApiError> {
    let steps = match value {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("steps") {
            Some(Value::Array(a)) => a,
            _ => return Err(ApiError::bad("steps: expected an array of steps".into())),
        },
        _ => {
            return Err(ApiError::bad(
                "expected an array of steps or {\"steps\": [...]}".into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let prefix = format!("steps[{i}]");
        let obj = step
            .as_object()
            .ok_or_else(|| ApiError::bad(format!("{prefix}: expected a JSON object")))?;
        let f = Fields {
            obj,
            prefix: &prefix,
        };
        let at_s = obj
            .get("at_s")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0 && *t <= MAX_AT_S)
            .ok_or_else(|| f.err("at_s", format!("required, seconds from 0 to {MAX_AT_S}")))?;
        if let Some(job) = f.string("job")? {
            if obj.contains_key("service") || obj.contains_key("worker") || obj.contains_key("sink")
            {
                return Err(ApiError::bad(format!(
                    "{prefix}: needs exactly one of service+mode, worker, sink or job+mode"
                )));
            }
            let m = f
                .string("mode")?
                .ok_or_else(|| f.err("mode", format!("required with job, one of {JOB_MODES}")))?;
            let mode = JobMode::parse(&m).ok_or_else(|| {
                f.err(
                    "mode",
                    format!("unknown job mode {m:?}; expected one of {JOB_MODES}"),
                )
            })?;
            out.push(Step {
                at_s,
                action: Action::Job { job, mode },
            });
            continue;
        }
        let service = f.string("service")?;
        let worker = f.string("worker")?;
        let sink = f.string("sink")?;
        let action = match (service, obj.get("mode"), worker, sink) {
            (Some(service), Some(mode), None, None) => Action::Service {
                mode: Mode::from_json(mode, &format!("{prefix}.mode"))?,
                service,
            },
            (Some(_), None, None, None) => {
                return Err(f.err("mode", "required with service".into()));
            }
            (None, None, Some(w), None) => Action::Worker {
                worker: WorkerMode::parse(&w).ok_or_else(|| {
                    f.err(
                        "worker",
                        format!("unknown mode {w:?}; expected one of {WORKER_MODES}"),
                    )
                })?,
            },
            (None, None, None, Some(s)) => Action::Sink {
                sink: SinkMode::parse(&s).ok_or_else(|| {
                    f.err("sink", format!("unknown mode {s:?}; expected up or down"))
                })?,
            },
            _ => {
                return Err(ApiError::bad(format!(
                    "{prefix}: needs exactly one of service+mode, worker, sink or job+mode"
                )));
            }
        };
        out.push(Step { at_s, action });
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Ok(out)
}

#[derive(Debug, Default)]
pub(crate) struct ScenarioState {
    steps: Vec<Step>,
    started: Option<(Instant, i64)>,
    /// Steps applied so far in the current run.
    applied: usize,
    running: bool,
    task: Option<tokio::task::JoinHandle<()>>,
    run_id: u64,
}

impl ScenarioState {
    pub(crate) fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.running = false;
    }
}

/// The scenario as `GET /api/scenario` shows it.
#[derive(Debug, Serialize)]
pub struct ScenarioStatus {
    pub running: bool,
    pub started_at_ms: Option<i64>,
    pub elapsed_s: Option<f64>,
    /// Index of the last applied step, if any.
    pub current_step: Option<usize>,
    pub current: Option<String>,
    pub next_step: Option<usize>,
    pub next: Option<String>,
    pub next_in_s: Option<f64>,
    pub steps: Vec<Step>,
}

impl Mock {
    /// Replaces the scenario and starts it. Service steps must name existing services.
    pub fn load_scenario(self: &Arc<Self>, steps: Vec<Step>) -> Result<ScenarioStatus, ApiError> {
        {
            let mut inner = self.lock();
            for (i, step) in steps.iter().enumerate() {
                if let Action::Service { service, .. } = &step.action
                    && !inner.services.contains_key(service)
                {
                    return Err(ApiError::bad(format!(
                        "steps[{i}].service: no service named {service:?}"
                    )));
                }
                if let Action::Job { job, .. } = &step.action
                    && !inner.jobs.contains_key(job)
                {
                    return Err(ApiError::bad(format!(
                        "steps[{i}].job: no job named {job:?}"
                    )));
                }
            }
            inner.scenario.stop();
            inner.scenario.steps = steps;
            let n = inner.scenario.steps.len();
            inner.push_log("scenario", format!("loaded {n} steps"));
        }
        self.start_scenario()
    }

    /// (Re)starts the loaded scenario from its beginning.
    pub fn start_scenario(self: &Arc<Self>) -> Result<ScenarioStatus, ApiError> {
        let mut inner = self.lock();
        if inner.scenario.steps.is_empty() {
            return Err(ApiError::bad(
                "steps: no scenario loaded (POST /api/scenario first)".into(),
            ));
        }
        inner.scenario.stop();
        let started = Instant::now();
        inner.scenario.started = Some((started, now_ms()));
        inner.scenario.applied = 0;
        inner.scenario.running = true;
        inner.scenario.run_id += 1;
        let run_id = inner.scenario.run_id;
        let steps = inner.scenario.steps.clone();
        inner.scenario.task = Some(tokio::spawn(run(self.clone(), steps, started, run_id)));
        inner.push_log("scenario", "started".into());
        drop(inner);
        Ok(self.scenario())
    }

    pub fn stop_scenario(&self) -> ScenarioStatus {
        {
            let mut inner = self.lock();
            if inner.scenario.running {
                inner.scenario.stop();
                inner.push_log("scenario", "stopped".into());
            }
        }
        self.scenario()
    }

    pub fn scenario(&self) -> ScenarioStatus {
        let inner = self.lock();
        let s = &inner.scenario;
        let elapsed = s.started.map(|(t, _)| t.elapsed().as_secs_f64());
        let next = s.steps.get(s.applied).filter(|_| s.running);
        ScenarioStatus {
            running: s.running,
            started_at_ms: s.started.map(|(_, ms)| ms),
            elapsed_s: elapsed,
            current_step: s.applied.checked_sub(1),
            current: s
                .applied
                .checked_sub(1)
                .and_then(|i| s.steps.get(i))
                .map(Step::describe),
            next_step: next.map(|_| s.applied),
            next: next.map(Step::describe),
            next_in_s: next.zip(elapsed).map(|(n, e)| (n.at_s - e).max(0.0)),
            steps: s.steps.clone(),
        }
    }
}

async fn run(mock: Arc<Mock>, steps: Vec<Step>, started: Instant, run_id: u64) {
    for (i, step) in steps.iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs_f64(step.at_s)).into()).await;
        let source = format!("scenario step {i}");
        match &step.action {
            Action::Service { service, mode } => {
                if let Err(e) = mock.set_mode(service, *mode, &source) {
                    mock.log(&source, e.message);
                }
            }
            Action::Worker { worker } => mock.set_worker_mode(*worker, &source),
            Action::Sink { sink } => mock.set_sink_mode(*sink, &source),
            Action::Job { job, mode } => {
                if let Err(e) = mock.set_job_mode(job, *mode, &source) {
                    mock.log(&source, e.message);
                }
            }
        }
        let mut inner = mock.lock();
        if inner.scenario.run_id != run_id {
            return;
        }
        inner.scenario.applied = i + 1;
    }
    let mut inner = mock.lock();
    if inner.scenario.run_id == run_id {
        inner.scenario.running = false;
        inner.scenario.task = None;
        inner.push_log("scenario", "finished".into());
    }
}
