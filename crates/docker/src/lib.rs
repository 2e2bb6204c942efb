//! `docker:<container>` probes.
//!
//! [`DockerProber`] asks the Docker engine about one container per call
//! (`GET /containers/<name>/json`) and maps the answer to a [`CheckResult`].
//! Unlike the replaced system it honours Docker's own health checks and notices
//! crash loops.
//!
//! # Connecting
//!
//! The prober never fails to construct. It connects on first use, to the
//! `DOCKER_HOST` value it was given (`unix:///path`, a bare `/path`, `tcp://host:port`
//! or `http://host:port`; TLS is not supported) or to `/var/run/docker.sock`.
//! When connecting or a request fails, the call reports `unknown` and the next
//! call tries again, so the agent recovers by itself once the socket appears or
//! the engine comes back. Every request is bounded by the probe's timeout
//! (bollard's own 120 s default never applies).
//!
//! # State → status mapping
//!
//! Checked in this order; the first matching row wins. "Restarted N" means the
//! container's `RestartCount` rose by N since the previous probe of the same
//! target (the first probe of a target only records a baseline, and a container
//! recreated under the same name — new id — starts a new baseline).
//!
//! | Engine says | Status | `error_message` |
//! |---|---|---|
//! | engine unreachable (no socket, permission denied, refused, timeout, other error) | `unknown` | e.g. `docker: socket /var/run/docker.sock not found`, `docker: permission denied on /var/run/docker.sock (add the agent to the socket's group)`, `docker: timeout after 2s` |
//! | no such container (404) | `down` | `container not found` |
//! | `running`, restarted N > 0 | `error` | `restarted N times` |
//! | `running`, health `unhealthy` | `error` | `unhealthy: <last health-check output, one line, ≤ 200 chars>` |
//! | `running`, health `starting` with failed checks (`FailingStreak` > 0) | `error` | `starting, health check failed N times: <output>` |
//! | `running`, health `starting` with no failure yet | `healthy` | — |
//! | `running`, health `healthy` or no health check | `healthy` | — |
//! | `restarting` | `down` | `restarting`, with details: `restarting (last exit 1, restarted 2 times)` |
//! | `exited` | `down` | `exited (<code>)`, plus `, OOM killed`, `: <engine error>`, `, restarted N times` when they apply: `exited (137), OOM killed` |
//! | `dead` | `down` | `dead` or `dead (<code>)`, same suffixes |
//! | `created` | `down` | `created (never started)`, plus `: <engine error>` when a start failed |
//! | `paused` / `removing` / `stopping` | `down` | `paused` / `removing` / `stopping` |
//! | no or empty state | `unknown` | `docker: the engine reported … state …` |
//!
//! `latency_ms` is the duration of the inspect call whenever the engine answered
//! (whatever the container's state), and `None` when it did not. `status_code`
//! is always `None`.
//!
//! Precedence notes: a restart seen since the last probe outranks Docker's health
//! verdict (a container that just crashed and came back is reported once as
//! `error`, then follows its health again). A crash-looping container is usually
//! caught between two runs, in `restarting`: that is `down`, because nothing is
//! serving, and the message carries the restart count. A `starting` container is
//! given the benefit of the doubt until one of its checks fails.

mod classify;
mod error;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptions;
use heartbeat_core::{CheckResult, Status};

pub use error::DockerError;

/// Socket used when no `DOCKER_HOST` is configured.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Bound on [`DockerProber::running_count`]'s request.
pub const DEFAULT_COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Message of a probe whose container does not exist (never did, or was removed).
pub const NOT_FOUND: &str = "container not found";

/// Where the engine listens, parsed from `DOCKER_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// Path of a unix socket.
    Unix(String),
    /// `tcp://host:port` or `http://host:port`, as given.
    Http(String),
    /// A value this prober cannot use; every call reports it.
    Unsupported(String),
}

impl Endpoint {
    fn parse(docker_host: Option<&str>) -> Endpoint {
        let host = docker_host.map(str::trim).filter(|h| !h.is_empty());
        let Some(host) = host else {
            return Endpoint::Unix(DEFAULT_SOCKET.to_owned());
        };
        if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(path.to_owned())
        } else if host.starts_with('/') {
            Endpoint::Unix(host.to_owned())
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Endpoint::Http(host.to_owned())
        } else {
            Endpoint::Unsupported(host.to_owned())
        }
    }

    /// How the endpoint is named in messages: the socket path or the address.
    fn display(&self) -> &str {
        match self {
            Endpoint::Unix(path) => path,
            Endpoint::Http(addr) | Endpoint::Unsupported(addr) => addr,
        }
    }

    fn connect(&self) -> Result<Docker, DockerError> {
        // bollard's timeout is replaced per request (see `DockerProber::client`).
        let placeholder_secs = DEFAULT_COUNT_TIMEOUT.as_secs();
        let result = match self {
            Endpoint::Unix(path) => Docker::connect_with_unix(
                &format!("unix://{path}"),
                placeholder_secs,
                bollard::API_DEFAULT_VERSION,
            ),
            Endpoint::Http(addr) => {
                Docker::connect_with_http(addr, placeholder_secs, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Unsupported(host) => return Err(DockerError::UnsupportedHost(host.clone())),
        };
        result.map_err(|e| DockerError::from_bollard(&e, self.display()))
    }
}

/// Probes containers through the Docker engine API. Cheap to share: wrap it in an
/// `Arc` and call it from concurrent tasks.
#[derive(Debug)]
pub struct DockerProber {
    endpoint: Endpoint,
    /// `None` until a connection attempt succeeds.
    client: Mutex<Option<Docker>>,
    /// Per probed target: the container id and its `RestartCount` at the previous probe.
    restarts: Mutex<HashMap<String, (String, i64)>>,
    /// The last engine error reported in the log, so that an outage is logged once.
    last_error: Mutex<Option<String>>,
}

impl Default for DockerProber {
    fn default() -> Self {
        DockerProber::new(None)
    }
}

enum Inspect {
    Found(Box<ContainerInspectResponse>),
    NotFound,
}

impl DockerProber {
    /// A prober for the engine at `docker_host` (a `DOCKER_HOST` value), or at
    /// [`DEFAULT_SOCKET`] when `None` or empty. Never fails and does no I/O:
    /// connecting happens on the first call, and is retried on later calls
    /// until it succeeds. An unusable value makes every call report `unknown`.
    pub fn new(docker_host: Option<String>) -> DockerProber {
        DockerProber {
            endpoint: Endpoint::parse(docker_host.as_deref()),
            client: Mutex::new(None),
            restarts: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
        }
    }

    /// The socket path or address this prober talks to, for logs and diagnostics.
    pub fn endpoint(&self) -> &str {
        self.endpoint.display()
    }

    /// Probes one container, by name or id, within `timeout`. Never fails: problems
    /// are expressed as a status and message (see the crate docs for the mapping).
    pub async fn probe(&self, container: &str, timeout: Duration) -> CheckResult {
        let started = Instant::now();
        let answer = self.inspect(container, timeout).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(Inspect::Found(info)) => {
                let restarted = self.restarts_since_last_probe(container, &info);
                let (status, error_message) = classify::classify(&info, restarted);
                CheckResult {
                    status,
                    status_code: None,
                    latency_ms: Some(latency_ms),
                    error_message,
                }
            }
            Ok(Inspect::NotFound) => {
                self.lock_restarts().remove(container);
                CheckResult {
                    status: Status::Down,
                    status_code: None,
                    latency_ms: Some(latency_ms),
                    error_message: Some(NOT_FOUND.to_owned()),
                }
            }
            Err(err) => CheckResult::failed(Status::Unknown, err.to_string()),
        }
    }

    /// Number of running containers, or `None` when the engine cannot be asked
    /// within [`DEFAULT_COUNT_TIMEOUT`] (the replaced system stored -1; we store NULL).
    pub async fn running_count(&self) -> Option<i64> {
        self.try_running_count(DEFAULT_COUNT_TIMEOUT).await.ok()
    }

    /// Number of running containers (paused ones excluded), or why the engine could not tell.
    pub async fn try_running_count(&self, timeout: Duration) -> Result<i64, DockerError> {
        let result = self.list_running(timeout).await;
        self.note_engine(result.as_ref().map(|_| ()));
        result
    }

    async fn list_running(&self, timeout: Duration) -> Result<i64, DockerError> {
        let docker = self.client(timeout)?;
        let options = ListContainersOptions {
            all: false,
            filters: Some(HashMap::from([(
                "status".to_owned(),
                vec!["running".to_owned()],
            )])),
            ..Default::default()
        };
        let listed = tokio::time::timeout(timeout, docker.list_containers(Some(options)))
            .await
            .map_err(|_| DockerError::Timeout(timeout))?
            .map_err(|e| DockerError::from_bollard(&e, self.endpoint()))?;
        Ok(i64::try_from(listed.len()).unwrap_or(i64::MAX))
    }

    async fn inspect(&self, container: &str, timeout: Duration) -> Result<Inspect, DockerError> {
        let name = container_ref(container)?;
        let result = self.inspect_engine(name, timeout).await;
        self.note_engine(result.as_ref().map(|_| ()));
        result
    }

    async fn inspect_engine(&self, name: &str, timeout: Duration) -> Result<Inspect, DockerError> {
        let docker = self.client(timeout)?;
        let answer = tokio::time::timeout(timeout, docker.inspect_container(name, None))
            .await
            .map_err(|_| DockerError::Timeout(timeout))?;
        match answer {
            Ok(info) => Ok(Inspect::Found(Box::new(info))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Inspect::NotFound),
            Err(e) => Err(DockerError::from_bollard(&e, self.endpoint())),
        }
    }

    /// The shared client, connecting first if no attempt has succeeded yet. The
    /// returned handle shares the connection pool; only its timeout is its own.
    fn client(&self, timeout: Duration) -> Result<Docker, DockerError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let docker = match slot.as_ref() {
            Some(docker) => docker.clone(),
            None => {
                let docker = self.endpoint.connect()?;
                *slot = Some(docker.clone());
                docker
            }
        };
        drop(slot);
        // A backstop only: bollard counts whole seconds, so our own `tokio::time::timeout`
        // (exact) is set shorter and always fires first.
        Ok(docker.with_timeout(timeout.saturating_add(Duration::from_secs(2))))
    }

    /// Records the container's restart count and returns its rise since the previous probe.
    fn restarts_since_last_probe(&self, key: &str, info: &ContainerInspectResponse) -> i64 {
        let (Some(id), Some(count)) = (info.id.as_ref(), info.restart_count) else {
            return 0;
        };
        let previous = self
            .lock_restarts()
            .insert(key.to_owned(), (id.clone(), count));
        match previous {
            Some((previous_id, previous_count)) if previous_id == *id && count > previous_count => {
                count - previous_count
            }
            _ => 0,
        }
    }

    fn lock_restarts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.restarts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs an outage when it starts or changes, and the recovery, not every call.
    fn note_engine(&self, outcome: Result<(), &DockerError>) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!(endpoint = self.endpoint(), "docker engine reachable again");
                }
            }
            // A config problem about one target, not an engine outage.
            Err(DockerError::InvalidName(_)) => {}
            Err(err) => {
                let text = err.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(endpoint = self.endpoint(), error = %text, "docker engine unavailable");
                    *last = Some(text);
                }
            }
        }
    }
}

/// Checks that `container` can be a container name or id (so that it cannot reach
/// another API path) and drops the leading `/` Docker shows in names.
fn container_ref(container: &str) -> Result<&str, DockerError> {
    let name = container.trim();
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(name)
    } else {
        Err(DockerError::InvalidName(container.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            Endpoint::parse(None),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse(Some("  ")),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse(Some("unix:///run/user/1000/docker.sock")),
            Endpoint::Unix("/run/user/1000/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse(Some("/run/docker.sock")),
            Endpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse(Some("tcp://10.0.0.2:2375")),
            Endpoint::Http("tcp://10.0.0.2:2375".into())
        );
        assert_eq!(
            Endpoint::parse(Some("http://proxy:2375")),
            Endpoint::Http("http://proxy:2375".into())
        );
        assert_eq!(
            Endpoint::parse(Some("ssh://me@host")),
            Endpoint::Unsupported("ssh://me@host".into())
        );
    }

    #[test]
    fn container_references() {
        assert_eq!(container_ref("web"), Ok("web"));
        assert_eq!(container_ref("/my_app-1.db"), Ok("my_app-1.db"));
        assert_eq!(container_ref("4f2a9c"), Ok("4f2a9c"));
        for bad in ["", "/", "../info", "a/b", "x?all=1", "-x", "a b"] {
            assert!(
                matches!(container_ref(bad), Err(DockerError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[tokio::test]
    async fn unsupported_host_and_invalid_names_are_unknown() {
        let prober = DockerProber::new(Some("ssh://me@host".into()));
        let result = prober.probe("web", Duration::from_secs(1)).await;
        assert_eq!(result.status, Status::Unknown);
        assert!(
            result
                .error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("docker: unsupported DOCKER_HOST")),
            "{result:?}"
        );
        assert_eq!(prober.running_count().await, None);

        let result = DockerProber::default()
            .probe("../../info", Duration::from_secs(1))
            .await;
        assert_eq!(result.status, Status::Unknown);
        assert_eq!(
            result.error_message.as_deref(),
            Some("docker: invalid container name \"../../info\"")
        );
    }
}
