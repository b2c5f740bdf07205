//! `traffic-mirror-operator`: the operator binary. Only wiring: flags, logging, the metrics/health
//! server and the controllers, stopping together on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand};
use traffic_mirror_operator::controller::{self, OperatorConfig};
use traffic_mirror_operator::telemetry::{self, Metrics};

/// Manage Huawei Cloud VPC traffic mirroring (TrafficMirrorSession objects) from Kubernetes.
///
/// The kubeconfig is found the standard way: in-cluster service account, else $KUBECONFIG, else
/// ~/.kube/config. Every flag can also be set through the environment variable shown.
#[derive(Parser, Debug)]
#[command(name = "traffic-mirror-operator", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers until SIGTERM / Ctrl-C.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch TrafficMirrorSessions in this namespace only (default: all namespaces).
    #[arg(long, env = "TMO_NAMESPACE")]
    namespace: Option<String>,
    /// Drift-check period: one paginated LIST per ProviderConfig, then every session is compared and
    /// corrected. Written like `30s`, `5m`, `1h`.
    #[arg(long, env = "TMO_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Address of the HTTP server for /metrics (Prometheus), /healthz and /readyz.
    #[arg(long, env = "TMO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// How many sessions are reconciled in parallel.
    #[arg(long, env = "TMO_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// After an interrupted create, how long a missing session may still appear in the cloud before
    /// the operator creates it again (covers eventual consistency). Written like `30s`.
    #[arg(long, env = "TMO_CREATE_CONFIRM_WINDOW", default_value = "30s", value_parser = parse_duration)]
    create_confirm_window: Duration,
    /// Manage only the ProviderConfigs matching this label selector (e.g. `team=net`); default: all.
    #[arg(long, env = "TMO_PROVIDER_CONFIG_SELECTOR")]
    provider_config_selector: Option<String>,
    /// Log as JSON lines instead of text. The level comes from RUST_LOG (default `info`).
    #[arg(long, env = "TMO_LOG_JSON", default_value_t = false)]
    log_json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write a duration like 30s, 5m or 1h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Run(args) = cli.command;
    telemetry::init_logging(args.log_json);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no usable kubeconfig (in-cluster, $KUBECONFIG or ~/.kube/config)");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Metrics::default();
    let listener = match tokio::net::TcpListener::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %args.metrics_addr, error = %e, "cannot listen for metrics");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().ok();
    tracing::info!(addr = ?bound, "serving /metrics, /healthz, /readyz");
    let m = metrics.clone();
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(m.encode())))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    let config = OperatorConfig {
        namespace: args.namespace,
        resync_interval: args.resync_interval,
        concurrency: args.concurrency,
        create_confirm_window: args.create_confirm_window,
        provider_config_selector: args.provider_config_selector,
    };
    controller::run(client, config, metrics).await;
    server.abort();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_like_kubectl() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("five").is_err());
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["tmo", "run"]).unwrap();
        let Command::Run(a) = cli.command;
        assert_eq!(a.resync_interval, Duration::from_secs(300));
        assert_eq!(a.concurrency, 8);
        assert!(a.namespace.is_none());
    }
}
