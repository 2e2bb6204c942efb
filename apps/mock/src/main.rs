//! `heartbeat-mock`: reads its configuration from flags or `MOCK_*` variables and serves.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use heartbeat_mock::MockConfig;

#[derive(Debug, Parser)]
#[command(
    name = "heartbeat-mock",
    version,
    about = "Development outage simulator: simulated services, heartbeat receiver, webhook sink and a controller UI."
)]
struct Cli {
    /// Controller address (UI, API, /worker/heartbeat, /sink/{channel}).
    #[arg(long, env = "MOCK_ADDR", default_value = "127.0.0.1:8099")]
    addr: SocketAddr,
    /// Address the simulated services listen on.
    #[arg(long, env = "MOCK_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Services to create at start-up, comma-separated.
    #[arg(long, env = "MOCK_SERVICES", value_delimiter = ',', default_value = "")]
    services: Vec<String>,
    /// Port of the first service; the others follow consecutively (0: any free ports).
    #[arg(long, env = "MOCK_PORT_BASE", default_value_t = 9001)]
    port_base: u16,
    /// Bearer token expected by POST /worker/heartbeat (the agent's SECRET_KEY).
    #[arg(
        long,
        env = "MOCK_SECRET_KEY",
        default_value = "dev-secret",
        hide_env_values = true
    )]
    secret_key: String,
    /// Simulated push jobs to start, `name=<push URL>` comma-separated, e.g.
    /// `backup=http://127.0.0.1:8101/ping/<token>` (a `/api/push/` URL is Kuma style).
    #[arg(
        long,
        env = "MOCK_JOBS",
        value_delimiter = ',',
        default_value = "",
        hide_env_values = true
    )]
    jobs: Vec<String>,
    /// Seconds between runs of the jobs from MOCK_JOBS.
    #[arg(long, env = "MOCK_JOB_INTERVAL", default_value_t = 10.0)]
    job_interval: f64,
    /// A scenario (JSON file) to start at once.
    #[arg(long, env = "MOCK_SCENARIO")]
    scenario: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<MockCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum MockCommand {
    /// Exit 0 when the controller at --addr answers GET /api/state with 2xx, else 1
    /// (Docker's HEALTHCHECK; the image has no shell).
    Healthcheck,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(MockCommand::Healthcheck) = cli.command {
        let outcome = heartbeat_healthcheck::probe(cli.addr, "/api/state");
        return heartbeat_healthcheck::report("heartbeat-mock", outcome);
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heartbeat-mock: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour codes only for a terminal: `docker logs` and log files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let scenario = match &cli.scenario {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("MOCK_SCENARIO: cannot read {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("MOCK_SCENARIO: {} is not JSON", path.display()))?;
            let steps = heartbeat_mock::parse_scenario(&value)
                .map_err(|e| anyhow::anyhow!("MOCK_SCENARIO: {}: {}", path.display(), e.message))?;
            Some(steps)
        }
    };
    let mut jobs = Vec::new();
    for item in cli.jobs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, url) = item.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("MOCK_JOBS: expected name=<push URL>, got an item without '='")
        })?;
        let url = heartbeat_client::parse_url("url", url)
            .map_err(|e| anyhow::anyhow!("MOCK_JOBS: job {}: {e}", name.trim()))?;
        if !(cli.job_interval.is_finite() && (0.05..=86_400.0).contains(&cli.job_interval)) {
            anyhow::bail!("MOCK_JOB_INTERVAL: expected seconds from 0.05 to 86400");
        }
        let mut spec = heartbeat_mock::JobSpec::new(name.trim(), url);
        spec.interval_s = cli.job_interval;
        jobs.push(spec);
    }
    let config = MockConfig {
        addr: cli.addr,
        bind: cli.bind,
        services: cli
            .services
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        port_base: cli.port_base,
        secret_key: cli.secret_key,
        scenario,
        jobs,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(heartbeat_mock::serve(config, shutdown_signal()))?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
