//! `heartbeat-mock`: a development outage simulator.
//!
//! * Simulated services, each on its own TCP port, in one of several modes
//!   (healthy, HTTP error, timeout, down, slow, jitter, flapping, reset, slow body).
//! * The agent's dead-man heartbeat receiver (`POST /worker/heartbeat`).
//! * A webhook sink for alerts (`POST /sink/{channel}`).
//! * Simulated push clients: jobs pinging an agent's push URL on a schedule.
//! * Scripted scenarios (a timeline of mode changes).
//! * A controller UI and JSON API on one address.
//!
//! Everything is in-process so tests start it with [`start`] on port 0.

mod api;
mod jobs;
mod mode;
mod scenario;
mod service;
mod state;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub use api::app;
pub use jobs::{JobMode, JobSpec, JobStyle, JobView};
pub use mode::{Mode, SinkMode, WorkerMode};
pub use scenario::{Action, ScenarioStatus, Step, parse_scenario};
pub use state::{ApiError, InboxItem, ServiceView};
pub use state::{LogLine, Mock};

/// How the mock starts.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The controller (UI, API, heartbeat receiver, webhook sink).
    pub addr: SocketAddr,
    /// The address simulated services bind to.
    pub bind: IpAddr,
    /// Services created at start-up, on consecutive ports from `port_base`.
    pub services: Vec<String>,
    /// Port of the first configured service; 0 lets the OS pick each port.
    pub port_base: u16,
    /// The bearer token `POST /worker/heartbeat` expects.
    pub secret_key: String,
    /// A scenario started at once, if any.
    pub scenario: Option<Vec<Step>>,
    /// Push jobs started at once.
    pub jobs: Vec<JobSpec>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8099)),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            services: Vec::new(),
            port_base: 9001,
            secret_key: "dev-secret".to_owned(),
            scenario: None,
            jobs: Vec::new(),
        }
    }
}

/// Errors at start-up.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot listen on the controller address {addr}: {source}")]
    Controller {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("service {name}: {message}")]
    Service { name: String, message: String },
    #[error("job {name}: {message}")]
    Job { name: String, message: String },
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("controller server failed: {0}")]
    Serve(std::io::Error),
}

/// A started mock: its state and the controller's actual address.
#[derive(Debug)]
pub struct RunningMock {
    pub mock: Arc<Mock>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl RunningMock {
    /// `http://<controller address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningMock {
    fn drop(&mut self) {
        self.server.abort();
        self.mock.shutdown();
    }
}

/// Creates the configured services, binds the controller and serves it in a task.
pub async fn start(config: MockConfig) -> Result<RunningMock, MockError> {
    let mock = Mock::new(config.bind, config.secret_key.clone());
    for (i, name) in config.services.iter().enumerate() {
        let port = if config.port_base == 0 {
            0
        } else {
            u16::try_from(usize::from(config.port_base) + i)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| MockError::Service {
                    name: name.clone(),
                    message: format!("port {} + {i} is beyond 65535", config.port_base),
                })?
        };
        mock.create_service(name, port, Mode::Healthy)
            .await
            .map_err(|e| MockError::Service {
                name: name.clone(),
                message: e.message,
            })?;
    }
    for spec in config.jobs {
        let name = spec.name.clone();
        mock.create_job(spec).map_err(|e| MockError::Job {
            name,
            message: e.message,
        })?;
    }
    if let Some(steps) = config.scenario {
        mock.load_scenario(steps)
            .map_err(|e| MockError::Scenario(e.message))?;
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| MockError::Controller {
            addr: config.addr,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| MockError::Controller {
            addr: config.addr,
            source,
        })?;
    let router = app(mock.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    mock.log("mock", format!("controller listening on http://{addr}"));
    Ok(RunningMock { mock, addr, server })
}

/// Runs the mock until `shutdown` resolves, then closes every listener.
pub async fn serve(
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), MockError> {
    let running = start(config).await?;
    for s in running.mock.services() {
        tracing::info!(service = %s.name, url = %s.url, "simulated service");
    }
    tracing::info!(url = %running.url(), "controller UI");
    let mut running = running;
    tokio::select! {
        () = shutdown => {
            running.mock.log("mock", "shutting down".to_owned());
            Ok(())
        }
        r = &mut running.server => match r {
            Ok(r) => r.map_err(MockError::Serve),
            Err(e) => Err(MockError::Serve(std::io::Error::other(e))),
        },
    }
}
