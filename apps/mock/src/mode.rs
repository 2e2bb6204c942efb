//! Modes of simulated services, of the heartbeat receiver and of the webhook sink, and
//! their parsing from JSON with errors that name the offending field.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::state::ApiError;

/// Longest latency or period accepted (one hour), so a typo cannot wedge a service for days.
const MAX_MS: u64 = 3_600_000;

/// How a simulated service behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// 200 at once.
    Healthy,
    /// This HTTP code at once.
    Error { code: u16 },
    /// Accepts the connection and reads the request, never answers.
    Timeout,
    /// The listener is closed: connections are refused.
    Down,
    /// 200 after `ms`.
    Slow { ms: u64 },
    /// 200 after a random delay in `[min_ms, max_ms]`.
    Jitter { min_ms: u64, max_ms: u64 },
    /// Healthy for `period_s`, then down for `period_s`, and so on.
    Flapping { period_s: f64 },
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Headers at once, then the body one byte every `ms`.
    SlowBody { ms: u64 },
}

pub const MODE_KINDS: &str =
    "healthy, error, timeout, down, slow, jitter, flapping, reset, slow_body";

/// What a service does right now: flapping resolves to one of its two phases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effective {
    Up(Mode),
    Down,
}

impl Mode {
    /// The current behaviour and, for flapping, when it changes next.
    pub fn effective(self, since: Instant, now: Instant) -> (Effective, Option<Instant>) {
        match self {
            Mode::Down => (Effective::Down, None),
            Mode::Flapping { period_s } => {
                let period = Duration::from_secs_f64(period_s);
                let elapsed = now.saturating_duration_since(since);
                let n = (elapsed.as_secs_f64() / period_s).floor();
                // `n` is finite and below 2^53 for any realistic uptime.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let phase = n as u64;
                let next = since + period.mul_f64(n + 1.0);
                let state = if phase.is_multiple_of(2) {
                    Effective::Up(Mode::Healthy)
                } else {
                    Effective::Down
                };
                (state, Some(next))
            }
            other => (Effective::Up(other), None),
        }
    }

    /// Parses `{kind, code?, ms?, min_ms?, max_ms?, period_s?}`; `prefix` is prepended to
    /// field names in errors (e.g. `steps[2].mode.`).
    pub fn from_json(value: &Value, prefix: &str) -> Result<Mode, ApiError> {
        let obj = value.as_object().ok_or_else(|| {
            let at = if prefix.is_empty() { "body" } else { prefix };
            ApiError::bad(format!("{at}: expected a JSON object"))
        })?;
        let f = Fields { obj, prefix };
        let kind = f
            .string("kind")?
            .ok_or_else(|| f.err("kind", format!("required, one of {MODE_KINDS}")))?;
        let mode = match kind.as_str() {
            "healthy" => Mode::Healthy,
            "error" => {
                let code = f.uint("code")?.unwrap_or(500);
                if !(100..=599).contains(&code) {
                    return Err(f.err("code", format!("{code} is not an HTTP status (100-599)")));
                }
                Mode::Error {
                    code: u16::try_from(code).unwrap_or(500),
                }
            }
            "timeout" => Mode::Timeout,
            "down" => Mode::Down,
            "reset" => Mode::Reset,
            "slow" => Mode::Slow {
                ms: f.ms("ms")?.unwrap_or(1500),
            },
            "slow_body" => Mode::SlowBody {
                ms: f.ms("ms")?.unwrap_or(200),
            },
            "jitter" => {
                let min_ms = f.ms("min_ms")?.unwrap_or(0);
                let max_ms = f.ms("max_ms")?.unwrap_or(1000);
                if min_ms > max_ms {
                    return Err(f.err("max_ms", format!("{max_ms} is below min_ms {min_ms}")));
                }
                Mode::Jitter { min_ms, max_ms }
            }
            "flapping" => {
                let period_s = match f.obj.get("period_s") {
                    None | Some(Value::Null) => 10.0,
                    Some(v) => v
                        .as_f64()
                        .filter(|p| p.is_finite() && *p >= 0.05 && *p <= 3600.0)
                        .ok_or_else(|| {
                            f.err("period_s", "expected seconds between 0.05 and 3600".into())
                        })?,
                };
                Mode::Flapping { period_s }
            }
            other => {
                return Err(f.err(
                    "kind",
                    format!("unknown mode {other:?}; expected one of {MODE_KINDS}"),
                ));
            }
        };
        Ok(mode)
    }

    pub fn describe(self) -> String {
        match self {
            Mode::Healthy => "healthy".into(),
            Mode::Error { code } => format!("error {code}"),
            Mode::Timeout => "timeout".into(),
            Mode::Down => "down".into(),
            Mode::Slow { ms } => format!("slow {ms} ms"),
            Mode::Jitter { min_ms, max_ms } => format!("jitter {min_ms}-{max_ms} ms"),
            Mode::Flapping { period_s } => format!("flapping every {period_s} s"),
            Mode::Reset => "reset".into(),
            Mode::SlowBody { ms } => format!("slow body, a byte every {ms} ms"),
        }
    }
}

/// Typed access to the fields of a JSON object, with errors naming the field.
pub struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    pub prefix: &'a str,
}

impl Fields<'_> {
    pub fn err(&self, field: &str, message: String) -> ApiError {
        if self.prefix.is_empty() {
            ApiError::bad(format!("{field}: {message}"))
        } else {
            ApiError::bad(format!("{}.{field}: {message}", self.prefix))
        }
    }

    pub fn string(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(field, "expected a string".into())),
        }
    }

    pub fn uint(&self, field: &str) -> Result<Option<u64>, ApiError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(field, "expected a non-negative integer".into())),
        }
    }

    fn ms(&self, field: &str) -> Result<Option<u64>, ApiError> {
        match self.uint(field)? {
            Some(ms) if ms > MAX_MS => Err(self.err(
                field,
                format!("{ms} ms is more than the maximum {MAX_MS} ms"),
            )),
            other => Ok(other),
        }
    }
}

/// How `POST /worker/heartbeat` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerMode {
    /// 220 (blind) for the first heartbeat, 200 afterwards.
    Auto,
    Recorded,
    Recovered,
    Blind,
    Partial,
    Critical,
    Offline,
}

pub const WORKER_MODES: &str = "auto, recorded, recovered, blind, partial, critical, offline";

impl WorkerMode {
    pub fn parse(s: &str) -> Option<WorkerMode> {
        Some(match s {
            "auto" => WorkerMode::Auto,
            "recorded" => WorkerMode::Recorded,
            "recovered" => WorkerMode::Recovered,
            "blind" => WorkerMode::Blind,
            "partial" => WorkerMode::Partial,
            "critical" => WorkerMode::Critical,
            "offline" => WorkerMode::Offline,
            _ => return None,
        })
    }

    /// The answer's status code; `first` is whether no heartbeat was received before.
    pub fn code(self, first: bool) -> u16 {
        match self {
            WorkerMode::Auto if first => 220,
            WorkerMode::Auto | WorkerMode::Recorded | WorkerMode::Recovered => 200,
            WorkerMode::Blind => 220,
            WorkerMode::Partial => 221,
            WorkerMode::Critical => 500,
            WorkerMode::Offline => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerMode::Auto => "auto",
            WorkerMode::Recorded => "recorded",
            WorkerMode::Recovered => "recovered",
            WorkerMode::Blind => "blind",
            WorkerMode::Partial => "partial",
            WorkerMode::Critical => "critical",
            WorkerMode::Offline => "offline",
        }
    }
}

/// How `POST /sink/{channel}` answers: `up` 204, `down` 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    Up,
    Down,
}

impl SinkMode {
    pub fn parse(s: &str) -> Option<SinkMode> {
        match s {
            "up" => Some(SinkMode::Up),
            "down" => Some(SinkMode::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SinkMode::Up => "up",
            SinkMode::Down => "down",
        }
    }
}
