//! `traffic-mirror-operator`: the operator binary. Only wiring: flags, logging, the metrics/health
//! server and the controllers, stopping together on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand};
use traffic_mirror_operator::controller::{self, OperatorConfig};
use traffic_mirror_operator::telemetry::{self, LogFormat, Metrics};

/// Manage Huawei Cloud VPC traffic mirroring (TrafficMirrorSession and TrafficMirrorFilter objects,
/// with their ProviderConfigs) from Kubernetes.
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
    /// Watch TrafficMirrorSessions and TrafficMirrorFilters in this namespace only (default: all
    /// namespaces).
    #[arg(long, env = "TMO_NAMESPACE")]
    namespace: Option<String>,
    /// Drift-check period: one paginated LIST per ProviderConfig, then every session and filter is
    /// compared and corrected. Written like `30s`, `5m`, `1h`.
    #[arg(long, env = "TMO_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Address of the HTTP server for /metrics (Prometheus), /healthz and /readyz.
    #[arg(long, env = "TMO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// How many sessions (and, separately, how many filters) are reconciled in parallel.
    #[arg(long, env = "TMO_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// After an interrupted create, how long a missing session may still appear in the cloud before
    /// the operator creates it again (covers eventual consistency). Written like `30s`.
    #[arg(long, env = "TMO_CREATE_CONFIRM_WINDOW", default_value = "30s", value_parser = parse_duration)]
    create_confirm_window: Duration,
    /// Manage only the ProviderConfigs matching this label selector (e.g. `team=net`); default: all.
    #[arg(long, env = "TMO_PROVIDER_CONFIG_SELECTOR")]
    provider_config_selector: Option<String>,
    /// Leader election on a coordination.k8s.io Lease: only the holder reconciles (calls the cloud,
    /// writes status); the other replicas keep their caches warm and take over when it goes.
    /// `--leader-elect=false` disables it (then run exactly one replica).
    #[arg(long, env = "TMO_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    leader_elect: bool,
    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "TMO_LEADER_ELECT_LEASE_NAME",
        default_value = "traffic-mirror-operator"
    )]
    leader_elect_lease_name: String,
    /// Namespace of the leader election Lease (default: the pod's namespace from the service
    /// account, else `default`).
    #[arg(long, env = "TMO_LEADER_ELECT_NAMESPACE")]
    leader_elect_namespace: Option<String>,
    /// How long the Lease is valid after its last renewal: a standby takes over at most this long
    /// after the leader stops renewing. The leader renews every third of it.
    #[arg(long, env = "TMO_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    leader_elect_lease_duration: Duration,
    /// The one namespace whose Secrets the operator reads (every ProviderConfig's
    /// spec.credentials.secretRef must point here; others get Ready=False, SecretOutOfScope). Its
    /// RBAC is a Role in this namespace, not cluster-wide Secret access. Default: the pod's
    /// namespace (from the service account), else `default`.
    #[arg(long, env = "TMO_CREDENTIALS_NAMESPACE")]
    credentials_namespace: Option<String>,
    /// Log format: `text` (no colour codes unless stderr is a terminal) or `json` (one object per
    /// line, carrying the reconcile's span). The level comes from RUST_LOG (default `info`).
    #[arg(long, env = "TMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Deprecated spelling of `--log-format json` (kept so existing manifests keep working).
    #[arg(long, env = "TMO_LOG_JSON", default_value_t = false, hide = true)]
    log_json: bool,
}

/// `/readyz`: 503 until the caches are synced; the body names this replica's role.
fn readyz(metrics: &Metrics) -> (axum::http::StatusCode, &'static str) {
    let (code, body) = metrics.readiness();
    let code = axum::http::StatusCode::from_u16(code)
        .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    (code, body)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write a duration like 30s, 5m or 1h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(3) || d.subsec_nanos() != 0 {
        return Err("must be whole seconds, at least 3s".into());
    }
    Ok(d)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Run(args) = cli.command;
    telemetry::init_logging(if args.log_json {
        LogFormat::Json
    } else {
        args.log_format
    });
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
    let r = metrics.clone();
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(m.encode())))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || std::future::ready(readyz(&r))));
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
        leader_election: args.leader_elect.then(|| controller::leader::LeaseConfig {
            name: args.leader_elect_lease_name,
            namespace: args
                .leader_elect_namespace
                .unwrap_or_else(controller::leader::default_namespace),
            identity: controller::leader::default_identity(),
            duration: args.leader_elect_lease_duration,
        }),
        credentials_namespace: args
            .credentials_namespace
            .unwrap_or_else(controller::leader::default_namespace),
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

    /// The flags that act on both kinds say so (the table in docs/configuration.md does).
    #[test]
    fn help_names_both_kinds_where_a_flag_covers_both() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .expect("run")
            .render_long_help()
            .to_string();
        for flag in ["--namespace", "--concurrency"] {
            let text = help.split(flag).nth(1).unwrap_or_default();
            let text = text.split("[env").next().unwrap_or_default();
            assert!(
                text.contains("filters") || text.contains("Filters"),
                "{flag}: {text}"
            );
        }
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
        assert!(a.leader_elect);
        assert_eq!(a.leader_elect_lease_name, "traffic-mirror-operator");
        assert_eq!(a.leader_elect_lease_duration, Duration::from_secs(15));
        assert!(a.leader_elect_namespace.is_none());
        assert!(a.credentials_namespace.is_none());
    }

    #[test]
    fn leader_election_can_be_disabled() {
        for (argv, want) in [
            (&["tmo", "run", "--leader-elect=false"][..], false),
            (&["tmo", "run", "--leader-elect"][..], true),
            (&["tmo", "run", "--leader-elect=true"][..], true),
        ] {
            let Command::Run(a) = Cli::try_parse_from(argv).unwrap().command;
            assert_eq!(a.leader_elect, want, "{argv:?}");
        }
        assert!(
            Cli::try_parse_from(["tmo", "run", "--leader-elect-lease-duration", "1s"]).is_err()
        );
    }
}
