//! `heartbeat-agent`: reads the environment, then hands over to the monitor crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use heartbeat_config::AgentConfig;
use heartbeat_monitor::RunOptions;
use heartbeat_store::Store;
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "heartbeat-agent",
    version,
    about = "Probes HTTP(S) and docker: targets every cycle, receives push heartbeats, and records the results in SQLite.",
    after_long_help = heartbeat_config::help_text(),
    after_help = "Run with --help for every configuration variable."
)]
struct Cli {
    /// Read variables from this file instead of ./.env (the real environment wins).
    #[arg(long, value_name = "PATH", global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe targets every cycle (the default).
    Run,
    /// Validate the configuration, print the resolved targets (secrets redacted), exit non-zero on any error.
    CheckConfig,
    /// Exit 0 when the running agent's GET /health on AGENT_ADDR answers 2xx (with AGENT_ADDR=off: the newest cycle in SQLITE_DB_PATH is fresh), else 1; Docker's HEALTHCHECK.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("heartbeat-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = load_environment(cli.env_file.as_deref())?;
    let config = AgentConfig::from_map(&env);
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => Ok(match config {
            Ok(config) => {
                print!("{}", config.describe());
                println!("\nConfiguration OK.");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::FAILURE
            }
        }),
        Command::Healthcheck => {
            let config = config.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(heartbeat_healthcheck::report(
                "heartbeat-agent",
                healthcheck(&config),
            ))
        }
        Command::Run => {
            let config = config.map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(&env)?;
            run(config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// With the listener on, asks the running agent's own `GET /health` (fresh cycle,
/// live writer). With `AGENT_ADDR=off`, healthy while the newest cycle in the
/// database is younger than three intervals (at least 60 s, so one slow cycle is no
/// alarm), read through a read-only connection that never writes.
fn healthcheck(config: &AgentConfig) -> Result<String, heartbeat_healthcheck::HealthError> {
    use heartbeat_healthcheck::HealthError;
    if let Some(addr) = config.push.addr {
        return heartbeat_healthcheck::probe(addr, "/health");
    }
    let path = &config.sqlite_db_path;
    let store = heartbeat_store::ReadStore::open(path)
        .map_err(|e| HealthError::Other(format!("SQLITE_DB_PATH: {e}")))?;
    let latest_ts_ms = store
        .latest_cycle_ts_ms()
        .map_err(|e| HealthError::Other(format!("SQLITE_DB_PATH: {e}")))?
        .ok_or_else(|| HealthError::Other("no cycle recorded yet".to_owned()))?;
    let limit = (config.loop_interval * 3).max(std::time::Duration::from_secs(60));
    let now_ms = heartbeat_core::now_ms();
    let age = std::time::Duration::from_millis(u64::try_from(now_ms - latest_ts_ms).unwrap_or(0));
    if age <= limit {
        Ok(format!("last cycle {:.1} s ago", age.as_secs_f64()))
    } else {
        Err(HealthError::Other(format!(
            "last cycle {:.0} s ago, more than {} s",
            age.as_secs_f64(),
            limit.as_secs()
        )))
    }
}

/// The process environment layered over the env file: real variables win.
fn load_environment(env_file: Option<&Path>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let (path, required) = match env_file {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(".env"), false),
    };
    match dotenvy::from_path_iter(&path) {
        Ok(iter) => {
            for item in iter {
                let (k, v) = item.map_err(|e| env_file_error(&path, e))?;
                env.insert(k, v);
            }
        }
        Err(e) if e.not_found() && !required => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    env.extend(std::env::vars());
    Ok(env)
}

/// dotenvy's parse errors quote the offending line, which may hold a secret
/// header value; report the line number and variable name instead.
fn env_file_error(path: &Path, error: dotenvy::Error) -> anyhow::Error {
    let dotenvy::Error::LineParse(line, _) = &error else {
        return anyhow::anyhow!("cannot read {}: {error}", path.display());
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let found = text
        .lines()
        .enumerate()
        .find(|(_, l)| !line.is_empty() && l.contains(line.as_str()));
    let number = found.map_or_else(|| "?".to_owned(), |(n, _)| (n + 1).to_string());
    let variable = found
        .and_then(|(_, l)| l.split_once('='))
        .map_or("", |(name, _)| name.trim().trim_start_matches("export "));
    anyhow::anyhow!(
        "{}:{number}: cannot parse the value of {variable}; quote values that contain spaces, e.g. {variable}=\"a b\"",
        path.display()
    )
}

fn init_logging(env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(env.get("RUST_LOG").map_or("info", String::as_str))
        .context("RUST_LOG is not a valid log filter")?;
    // Colour codes only for a terminal; logs piped to files or journald stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match env.get("LOG_FORMAT").map(|s| s.trim().to_ascii_lowercase()) {
        None => builder.init(),
        Some(f) if f.is_empty() || f == "text" => builder.init(),
        Some(f) if f == "json" => builder.json().flatten_event(true).init(),
        Some(f) => bail!("LOG_FORMAT: expected text or json, got {f:?}"),
    }
    Ok(())
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    // Each concurrent probe holds a socket; 10 000 targets need more than the usual 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < config.targets.len() * 2 + 64 => warn!(
            limit,
            targets = config.targets.len(),
            "open-files limit is low for this many targets"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "could not raise the open-files limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut store = Store::open(&config.sqlite_db_path).with_context(|| {
            format!(
                "SQLITE_DB_PATH: cannot open {}",
                config.sqlite_db_path.display()
            )
        })?;
        let push = push_setup(&config, &mut store).await?;
        info!(
            targets = config.targets.len(),
            interval_s = config.loop_interval.as_secs_f64(),
            db = %config.sqlite_db_path.display(),
            tz = %config.time_zone_name,
            channels = config.alerts.channels.len(),
            heartbeat = config.alerts.heartbeat.is_some(),
            "heartbeat-agent started"
        );
        for target in &config.targets {
            if target.timeout >= config.loop_interval {
                warn!(
                    target = %target.name,
                    timeout_s = target.timeout.as_secs_f64(),
                    interval_s = config.loop_interval.as_secs_f64(),
                    "timeout is not shorter than LOOP_INTERVAL_SECONDS: a hanging target will make every cycle overrun"
                );
            }
        }
        if config.targets.is_empty() {
            warn!("no targets configured: add SERVICE_URL_<name>=... (see --help)");
        }
        let options = RunOptions {
            interval: config.loop_interval,
            max_cycles: None,
        };
        let written =
            heartbeat_monitor::run(&config, store, options, Some(push), shutdown_signal()).await?;
        info!(cycles = written, "heartbeat-agent stopped; database closed");
        Ok(())
    })
}

/// Syncs the configured push targets into the database, loads every push target's state
/// from it (so a restart keeps each target's clock), and binds `AGENT_ADDR`.
async fn push_setup(
    config: &AgentConfig,
    store: &mut Store,
) -> anyhow::Result<heartbeat_monitor::PushSetup> {
    let now_ms = heartbeat_core::now_ms();
    store
        .push_sync_config(&heartbeat_push::configured_definitions(config), now_ms)
        .context("cannot store the configured push targets")?;
    let loaded = store.push_targets().context("cannot read push targets")?;
    let registry = std::sync::Arc::new(heartbeat_push::Registry::new(
        loaded,
        config.time_zone.clone(),
        heartbeat_push::rate_limit(config),
    ));
    let listener = match config.push.addr {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("AGENT_ADDR: cannot listen on {addr}"))?;
            let bound = l
                .local_addr()
                .map_or_else(|_| addr.to_string(), |a| a.to_string());
            info!(addr = %bound, push_targets = registry.len(), "push listener ready");
            Some(l)
        }
    };
    Ok(heartbeat_monitor::PushSetup {
        listener,
        registry,
        settings: heartbeat_push::Settings::from_config(config),
        auto_remove_after: config.push.auto_remove_after,
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
