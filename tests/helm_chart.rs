//! The Helm chart (`deploy/helm/traffic-mirror-operator`) with a real `helm` (v3, built from the
//! Go module pinned in `tests/helm/`) and real kube-apiservers (both ends of the support range):
//!
//! - `helm lint --strict` passes with the default values and with `tests/helm/values-custom.yaml`;
//! - `helm template` puts every supported value where the operator reads it (image, replicas,
//!   resources, the watch namespace, resync interval, log format, leader election, the
//!   ServiceMonitor toggle), and leader election off means one replica replaced with `Recreate`;
//! - bad input fails the render (an unknown log format, a Kubernetes older than `kubeVersion`);
//! - every rendering (CRDs included), made with `--kube-version` of the server (so Chart.yaml's
//!   `kubeVersion` must accept it), passes `kubectl apply --server-side --dry-run=server` on the
//!   newest and on the oldest supported Kubernetes (1.30), the ServiceMonitor against a minimal
//!   stand-in of the Prometheus Operator's CRD (`tests/helm/servicemonitor-crd.yaml`), since a bare
//!   API server has none; so does the kustomize render of `deploy/kustomize/default`.
//!
//! `helm` comes from env `TMO_HELM` (the binary; `make helm-test` and `make test-only` export it),
//! else from `tests/helm/build.sh`, which builds it once into the cache. The control planes come
//! from `TMO_CONTROL_PLANE_DIR` and `TMO_CONTROL_PLANE_DIR_OLDEST` (both exported by those targets).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use support::Version;

/// The chart under test.
const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/helm/traffic-mirror-operator"
);
/// Values that differ from the chart's defaults in every setting the tests check.
const CUSTOM_VALUES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/values-custom.yaml");
/// The stand-in ServiceMonitor CRD for the dry run.
const SERVICEMONITOR_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/helm/servicemonitor-crd.yaml"
);
/// The stand-in PrometheusRule CRD for the dry run.
const PROMETHEUSRULE_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/helm/prometheusrule-crd.yaml"
);
/// The alert rules (`deploy/prometheus/alerts.yaml`) the PrometheusRule must carry.
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yaml");
/// The dashboard (`deploy/grafana/`) the dashboard ConfigMap must carry.
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/traffic-mirror-operator.json"
);
/// The Go module pinning helm, and the script that builds it.
const HELM_MODULE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm");
/// Release name used by every rendering; the full name is `<release>-traffic-mirror-operator`.
const RELEASE: &str = "tmo";
const FULLNAME: &str = "tmo-traffic-mirror-operator";
/// The namespace `values-custom.yaml` puts the ServiceMonitor in.
const MONITORING_NAMESPACE: &str = "monitoring";
/// How long the API server may take to establish the ServiceMonitor CRD.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

// --- helm ---------------------------------------------------------------------------------------

/// The helm binary: `TMO_HELM`, else what `tests/helm/build.sh` prints last (+ `/helm`), checked to
/// be the version pinned in `tests/helm/go.mod` (a stale `TMO_HELM` must not test another helm).
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELM.get_or_init(find_helm) {
        Ok(path) => path,
        Err(e) => panic!("no helm to test the chart with: {e}"),
    }
}

fn find_helm() -> Result<PathBuf, String> {
    let path = match std::env::var_os("TMO_HELM").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => build_helm()?,
    };
    let pinned = pinned_helm_version()?;
    let out = Command::new(&path)
        .args(["version", "--template", "{{.Version}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} version: {e}", path.display()))?;
    let reported = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if reported != pinned {
        return Err(format!(
            "{} is helm {reported:?}, but tests/helm/go.mod pins {pinned} (TMO_HELM must be \
             `bash tests/helm/build.sh | tail -n 1`/helm)",
            path.display()
        ));
    }
    Ok(path)
}

/// Runs `tests/helm/build.sh` (progress to the terminal: a first build takes minutes).
fn build_helm() -> Result<PathBuf, String> {
    let script = Path::new(HELM_MODULE).join("build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    Ok(Path::new(last.ok_or("build.sh printed nothing")?.trim()).join("helm"))
}

/// The `helm.sh/helm/v3` version required in `tests/helm/go.mod`.
fn pinned_helm_version() -> Result<String, String> {
    let go_mod = Path::new(HELM_MODULE).join("go.mod");
    let text =
        std::fs::read_to_string(&go_mod).map_err(|e| format!("read {}: {e}", go_mod.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("helm.sh/helm/v3 "))
        .find_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .ok_or_else(|| format!("{} does not require helm.sh/helm/v3", go_mod.display()))
}

/// Runs `helm <args>` and returns its output (any exit code).
fn helm(args: &[&str]) -> Output {
    Command::new(helm_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run helm {args:?}: {e}"))
}

/// `helm template` of the chart as release [`RELEASE`] in `namespace` with `extra` arguments:
/// the manifest text. Panics with helm's stderr if the render fails.
fn template(namespace: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", namespace];
    args.extend_from_slice(extra);
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm template prints UTF-8")
}

/// The documents of a multi-document manifest (empty ones dropped).
fn documents(manifest: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|document| Value::deserialize(document).expect("helm template prints valid YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

/// The rendered objects of `namespace` with `extra` helm arguments.
fn render(namespace: &str, extra: &[&str]) -> Vec<Value> {
    documents(&template(namespace, extra))
}

/// The only object of `kind` (panics if there is none or more than one).
fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {found:#?}");
    found[0]
}

/// How many objects of `kind` there are.
fn count(objects: &[Value], kind: &str) -> usize {
    objects.iter().filter(|o| o["kind"] == kind).count()
}

/// How many objects of `kind` are named `<fullname>-<suffix>` (e.g. the leader election Role).
fn count_named(objects: &[Value], kind: &str, suffix: &str) -> usize {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .count()
}

/// The operator container of the Deployment.
fn container(objects: &[Value]) -> &Value {
    let containers = &only(objects, "Deployment")["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "{containers:#?}"
    );
    &containers[0]
}

/// The container's literal environment (name -> value; `valueFrom` entries map to `None`).
fn env(objects: &[Value]) -> BTreeMap<String, Option<String>> {
    let entries = container(objects)["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env entry without a name");
            (name.to_string(), e["value"].as_str().map(str::to_string))
        })
        .collect()
}

/// The value of environment variable `name` (panics if it is absent or not a literal).
fn env_value(objects: &[Value], name: &str) -> String {
    env(objects)
        .get(name)
        .cloned()
        .flatten()
        .unwrap_or_else(|| panic!("no literal env {name} in {:#?}", env(objects)))
}

/// The chart's `appVersion` (the default image tag).
fn app_version() -> String {
    let path = Path::new(CHART).join("Chart.yaml");
    let text = std::fs::read_to_string(&path).expect("read Chart.yaml");
    let chart: Value = serde_yaml::from_str(&text).expect("parse Chart.yaml");
    chart["appVersion"]
        .as_str()
        .expect("Chart.yaml has an appVersion")
        .to_string()
}

// --- lint and render ----------------------------------------------------------------------------

#[test]
fn lint_passes_with_default_and_custom_values() {
    for extra in [&[][..], &["--values", CUSTOM_VALUES][..]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{stdout}"
        );
    }
}

#[test]
fn default_values_render_as_documented() {
    let objects = render("tmo-system", &[]);
    let deployment = only(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let c = container(&objects);
    let image = format!(
        "ghcr.io/traffic-mirror-operator/traffic-mirror-operator:{}",
        app_version()
    );
    assert_eq!(c["image"], image.as_str());
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["args"], json!(["run"]));
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
    );
    let vars = env(&objects);
    assert!(
        !vars.contains_key("TMO_NAMESPACE"),
        "all namespaces: {vars:#?}"
    );
    assert!(
        !vars.contains_key("TMO_LOG_JSON"),
        "replaced by TMO_LOG_FORMAT: {vars:#?}"
    );
    assert_eq!(env_value(&objects, "TMO_RESYNC_INTERVAL"), "5m");
    assert_eq!(env_value(&objects, "TMO_LOG_FORMAT"), "json");
    assert_eq!(env_value(&objects, "TMO_LEADER_ELECT"), "true");
    assert_eq!(env_value(&objects, "TMO_LEADER_ELECT_LEASE_NAME"), FULLNAME);
    assert_eq!(
        env_value(&objects, "TMO_LEADER_ELECT_NAMESPACE"),
        "tmo-system"
    );
    assert_eq!(
        env_value(&objects, "TMO_LEADER_ELECT_LEASE_DURATION"),
        "15s"
    );
    assert_eq!(
        count_named(&objects, "Role", "-leader-election"),
        1,
        "the leader election Role"
    );
    assert_eq!(
        count_named(&objects, "Role", "-credentials"),
        1,
        "the credentials Role"
    );
    assert_eq!(count(&objects, "ServiceMonitor"), 0, "off by default");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["volumes"].is_null(),
        "no token volume by default: {pod:#}"
    );
    assert!(c["volumeMounts"].is_null(), "{c:#}");
    assert_eq!(count(&objects, "ProviderConfig"), 0, "none by default");
    assert_eq!(count(&objects, "PrometheusRule"), 0, "off by default");
    assert_eq!(count(&objects, "ConfigMap"), 0, "no dashboard by default");
}

#[test]
fn custom_values_land_where_the_operator_reads_them() {
    let objects = render("tmo-system", &["--values", CUSTOM_VALUES]);
    let deployment = only(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let c = container(&objects);
    assert_eq!(
        c["image"],
        "registry.example.test/mirror/traffic-mirror-operator@sha256:\
         0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "the digest wins over the tag"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"},
               "limits": {"cpu": "500m", "memory": "512Mi"}})
    );
    assert_eq!(env_value(&objects, "TMO_NAMESPACE"), "team-a");
    assert_eq!(env_value(&objects, "TMO_RESYNC_INTERVAL"), "90s");
    assert_eq!(env_value(&objects, "TMO_LOG_FORMAT"), "text");
    assert_eq!(env_value(&objects, "TMO_LEADER_ELECT"), "true");
    assert_eq!(
        env_value(&objects, "TMO_LEADER_ELECT_LEASE_NAME"),
        "custom-lease"
    );
    assert_eq!(
        env_value(&objects, "TMO_LEADER_ELECT_LEASE_DURATION"),
        "30s"
    );
    assert_service_monitor(only(&objects, "ServiceMonitor"));
    assert_workload_identity_token(deployment);
    assert_provider_config(only(&objects, "ProviderConfig"));
    assert_prometheus_rule(only(&objects, "PrometheusRule"));
    assert_dashboard(only(&objects, "ConfigMap"));
}

/// `workloadIdentity` of `values-custom.yaml`: a projected token with its audience and lifetime,
/// mounted read-only where `spec.credentials.workloadIdentity.tokenFile` points by default.
fn assert_workload_identity_token(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "workload-identity-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "sts.example.test",
                                     "expirationSeconds": 7200, "path": "token"}}]}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "workload-identity-token", "readOnly": true,
                "mountPath": "/var/run/secrets/vpc.hwcloud.dev/serviceaccount"}])
    );
}

/// `providerConfigs` of `values-custom.yaml`: the ProviderConfig with its labels, its
/// `namespaceSelector` and the rest of its spec as given.
fn assert_provider_config(pc: &Value) {
    assert_eq!(pc["metadata"]["name"], "team-a-account");
    assert_eq!(pc["metadata"]["labels"]["env"], "test");
    assert_eq!(
        pc["spec"]["namespaceSelector"],
        json!({"matchLabels": {"team": "a"}, "matchExpressions": [
            {"key": "vpc.hwcloud.dev/mirroring", "operator": "Exists"}]})
    );
    assert_eq!(pc["spec"]["region"], "cn-north-4");
    assert_eq!(
        pc["spec"]["credentials"]["secretRef"],
        json!({"namespace": "tmo-system", "name": "hwcloud-credentials"})
    );
}

/// The PrometheusRule of `values-custom.yaml`: in the monitoring namespace with the `release` label,
/// carrying exactly the groups of `deploy/prometheus/alerts.yaml`.
fn assert_prometheus_rule(rule: &Value) {
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], MONITORING_NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let text = std::fs::read_to_string(ALERTS).expect("deploy/prometheus/alerts.yaml");
    let alerts: Value = serde_yaml::from_str(&text).expect("alerts.yaml is YAML");
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    let chart_copy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/helm/traffic-mirror-operator/files/alerts.yaml"
    );
    assert_eq!(
        std::fs::read_to_string(chart_copy).expect("the chart's copy"),
        text,
        "cp deploy/prometheus/alerts.yaml {chart_copy}"
    );
}

/// The dashboard ConfigMap of `values-custom.yaml`: the sidecar label and folder annotation set
/// there, and exactly the JSON of `deploy/grafana/`.
fn assert_dashboard(config_map: &Value) {
    assert_eq!(config_map["metadata"]["namespace"], MONITORING_NAMESPACE);
    assert_eq!(config_map["metadata"]["labels"]["dashboards"], "platform");
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
    let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard");
    let want: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let got: Value = config_map["data"]["traffic-mirror-operator.json"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .expect("the ConfigMap carries the dashboard JSON");
    assert_eq!(got, want);
    let chart_copy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/helm/traffic-mirror-operator/files/dashboard.json"
    );
    assert_eq!(
        std::fs::read_to_string(chart_copy).expect("the chart's copy"),
        text,
        "cp {DASHBOARD} {chart_copy}"
    );
}

/// The ServiceMonitor of `values-custom.yaml`: its namespace and labels, selecting the metrics
/// Service of the release namespace on the `metrics` port.
fn assert_service_monitor(monitor: &Value) {
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], MONITORING_NAMESPACE);
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["tmo-system"])
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["scrapeTimeout"], "5s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
}

#[test]
fn leader_election_off_means_one_replica_replaced_with_recreate() {
    let objects = render(
        "tmo-system",
        &[
            "--values",
            CUSTOM_VALUES,
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    let deployment = only(&objects, "Deployment");
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "whatever replicaCount says"
    );
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(env_value(&objects, "TMO_LEADER_ELECT"), "false");
    let vars = env(&objects);
    for name in [
        "TMO_LEADER_ELECT_LEASE_NAME",
        "TMO_LEADER_ELECT_NAMESPACE",
        "TMO_LEADER_ELECT_LEASE_DURATION",
    ] {
        assert!(
            !vars.contains_key(name),
            "{name} without leader election: {vars:#?}"
        );
    }
    assert_eq!(
        count_named(&objects, "Role", "-leader-election"),
        0,
        "no leader election Role"
    );
    assert_eq!(
        count_named(&objects, "RoleBinding", "-leader-election"),
        0,
        "no leader election RoleBinding"
    );
}

#[test]
fn the_deprecated_log_json_value_still_works() {
    for (log_json, format) in [("false", "text"), ("true", "json")] {
        let set = format!("operator.logJson={log_json}");
        // logJson, when set, wins over logFormat (old values files keep their meaning).
        let objects = render(
            "tmo-system",
            &["--set", &set, "--set", "operator.logFormat=nonsense"],
        );
        assert_eq!(env_value(&objects, "TMO_LOG_FORMAT"), format, "{set}");
    }
}

#[test]
fn bad_input_fails_the_render() {
    let out = helm(&[
        "template",
        RELEASE,
        CHART,
        "--set",
        "operator.logFormat=xml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown log format rendered");
    assert!(
        stderr.contains(r#"operator.logFormat must be "json" or "text", not "xml""#),
        "{stderr}"
    );
    let out = helm(&[
        "template",
        RELEASE,
        CHART,
        "--set",
        "workloadIdentity.enabled=true",
        "--set",
        "workloadIdentity.audience=",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a token without an audience rendered"
    );
    assert!(
        stderr.contains("workloadIdentity.audience is required"),
        "{stderr}"
    );
    let out = helm(&["template", RELEASE, CHART, "--kube-version", "1.29.9"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rendered for Kubernetes 1.29");
    assert!(
        stderr.contains("chart requires kubeVersion: >=1.30.0-0"),
        "{stderr}"
    );
    let out = helm(&["template", RELEASE, CHART, "--kube-version", "1.30.0"]);
    assert!(
        out.status.success(),
        "the oldest supported Kubernetes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- server-side dry run ------------------------------------------------------------------------

/// The helm arguments of each rendering that must pass the dry run.
const DRY_RUN_CASES: [&[&str]; 3] = [
    &[],
    &["--values", CUSTOM_VALUES],
    &[
        "--values",
        CUSTOM_VALUES,
        "--set",
        "leaderElection.enabled=false",
    ],
];

#[tokio::test]
async fn every_rendering_passes_a_server_side_dry_run_on_the_newest() {
    every_rendering_passes_a_server_side_dry_run(Version::Newest).await;
}

#[tokio::test]
async fn every_rendering_passes_a_server_side_dry_run_on_the_oldest() {
    every_rendering_passes_a_server_side_dry_run(Version::Oldest).await;
}

/// `kubeVersion` in Chart.yaml.
fn chart_kube_version() -> String {
    let path = Path::new(CHART).join("Chart.yaml");
    let text = std::fs::read_to_string(&path).expect("read Chart.yaml");
    let chart: Value = serde_yaml::from_str(&text).expect("parse Chart.yaml");
    chart["kubeVersion"]
        .as_str()
        .expect("Chart.yaml has a kubeVersion")
        .to_string()
}

/// Every rendering for the version the server of `version` reports (`helm template
/// --kube-version`, which fails unless Chart.yaml's `kubeVersion` accepts it), CRDs included,
/// passes the server's dry run object by object.
async fn every_rendering_passes_a_server_side_dry_run(version: Version) {
    let (cp, ns) = dry_run_cluster(version).await;
    assert_eq!(
        chart_kube_version(),
        ">=1.30.0-0",
        "the supported range the README states"
    );
    for extra in DRY_RUN_CASES {
        // The chart's copy of the CRDs, as `helm install` applies them.
        let mut args = vec![
            "--include-crds",
            "--kube-version",
            cp.kubernetes_version.as_str(),
        ];
        args.extend_from_slice(extra);
        let manifest = template(&ns, &args);
        let objects = documents(&manifest);
        let out = dry_run(cp, &manifest);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{version:?}: dry run of {extra:?} rejected:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = stdout
            .lines()
            .filter(|l| l.ends_with("serverside-applied (server dry run)"))
            .count();
        assert_eq!(
            applied,
            objects.len(),
            "{version:?}: every object of {extra:?}:\n{stdout}"
        );
    }
    // A dry run persists nothing.
    let out = cp.kubectl(&["get", "deployment", FULLNAME, "--namespace", &ns]);
    assert!(!out.status.success(), "the Deployment was created");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[tokio::test]
async fn the_dry_run_rejects_what_a_cluster_would() {
    let (cp, ns) = dry_run_cluster(Version::Newest).await;
    let cases = [
        ("resources.requests.cpu=lots", "quantities must match"),
        ("serviceMonitor.interval=soon", "spec.endpoints[0].interval"),
    ];
    for (set, expected) in cases {
        let manifest = template(&ns, &["--values", CUSTOM_VALUES, "--set", set]);
        let out = dry_run(cp, &manifest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} passed the dry run");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
}

#[tokio::test]
async fn the_kustomize_install_passes_a_server_side_dry_run_on_the_newest() {
    the_kustomize_install_passes_a_server_side_dry_run(Version::Newest).await;
}

#[tokio::test]
async fn the_kustomize_install_passes_a_server_side_dry_run_on_the_oldest() {
    the_kustomize_install_passes_a_server_side_dry_run(Version::Oldest).await;
}

/// The kustomize installs the README gives (`kubectl kustomize --load-restrictor LoadRestrictionsNone
/// deploy/kustomize/default`, and `deploy/kustomize/workload-identity`, which adds the projected
/// token of keyless credentials), with the built-in kustomize of that version's kubectl, pass the
/// same server-side dry run: every object, its namespace made first as `kubectl apply` of the whole
/// render would.
async fn the_kustomize_install_passes_a_server_side_dry_run(version: Version) {
    let (cp, _) = dry_run_cluster(version).await;
    let client = cp.client().await;
    support::ensure_namespace(&client, "traffic-mirror-system").await;
    let plain = kustomize_dry_run(cp, version, "default");
    let pod = &only(&plain, "Deployment")["spec"]["template"]["spec"];
    assert!(pod["volumes"].is_null(), "no token volume: {pod:#}");
    let keyless = kustomize_dry_run(cp, version, "workload-identity");
    let pod = &only(&keyless, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "workload-identity-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "vpc.hwcloud.dev",
                                     "expirationSeconds": 3600, "path": "token"}}]}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "workload-identity-token", "readOnly": true,
                "mountPath": "/var/run/secrets/vpc.hwcloud.dev/serviceaccount"}])
    );
}

/// Renders `deploy/kustomize/<overlay>` and dry-runs it on `cp`; returns the rendered objects.
fn kustomize_dry_run(cp: &support::ControlPlane, version: Version, overlay: &str) -> Vec<Value> {
    let dir = format!("{}/deploy/kustomize/{overlay}", env!("CARGO_MANIFEST_DIR"));
    let dir = dir.as_str();
    let out = cp.kubectl(&[
        "kustomize",
        "--load-restrictor",
        "LoadRestrictionsNone",
        dir,
    ]);
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = String::from_utf8_lossy(&out.stdout).to_string();
    let objects = documents(&manifest);
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "ClusterRole",
        "Role",
    ] {
        assert!(
            count(&objects, kind) >= 1,
            "no {kind} in the kustomize render"
        );
    }
    let out = dry_run(cp, &manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{version:?}: kustomize dry run of {overlay} rejected:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = stdout
        .lines()
        .filter(|l| l.ends_with("serverside-applied (server dry run)"))
        .count();
    assert_eq!(
        applied,
        objects.len(),
        "{version:?}: every object of {overlay}:\n{stdout}"
    );
    objects
}

/// The shared control plane of `version` with the operator's CRDs, the stand-in ServiceMonitor CRD
/// and the namespace `values-custom.yaml` puts the ServiceMonitor in; plus a fresh release
/// namespace.
async fn dry_run_cluster(version: Version) -> (&'static support::ControlPlane, String) {
    let cp = support::control_plane_for(version);
    let client = cp.client().await;
    support::install_crds(&client).await;
    let out = cp.kubectl(&["apply", "--server-side", "--filename", SERVICEMONITOR_CRD]);
    assert!(
        out.status.success(),
        "apply {SERVICEMONITOR_CRD}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_established(&client, "servicemonitors.monitoring.coreos.com").await;
    let out = cp.kubectl(&["apply", "--server-side", "--filename", PROMETHEUSRULE_CRD]);
    assert!(
        out.status.success(),
        "apply {PROMETHEUSRULE_CRD}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_established(&client, "prometheusrules.monitoring.coreos.com").await;
    support::ensure_namespace(&client, MONITORING_NAMESPACE).await;
    let ns = support::test_namespace(&client, "helm-chart").await;
    (cp, ns)
}

/// Waits until CRD `name` is Established (its kind can be applied).
async fn wait_established(client: &kube::Client, name: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    support::wait_for(ESTABLISHED_TIMEOUT, || async {
        let conditions = api.get(name).await.ok()?.status?.conditions?;
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// `kubectl apply --server-side --dry-run=server` of `manifest` (any exit code).
fn dry_run(cp: &support::ControlPlane, manifest: &str) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(manifest.as_bytes())
        .expect("write the manifest");
    cp.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=helm-chart-test",
        "--filename",
        &file.path().to_string_lossy(),
    ])
}
