//! `hwc-vpc-emulator`: runs the Huawei Cloud VPC v3 traffic-mirror emulator on a local port.
//! Prints `listening on http://HOST:PORT` as its first stdout line, stops on SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use traffic_mirror_operator::emulator::{EmulatorConfig, Latency, LimitsConfig, RateLimit, serve};

/// Emulates Huawei Cloud's VPC v3 traffic-mirror API (sessions, filters, filter rules) and port
/// reads with AK/SK signature checks, plus the identity side (ECS metadata, IAM federation and
/// assume-role, temporary credentials), for tests and local development.
///
/// The API is served under /v3/{project_id}/vpc/. On a loopback address an unauthenticated admin
/// API is served under /_emulator/ (calls, faults, limits, reset, state, healthz); see the
/// emulator's documentation, docs/emulator.md.
#[derive(Debug, Parser)]
#[command(name = "hwc-vpc-emulator", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT")]
    listen: SocketAddr,

    /// The project id the credentials own; any other project id in a path gets 403.
    #[arg(long, value_name = "PROJECT_ID")]
    project_id: String,

    /// An accepted access key and secret key, as AK:SK. Repeat for several credentials.
    #[arg(long = "credential", value_name = "AK:SK", required = true, value_parser = parse_credential)]
    credentials: Vec<(String, String)>,

    /// Persist sessions, filters and rules in this JSON file (loaded at start, rewritten
    /// atomically after every change), so a restart loses nothing.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// Throttle like the API gateway: a token bucket per project id, refilled at RPS calls per
    /// second (may be fractional, e.g. 0.5) and holding at most BURST calls (default: RPS
    /// rounded up, at least 1). A call over it is answered 429 APIGW.0308 and does nothing.
    /// Off by default; changeable at run time with PUT /_emulator/limits.
    #[arg(long, value_name = "RPS[:BURST]", value_parser = parse_rate_limit)]
    rate_limit: Option<RateLimit>,

    /// Delay every API call (/v3/...) by MS milliseconds, plus or minus a uniform jitter of up to
    /// JITTER_MS (never below 0), throttled calls included. Off by default; changeable at run
    /// time with PUT /_emulator/limits.
    #[arg(long, value_name = "MS[:JITTER_MS]", value_parser = parse_latency)]
    latency: Option<Latency>,

    /// Refuse a session create or add-sources that names a port not seeded through
    /// POST /_emulator/ports (400 VPC.1005), as the real API refuses an unknown port. Off by
    /// default, so setups without seeded ports keep working.
    #[arg(long)]
    check_ports: bool,

    /// The project's quota of sources per traffic mirror session: a create or add-sources that
    /// would leave a session with more is refused (400 VPC.1002), as the cloud refuses one above
    /// its quota. Default 10, the cloud's default quota; raise it to model a raised quota.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_max_sources)]
    max_sources_per_session: usize,

    /// Cap the lifetime of every temporary credential the identity side issues (IAM
    /// securitytokens, the metadata security key), e.g. 2s, 15m, 1h. Default: as asked
    /// (duration_seconds, 900 when omitted; 24h for the metadata credential).
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    credential_lifetime: Option<std::time::Duration>,
}

fn parse_lifetime(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the lifetime must be longer than 0".to_owned()),
        Err(e) => Err(format!("expected a duration such as 2s, 15m or 1h: {e}")),
    }
}

fn parse_max_sources(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of sources, at least 1".to_owned()),
    }
}

fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    s.parse()
}

fn parse_latency(s: &str) -> Result<Latency, String> {
    s.parse()
}

fn parse_credential(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((ak, sk)) if !ak.is_empty() && !sk.is_empty() => Ok((ak.to_owned(), sk.to_owned())),
        _ => Err("expected AK:SK with both parts non-empty".to_owned()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = EmulatorConfig {
        listen: cli.listen,
        project_id: cli.project_id,
        credentials: cli.credentials,
        state_file: cli.state,
        limits: LimitsConfig {
            rate_limit: cli.rate_limit,
            latency: cli.latency,
        },
        check_ports: cli.check_ports,
        max_sources_per_session: cli.max_sources_per_session,
        credential_lifetime: cli.credential_lifetime,
    };
    let (addr, serving) = match serve(cfg, shutdown_signal()).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("hwc-vpc-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody can learn the port; keep serving anyway (the admin healthz still works).
        tracing::warn!("cannot write the listening line to stdout");
    }
    drop(stdout);
    tracing::info!(%addr, "emulator listening");
    serving.await;
    ExitCode::SUCCESS
}
