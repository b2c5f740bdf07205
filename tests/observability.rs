//! Logs, metrics and readiness of the operator binary, driven as a user would: a full lifecycle of a
//! filter and a session (create, edit, delete) against the real API server and the emulator, then
//! the logs, events, `/metrics` and `/readyz` are checked. Every wait polls with a deadline.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Env;
use support::operator::{AK, Operator, SK};
use traffic_mirror_operator::api::{TrafficMirrorFilter, TrafficMirrorSession};

const WAIT: Duration = Duration::from_secs(60);

/// An env whose operators (started by the tests) resync every 10 s.
async fn env(prefix: &str) -> Env {
    Env::builder(prefix)
        .resync("10s")
        .keep_setup_calls()
        .build()
        .await
}

/// The operator, logging in `format`.
fn operator(env: &Env, format: &str) -> Operator {
    env.operator_args(&["--log-format", format])
}

/// Filter `f` with one rule, session `s` using it, created under the tests' field manager;
/// returns once both are Ready.
async fn create_filter_and_session(
    env: &Env,
) -> (Api<TrafficMirrorFilter>, Api<TrafficMirrorSession>) {
    let filters: Api<TrafficMirrorFilter> = Api::namespaced(env.client.clone(), &env.ns);
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(env.client.clone(), &env.ns);
    let pc = &env.account.pc;
    let filter: TrafficMirrorFilter = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": "f"},
        "spec": {"providerConfigRef": {"name": pc}, "rules": [
            {"direction": "ingress", "priority": 10, "protocol": "TCP",
             "destinationPortRange": "443"}]},
    }))
    .expect("filter manifest");
    let create = PostParams {
        field_manager: Some(support::FIELD_MANAGER.into()),
        ..Default::default()
    };
    filters
        .create(&create, &filter)
        .await
        .expect("create filter");
    let session: TrafficMirrorSession = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": "s"},
        "spec": {"trafficMirrorFilterRef": {"name": "f"}, "trafficMirrorSources": ["eni-a"],
                 "trafficMirrorTargetId": "eni-t", "trafficMirrorTargetType": "eni",
                 "priority": 10, "providerConfigRef": {"name": pc}},
    }))
    .expect("session manifest");
    sessions
        .create(&create, &session)
        .await
        .expect("create session");
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.wait_ready::<TrafficMirrorFilter>("f").await;
    (filters, sessions)
}

/// Filter `f` with one rule, session `s` using it; both Ready; then an edit of each; then both
/// deleted and gone.
async fn lifecycle(env: &Env) {
    let (filters, sessions) = create_filter_and_session(env).await;
    let edit = Patch::Merge(json!({"spec": {"priority": 11}}));
    sessions
        .patch("s", &PatchParams::default(), &edit)
        .await
        .expect("edit");
    env.wait_ready::<TrafficMirrorSession>("s").await;
    sessions
        .delete("s", &DeleteParams::default())
        .await
        .expect("delete session");
    filters
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete filter");
    support::wait_for(WAIT, || async {
        let left = sessions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .len()
            + filters.list(&ListParams::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
}

/// Every event's text in the namespace.
async fn events(env: &Env) -> String {
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    assert!(!list.items.is_empty(), "the operator recorded events");
    serde_json::to_string(&list.items).expect("events as JSON")
}

/// The admin bearer token the test API server accepts (first field of its token file).
fn kube_token() -> String {
    let cp = support::control_plane();
    let tokens = std::fs::read_to_string(cp.work_dir.join("tokens.csv")).expect("the token file");
    tokens.split(',').next().unwrap_or_default().to_string()
}

/// The metrics server's address, from the operator's start-up log line.
async fn metrics_url(op: &Operator) -> String {
    support::wait_for(WAIT, || async {
        op.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "serving /metrics, /healthz, /readyz")
            .and_then(|v| {
                let addr = v["fields"]["addr"].as_str()?.to_string();
                // `Some(127.0.0.1:PORT)`
                let addr = addr.trim_start_matches("Some(").trim_end_matches(')');
                Some(format!("http://{addr}"))
            })
    })
    .await
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("HTTP GET");
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

/// Series names (with their `_total`/`_bucket` suffixes dropped) that `/metrics` declares.
fn declared_series(metrics: &str) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Metric names in the table of docs/metrics.md, without a `_total` suffix (as `# TYPE` names them).
fn documented_series() -> Vec<String> {
    let section = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let mut names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `tmo_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("tmo_{}", n.trim_end_matches("_total")))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn json_logs_carry_the_object_and_no_secret_and_metrics_match_the_docs() {
    let env = env("obs-json").await;
    let op = operator(&env, "json");
    let url = metrics_url(&op).await;
    // Ready once the caches are synced; without leader election this replica leads.
    let (code, body) = support::wait_for(WAIT, || async {
        let (code, body) = get(&format!("{url}/readyz")).await;
        (code == 200).then_some((code, body))
    })
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("leader"), "{body}");
    lifecycle(&env).await;

    let logs = op.logs();
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // The reconcile span names the object on the lines logged inside it.
    let in_span = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["name"] == "reconcile")
        .collect::<Vec<_>>();
    assert!(
        in_span
            .iter()
            .any(|v| v["span"]["kind"] == "TrafficMirrorSession" && v["span"]["object"] == "s"),
        "a session reconcile logged inside its span"
    );
    assert!(
        in_span
            .iter()
            .filter(|v| v["span"]["kind"] != "ProviderConfig")
            .all(|v| v["span"]["namespace"] == env.ns.as_str()),
        "every namespaced reconcile span names the namespace"
    );
    // Never a secret: not the access key, the secret key, nor the API server token.
    let events = events(&env).await;
    for (what, secret) in [
        ("AK", AK.to_string()),
        ("SK", SK.to_string()),
        ("token", kube_token()),
    ] {
        assert!(
            !logs.contains(&secret),
            "the {what} is in the operator's log"
        );
        assert!(!events.contains(&secret), "the {what} is in an event");
    }
    // Every series /metrics declares is in docs/metrics.md, and vice versa.
    let (code, metrics) = get(&format!("{url}/metrics")).await;
    assert_eq!(code, 200);
    // A labelled family appears once it has a sample: `tmo_reconcile_errors` only after a failure.
    let declared = declared_series(&metrics);
    let documented = documented_series();
    let undocumented: Vec<_> = declared
        .iter()
        .filter(|n| !documented.contains(n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    let missing: Vec<_> = documented
        .iter()
        // Refreshes only exist with a temporary-credential source (not this test's Secret).
        .filter(|n| {
            !declared.contains(n)
                && n.as_str() != "tmo_reconcile_errors"
                && n.as_str() != "tmo_credential_refreshes"
        })
        .collect();
    assert!(missing.is_empty(), "documented but not served: {missing:?}");
}

#[tokio::test]
async fn text_logs_have_no_colour_codes_in_a_file() {
    let env = env("obs-text").await;
    let op = operator(&env, "text");
    lifecycle(&env).await;
    let logs = op.logs();
    assert!(
        logs.contains("caches synced"),
        "the operator logged as text: {logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "escape sequences in a log written to a file"
    );
    for secret in [AK, SK] {
        assert!(!logs.contains(secret));
    }
}

/// The fields manager names of an object's `metadata.managedFields`, with the fields each wrote.
fn managers(obj: &impl serde::Serialize) -> Vec<(String, String, String)> {
    let v = serde_json::to_value(obj).expect("object as JSON");
    v["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("<none>").to_string(),
                        e["operation"].as_str().unwrap_or_default().to_string(),
                        e["fieldsV1"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The operator's finalizer and annotation writes (JSON merge patches) name its field manager, like
/// its status writes: after it reconciled a filter, a session and their ProviderConfig, every
/// managedFields entry is the test's own or `traffic-mirror-operator`, never `unknown`.
#[tokio::test]
async fn operator_writes_under_its_own_field_manager() {
    use traffic_mirror_operator::api::ProviderConfig;
    use traffic_mirror_operator::controller::MANAGER;
    let env = env("obs-managers").await;
    let _op = operator(&env, "json");
    let (filters, sessions) = create_filter_and_session(&env).await;
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    let objects = [
        (
            "session",
            managers(&sessions.get("s").await.expect("session")),
        ),
        ("filter", managers(&filters.get("f").await.expect("filter"))),
        (
            "provider config",
            managers(&pcs.get(&env.account.pc).await.expect("pc")),
        ),
    ];
    for (what, entries) in objects {
        let strangers: Vec<_> = entries
            .iter()
            .filter(|(m, _, _)| m != MANAGER && m != support::FIELD_MANAGER)
            .collect();
        assert!(strangers.is_empty(), "{what}: written by {strangers:?}");
        let metadata_writes = entries
            .iter()
            .find(|(m, op, _)| m == MANAGER && op == "Update")
            .unwrap_or_else(|| panic!("{what}: no Update by {MANAGER}: {entries:?}"));
        assert!(
            metadata_writes.2.contains("f:finalizers"),
            "{what}: the finalizer is not the operator's: {entries:?}"
        );
        assert!(
            entries
                .iter()
                .any(|(m, op, f)| m == MANAGER && op == "Apply" && f.contains("f:conditions")),
            "{what}: the status is not applied by {MANAGER}: {entries:?}"
        );
    }
}

/// One sample line of the text format: its name and labels.
fn parse_sample(line: &str) -> Option<(String, Vec<(String, String)>)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let labels = match line[name_end..].strip_prefix('{') {
        Some(rest) => rest
            .split_once('}')?
            .0
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect(),
        None => vec![],
    };
    Some((name, labels))
}

/// The metrics reference, docs/metrics.md.
fn metrics_section() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md")
}

/// The backquoted words of a Markdown table cell.
fn backquoted(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The rows of the docs/metrics.md's metrics table: (metric as `/metrics` names its samples, label names).
fn documented_metrics(section: &str) -> Vec<(String, Vec<String>)> {
    section
        .lines()
        .filter(|l| l.starts_with("| `tmo_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            let name = backquoted(cells[1]).remove(0);
            (name, backquoted(cells[2]))
        })
        .collect()
}

/// The docs/metrics.md's label-value table: label → the values (`<…>` stands for any word).
fn documented_values(section: &str) -> Vec<(String, Vec<String>)> {
    section
        .lines()
        .filter(|l| l.starts_with("| `") && !l.starts_with("| `tmo_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            (backquoted(cells[1]).remove(0), backquoted(cells[2]))
        })
        .collect()
}

/// Whether `value` is one of `documented` (where `<…>` matches any run of word characters).
fn is_documented(value: &str, documented: &[String]) -> bool {
    documented.iter().any(|d| {
        let pattern = regex::Regex::new(r"<[^>]*>")
            .expect("regex")
            .split(d)
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(r"\w+");
        regex::Regex::new(&format!("^{pattern}$")).is_ok_and(|r| r.is_match(value))
    })
}

/// A run (filter and session Ready, a ProviderConfig whose Secret is missing, a budget small enough
/// that calls wait), then every metric of the docs/metrics.md's table has samples with exactly the labels
/// it lists, and every label value on them is one docs/metrics.md lists.
#[tokio::test]
async fn metric_labels_and_values_match_the_docs() {
    use traffic_mirror_operator::api::ProviderConfig;
    let env = env("obs-labels").await;
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    let slow = Patch::Merge(json!({"spec": {"rateLimit": {"qps": 2, "burst": 1}}}));
    pcs.patch(&env.account.pc, &PatchParams::default(), &slow)
        .await
        .expect("a small budget");
    let broken = format!("{}-broken", env.account.pc);
    let manifest: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": broken, "labels": {support::operator::SELECTOR_LABEL: env.ns}},
        "spec": {"region": "emulated-1", "projectId": support::operator::PROJECT,
                 "endpoint": env.account.emu.url,
                 "credentials": {"secretRef": {"namespace": env.ns, "name": "missing"}}},
    }))
    .expect("provider config manifest");
    pcs.create(&PostParams::default(), &manifest)
        .await
        .expect("create the broken provider config");
    // A metadata source nobody answers: its failed refreshes are counted.
    let no_metadata: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": format!("{broken}-imds"), "labels": {support::operator::SELECTOR_LABEL: env.ns}},
        "spec": {"region": "emulated-1", "projectId": support::operator::PROJECT,
                 "endpoint": env.account.emu.url,
                 "credentials": {"source": "InstanceMetadata",
                                 "instanceMetadata": {"endpoint": "http://127.0.0.1:9"}}},
    }))
    .expect("provider config manifest");
    pcs.create(&PostParams::default(), &no_metadata)
        .await
        .expect("create the metadata provider config");
    let op = operator(&env, "json");
    let url = metrics_url(&op).await;
    create_filter_and_session(&env).await;

    let section = metrics_section();
    let metrics = documented_metrics(&section);
    let values = documented_values(&section);
    assert!(
        metrics.len() >= 8 && values.len() >= 5,
        "{metrics:?} {values:?}"
    );
    // Every family has a sample once the failure is counted and a call waited.
    let (samples, scrape) = support::wait_for(WAIT, || async {
        let (_, text) = get(&format!("{url}/metrics")).await;
        let text = stamped(text);
        let samples: Vec<_> = text.lines().filter_map(parse_sample).collect();
        let all = metrics.iter().all(|(name, _)| {
            samples
                .iter()
                .any(|(s, _)| s == name || s.strip_suffix("_count") == Some(name.as_str()))
        });
        all.then_some((samples, text))
    })
    .await;
    let mut problems = Vec::new();
    for (sample, labels) in &samples {
        let Some((_, names)) = metrics.iter().find(|(name, _)| {
            sample == name
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.strip_suffix(suffix) == Some(name.as_str()))
        }) else {
            problems.push(format!("{sample}: not in the docs/metrics.md's table"));
            continue;
        };
        let mut got: Vec<&str> = labels
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "le")
            .collect();
        got.sort();
        let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort();
        if got != want {
            problems.push(format!(
                "{sample}: labels {got:?}, docs/metrics.md lists {want:?}"
            ));
        }
        for (label, value) in labels.iter().filter(|(k, _)| k != "le") {
            let documented = values
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, v)| v.as_slice())
                .unwrap_or_default();
            if !is_documented(value, documented) {
                problems.push(format!(
                    "{sample}: {label}={value:?} is not in docs/metrics.md"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    dashboard_and_alerts_match_the_scrape(&scrape);
    let (_, later) = get(&format!("{url}/metrics")).await;
    draw_the_dashboard(&scrape, &stamped(later));
    for name in [broken.clone(), format!("{broken}-imds")] {
        pcs.delete(&name, &DeleteParams::default())
            .await
            .expect("delete the broken provider configs");
    }
}

/// A scrape with the time it was taken on its first line (`# scraped-at-ms <ms>`), for the
/// dashboard drawing.
fn stamped(text: String) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("# scraped-at-ms {now}\n{text}")
}

/// Draws the dashboard from two scrapes of this run (tests/promtool/draw_test.go: Prometheus' engine
/// evaluates each panel's queries). The picture goes to the test's temporary directory, and to
/// docs/dashboard.svg when TMO_WRITE_DASHBOARD_SVG=1 (`make dashboard-picture`).
fn draw_the_dashboard(earlier: &str, later: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (a, b) = (dir.join("scrape-earlier.txt"), dir.join("scrape-later.txt"));
    std::fs::write(&a, earlier).expect("write the earlier scrape");
    std::fs::write(&b, later).expect("write the later scrape");
    let svg = if std::env::var("TMO_WRITE_DASHBOARD_SVG").as_deref() == Ok("1") {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.svg"))
    } else {
        dir.join("dashboard.svg")
    };
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/promtool/run.sh"
        ))
        .args(["-run", "TestDrawDashboard", "-v", "-count=1"])
        .env(
            "TMO_METRICS_SCRAPES",
            format!("{},{}", a.display(), b.display()),
        )
        .env("TMO_DASHBOARD_SVG", &svg)
        .output()
        .expect("run tests/promtool/run.sh (needs go on PATH)");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("--- PASS: TestDrawDashboard"),
        "drawing the dashboard failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = std::fs::read_to_string(&svg).expect("the picture");
    assert!(drawn.contains("Objects by kind and Ready state"), "{drawn}");
}

/// The dashboard's and the alerts' PromQL against this scrape: tests/promtool's Go test parses each
/// expression with Prometheus' parser and checks every metric and label it uses is in the scrape.
fn dashboard_and_alerts_match_the_scrape(scrape: &str) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("observability-scrape.txt");
    std::fs::write(&path, scrape).expect("write the scrape");
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/promtool/run.sh"
        ))
        .args(["-run", "TestExpressions", "-v"])
        .env("TMO_METRICS_SCRAPE", &path)
        .output()
        .expect("run tests/promtool/run.sh (needs go on PATH)");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("--- PASS: TestExpressionsMatchALiveScrape"),
        "the PromQL check failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docs_value_patterns() {
    let documented = vec!["cloud_retryable".to_string(), "<step>_conflict".to_string()];
    assert!(is_documented("cloud_retryable", &documented));
    assert!(is_documented("WriteStatus_conflict", &documented));
    assert!(!is_documented("cloud", &documented));
    assert!(!is_documented("_conflict", &documented));
    assert_eq!(
        parse_sample(r#"tmo_cloud_calls_total{operation="list_sessions",outcome="success"} 3"#),
        Some((
            "tmo_cloud_calls_total".to_string(),
            vec![
                ("operation".to_string(), "list_sessions".to_string()),
                ("outcome".to_string(), "success".to_string())
            ]
        ))
    );
    assert_eq!(
        parse_sample("tmo_leader 1"),
        Some(("tmo_leader".to_string(), vec![]))
    );
}
