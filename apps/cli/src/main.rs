//! `heartbeat`: report to a push target from a shell or cron.
//!
//! * `heartbeat ping <url>`: one ping (success, `--start`, `--fail`, `--log`, `--exit N`).
//! * `heartbeat run <url> -- cmd args…`: `/start?rid=…`, run the command with its output
//!   passed through, then `/<exit code>?rid=…` with the output's tail. A ping failure is a
//!   warning only: `run` always exits with the command's own exit code.
//!
//! `<url>` is the check's full ping URL (`https://agent:8101/ping/<token>`), so a job that
//! used healthchecks.io only changes the base URL.

mod run;

use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use heartbeat_client::{Client, ClientOptions, Ping, Signal, Url, parse_url};

#[derive(Debug, Parser)]
#[command(
    name = "heartbeat",
    version,
    about = "Ping a Heartbeat push target, or run a command and report how it went."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Send one ping (success unless --start, --fail, --log or --exit).
    Ping(PingArgs),
    /// Run a command: ping start, run it, ping its exit code with the tail of its output.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct Net {
    /// Timeout of each attempt, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    timeout: f64,
    /// Extra attempts after a network error, 5xx or 429.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

#[derive(Debug, Args)]
struct PingArgs {
    /// The check's ping URL, e.g. http://127.0.0.1:8101/ping/<token>.
    url: String,
    /// A run started (…/start).
    #[arg(long, group = "signal")]
    start: bool,
    /// The job failed (…/fail).
    #[arg(long, group = "signal")]
    fail: bool,
    /// A log message only; changes no status (…/log).
    #[arg(long, group = "signal")]
    log: bool,
    /// The job's exit status, 0-255 (…/<N>; 0 is success).
    #[arg(long, group = "signal", value_name = "N")]
    exit: Option<u8>,
    /// Run id pairing a start with its end (?rid=).
    #[arg(long)]
    rid: Option<String>,
    /// Request body (kept by the server, first 10 KB); `-` reads standard input.
    #[arg(long)]
    body: Option<String>,
    #[command(flatten)]
    net: Net,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The check's ping URL, e.g. http://127.0.0.1:8101/ping/<token>.
    url: String,
    /// Bytes of the output's tail (stdout and stderr together) sent with the result, at
    /// most 10240: the agent keeps 10 KB, and a larger body could be refused with 413,
    /// losing the result.
    #[arg(long, default_value_t = run::DEFAULT_TAIL, value_name = "BYTES",
          value_parser = tail_bytes)]
    tail: usize,
    #[command(flatten)]
    net: Net,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("expected seconds between 0 and 3600, got {s:?}")),
    }
}

fn client(net: &Net) -> anyhow::Result<Client> {
    let timeout = Duration::from_secs_f64(net.timeout);
    Ok(Client::new(ClientOptions {
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(3)),
        retries: net.retries,
        ..ClientOptions::default()
    })?)
}

fn url(text: &str) -> anyhow::Result<Url> {
    Ok(parse_url("url", text)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("heartbeat: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match cli.command {
        Cmd::Ping(args) => match runtime.block_on(ping(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("heartbeat: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run(args) => {
            let prepared = url(&args.url).and_then(|u| Ok((u, client(&args.net)?)));
            match prepared {
                Ok((url, client)) => ExitCode::from(runtime.block_on(run::run(
                    &client,
                    &url,
                    &args.command,
                    args.tail,
                ))),
                Err(e) => {
                    // Bad arguments: the command is not run (there is nothing to report to).
                    eprintln!("heartbeat: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

async fn ping(args: PingArgs) -> anyhow::Result<()> {
    let url = url(&args.url)?;
    let signal = if args.start {
        Signal::Start
    } else if args.fail {
        Signal::Fail
    } else if args.log {
        Signal::Log
    } else if let Some(code) = args.exit {
        Signal::Exit(code)
    } else {
        Signal::Success
    };
    let mut ping = Ping::new(signal);
    if let Some(rid) = args.rid {
        ping = ping.rid(rid);
    }
    match args.body.as_deref() {
        None => {}
        Some("-") => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("body: cannot read standard input")?;
            ping = ping.body(body);
        }
        Some(text) => ping = ping.body(text.as_bytes().to_vec()),
    }
    client(&args.net)?.ping(&url, &ping).await?;
    Ok(())
}

fn tail_bytes(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if n <= run::DEFAULT_TAIL => Ok(n),
        _ => Err(format!(
            "expected a number of bytes from 0 to {}, got {raw:?}",
            run::DEFAULT_TAIL
        )),
    }
}
