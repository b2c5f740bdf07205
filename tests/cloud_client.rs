//! The Rust VPC client against the emulator (`hwc-vpc-emulator`, run as a child process):
//! every operation round-trips, pagination follows markers, every error class is classified, and
//! answer decoding never panics on arbitrary bytes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::TryStreamExt;
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use traffic_mirror_operator::cloud::client::{decode_empty, decode_response};
use traffic_mirror_operator::cloud::models::{
    CreateFilterRequest, CreateRuleRequest, CreateSessionRequest, FilterListResponse,
    ListFiltersQuery, ListRulesQuery, ListSessionsQuery, RuleResponse, SessionListResponse,
    SessionResponse, UpdateFilterRequest, UpdateRuleRequest, UpdateSessionRequest,
};
use traffic_mirror_operator::cloud::{ClientConfig, CloudError, Credentials, VpcClient};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "ExampleSecretKey0000000000000000000000001";

/// The emulator binary as a child process, killed on drop.
struct Emulator {
    child: Child,
    url: String,
    admin: reqwest::Client,
}

impl Emulator {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(["--listen", "127.0.0.1:0", "--project-id", PROJECT])
            .args(["--credential", &format!("{AK}:{SK}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hwc-vpc-emulator");
        let stdout = child.stdout.take().expect("emulator stdout");
        let (tx, rx) = mpsc::channel();
        // Read the first line, then keep draining so the emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("emulator printed its address within 60 s");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_string();
        Self {
            child,
            url,
            admin: reqwest::Client::new(),
        }
    }

    fn client(&self) -> VpcClient {
        self.client_with(Credentials::new(AK, SK), Duration::from_secs(10))
    }

    fn client_with(&self, credentials: Credentials, timeout: Duration) -> VpcClient {
        let cfg = ClientConfig::new(&self.url, PROJECT, credentials)
            .with_timeouts(timeout, Duration::from_secs(5));
        VpcClient::new(cfg).expect("client")
    }

    async fn fault(&self, fault: Value) {
        let r = self
            .admin
            .post(format!("{}/_emulator/faults", self.url))
            .json(&fault)
            .send()
            .await
            .expect("POST fault");
        assert!(r.status().is_success(), "fault {fault}: {}", r.status());
    }

    async fn calls(&self) -> Vec<Value> {
        let r = self
            .admin
            .get(format!("{}/_emulator/calls", self.url))
            .send()
            .await
            .expect("GET calls");
        let v: Value = r.json().await.expect("calls JSON");
        match v {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("calls") {
                Some(Value::Array(a)) => a,
                other => panic!("unexpected calls answer {other:?}"),
            },
            other => panic!("unexpected calls answer {other}"),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn session_request(
    name: &str,
    filter: &str,
    sources: &[&str],
    priority: i64,
) -> CreateSessionRequest {
    CreateSessionRequest {
        name: name.into(),
        description: Some("mirror web".into()),
        traffic_mirror_filter_id: filter.into(),
        traffic_mirror_sources: sources.iter().map(|s| s.to_string()).collect(),
        traffic_mirror_target_id: "eni-target".into(),
        traffic_mirror_target_type: "eni".into(),
        virtual_network_id: Some(42),
        packet_length: Some(128),
        priority,
        enabled: Some(true),
        source_type: Some("eni".into()),
    }
}

async fn new_filter(c: &VpcClient, name: &str) -> String {
    c.create_filter(&CreateFilterRequest {
        name: name.into(),
        description: None,
    })
    .await
    .expect("create filter")
    .id
}

#[tokio::test]
async fn session_operations_round_trip() {
    let emu = Emulator::start();
    let c = emu.client();
    let filter = new_filter(&c, "f1").await;

    let created = c
        .create_session(&session_request(
            "web-tap",
            &filter,
            &["eni-1", "eni-2"],
            10,
        ))
        .await
        .expect("create session");
    assert!(!created.id.is_empty());
    assert_eq!(created.project_id, PROJECT);
    assert_eq!(created.name, "web-tap");
    assert_eq!(created.description, "mirror web");
    assert_eq!(created.traffic_mirror_filter_id, filter);
    assert_eq!(created.traffic_mirror_sources, ["eni-1", "eni-2"]);
    assert_eq!(created.traffic_mirror_target_id, "eni-target");
    assert_eq!(created.traffic_mirror_target_type, "eni");
    assert_eq!(
        (
            created.virtual_network_id,
            created.packet_length,
            created.priority
        ),
        (42, 128, 10)
    );
    assert!(created.enabled);
    assert_eq!(created.source_type, "eni");
    assert!(!created.created_at.is_empty());

    let shown = c.show_session(&created.id).await.expect("show session");
    assert_eq!(shown, created);

    let listed = c
        .list_all_sessions(ListSessionsQuery {
            name: Some("web-tap".into()),
            ..Default::default()
        })
        .await
        .expect("list sessions");
    assert_eq!(listed, vec![created.clone()]);
    let none = c
        .list_all_sessions(ListSessionsQuery {
            name: Some("other".into()),
            ..Default::default()
        })
        .await
        .expect("list sessions by other name");
    assert!(none.is_empty());

    let updated = c
        .update_session(
            &created.id,
            &UpdateSessionRequest {
                enabled: Some(false),
                priority: Some(11),
                traffic_mirror_target_type: Some("elb".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update session");
    assert!(!updated.enabled);
    assert_eq!(updated.priority, 11);
    assert_eq!(updated.traffic_mirror_target_type, "elb");
    assert_eq!(updated.name, "web-tap", "fields not sent are unchanged");
    assert_eq!(updated.packet_length, 128);

    let added = c
        .add_sources(&created.id, &["eni-3".to_string()])
        .await
        .expect("add sources");
    assert_eq!(added.traffic_mirror_sources, ["eni-1", "eni-2", "eni-3"]);
    let removed = c
        .remove_sources(&created.id, &["eni-1".to_string()])
        .await
        .expect("remove sources");
    assert_eq!(removed.traffic_mirror_sources, ["eni-2", "eni-3"]);

    // what went over the wire: documented methods and paths, `enabled` as a string, ints as numbers
    let calls = emu.calls().await;
    let find = |method: &str, suffix: &str| {
        calls
            .iter()
            .find(|c| {
                c["method"] == method && c["path"].as_str().is_some_and(|p| p.ends_with(suffix))
            })
            .unwrap_or_else(|| panic!("no {method} …{suffix} in {calls:#?}"))
            .clone()
    };
    let post = find("POST", "/vpc/traffic-mirror-sessions");
    assert_eq!(
        post["body"]["traffic_mirror_session"]["enabled"],
        json!("true")
    );
    assert_eq!(
        post["body"]["traffic_mirror_session"]["packet_length"],
        json!(128)
    );
    let put = find("PUT", &format!("/traffic-mirror-sessions/{}", created.id));
    assert_eq!(
        put["body"],
        json!({"traffic_mirror_session": {"enabled": "false", "priority": 11, "traffic_mirror_target_type": "elb"}})
    );
    find(
        "PUT",
        &format!("/traffic-mirror-sessions/{}/add-sources", created.id),
    );
    find(
        "PUT",
        &format!("/traffic-mirror-sessions/{}/remove-sources", created.id),
    );

    c.delete_session(&created.id).await.expect("delete session");
    let gone = c.show_session(&created.id).await.unwrap_err();
    assert!(gone.is_not_found() && !gone.is_retryable(), "{gone:?}");
    let again = c.delete_session(&created.id).await.unwrap_err();
    assert!(again.is_not_found(), "{again:?}");
    assert!(
        c.list_all_sessions(ListSessionsQuery::default())
            .await
            .expect("list after delete")
            .is_empty()
    );
}

#[tokio::test]
async fn filter_and_rule_operations_round_trip() {
    let emu = Emulator::start();
    let c = emu.client();
    let f = c
        .create_filter(&CreateFilterRequest {
            name: "web".into(),
            description: Some("http only".into()),
        })
        .await
        .expect("create filter");
    assert_eq!(
        (f.name.as_str(), f.description.as_str()),
        ("web", "http only")
    );
    assert_eq!(f.project_id, PROJECT);
    assert!(f.ingress_rules.is_empty() && f.egress_rules.is_empty());
    assert_eq!(c.show_filter(&f.id).await.expect("show filter"), f);

    let f2 = c
        .update_filter(
            &f.id,
            &UpdateFilterRequest {
                description: Some("web traffic".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update filter");
    assert_eq!(
        (f2.name.as_str(), f2.description.as_str()),
        ("web", "web traffic")
    );
    let filters = c
        .list_all_filters(ListFiltersQuery::default())
        .await
        .expect("list filters");
    assert_eq!(
        filters.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        [f.id.as_str()]
    );

    let rule = c
        .create_rule(&CreateRuleRequest {
            traffic_mirror_filter_id: f.id.clone(),
            direction: "ingress".into(),
            protocol: Some("TCP".into()),
            ethertype: Some("IPv4".into()),
            destination_port_range: Some("80-443".into()),
            destination_cidr_block: Some("10.0.0.0/8".into()),
            action: Some("accept".into()),
            priority: Some(5),
            description: Some("http".into()),
            ..Default::default()
        })
        .await
        .expect("create rule");
    assert_eq!(rule.traffic_mirror_filter_id, f.id);
    assert_eq!(
        (rule.direction.as_str(), rule.protocol.as_str()),
        ("ingress", "TCP")
    );
    assert_eq!(rule.destination_port_range.as_deref(), Some("80-443"));
    assert_eq!(rule.destination_cidr_block.as_deref(), Some("10.0.0.0/8"));
    assert_eq!(rule.source_cidr_block, None, "unset CIDR is absent");
    assert_eq!(rule.priority, 5);
    assert_eq!(c.show_rule(&rule.id).await.expect("show rule"), rule);

    let egress = c
        .create_rule(&CreateRuleRequest {
            traffic_mirror_filter_id: f.id.clone(),
            direction: "egress".into(),
            protocol: Some("ALL".into()),
            ethertype: Some("IPv4".into()),
            action: Some("reject".into()),
            priority: Some(9),
            ..Default::default()
        })
        .await
        .expect("create egress rule");

    let changed = c
        .update_rule(
            &rule.id,
            &UpdateRuleRequest {
                priority: Some(6),
                action: Some("reject".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update rule");
    assert_eq!((changed.priority, changed.action.as_str()), (6, "reject"));
    assert_eq!(changed.destination_port_range.as_deref(), Some("80-443"));

    // `Some("")` clears an optional field (sent as ""), `None` leaves it out of the body; the
    // protocol comes back in the case it was sent.
    let cleared = c
        .update_rule(
            &rule.id,
            &UpdateRuleRequest {
                destination_port_range: Some(String::new()),
                description: Some(String::new()),
                protocol: Some("udp".into()),
                ..Default::default()
            },
        )
        .await
        .expect("clear rule fields");
    assert_eq!(
        cleared.destination_port_range, None,
        "cleared range is absent"
    );
    assert_eq!(cleared.description, "");
    assert_eq!(cleared.protocol, "udp");
    assert_eq!(
        cleared.destination_cidr_block.as_deref(),
        Some("10.0.0.0/8")
    );
    assert_eq!(c.show_rule(&rule.id).await.expect("show rule"), cleared);

    let rules = c
        .list_all_rules(ListRulesQuery {
            traffic_mirror_filter_id: Some(f.id.clone()),
            ..Default::default()
        })
        .await
        .expect("list rules");
    let ids: HashSet<_> = rules.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, HashSet::from([rule.id.clone(), egress.id.clone()]));
    let ingress_only = c
        .list_all_rules(ListRulesQuery {
            direction: Some("ingress".into()),
            ..Default::default()
        })
        .await
        .expect("list ingress rules");
    assert_eq!(ingress_only, vec![cleared.clone()]);

    let shown = c.show_filter(&f.id).await.expect("show filter with rules");
    assert_eq!(shown.ingress_rules, vec![cleared.clone()]);
    assert_eq!(shown.egress_rules, vec![egress.clone()]);

    c.delete_rule(&rule.id).await.expect("delete rule");
    assert!(c.show_rule(&rule.id).await.unwrap_err().is_not_found());
    c.delete_rule(&egress.id).await.expect("delete egress rule");
    c.delete_filter(&f.id).await.expect("delete filter");
    let e = c.show_filter(&f.id).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(c.delete_filter(&f.id).await.unwrap_err().is_not_found());
}

/// Run a setup call, waiting out throttling (the emulator may rate-limit like the real gateway).
async fn with_backoff<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_millis(100))).await;
            }
            Err(e) => panic!("setup call failed: {e}"),
        }
    }
}

#[tokio::test]
async fn pagination_follows_markers_over_250_sessions() {
    let emu = Emulator::start();
    let c = emu.client();
    let filter = new_filter(&c, "pages").await;
    let mut created = Vec::new();
    for i in 0..250 {
        let req = session_request(
            &format!("s-{i:03}"),
            &filter,
            &[&format!("eni-{i}")],
            i % 32766 + 1,
        );
        let s = with_backoff(|| c.create_session(&req)).await;
        created.push(s.id);
    }

    let paged = |limit| {
        c.list_sessions(ListSessionsQuery {
            limit: Some(limit),
            ..Default::default()
        })
        .map_ok(|s| s.id)
        .try_collect::<Vec<_>>()
    };
    let first = paged(7).await.expect("list with limit 7");
    assert_eq!(first.len(), 250);
    let unique: HashSet<_> = first.iter().cloned().collect();
    assert_eq!(unique.len(), 250, "no duplicates");
    assert_eq!(unique, created.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(paged(7).await.expect("again"), first, "order is stable");
    assert_eq!(
        paged(2000).await.expect("one page"),
        first,
        "same order in one page"
    );
    assert_eq!(paged(250).await.expect("exact page"), first);

    // 250 / 7 = 35.7: 36 pages, each a GET carrying limit=7
    let list_calls: Vec<_> = emu
        .calls()
        .await
        .into_iter()
        .filter(|c| {
            c["method"] == "GET" && c["query"].as_str().is_some_and(|q| q.contains("limit=7"))
        })
        .collect();
    assert_eq!(list_calls.len(), 2 * 36);

    // a marker in the query starts after that item
    let rest = c
        .list_all_sessions(ListSessionsQuery {
            limit: Some(7),
            marker: Some(first[99].clone()),
            ..Default::default()
        })
        .await
        .expect("list from marker");
    let rest: Vec<_> = rest.into_iter().map(|s| s.id).collect();
    assert_eq!(rest, first[100..]);

    // a page answer exposes page_info
    let page = c
        .list_sessions_page(&ListSessionsQuery {
            limit: Some(7),
            ..Default::default()
        })
        .await
        .expect("one page");
    assert_eq!(page.traffic_mirror_sessions.len(), 7);
    assert_eq!(
        page.page_info.next_marker.as_deref(),
        Some(first[6].as_str())
    );
}

#[tokio::test]
async fn api_errors_are_classified() {
    let emu = Emulator::start();
    let c = emu.client();

    // 404: terminal, not found, with the emulator's code and a request id
    let e = c
        .show_session("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.is_not_found() && !e.is_retryable(), "{e:?}");
    assert_eq!(e.error_code(), Some("VPC.1001"));
    assert!(e.request_id().is_some_and(|r| !r.is_empty()), "{e:?}");

    // 400 from validation: terminal, with error_code
    let e = c
        .create_session(&session_request(
            "bad name!",
            "no-such-filter",
            &["eni-1"],
            0,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e:?}");
    assert!(!e.is_retryable() && !e.is_not_found());
    assert!(
        e.error_code().is_some_and(|c| c.starts_with("VPC.")),
        "{e:?}"
    );

    // 401 on a wrong secret key
    let bad = emu.client_with(
        Credentials::new(AK, "wrong-secret"),
        Duration::from_secs(10),
    );
    let e = bad
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e:?}");
    assert_eq!(e.error_code(), Some("APIGW.0301"));
    assert!(!e.is_retryable());
    assert!(!format!("{e:?} {e}").contains("wrong-secret"));

    // temporary credentials (X-Security-Token signed along) are accepted
    let temp = emu.client_with(
        Credentials {
            access_key: AK.into(),
            secret_key: SK.into(),
            security_token: Some("session-token".into()),
        },
        Duration::from_secs(10),
    );
    temp.list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("temporary credentials");

    // injected 400 with a code
    emu.fault(
        json!({"method": "GET", "path_contains": "traffic-mirror-filters", "status": 400,
        "error_code": "VPC.0002", "times": 1}),
    )
    .await;
    let e = c
        .list_all_filters(ListFiltersQuery::default())
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.error_code()), (Some(400), Some("VPC.0002")));
    assert!(!e.is_retryable());
    c.list_all_filters(ListFiltersQuery::default())
        .await
        .expect("fault used up after `times`");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let emu = Emulator::start();
    let c = emu.client();

    emu.fault(
        json!({"path_contains": "traffic-mirror-sessions", "status": 429, "times": 1,
        "retry_after_s": 3}),
    )
    .await;
    let e = c
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429));
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(e.error_code(), Some("APIGW.0308"));
    assert_eq!(e.metric_label(), "throttled");

    for status in [500u16, 503] {
        emu.fault(
            json!({"path_contains": "traffic-mirror-sessions", "status": status, "times": 1}),
        )
        .await;
        let e = c
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(e.retry_after(), None);
        assert_eq!(e.metric_label(), "server_error");
    }
    c.list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("faults used up");
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_retryable() {
    let emu = Emulator::start();
    let fast = emu.client_with(Credentials::new(AK, SK), Duration::from_millis(300));

    emu.fault(json!({"path_contains": "traffic-mirror-sessions", "times": 1, "delay_ms": 3000}))
        .await;
    let e = fast
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.reason(), "Timeout");

    let c = emu.client();
    emu.fault(
        json!({"path_contains": "traffic-mirror-sessions", "times": 1, "drop_connection": true}),
    )
    .await;
    let e = c
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::Connect { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.reason(), "ConnectionFailed");

    // nothing listening at all
    drop(emu);
    let e = c
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::Connect { .. }), "{e:?}");
    assert!(e.is_retryable());
}

fn status_strategy() -> impl Strategy<Value = u16> {
    prop_oneof![
        100u16..600,
        Just(200u16),
        Just(201u16),
        Just(204u16),
        Just(429u16),
        Just(502u16)
    ]
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let valid = [
        r#"{"traffic_mirror_session": {"id": "a", "enabled": "true", "priority": "3"}, "request_id": "r"}"#,
        r#"{"traffic_mirror_sessions": [{"id": "a"}], "page_info": {"next_marker": "a"}}"#,
        r#"{"error_code": "VPC.0101", "error_msg": "x", "request_id": "r"}"#,
        r#"{"error": {"code": "APIGW.0308", "message": "slow down"}}"#,
        "<html><head><title>502 Bad Gateway</title></head></html>",
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        ".{0,64}".prop_map(String::into_bytes),
        (
            proptest::sample::select(valid.to_vec()),
            any::<usize>(),
            any::<u8>()
        )
            .prop_map(|(s, i, b)| {
                let mut v = s.as_bytes().to_vec();
                let n = v.len();
                v[i % n] = b;
                v
            }),
        (proptest::sample::select(valid.to_vec()), any::<usize>())
            .prop_map(|(s, i)| s.as_bytes()[..i % (s.len() + 1)].to_vec()),
    ]
}

fn headers_strategy() -> impl Strategy<Value = HeaderMap> {
    (
        proptest::option::of(prop_oneof![
            "[0-9]{0,25}",
            ".{0,40}",
            Just("Wed, 21 Oct 2015 07:28:00 GMT".to_string())
        ]),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(|(retry_after, request_id)| {
            let mut h = HeaderMap::new();
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert("retry-after", v);
            }
            if let Some(v) = request_id.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert("x-request-id", v);
            }
            h
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever comes back, decoding yields Ok or a classified error, never a panic; a non-2xx is
    /// always an `Api` error carrying that status.
    #[test]
    fn decoding_never_panics(status in status_strategy(), headers in headers_strategy(), body in body_strategy()) {
        let one = decode_response::<SessionResponse>(status, &headers, &body);
        let list = decode_response::<SessionListResponse>(status, &headers, &body);
        let _ = decode_response::<FilterListResponse>(status, &headers, &body);
        let _ = decode_response::<RuleResponse>(status, &headers, &body);
        let empty = decode_empty(status, &headers, &body);
        for e in [one.err(), list.err(), empty.err()].into_iter().flatten() {
            let _ = (e.to_string(), e.reason(), e.metric_label(), e.is_retryable(), e.retry_after());
            prop_assert_eq!(e.status(), Some(status));
            if !(200..300).contains(&status) {
                let is_api = matches!(e, CloudError::Api { .. });
                prop_assert!(is_api);
            }
        }
    }
}

/// The client can say "clear this field": `Some("")` is sent as `""` and read back as `Some("")`,
/// while `None` is left out of the body.
#[test]
fn update_rule_request_keeps_empty_strings_apart_from_absent() {
    let clear = UpdateRuleRequest {
        source_cidr_block: Some(String::new()),
        description: Some(String::new()),
        ..Default::default()
    };
    let v = serde_json::to_value(&clear).expect("serialize");
    assert_eq!(v, json!({"source_cidr_block": "", "description": ""}));
    let back: UpdateRuleRequest = serde_json::from_value(v).expect("deserialize");
    assert_eq!(back, clear);
    let absent: UpdateRuleRequest =
        serde_json::from_value(json!({"source_cidr_block": null})).expect("deserialize null");
    assert_eq!(absent, UpdateRuleRequest::default());
}

// ----- ports -------------------------------------------------------------------------------------

use traffic_mirror_operator::cloud::ports::{PortQuery, TagFilter};

impl Emulator {
    /// Seed port `port-{i}` on server `server-{i}` with IP `10.1.{i/250}.{i%250}` and tag
    /// `group={i%3}`.
    async fn seed_port(&self, i: usize) {
        let port = json!({
            "id": format!("port-{i:03}"), "name": format!("nic-{i}"),
            "device_id": format!("server-{i:03}"), "device_owner": "compute:az1",
            "vpc_id": if i.is_multiple_of(2) { "vpc-even" } else { "vpc-odd" },
            "private_ips": [{"subnet_cidr_id": "subnet-1", "ip_address": format!("10.1.{}.{}", i / 250, i % 250)}],
            "tags": [{"key": "group", "value": (i % 3).to_string()}],
            "instance_id": format!("server-{i:03}"), "instance_type": "ecs"
        });
        let r = self
            .admin
            .post(format!("{}/_emulator/ports", self.url))
            .json(&port)
            .send()
            .await
            .expect("POST port");
        assert_eq!(r.status().as_u16(), 201);
    }
}

fn port_ids(ports: &[traffic_mirror_operator::cloud::ports::Port]) -> Vec<String> {
    ports.iter().map(|p| p.id.clone()).collect()
}

#[tokio::test]
async fn ports_are_listed_paged_shown_and_found_by_tags() {
    let emu = Emulator::start();
    for i in 0..30 {
        emu.seed_port(i).await;
    }
    let c = emu.client();
    // One page, then every page.
    let q = PortQuery {
        limit: Some(7),
        ..PortQuery::default()
    };
    let page = c.list_ports_page(&q).await.expect("page");
    assert_eq!(page.ports.len(), 7);
    assert_eq!(page.page_info.next_marker.as_deref(), Some("port-006"));
    let all = c.list_all_ports(&q).await.expect("all");
    assert_eq!(all.len(), 30);
    assert_eq!(port_ids(&all).iter().collect::<HashSet<_>>().len(), 30);
    let lists = emu
        .calls()
        .await
        .iter()
        .filter(|x| x["method"] == "GET")
        .count();
    assert_eq!(lists, 1 + 5, "one page call, then 30/7 rounded up");
    // Filters: device ids, private IPs, VPC.
    let q = PortQuery {
        device_id: vec!["server-003".into(), "server-004".into()],
        ..PortQuery::default()
    };
    assert_eq!(
        port_ids(&c.list_all_ports(&q).await.expect("by device")),
        ["port-003", "port-004"]
    );
    let q = PortQuery {
        private_ips: vec!["10.1.0.5".into(), "10.1.0.6".into()],
        vpc_id: Some("vpc-even".into()),
        ..PortQuery::default()
    };
    let found = c.list_all_ports(&q).await.expect("by ip");
    assert_eq!(port_ids(&found), ["port-006"]);
    assert_eq!(found[0].private_ips[0].ip_address, "10.1.0.6");
    assert_eq!(
        (found[0].device_owner.as_str(), found[0].vpc_id.as_str()),
        ("compute:az1", "vpc-even")
    );
    // Show.
    let p = c.show_port("port-010").await.expect("show");
    assert_eq!(
        (p.device_id.as_str(), p.status.as_str()),
        ("server-010", "ACTIVE")
    );
    assert_eq!(p.tags[0].value, "1");
    match c.show_port("port-999").await {
        Err(CloudError::Api {
            status: 404,
            error_code,
            ..
        }) => assert_eq!(error_code, "VPC.1301"),
        other => panic!("expected 404, got {other:?}"),
    }
    // By tags: group 0 or 2, with details.
    let tags = [TagFilter {
        key: "group".into(),
        values: vec!["0".into(), "2".into()],
    }];
    let tagged = c.list_ports_by_tags(&tags).await.expect("by tags");
    assert_eq!(tagged.len(), 20);
    assert!(
        tagged
            .iter()
            .all(|p| p.tags[0].value != "1" && !p.device_id.is_empty())
    );
    let none = [TagFilter {
        key: "nope".into(),
        values: vec![],
    }];
    assert!(c.list_ports_by_tags(&none).await.expect("none").is_empty());
}

#[tokio::test]
async fn port_errors_are_classified_like_other_calls() {
    let emu = Emulator::start();
    emu.seed_port(1).await;
    let c = emu.client();
    emu.fault(json!({"path_contains": "/ports", "status": 503}))
        .await;
    let e = c
        .list_ports_page(&PortQuery::default())
        .await
        .expect_err("503");
    assert!(e.is_retryable(), "{e}");
    let bad = emu.client_with(Credentials::new(AK, "wrong"), Duration::from_secs(10));
    let e = bad.show_port("port-001").await.expect_err("401");
    assert!(
        matches!(e, CloudError::Api { status: 401, .. }) && !e.is_retryable(),
        "{e}"
    );
    assert!(matches!(
        c.show_port("").await,
        Err(CloudError::InvalidRequest(_))
    ));
    let calls = emu.calls().await;
    assert!(
        calls.iter().all(|x| x["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("/v3/{PROJECT}/ports")))),
        "{calls:?}"
    );
}
