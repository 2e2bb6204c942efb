//! `heartbeat-dashboard`: reads its settings from the environment and serves the router.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use heartbeat_dashboard::{AppState, Config, router};
use jiff::tz::TimeZone;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn listen_addr() -> anyhow::Result<SocketAddr> {
    env("DASHBOARD_ADDR")
        .unwrap_or_else(|| "0.0.0.0:8100".to_owned())
        .parse()
        .context("DASHBOARD_ADDR must be host:port, e.g. 0.0.0.0:8100")
}

fn config() -> anyhow::Result<(SocketAddr, Config)> {
    let addr = listen_addr()?;
    let mut config =
        Config::new(env("SQLITE_DB_PATH").unwrap_or_else(|| "data/metrics.db".to_owned()));
    if let Some(v) = env("TARGET_DATA_POINTS") {
        config.target_points = v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .context("TARGET_DATA_POINTS must be a whole number from 1 to 1000")?;
    }
    if let Some(v) = env("DASHBOARD_STALE_SECONDS") {
        let s: u64 = v
            .trim()
            .parse()
            .context("DASHBOARD_STALE_SECONDS must be a whole number of seconds")?;
        config.stale_after = Duration::from_secs(s);
    }
    if let Some(tz) = env("TZ") {
        let name = tz.trim().trim_start_matches(':');
        config.tz =
            TimeZone::get(name).with_context(|| format!("TZ: unknown time zone {name:?}"))?;
    }
    Ok((addr, config))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn main() -> anyhow::Result<ExitCode> {
    // `heartbeat-dashboard healthcheck`: Docker's HEALTHCHECK in an image with no shell.
    // Healthy while `/health` is 200, i.e. the server answers and the data is fresh.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        let outcome = heartbeat_healthcheck::probe(listen_addr()?, "/health");
        return Ok(heartbeat_healthcheck::report(
            "heartbeat-dashboard",
            outcome,
        ));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour codes only for a terminal: `docker logs` and log files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let (addr, config) = config()?;
    // Two workers are plenty for a read-only dashboard and keep the footprint small.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        tracing::info!(%addr, db = %config.db_path.display(), "heartbeat-dashboard listening");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        axum::serve(listener, router(AppState::new(config)))
            .with_graceful_shutdown(shutdown())
            .await
            .context("server failed")
    })?;
    Ok(ExitCode::SUCCESS)
}
