//! Simulated push clients: jobs that ping an agent's push URL on a schedule, using
//! the real `heartbeat-client`, and that can be told to fail or fall silent.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use heartbeat_client::{
    Client, ClientOptions, KumaStatus, Ping, Signal, Url, new_run_id, parse_url, redact_url,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::mode::Fields;
use crate::state::{ApiError, Mock, now_ms, validate_name};

/// Shortest and longest interval between runs.
const MIN_INTERVAL_S: f64 = 0.05;
const MAX_INTERVAL_S: f64 = 86_400.0;
/// Longest simulated run.
const MAX_RUN_MS: u64 = 3_600_000;
pub const JOB_MODES: &str = "ok, fail, silent";

/// What a job does at each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// Reports success.
    Ok,
    /// Reports failure (exit status 1, `/fail`, or Kuma `status=down`).
    Fail,
    /// Sends nothing: the agent should see it late, then down.
    Silent,
}

impl JobMode {
    pub fn parse(s: &str) -> Option<JobMode> {
        match s {
            "ok" => Some(JobMode::Ok),
            "fail" => Some(JobMode::Fail),
            "silent" => Some(JobMode::Silent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Ok => "ok",
            JobMode::Fail => "fail",
            JobMode::Silent => "silent",
        }
    }
}

/// Which push API a job speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStyle {
    /// healthchecks.io style (`…/ping/<token>`): `/start?rid=`, then `/0` or `/1` with a body
    /// after `run_ms`; with `run_ms` 0 a plain success ping or `/fail`.
    Ping,
    /// Uptime Kuma style (`…/api/push/<token>`): `status=up&ping=<run_ms>` or `status=down&msg=…`.
    Kuma,
}

#[derive(Debug)]
pub(crate) struct JobEntry {
    url: Url,
    style: JobStyle,
    interval_s: f64,
    run_ms: u64,
    mode: JobMode,
    runs: u64,
    errors: u64,
    last_result: Option<String>,
    last_ok: Option<bool>,
    last_at_ms: Option<i64>,
    /// Bumped on every change; the job's task wakes on it. Dropping it ends the task.
    control: watch::Sender<u64>,
}

/// A job as the API shows it; the URL is redacted (it holds the token).
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub name: String,
    pub url: String,
    pub style: JobStyle,
    pub interval_s: f64,
    pub run_ms: u64,
    pub mode: JobMode,
    /// Runs performed (pings attempted), silent intervals excluded.
    pub runs: u64,
    /// Runs whose ping failed (network error or non-2xx answer).
    pub errors: u64,
    pub last_result: Option<String>,
    /// Whether the last run's ping was acknowledged.
    pub last_ok: Option<bool>,
    pub last_at_ms: Option<i64>,
}

/// What `POST /api/jobs` creates.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub url: Url,
    pub style: JobStyle,
    pub interval_s: f64,
    pub run_ms: u64,
    pub mode: JobMode,
}

impl JobSpec {
    /// A job with the defaults: style from the URL, every 10 s, runs of 0 ms, mode ok.
    pub fn new(name: &str, url: Url) -> JobSpec {
        let style = style_of(&url);
        JobSpec {
            name: name.to_owned(),
            url,
            style,
            interval_s: 10.0,
            run_ms: 0,
            mode: JobMode::Ok,
        }
    }

    /// Parses `{name, url, style?, interval_s?, run_ms?, mode?}`.
    pub(crate) fn from_json(f: &Fields<'_>) -> Result<JobSpec, ApiError> {
        let name = f
            .string("name")?
            .ok_or_else(|| f.err("name", "required".into()))?;
        let url_text = f.string("url")?.ok_or_else(|| {
            f.err(
                "url",
                "required: the push URL, e.g. http://127.0.0.1:8101/ping/<token>".into(),
            )
        })?;
        let url = parse_url("url", &url_text).map_err(|e| ApiError::bad(e.to_string()))?;
        let mut spec = JobSpec::new(&name, url);
        if let Some(s) = f.string("style")? {
            spec.style = match s.as_str() {
                "ping" => JobStyle::Ping,
                "kuma" => JobStyle::Kuma,
                other => {
                    return Err(f.err(
                        "style",
                        format!("unknown style {other:?}; expected ping or kuma"),
                    ));
                }
            };
        }
        match f.obj.get("interval_s") {
            None | Some(serde_json::Value::Null) => {}
            Some(v) => {
                spec.interval_s = v
                    .as_f64()
                    .filter(|s| s.is_finite() && (MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(s))
                    .ok_or_else(|| {
                        f.err(
                            "interval_s",
                            format!("expected seconds from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"),
                        )
                    })?;
            }
        }
        if let Some(ms) = f.uint("run_ms")? {
            if ms > MAX_RUN_MS {
                return Err(f.err(
                    "run_ms",
                    format!("{ms} ms is more than the maximum {MAX_RUN_MS} ms"),
                ));
            }
            spec.run_ms = ms;
        }
        if let Some(m) = f.string("mode")? {
            spec.mode = JobMode::parse(&m).ok_or_else(|| {
                f.err(
                    "mode",
                    format!("unknown mode {m:?}; expected one of {JOB_MODES}"),
                )
            })?;
        }
        Ok(spec)
    }
}

/// `…/api/push/…` is Kuma style; anything else healthchecks.io style.
fn style_of(url: &Url) -> JobStyle {
    let segments: Vec<&str> = url.path_segments().into_iter().flatten().collect();
    if segments.windows(2).any(|w| w == ["api", "push"]) {
        JobStyle::Kuma
    } else {
        JobStyle::Ping
    }
}

fn view(name: &str, j: &JobEntry) -> JobView {
    JobView {
        name: name.to_owned(),
        url: redact_url(&j.url),
        style: j.style,
        interval_s: j.interval_s,
        run_ms: j.run_ms,
        mode: j.mode,
        runs: j.runs,
        errors: j.errors,
        last_result: j.last_result.clone(),
        last_ok: j.last_ok,
        last_at_ms: j.last_at_ms,
    }
}

fn job_not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job named {name:?}"))
}

impl Mock {
    /// Creates a job and starts its task; the first run is at once (unless silent).
    pub fn create_job(self: &Arc<Self>, spec: JobSpec) -> Result<JobView, ApiError> {
        validate_name(&spec.name)?;
        let client = Client::new(ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            // The next run is the retry; a simulated job should show failures as they are.
            retries: 0,
            use_system_proxy: false,
            user_agent: "heartbeat-mock".into(),
            ..ClientOptions::default()
        })
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let (control, control_rx) = watch::channel(0u64);
        let mut inner = self.lock();
        if inner.jobs.contains_key(&spec.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("name: a job named {:?} already exists", spec.name),
            ));
        }
        let entry = JobEntry {
            url: spec.url,
            style: spec.style,
            interval_s: spec.interval_s,
            run_ms: spec.run_ms,
            mode: spec.mode,
            runs: 0,
            errors: 0,
            last_result: None,
            last_ok: None,
            last_at_ms: None,
            control,
        };
        let v = view(&spec.name, &entry);
        inner.jobs.insert(spec.name.clone(), entry);
        inner.push_log(
            "jobs",
            format!(
                "{}: created, {} style, every {} s, mode {}",
                spec.name,
                match v.style {
                    JobStyle::Ping => "ping",
                    JobStyle::Kuma => "kuma",
                },
                v.interval_s,
                v.mode.as_str()
            ),
        );
        drop(inner);
        tokio::spawn(run_job(self.clone(), spec.name, client, control_rx));
        Ok(v)
    }

    pub fn jobs(&self) -> Vec<JobView> {
        self.lock().jobs.iter().map(|(n, j)| view(n, j)).collect()
    }

    pub fn job(&self, name: &str) -> Option<JobView> {
        self.lock().jobs.get(name).map(|j| view(name, j))
    }

    /// Changes a job's mode; a job switched to ok or fail runs at once.
    pub fn set_job_mode(
        &self,
        name: &str,
        mode: JobMode,
        source: &str,
    ) -> Result<JobView, ApiError> {
        let mut inner = self.lock();
        let j = inner
            .jobs
            .get_mut(name)
            .ok_or_else(|| job_not_found(name))?;
        j.mode = mode;
        j.control.send_modify(|g| *g += 1);
        let v = view(name, j);
        inner.push_log(source, format!("job {name}: mode {}", mode.as_str()));
        Ok(v)
    }

    pub fn delete_job(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        // Dropping the control sender ends the job's task.
        inner.jobs.remove(name).ok_or_else(|| job_not_found(name))?;
        inner.push_log("api", format!("job {name}: deleted"));
        Ok(())
    }

    fn record_job(&self, name: &str, result: Result<String, String>) {
        let mut inner = self.lock();
        let Some(j) = inner.jobs.get_mut(name) else {
            return;
        };
        j.runs += 1;
        j.last_at_ms = Some(now_ms());
        j.last_ok = Some(result.is_ok());
        let text = match result {
            Ok(t) => t,
            Err(t) => {
                j.errors += 1;
                t
            }
        };
        j.last_result = Some(text.clone());
        inner.push_log("jobs", format!("{name}: {text}"));
    }
}

/// One run of a job; `Ok`/`Err` is whether the agent acknowledged it, with a line for the log.
async fn run_once(
    client: &Client,
    url: &Url,
    style: JobStyle,
    mode: JobMode,
    run_ms: u64,
) -> Result<String, String> {
    let what = mode.as_str();
    let done = |r: Result<heartbeat_client::Ack, heartbeat_client::ClientError>| match r {
        Ok(ack) => Ok(format!("{what} -> {}", ack.status)),
        Err(e) => Err(format!("{what} -> {e}")),
    };
    match style {
        JobStyle::Kuma => {
            let (status, msg) = match mode {
                JobMode::Fail => (KumaStatus::Down, Some("simulated failure")),
                _ => (KumaStatus::Up, None),
            };
            #[allow(clippy::cast_precision_loss)]
            let ping = Some(run_ms as f64);
            done(client.kuma_push(url, status, msg, ping).await)
        }
        JobStyle::Ping if run_ms == 0 => {
            let ping = match mode {
                JobMode::Fail => Ping::new(Signal::Fail).body("simulated failure"),
                _ => Ping::new(Signal::Success),
            };
            done(client.ping(url, &ping).await)
        }
        JobStyle::Ping => {
            let rid = new_run_id();
            if let Err(e) = client.ping(url, &Ping::new(Signal::Start).rid(&rid)).await {
                return Err(format!("{what}: start -> {e}"));
            }
            tokio::time::sleep(Duration::from_millis(run_ms)).await;
            let ping = match mode {
                JobMode::Fail => {
                    Ping::new(Signal::Exit(1)).body("simulated failure: exit status 1")
                }
                _ => Ping::new(Signal::Exit(0)).body("simulated run: ok"),
            };
            done(client.ping(url, &ping.rid(rid)).await)
        }
    }
}

async fn run_job(mock: Arc<Mock>, name: String, client: Client, mut control: watch::Receiver<u64>) {
    loop {
        let snapshot = {
            let inner = mock.lock();
            inner
                .jobs
                .get(&name)
                .map(|j| (j.url.clone(), j.style, j.mode, j.run_ms, j.interval_s))
        };
        let Some((url, style, mode, run_ms, interval_s)) = snapshot else {
            return;
        };
        control.mark_unchanged();
        if mode != JobMode::Silent {
            let result = run_once(&client, &url, style, mode, run_ms).await;
            mock.record_job(&name, result);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(interval_s)) => {}
            changed = control.changed() => if changed.is_err() { return },
        }
    }
}
