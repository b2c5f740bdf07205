//! The emulator over HTTP: validation edges, pagination, referential integrity, authentication
//! failures, persistence across a restart of the binary, the admin API and faults, throttling and
//! latency (`--rate-limit`, `--latency`, `/_emulator/limits`), ports (seeded through the admin
//! API, listed, removed from sessions, `--check-ports`), the identity side (ID token checks,
//! temporary credentials and their security token and expiry, assume-role, metadata), plus
//! property tests (the verifier against the client's signer; arbitrary input never breaks the
//! router).

use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use chrono::{TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::ServiceExt;
use traffic_mirror_operator::cloud::signer::{self, Credentials, Signer};
use traffic_mirror_operator::emulator::auth::Verifier;
use traffic_mirror_operator::emulator::{AppState, Emulator, EmulatorConfig, router};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "TESTAK0000000001";
const SK: &str = "test-secret-key-0000000001";

fn config() -> EmulatorConfig {
    EmulatorConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        PROJECT,
        vec![(AK.into(), SK.into()), ("AK2".into(), "SK2".into())],
    )
}

/// An HTTP response as the tests look at it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{:#}",
            self.body
        );
        self
    }
}

/// A signing HTTP client for one emulator.
struct Api {
    url: String,
    http: reqwest::Client,
    signer: Signer,
}

impl Api {
    fn new(url: String) -> Self {
        Self {
            url,
            http: reqwest::Client::new(),
            signer: Signer::new(Credentials::new(AK, SK)),
        }
    }

    fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// Signed request; `target` is the path (under the project) with an optional `?query`.
    async fn call(&self, method: &str, target: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(
            method,
            &format!("/v3/{PROJECT}/vpc{target}"),
            &bytes,
            Utc::now(),
            |_| {},
        )
        .await
        .expect("request")
    }

    async fn raw(
        &self,
        method: &str,
        full_target: &str,
        body: &[u8],
        now: chrono::DateTime<Utc>,
        tamper: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Result<Reply, reqwest::Error> {
        let (path, query) = full_target.split_once('?').unwrap_or((full_target, ""));
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), self.host()),
            ("X-Project-Id".to_string(), PROJECT.to_string()),
        ];
        self.signer
            .sign(method, path, query, &mut headers, body, now);
        tamper(&mut headers);
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            format!("{}{full_target}", self.url),
        );
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let resp = req.body(body.to_vec()).send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("answer is JSON")
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}/_emulator/{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("admin body");
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn calls(&self) -> Vec<Value> {
        let r = self.admin(reqwest::Method::GET, "calls", None).await;
        r.body.as_array().cloned().expect("calls array")
    }

    async fn fault(&self, spec: Value) {
        let r = self
            .admin(reqwest::Method::POST, "faults", Some(spec))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    async fn filter(&self, name: &str) -> String {
        let r = self
            .call(
                "POST",
                "/traffic-mirror-filters",
                Some(json!({"traffic_mirror_filter": {"name": name}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["traffic_mirror_filter"]["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    async fn session(&self, fields: Value) -> Reply {
        self.call(
            "POST",
            "/traffic-mirror-sessions",
            Some(json!({ "traffic_mirror_session": fields })),
        )
        .await
    }
}

fn session_body(filter: &str, name: &str) -> Value {
    json!({
        "name": name, "traffic_mirror_filter_id": filter, "traffic_mirror_sources": ["eni-1"],
        "traffic_mirror_target_id": "eni-target", "traffic_mirror_target_type": "eni", "priority": 1
    })
}

async fn start() -> (Emulator, Api) {
    let emulator = Emulator::start(config()).await.expect("start emulator");
    let api = Api::new(emulator.url());
    (emulator, api)
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").is_ok() && s.len() == 20
    })
}

#[tokio::test]
async fn crud_round_trip_with_documented_shapes() {
    let (_emu, api) = start().await;
    let fid = api.filter("f1").await;

    let r = api
        .call(
            "POST",
            "/traffic-mirror-filter-rules",
            Some(json!({"traffic_mirror_filter_rule": {
                "traffic_mirror_filter_id": fid, "direction": "ingress", "ethertype": "ipv6",
                "protocol": "icmpv6", "destination_cidr_block": " ::/0 ", "priority": "7"}})),
        )
        .await;
    r.expect(201, "");
    let rule = &r.body["traffic_mirror_filter_rule"];
    assert_eq!(rule["ethertype"], "IPv6");
    assert_eq!(
        rule["protocol"], "icmpv6",
        "protocol keeps the case it was sent"
    );
    assert_eq!(rule["destination_cidr_block"], "::/0");
    assert_eq!(rule["priority"], 7);
    for absent in [
        "source_cidr_block",
        "source_port_range",
        "destination_port_range",
    ] {
        assert!(rule.get(absent).is_none(), "{absent} must be omitted");
    }
    let rule_id = rule["id"].as_str().expect("rule id").to_string();

    let r = api.session(session_body(&fid, "s1")).await;
    r.expect(201, "");
    let s = r.body["traffic_mirror_session"].clone();
    let request_id = r.body["request_id"].as_str().expect("request_id");
    assert_eq!(
        r.headers["x-request-id"].to_str().expect("header"),
        request_id
    );
    let id = s["id"].as_str().expect("id").to_string();
    assert_eq!(
        uuid::Uuid::parse_str(&id).expect("uuid").get_version_num(),
        4
    );
    assert_eq!(s["project_id"], PROJECT);
    assert!(
        s["virtual_network_id"].is_i64()
            && s["packet_length"].is_i64()
            && s["enabled"].is_boolean()
    );
    assert!(
        is_timestamp(&s["created_at"]) && is_timestamp(&s["updated_at"]),
        "{s}"
    );

    let r = api
        .call("GET", &format!("/traffic-mirror-sessions/{id}"), None)
        .await;
    r.expect(200, "");
    assert_eq!(r.body["traffic_mirror_session"], s);

    let r = api
        .call(
            "PUT",
            &format!("/traffic-mirror-sessions/{id}"),
            Some(json!({"traffic_mirror_session": {"traffic_mirror_target_id": "elb-1",
                "traffic_mirror_target_type": "elb", "type": "eni", "enabled": "true", "packet_length": "200"}})),
        )
        .await;
    r.expect(200, "");
    let u = &r.body["traffic_mirror_session"];
    assert_eq!(
        (
            u["traffic_mirror_target_type"].as_str(),
            u["enabled"].as_bool(),
            u["packet_length"].as_i64()
        ),
        (Some("elb"), Some(true), Some(200))
    );
    assert_eq!(u["created_at"], s["created_at"]);
    assert!(u["updated_at"].as_str() >= s["updated_at"].as_str());

    let r = api
        .call("GET", &format!("/traffic-mirror-filters/{fid}"), None)
        .await;
    assert_eq!(
        r.body["traffic_mirror_filter"]["ingress_rules"][0]["id"],
        rule_id.as_str()
    );
    assert_eq!(r.body["traffic_mirror_filter"]["egress_rules"], json!([]));

    let r = api
        .call("DELETE", &format!("/traffic-mirror-sessions/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert!(r.headers.contains_key("x-request-id"));
    api.call("DELETE", &format!("/traffic-mirror-sessions/{id}"), None)
        .await
        .expect(404, "VPC.1001");
    api.call("GET", &format!("/traffic-mirror-sessions/{id}"), None)
        .await
        .expect(404, "VPC.1001");
}

/// Create a rule with `fields` (plus filter and direction) and answer its JSON.
async fn create_rule(api: &Api, fid: &str, fields: Value) -> Value {
    let mut body = json!({"traffic_mirror_filter_id": fid, "direction": "ingress"});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), fields) {
        b.extend(extra);
    }
    let r = api
        .call(
            "POST",
            "/traffic-mirror-filter-rules",
            Some(json!({ "traffic_mirror_filter_rule": body })),
        )
        .await;
    r.expect(201, "");
    r.body["traffic_mirror_filter_rule"].clone()
}

/// The rule as show, list and the filter's `ingress_rules` answer it (all three must agree).
async fn read_rule(api: &Api, fid: &str, id: &str) -> Value {
    let shown = api
        .call("GET", &format!("/traffic-mirror-filter-rules/{id}"), None)
        .await;
    shown.expect(200, "");
    let shown = shown.body["traffic_mirror_filter_rule"].clone();
    let listed = api
        .call(
            "GET",
            &format!("/traffic-mirror-filter-rules?id={id}"),
            None,
        )
        .await;
    assert_eq!(listed.body["traffic_mirror_filter_rules"], json!([shown]));
    let filter = api
        .call("GET", &format!("/traffic-mirror-filters/{fid}"), None)
        .await;
    let in_filter = filter.body["traffic_mirror_filter"]["ingress_rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["id"] == id).cloned());
    assert_eq!(in_filter, Some(shown.clone()));
    shown
}

/// PUT `fields` on rule `id`, expect 200 and answer the updated rule.
async fn update_rule(api: &Api, id: &str, fields: Value) -> Value {
    let r = api
        .call(
            "PUT",
            &format!("/traffic-mirror-filter-rules/{id}"),
            Some(json!({ "traffic_mirror_filter_rule": fields })),
        )
        .await;
    r.expect(200, "");
    r.body["traffic_mirror_filter_rule"].clone()
}

#[tokio::test]
async fn rule_protocol_round_trips_in_the_case_it_was_sent() {
    let (_emu, api) = start().await;
    let fid = api.filter("f1").await;
    let rule = create_rule(&api, &fid, json!({"protocol": "tcp", "ethertype": "ipv4"})).await;
    assert_eq!(
        (&rule["protocol"], &rule["ethertype"]),
        (&json!("tcp"), &json!("IPv4"))
    );
    let id = rule["id"].as_str().expect("id").to_string();
    assert_eq!(read_rule(&api, &fid, &id).await["protocol"], "tcp");
    // A list filter on protocol is an exact match on what was stored.
    let r = api
        .call("GET", "/traffic-mirror-filter-rules?protocol=tcp", None)
        .await;
    assert_eq!(r.body["traffic_mirror_filter_rules"][0]["id"], id.as_str());
    for sent in ["all", "Udp", "ICMP", "icmpv6"] {
        let u = update_rule(&api, &id, json!({"protocol": sent})).await;
        assert_eq!(u["protocol"], sent);
        assert_eq!(read_rule(&api, &fid, &id).await["protocol"], sent);
    }
    // Surrounding blanks are trimmed; an unknown protocol is refused in any case.
    assert_eq!(
        update_rule(&api, &id, json!({"protocol": " tcp "})).await["protocol"],
        "tcp"
    );
    api.call(
        "PUT",
        &format!("/traffic-mirror-filter-rules/{id}"),
        Some(json!({"traffic_mirror_filter_rule": {"protocol": "sctp"}})),
    )
    .await
    .expect(400, "VPC.0002");
    // Without a protocol a rule gets the documented default.
    assert_eq!(create_rule(&api, &fid, json!({})).await["protocol"], "ALL");
}

#[tokio::test]
async fn rule_update_clears_on_empty_string_and_keeps_absent_or_null() {
    let (_emu, api) = start().await;
    let fid = api.filter("f1").await;
    let full = json!({"source_cidr_block": "10.0.0.0/8", "destination_cidr_block": "192.168.0.0/16",
        "source_port_range": "80", "destination_port_range": "1024-65535", "description": "web"});
    let rule = create_rule(&api, &fid, full.clone()).await;
    let id = rule["id"].as_str().expect("id").to_string();
    let same = |v: &Value| {
        for (k, want) in full.as_object().into_iter().flatten() {
            assert_eq!(&v[k], want, "{k} must be unchanged: {v}");
        }
    };
    // Absent, and null, leave every field as it was.
    same(&update_rule(&api, &id, json!({"priority": 9})).await);
    let nulls = json!({"source_cidr_block": null, "destination_cidr_block": null,
        "source_port_range": null, "destination_port_range": null, "description": null});
    same(&update_rule(&api, &id, nulls).await);
    same(&read_rule(&api, &fid, &id).await);
    // "" clears: CIDR and port fields disappear from every answer, description becomes "".
    let u = update_rule(
        &api,
        &id,
        json!({"source_cidr_block": "", "destination_port_range": "", "description": ""}),
    )
    .await;
    for v in [u, read_rule(&api, &fid, &id).await] {
        assert!(v.get("source_cidr_block").is_none(), "{v}");
        assert!(v.get("destination_port_range").is_none(), "{v}");
        assert_eq!(v["description"], "");
        assert_eq!(v["destination_cidr_block"], "192.168.0.0/16");
        assert_eq!(v["source_port_range"], "80");
        assert_eq!(v["priority"], 9);
    }
    let u = update_rule(
        &api,
        &id,
        json!({"destination_cidr_block": "", "source_port_range": ""}),
    )
    .await;
    // Now it answers like a rule created without any of them.
    let bare = create_rule(&api, &fid, json!({"priority": 9})).await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&u), keys(&bare));
    assert_eq!(u["description"], bare["description"]);
    // A cleared field can be set again.
    let u = update_rule(&api, &id, json!({"source_cidr_block": "172.16.0.0/12"})).await;
    assert_eq!(u["source_cidr_block"], "172.16.0.0/12");
}

#[tokio::test]
async fn validation_edges() {
    let (_emu, api) = start().await;
    let fid = api.filter("f").await;
    let with = |key: &str, value: Value| {
        let mut b = session_body(&fid, "edge");
        b[key] = value;
        b
    };
    let ok = [
        with("name", json!("x".repeat(64))),
        with("name", json!("镜像会话_1.0-a")),
        with("description", json!("d".repeat(255))),
        with("virtual_network_id", json!(0)),
        with("virtual_network_id", json!("16777215")),
        with("packet_length", json!(1)),
        with("packet_length", json!("1460")),
        with("priority", json!(32766)),
        with("enabled", json!("false")),
        with("enabled", json!(true)),
        with("type", json!("eni")),
        with("traffic_mirror_target_type", json!("elb")),
        with(
            "traffic_mirror_sources",
            json!((0..10).map(|i| format!("eni-{i}")).collect::<Vec<_>>()),
        ),
    ];
    for body in ok {
        let r = api.session(body.clone()).await;
        assert_eq!(r.status, 201, "{body} -> {}", r.body);
    }
    let bad: Vec<(Value, &str)> = vec![
        (with("name", json!("x".repeat(65))), "VPC.0002"),
        (with("name", json!("")), "VPC.0002"),
        (with("name", json!("a b")), "VPC.0002"),
        (with("name", json!(5)), "VPC.0002"),
        (with("description", json!("d".repeat(256))), "VPC.0002"),
        (with("description", json!("a>b")), "VPC.0002"),
        (with("virtual_network_id", json!(16_777_216)), "VPC.0002"),
        (with("virtual_network_id", json!("1.5")), "VPC.0002"),
        (with("packet_length", json!(0)), "VPC.0002"),
        (with("packet_length", json!(1461)), "VPC.0002"),
        (with("priority", json!(32767)), "VPC.0002"),
        (with("priority", json!(null)), "VPC.0003"),
        (with("enabled", json!("yes")), "VPC.0002"),
        (with("traffic_mirror_target_type", json!("ENI")), "VPC.0002"),
        (with("type", json!("vm")), "VPC.0002"),
        (
            with(
                "traffic_mirror_sources",
                json!((0..11).map(|i| format!("eni-{i}")).collect::<Vec<_>>()),
            ),
            "VPC.1002",
        ),
        (
            with("traffic_mirror_sources", json!(["a", "a"])),
            "VPC.1003",
        ),
        (with("traffic_mirror_sources", json!([1])), "VPC.0002"),
        (
            with("traffic_mirror_filter_id", json!("missing")),
            "VPC.1102",
        ),
    ];
    for (body, code) in bad {
        api.session(body.clone()).await.expect(400, code);
    }
    // Malformed JSON, wrong shapes, missing wrapper.
    for (raw, code) in [
        (&b"{"[..], "VPC.0001"),
        (b"[1]", "VPC.0001"),
        (b"{\"traffic_mirror_session\": []}", "VPC.0001"),
        (b"{}", "VPC.0003"),
        (b"", "VPC.0003"),
        (b"\xff\xfe", "VPC.0001"),
    ] {
        let r = api
            .raw(
                "POST",
                &format!("/v3/{PROJECT}/vpc/traffic-mirror-sessions"),
                raw,
                Utc::now(),
                |_| {},
            )
            .await
            .expect("request");
        r.expect(400, code);
        assert!(r.body["request_id"].is_string());
    }
    // Nothing invalid was stored.
    let r = api
        .call("GET", "/traffic-mirror-sessions?name=edge", None)
        .await;
    // (13 accepted, two of them under another name.)
    assert_eq!(r.body["page_info"]["current_count"], 11);
    // Bodies over 1 MiB are refused by the gateway.
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = api
        .raw(
            "POST",
            &format!("/v3/{PROJECT}/vpc/traffic-mirror-filters"),
            &big,
            Utc::now(),
            |_| {},
        )
        .await
        .expect("request");
    r.expect(413, "APIGW.0201");
}

#[tokio::test]
async fn pagination_and_list_filters() {
    let (_emu, api) = start().await;
    let fid = api.filter("f").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut b = session_body(&fid, &format!("s{i}"));
        b["priority"] = json!(i + 1);
        b["enabled"] = json!(i % 2 == 0);
        if i == 3 {
            b["name"] = json!("镜像");
            b["traffic_mirror_target_type"] = json!("elb");
        }
        let r = api.session(b).await;
        ids.push(
            r.body["traffic_mirror_session"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    // Walk the pages with marker = next_marker.
    let mut seen = Vec::new();
    let mut target = "/traffic-mirror-sessions?limit=2".to_string();
    let mut pages = Vec::new();
    loop {
        let r = api.call("GET", &target, None).await;
        r.expect(200, "");
        let page: Vec<String> = r.body["traffic_mirror_sessions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        let info = r.body["page_info"].clone();
        assert_eq!(info["current_count"], page.len());
        assert_eq!(info["previous_marker"], page[0].as_str());
        pages.push(page.len());
        seen.extend(page.clone());
        match info.get("next_marker").and_then(Value::as_str) {
            Some(m) => {
                assert_eq!(m, page.last().expect("last").as_str());
                target = format!("/traffic-mirror-sessions?limit=2&marker={m}");
            }
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(seen, ids);
    // limit 0 means the maximum; limits outside 0-2000 are refused.
    let r = api
        .call("GET", "/traffic-mirror-sessions?limit=0", None)
        .await;
    assert_eq!(r.body["page_info"]["current_count"], 5);
    assert!(r.body["page_info"].get("next_marker").is_none());
    for bad in [
        "limit=2001",
        "limit=-1",
        "limit=x",
        "marker=unknown",
        "priority=x",
        "enabled=maybe",
    ] {
        api.call("GET", &format!("/traffic-mirror-sessions?{bad}"), None)
            .await
            .expect(400, "VPC.0002");
    }
    // Exact-match filters, including a percent-encoded non-ASCII name and repeated ids.
    let encoded = signer::encode("镜像".as_bytes());
    let cases = [
        (format!("name={encoded}"), vec![3]),
        ("enabled=true".to_string(), vec![0, 2, 4]),
        ("enabled=TRUE&priority=05".to_string(), vec![4]),
        ("traffic_mirror_target_type=elb".to_string(), vec![3]),
        (format!("id={}&id={}", ids[1], ids[4]), vec![1, 4]),
        (
            format!("traffic_mirror_filter_id={fid}&limit=1&marker={}", ids[3]),
            vec![4],
        ),
        (
            "virtual_network_id=1&packet_length=96&type=eni&traffic_mirror_target_id=eni-target"
                .to_string(),
            vec![0, 1, 2, 3, 4],
        ),
        ("name=s".to_string(), vec![]),
        ("description=".to_string(), vec![0, 1, 2, 3, 4]),
    ];
    for (q, want) in cases {
        let r = api
            .call("GET", &format!("/traffic-mirror-sessions?{q}"), None)
            .await;
        r.expect(200, "");
        let got: Vec<&str> = r.body["traffic_mirror_sessions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id"))
            .collect();
        let want: Vec<&str> = want.iter().map(|i| ids[*i].as_str()).collect();
        assert_eq!(got, want, "{q}");
    }
    let created_at = api
        .call("GET", &format!("/traffic-mirror-sessions/{}", ids[0]), None)
        .await
        .body["traffic_mirror_session"]["created_at"]
        .as_str()
        .expect("created_at")
        .to_string();
    let r = api
        .call(
            "GET",
            &format!(
                "/traffic-mirror-sessions?created_at={created_at}&id={}",
                ids[0]
            ),
            None,
        )
        .await;
    assert_eq!(r.body["page_info"]["current_count"], 1);
    // Filters and rules lists page the same way.
    let r = api
        .call("GET", "/traffic-mirror-filters?name=f&limit=1", None)
        .await;
    assert_eq!(r.body["traffic_mirror_filters"][0]["id"], fid.as_str());
    assert!(r.body["page_info"].get("next_marker").is_none());
    let r = api
        .call("GET", "/traffic-mirror-filter-rules?limit=2000", None)
        .await;
    assert_eq!(
        r.body,
        json!({"traffic_mirror_filter_rules": [], "page_info": {"current_count": 0},
                              "request_id": r.body["request_id"]})
    );
}

#[tokio::test]
async fn referential_integrity_and_sources() {
    let (_emu, api) = start().await;
    let fid = api.filter("f").await;
    let rule = api
        .call(
            "POST",
            "/traffic-mirror-filter-rules",
            Some(json!({"traffic_mirror_filter_rule": {"traffic_mirror_filter_id": fid, "direction": "egress"}})),
        )
        .await;
    rule.expect(201, "");
    let rule_id = rule.body["traffic_mirror_filter_rule"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    api.call(
        "POST",
        "/traffic-mirror-filter-rules",
        Some(json!({"traffic_mirror_filter_rule": {"traffic_mirror_filter_id": "nope", "direction": "egress"}})),
    )
    .await
    .expect(400, "VPC.1102");
    // Rule filter and direction are immutable.
    api.call(
        "PUT",
        &format!("/traffic-mirror-filter-rules/{rule_id}"),
        Some(json!({"traffic_mirror_filter_rule": {"direction": "ingress"}})),
    )
    .await
    .expect(400, "VPC.1202");
    api.call(
        "PUT",
        &format!("/traffic-mirror-filter-rules/{rule_id}"),
        Some(json!({"traffic_mirror_filter_rule": {"direction": "egress", "priority": 9}})),
    )
    .await
    .expect(200, "");

    let s = api.session(session_body(&fid, "s")).await;
    let sid = s.body["traffic_mirror_session"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // A session cannot point at a filter that does not exist, on create or update.
    api.call(
        "PUT",
        &format!("/traffic-mirror-sessions/{sid}"),
        Some(json!({"traffic_mirror_session": {"traffic_mirror_filter_id": "nope"}})),
    )
    .await
    .expect(400, "VPC.1102");
    // A filter in use cannot be deleted.
    api.call("DELETE", &format!("/traffic-mirror-filters/{fid}"), None)
        .await
        .expect(409, "VPC.1103");

    // Sources.
    let add = |v: Value| {
        let sid = sid.clone();
        let api = &api;
        async move {
            api.call(
                "PUT",
                &format!("/traffic-mirror-sessions/{sid}/add-sources"),
                Some(json!({"traffic_mirror_session": {"traffic_mirror_sources": v}})),
            )
            .await
        }
    };
    let remove = |v: Value| {
        let sid = sid.clone();
        let api = &api;
        async move {
            api.call(
                "PUT",
                &format!("/traffic-mirror-sessions/{sid}/remove-sources"),
                Some(json!({"traffic_mirror_session": {"traffic_mirror_sources": v}})),
            )
            .await
        }
    };
    add(json!(["eni-1"])).await.expect(400, "VPC.1003");
    add(json!(["eni-2", "eni-2"])).await.expect(400, "VPC.1003");
    add(json!([])).await.expect(400, "VPC.0002");
    add(json!(
        (2..12).map(|i| format!("eni-{i}")).collect::<Vec<_>>()
    ))
    .await
    .expect(400, "VPC.1002");
    let r = add(json!(
        (2..11).map(|i| format!("eni-{i}")).collect::<Vec<_>>()
    ))
    .await;
    r.expect(200, "");
    assert_eq!(
        r.body["traffic_mirror_session"]["traffic_mirror_sources"]
            .as_array()
            .expect("array")
            .len(),
        10
    );
    add(json!(["eni-11"])).await.expect(400, "VPC.1002");
    remove(json!(["eni-99"])).await.expect(400, "VPC.1004");
    let all: Vec<String> = (1..11).map(|i| format!("eni-{i}")).collect();
    let r = remove(json!(all)).await;
    r.expect(200, "");
    assert_eq!(
        r.body["traffic_mirror_session"]["traffic_mirror_sources"],
        json!([])
    );
    api.call(
        "PUT",
        "/traffic-mirror-sessions/nope/add-sources",
        Some(json!({"traffic_mirror_session": {"traffic_mirror_sources": ["x"]}})),
    )
    .await
    .expect(404, "VPC.1001");

    // Once the session is gone the filter (and its rules) can be deleted.
    assert_eq!(
        api.call("DELETE", &format!("/traffic-mirror-sessions/{sid}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.call("DELETE", &format!("/traffic-mirror-filters/{fid}"), None)
            .await
            .status,
        204
    );
    api.call(
        "GET",
        &format!("/traffic-mirror-filter-rules/{rule_id}"),
        None,
    )
    .await
    .expect(404, "VPC.1201");
    api.call("DELETE", &format!("/traffic-mirror-filters/{fid}"), None)
        .await
        .expect(404, "VPC.1101");
}

#[tokio::test]
async fn authentication_failures() {
    let (_emu, api) = start().await;
    let target = format!("/v3/{PROJECT}/vpc/traffic-mirror-sessions");
    let now = Utc::now();
    let set = |name: &'static str, value: String| {
        move |h: &mut Vec<(String, String)>| {
            for (n, v) in h.iter_mut() {
                if n.eq_ignore_ascii_case(name) {
                    *v = value.clone();
                }
            }
        }
    };
    // Missing Authorization.
    let r = api
        .raw("GET", &target, b"", now, |h| {
            h.retain(|(n, _)| n != "Authorization")
        })
        .await
        .expect("request");
    r.expect(401, "APIGW.0301");
    assert!(
        r.body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("missing")
    );
    // Malformed Authorization.
    api.raw(
        "GET",
        &target,
        b"",
        now,
        set("Authorization", "SDK-HMAC-SHA256 garbage".into()),
    )
    .await
    .expect("request")
    .expect(401, "APIGW.0301");
    // Correctly signed: accepted.
    api.raw("GET", &target, b"", now, |_| {})
        .await
        .expect("request")
        .expect(200, "");
    // Wrong secret key: the signature does not verify.
    let signed_other =
        Api::new(api.url.clone()).with_signer(Signer::new(Credentials::new(AK, "wrong")));
    let r = signed_other
        .raw("GET", &target, b"", now, |_| {})
        .await
        .expect("request");
    r.expect(401, "APIGW.0301");
    assert!(
        r.body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("signature")
    );
    // Unknown access key.
    let unknown = Api::new(api.url.clone()).with_signer(Signer::new(Credentials::new("NOPE", SK)));
    unknown
        .raw("GET", &target, b"", now, |_| {})
        .await
        .expect("request")
        .expect(401, "APIGW.0301");
    // The second configured credential works too.
    let second = Api::new(api.url.clone()).with_signer(Signer::new(Credentials::new("AK2", "SK2")));
    second
        .raw("GET", &target, b"", now, |_| {})
        .await
        .expect("request")
        .expect(200, "");
    // Stale, future and malformed X-Sdk-Date.
    for when in [now - TimeDelta::minutes(16), now + TimeDelta::minutes(16)] {
        let r = api
            .raw("GET", &target, b"", when, |_| {})
            .await
            .expect("request");
        r.expect(401, "APIGW.0301");
        assert!(
            r.body["error_msg"]
                .as_str()
                .expect("msg")
                .contains("15 minutes")
        );
    }
    api.raw(
        "GET",
        &target,
        b"",
        now,
        set("X-Sdk-Date", "yesterday".into()),
    )
    .await
    .expect("request")
    .expect(401, "APIGW.0301");
    // A project the credential does not own (create and list).
    api.raw(
        "POST",
        "/v3/x/vpc/traffic-mirror-filters",
        b"{}",
        now,
        |_| {},
    )
    .await
    .expect("request")
    .expect(403, "APIGW.0302");
    let r = api
        .raw(
            "GET",
            "/v3/someone-else/vpc/traffic-mirror-sessions",
            b"",
            now,
            |_| {},
        )
        .await
        .expect("request");
    r.expect(403, "APIGW.0302");
    // Unknown API paths are the gateway's 404, before authentication.
    let r = api
        .raw("GET", "/v3/p/vpc/routers", b"", now, |h| h.clear())
        .await
        .expect("request");
    r.expect(404, "APIGW.0101");
    api.raw("POST", &format!("{target}/x/add-sources"), b"", now, |_| {})
        .await
        .expect("request")
        .expect(404, "APIGW.0101");
    // Every one of these calls is in the log with its status.
    let statuses: Vec<u64> = api
        .calls()
        .await
        .iter()
        .map(|c| c["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        [
            401, 401, 200, 401, 401, 200, 401, 401, 401, 403, 403, 404, 404
        ]
    );
}

#[tokio::test]
async fn signature_covers_method_path_query_headers_and_body() {
    let (_emu, api) = start().await;
    let target = format!("/v3/{PROJECT}/vpc/traffic-mirror-filters");
    let body = br#"{"traffic_mirror_filter": {"name": "f"}}"#;
    let http = reqwest::Client::new();
    let send = |method: &str, target: String, headers: Vec<(String, String)>, body: &[u8]| {
        let mut req = http.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("m"),
            format!("{}{target}", api.url),
        );
        for (n, v) in headers {
            req = req.header(n, v);
        }
        req.body(body.to_vec()).send()
    };
    let sign = |method: &str, path: &str, query: &str, body: &[u8]| {
        let mut h = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), api.host()),
        ];
        api.signer
            .sign(method, path, query, &mut h, body, Utc::now());
        h
    };
    // Signed for one thing, sent as another: always 401.
    let h = sign("POST", &target, "", body);
    let r = send(
        "POST",
        target.clone(),
        h.clone(),
        br#"{"traffic_mirror_filter": {"name": "g"}}"#,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 401);
    let r = send("GET", target.clone(), h.clone(), body)
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = send("POST", format!("{target}?a=1"), h.clone(), body)
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = send(
        "POST",
        target.replace("filters", "sessions"),
        h.clone(),
        body,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 401);
    let mut changed = h.clone();
    changed.retain(|(n, _)| n != "Content-Type");
    changed.push(("Content-Type".into(), "text/plain".into()));
    let r = send("POST", target.clone(), changed, body)
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    // Headers that are not signed may change freely (here: an extra one).
    let mut extra = h.clone();
    extra.push(("X-Unsigned".into(), "anything".into()));
    let r = send("POST", target.clone(), extra, body)
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    // A percent-encoded query signs and verifies.
    let query = format!("name={}&limit=5", signer::encode("镜像 x/y".as_bytes()));
    let h = sign("GET", &target, &query, b"");
    let r = send("GET", format!("{target}?{query}"), h, b"")
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn admin_api_calls_faults_and_reset() {
    let (_emu, api) = start().await;
    let r = api.admin(reqwest::Method::GET, "healthz", None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ok"})));
    let fid = api.filter("f").await;
    api.call("GET", "/traffic-mirror-filters?limit=5", None)
        .await;
    let calls = api.calls().await;
    assert_eq!(calls.len(), 2, "admin calls are not logged: {calls:?}");
    assert_eq!(calls[0]["method"], "POST");
    assert_eq!(
        calls[0]["path"],
        format!("/v3/{PROJECT}/vpc/traffic-mirror-filters")
    );
    assert_eq!(calls[0]["query"], "");
    assert_eq!(
        calls[0]["body"],
        json!({"traffic_mirror_filter": {"name": "f"}})
    );
    assert_eq!(calls[0]["status"], 201);
    assert!(chrono::DateTime::parse_from_rfc3339(calls[0]["at"].as_str().expect("at")).is_ok());
    assert_eq!(
        (calls[1]["query"].as_str(), calls[1]["body"].clone()),
        (Some("limit=5"), Value::Null)
    );
    assert_eq!(
        api.admin(reqwest::Method::DELETE, "calls", None)
            .await
            .status,
        204
    );
    assert!(api.calls().await.is_empty());

    // Status faults: matched by method and path, counted down, logged, with Retry-After.
    api.fault(
        json!({"method": "get", "path_contains": "traffic-mirror-filters", "status": 429,
                     "times": 2, "retry_after_s": 3}),
    )
    .await;
    api.fault(
        json!({"path_contains": "filter-rules", "status": 503, "error_code": "VPC.0503",
                     "error_msg": "busy"}),
    )
    .await;
    assert_eq!(
        api.admin(reqwest::Method::GET, "faults", None).await.body[0]["remaining"],
        2
    );
    for _ in 0..2 {
        let r = api
            .call("GET", &format!("/traffic-mirror-filters/{fid}"), None)
            .await;
        r.expect(429, "APIGW.0308");
        assert_eq!(r.headers["retry-after"], "3");
        assert!(r.body["request_id"].is_string());
    }
    api.call("GET", &format!("/traffic-mirror-filters/{fid}"), None)
        .await
        .expect(200, "");
    let r = api.call("GET", "/traffic-mirror-filter-rules", None).await;
    r.expect(503, "VPC.0503");
    assert_eq!(r.body["error_msg"], "busy");
    assert!(!r.headers.contains_key("retry-after"));
    let statuses: Vec<u64> = api
        .calls()
        .await
        .iter()
        .map(|c| c["status"].as_u64().expect("s"))
        .collect();
    assert_eq!(statuses, [429, 429, 200, 503]);

    // execute: the create happens, only its answer is lost.
    api.fault(json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "status": 500, "execute": true})).await;
    api.session(session_body(&fid, "lost-answer"))
        .await
        .expect(500, "VPC.9999");
    let r = api
        .call("GET", "/traffic-mirror-sessions?name=lost-answer", None)
        .await;
    assert_eq!(r.body["page_info"]["current_count"], 1);

    // drop_connection: no answer at all, the call is logged with status 0.
    api.fault(json!({"path_contains": "traffic-mirror-sessions", "drop_connection": true, "execute": true})).await;
    let err = api
        .raw(
            "POST",
            &format!("/v3/{PROJECT}/vpc/traffic-mirror-sessions"),
            json!({"traffic_mirror_session": session_body(&fid, "dropped")})
                .to_string()
                .as_bytes(),
            Utc::now(),
            |_| {},
        )
        .await
        .expect_err("connection must be dropped");
    assert!(!err.is_status(), "{err}");
    let last = api.calls().await.pop().expect("logged");
    assert_eq!(
        (last["method"].as_str(), last["status"].as_u64()),
        (Some("POST"), Some(0))
    );
    let r = api
        .call("GET", "/traffic-mirror-sessions?name=dropped", None)
        .await;
    assert_eq!(
        r.body["page_info"]["current_count"], 1,
        "executed before the drop"
    );

    // delay only: answered normally, late.
    api.fault(json!({"delay_ms": 300})).await;
    let t = Instant::now();
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(200, "");
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Invalid fault specs are refused.
    for bad in [
        json!({}),
        json!({"status": 42}),
        json!({"status": 500, "times": 0}),
        json!({"bogus": 1}),
        json!([]),
    ] {
        let r = api
            .admin(reqwest::Method::POST, "faults", Some(bad.clone()))
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    api.fault(json!({"status": 500, "times": 5})).await;
    assert_eq!(
        api.admin(reqwest::Method::DELETE, "faults", None)
            .await
            .status,
        204
    );
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(200, "");

    // Unknown admin endpoints and wrong methods answer JSON and are not logged.
    let before = api.calls().await.len();
    let r = api.admin(reqwest::Method::GET, "nope", None).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (404, Some("APIGW.0101"))
    );
    let r = api.admin(reqwest::Method::PUT, "calls", None).await;
    assert_eq!(r.status, 405);
    assert!(r.body.is_object());
    assert_eq!(api.calls().await.len(), before);

    // State dump and reset.
    let state = api.admin(reqwest::Method::GET, "state", None).await.body;
    assert_eq!(state["sessions"].as_array().expect("sessions").len(), 2);
    api.fault(json!({"status": 500})).await;
    assert_eq!(
        api.admin(reqwest::Method::POST, "reset", None).await.status,
        204
    );
    assert!(api.calls().await.is_empty());
    let r = api.call("GET", "/traffic-mirror-filters", None).await;
    r.expect(200, "");
    assert_eq!(r.body["traffic_mirror_filters"], json!([]));
}

fn app(admin: bool) -> axum::Router {
    router(config().state().expect("state"), admin)
}

async fn oneshot(
    app: axum::Router,
    req: axum::http::Request<Body>,
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn admin_api_is_refused_unless_loopback() {
    for path in ["/_emulator/calls", "/_emulator/healthz", "/_emulator/reset"] {
        let req = axum::http::Request::get(path)
            .body(Body::empty())
            .expect("req");
        let (status, _, body) = oneshot(app(false), req).await;
        assert_eq!(status, 404, "{path}");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert!(v["error_msg"].as_str().expect("msg").contains("loopback"));
    }
    let req = axum::http::Request::get("/_emulator/healthz")
        .body(Body::empty())
        .expect("req");
    assert_eq!(oneshot(app(true), req).await.0, 200);
}

/// The emulator binary as a child process, killed on drop.
struct Child {
    child: tokio::process::Child,
    url: String,
}

impl Child {
    async fn start(extra: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(["--listen", "127.0.0.1:0", "--project-id", PROJECT])
            .args(["--credential", &format!("{AK}:{SK}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("listening line within 60 s")
        .expect("read stdout");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self { child, url }
    }
}

#[tokio::test]
async fn state_file_survives_a_kill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8 path");
    let first = Child::start(&["--state", state_arg]).await;
    let api = Api::new(first.url.clone());
    let fid = api.filter("persisted").await;
    let s = api.session(session_body(&fid, "persisted")).await;
    let sid = s.body["traffic_mirror_session"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let rule = api
        .call(
            "POST",
            "/traffic-mirror-filter-rules",
            Some(json!({"traffic_mirror_filter_rule": {"traffic_mirror_filter_id": fid, "direction": "ingress",
                        "source_cidr_block": "10.0.0.0/8"}})),
        )
        .await;
    rule.expect(201, "");
    // SIGKILL: nothing gets a chance to flush; every answered mutation must already be on disk.
    let mut child = first.child;
    child.kill().await.expect("kill");
    assert!(!dir.path().join("state.json.tmp").exists());

    let second = Child::start(&["--state", state_arg]).await;
    let api = Api::new(second.url.clone());
    let r = api
        .call("GET", &format!("/traffic-mirror-sessions/{sid}"), None)
        .await;
    r.expect(200, "");
    assert_eq!(
        r.body["traffic_mirror_session"],
        s.body["traffic_mirror_session"]
    );
    let r = api
        .call("GET", &format!("/traffic-mirror-filters/{fid}"), None)
        .await;
    assert_eq!(
        r.body["traffic_mirror_filter"]["ingress_rules"][0],
        rule.body["traffic_mirror_filter_rule"]
    );
    // Deletes persist too.
    assert_eq!(
        api.call("DELETE", &format!("/traffic-mirror-sessions/{sid}"), None)
            .await
            .status,
        204
    );
    drop(second);
    let third = Child::start(&["--state", state_arg]).await;
    Api::new(third.url.clone())
        .call("GET", &format!("/traffic-mirror-sessions/{sid}"), None)
        .await
        .expect(404, "VPC.1001");
}

#[tokio::test]
async fn bad_state_file_and_bad_arguments_fail_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    std::fs::write(&state, "not json").expect("write");
    for args in [
        vec![
            "--project-id",
            "p",
            "--credential",
            "AK:SK",
            "--state",
            state.to_str().expect("path"),
        ],
        vec!["--project-id", "p", "--credential", "no-colon"],
        vec!["--project-id", "p"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(&args)
            .output()
            .await
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    let mut child = Child::start(&[]).await;
    Api::new(child.url.clone())
        .call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(200, "");
    let pid = child.child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.child.wait())
        .await
        .expect("exits within 30 s after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}

// ---- throttling and latency ----------------------------------------------------------------

/// The gateway's throttling message for a limit of `limit` calls a second.
fn throttling_msg(limit: &str) -> String {
    format!(
        "The throttling threshold has been reached: policy user over ratelimit, limit:{limit}, \
         time:1 second"
    )
}

#[tokio::test]
async fn rate_limit_throttles_a_burst_with_the_gateway_error() {
    let child = Child::start(&["--rate-limit", "2:2"]).await;
    let api = Api::new(child.url.clone());
    let limits = api.admin(reqwest::Method::GET, "limits", None).await;
    assert_eq!(
        limits.body,
        json!({"rate_limit": {"rps": 2.0, "burst": 2}, "latency": null})
    );
    // Five creates at once against a bucket of two: exactly three are refused (a token comes
    // back only after 500 ms, far longer than five local calls take).
    let replies = futures::future::join_all((0..5).map(|i| {
        api.call(
            "POST",
            "/traffic-mirror-filters",
            Some(json!({"traffic_mirror_filter": {"name": format!("f{i}")}})),
        )
    }))
    .await;
    let throttled: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(throttled.len(), 3, "{replies:#?}");
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 2);
    for r in throttled {
        r.expect(429, "APIGW.0308");
        assert_eq!(r.body["error_msg"], throttling_msg("2"));
        let request_id = r.body["request_id"].as_str().expect("request_id");
        assert_eq!(r.headers["x-request-id"], request_id);
        assert!(r.headers.get("retry-after").is_none(), "{:?}", r.headers);
    }
    // Throttled calls changed nothing, and the call log marks them.
    let state = api.admin(reqwest::Method::GET, "state", None).await;
    assert_eq!(state.body["filters"].as_array().expect("filters").len(), 2);
    let calls = api.calls().await;
    assert_eq!(calls.len(), 5);
    for c in &calls {
        let throttled = c["throttled"].as_bool().expect("throttled is a boolean");
        assert_eq!(c["status"], if throttled { 429 } else { 201 }, "{c}");
        assert!(
            c["body"]["traffic_mirror_filter"]["name"].is_string(),
            "{c}"
        );
    }
    assert_eq!(calls.iter().filter(|c| c["throttled"] == true).count(), 3);
    // The admin API is never throttled.
    for _ in 0..10 {
        assert_eq!(
            api.admin(reqwest::Method::GET, "healthz", None)
                .await
                .status,
            200
        );
    }
    // Another project has its own (full) bucket: its call gets past throttling to the project
    // check.
    let other = api
        .raw(
            "GET",
            "/v3/another-project/vpc/traffic-mirror-sessions",
            b"",
            Utc::now(),
            |_| {},
        )
        .await
        .expect("request");
    other.expect(403, "APIGW.0302");
}

#[tokio::test]
async fn no_throttling_or_latency_by_default() {
    let (_emu, api) = start().await;
    let limits = api.admin(reqwest::Method::GET, "limits", None).await;
    assert_eq!(limits.body, json!({"rate_limit": null, "latency": null}));
    let replies = futures::future::join_all(
        (0..50).map(|_| api.call("GET", "/traffic-mirror-sessions", None)),
    )
    .await;
    for r in &replies {
        r.expect(200, "");
    }
    let calls = api.calls().await;
    assert_eq!(calls.len(), 50);
    assert!(calls.iter().all(|c| c["throttled"] == false), "{calls:?}");
}

#[tokio::test]
async fn limits_change_at_run_time_through_the_admin_api() {
    let (_emu, api) = start().await;
    let put = |body: Value| api.admin(reqwest::Method::PUT, "limits", Some(body));

    // A fractional rate with the default burst (1): one call passes, the next is throttled.
    let r = put(json!({"rate_limit": {"rps": 0.001}, "latency": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"rate_limit": {"rps": 0.001, "burst": 1}, "latency": null})
    );
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(200, "");
    let r = api.call("GET", "/traffic-mirror-sessions", None).await;
    r.expect(429, "APIGW.0308");
    assert_eq!(r.body["error_msg"], throttling_msg("0.001"));
    // A throttled call does not use up a queued fault.
    api.fault(json!({"status": 503})).await;
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(429, "APIGW.0308");
    let faults = api.admin(reqwest::Method::GET, "faults", None).await;
    assert_eq!(faults.body.as_array().expect("faults").len(), 1);
    api.admin(reqwest::Method::DELETE, "faults", None).await;

    // A new configuration refills the bucket.
    put(json!({"rate_limit": {"rps": 0.001, "burst": 2}})).await;
    for _ in 0..2 {
        api.call("GET", "/traffic-mirror-sessions", None)
            .await
            .expect(200, "");
    }
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(429, "APIGW.0308");

    // Invalid configurations are refused and change nothing.
    for bad in [
        json!({"rate_limit": {"rps": 0}}),
        json!({"rate_limit": {"rps": 1, "burst": 0}}),
        json!({"latency": {"ms": -5}}),
        json!({"latency": {"ms": 5, "jitter": 1}}),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!((r.status, r.code()), (400, "VPC.0001"), "{bad}: {}", r.body);
    }
    let now = api.admin(reqwest::Method::GET, "limits", None).await;
    assert_eq!(now.body["rate_limit"]["burst"], 2);

    // Latency (throttling off): a call takes at least MS - JITTER_MS.
    put(json!({"latency": {"ms": 300, "jitter_ms": 100}})).await;
    let started = Instant::now();
    api.call("GET", "/traffic-mirror-sessions", None)
        .await
        .expect(200, "");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "took {took:?}");

    // Reset puts back the limits the emulator started with (none here).
    assert_eq!(
        api.admin(reqwest::Method::POST, "reset", None).await.status,
        204
    );
    let now = api.admin(reqwest::Method::GET, "limits", None).await;
    assert_eq!(now.body, json!({"rate_limit": null, "latency": null}));
}

#[tokio::test]
async fn limit_flags_are_documented_and_checked() {
    let run = |args: &'static [&'static str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(args)
            .output()
    };
    let help = run(&["--help"]).await.expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for documented in [
        "--rate-limit <RPS[:BURST]>",
        "--latency <MS[:JITTER_MS]>",
        "PUT /_emulator/limits",
    ] {
        assert!(help.contains(documented), "{documented} in {help}");
    }
    for (args, says) in [
        (
            &[
                "--project-id",
                "p",
                "--credential",
                "A:S",
                "--rate-limit",
                "10:x",
            ][..],
            ["--rate-limit", "expected RPS[:BURST]", "BURST \"x\""],
        ),
        (
            &[
                "--project-id",
                "p",
                "--credential",
                "A:S",
                "--rate-limit",
                "0",
            ][..],
            [
                "--rate-limit",
                "expected RPS[:BURST]",
                "rps must be a number > 0",
            ],
        ),
        (
            &[
                "--project-id",
                "p",
                "--credential",
                "A:S",
                "--latency",
                "50:y",
            ][..],
            ["--latency", "expected MS[:JITTER_MS]", "JITTER_MS \"y\""],
        ),
    ] {
        let out = run(args).await.expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(stderr.contains(s), "{args:?}: {s:?} in {stderr}");
        }
    }
}

// ---- property tests ------------------------------------------------------------------------

fn unreserved() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,12}"
}

/// Replace the byte at `pos % len` (an ASCII alphanumeric in these strings) by another one.
fn mutate(s: &str, pos: usize, with: u8) -> String {
    let mut b = s.as_bytes().to_vec();
    let positions: Vec<usize> = b
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .collect();
    let i = positions[pos % positions.len()];
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut c = alphabet[with as usize % alphabet.len()];
    if c == b[i] {
        c = alphabet[(with as usize + 1) % alphabet.len()];
    }
    b[i] = c;
    String::from_utf8(b).expect("ascii")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The emulator's verifier accepts exactly what the client's signer produces, and rejects
    /// the request once any single byte of the method, path, query, a signed header or the body
    /// changes.
    #[test]
    fn verifier_accepts_signed_requests_and_rejects_single_byte_changes(
        segments in prop::collection::vec(unreserved(), 1..4),
        query in prop::collection::vec((unreserved(), unreserved()), 0..3),
        header_value in unreserved(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        which in 0..5usize,
        pos in any::<usize>(),
        with in any::<u8>(),
    ) {
        let verifier = Verifier::new(&[(AK.to_string(), SK.to_string())]);
        let signer = Signer::new(Credentials::new(AK, SK));
        let now = Utc::now();
        let method = "POST".to_string();
        let path = format!("/{}", segments.join("/"));
        let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut headers = vec![
            ("Host".to_string(), "127.0.0.1:8080".to_string()),
            ("X-Custom".to_string(), header_value),
        ];
        signer.sign(&method, &path, &query, &mut headers, &body, now);
        prop_assert_eq!(verifier.verify(&method, &path, &query, &headers, &body, now).ok(), Some(AK.to_string()));

        let (mut m, mut p, mut q, mut h, mut b) = (method.clone(), path.clone(), query.clone(), headers.clone(), body.clone());
        match which {
            0 => m = mutate(&m.to_ascii_lowercase(), pos, with).to_ascii_uppercase(),
            1 => p = mutate(&p, pos, with),
            2 if !q.is_empty() => q = mutate(&q, pos, with),
            2 => q = "x=1".to_string(),
            3 => {
                let i = h.iter().position(|(n, _)| n == "X-Custom").expect("custom header");
                h[i].1 = mutate(&h[i].1, pos, with);
            }
            _ if b.is_empty() => b = vec![with],
            _ => { let i = pos % b.len(); b[i] = b[i].wrapping_add(1 + with % 255); }
        }
        let e = verifier.verify(&m, &p, &q, &h, &b, now).expect_err("tampered request accepted");
        prop_assert_eq!(e.status.as_u16(), 401);
        prop_assert_eq!(e.code, "APIGW.0301");
    }
}

/// One router and runtime shared by the robustness cases, so state accumulates across them, plus
/// the id of a filter created up front (so near-valid bodies can reference it).
struct FuzzTarget {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    filter_id: String,
}

fn fuzz_target() -> &'static FuzzTarget {
    static TARGET: OnceLock<FuzzTarget> = OnceLock::new();
    TARGET.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state: Arc<AppState> = config().state().expect("state");
        let app = router(state, true);
        let api_body = json!({"traffic_mirror_filter": {"name": "fuzz"}}).to_string();
        let mut headers = vec![("Host".to_string(), "emulator".to_string())];
        let path = format!("/v3/{PROJECT}/vpc/traffic-mirror-filters");
        Signer::new(Credentials::new(AK, SK)).sign(
            "POST",
            &path,
            "",
            &mut headers,
            api_body.as_bytes(),
            Utc::now(),
        );
        let mut req = axum::http::Request::post(&path);
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let (status, _, body) = rt.block_on(oneshot(
            app.clone(),
            req.body(Body::from(api_body)).expect("req"),
        ));
        assert_eq!(status, 201);
        let v: Value = serde_json::from_slice(&body).expect("json");
        let filter_id = v["traffic_mirror_filter"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        FuzzTarget { rt, app, filter_id }
    })
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0i64..70000).prop_map(|n| json!(n)),
        (0i64..70000).prop_map(|n| json!(n.to_string())),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,80}".prop_map(Value::String),
        prop::sample::select(vec![
            "eni",
            "elb",
            "ingress",
            "egress",
            "TCP",
            "ipv4",
            "IPv6",
            "accept",
            "reject",
            "true",
            "false",
            "10.0.0.0/8",
            "::/0",
            "80-443",
            "0-1",
            "x y"
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..4).prop_map(|m| json!(m)),
        ]
    })
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "traffic_mirror_filter_id",
    "traffic_mirror_sources",
    "traffic_mirror_target_id",
    "traffic_mirror_target_type",
    "virtual_network_id",
    "packet_length",
    "priority",
    "enabled",
    "type",
    "direction",
    "protocol",
    "ethertype",
    "source_cidr_block",
    "destination_cidr_block",
    "source_port_range",
    "destination_port_range",
    "action",
];

/// Bodies: random bytes, random JSON, and (mostly) valid create bodies with a few fields replaced
/// by random values, so the validators themselves get exercised.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let fid = fuzz_target().filter_id.clone();
    let templates = vec![
        (
            "traffic_mirror_session",
            json!({"name": "fz", "traffic_mirror_filter_id": fid,
            "traffic_mirror_sources": ["eni-1"], "traffic_mirror_target_id": "t",
            "traffic_mirror_target_type": "eni", "priority": 1}),
        ),
        ("traffic_mirror_filter", json!({"name": "fz"})),
        (
            "traffic_mirror_filter_rule",
            json!({"traffic_mirror_filter_id": fid, "direction": "ingress"}),
        ),
        ("other", json!({})),
    ];
    let near_valid = (
        prop::sample::select(templates),
        prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..3),
    )
        .prop_map(|((w, mut t), overrides)| {
            for (k, v) in overrides {
                t[k] = v;
            }
            json!({ w: t }).to_string().into_bytes()
        });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        4 => near_valid,
    ]
}

fn path() -> impl Strategy<Value = String> {
    let fid = fuzz_target().filter_id.clone();
    let collection = prop_oneof![
        3 => Just("traffic-mirror-sessions"), 3 => Just("traffic-mirror-filters"),
        3 => Just("traffic-mirror-filter-rules"), 1 => Just("x"),
    ];
    let id = prop_oneof![Just(fid), ".{1,12}"];
    let tail = prop_oneof![
        3 => Just(vec![]),
        3 => id.clone().prop_map(|i| vec![i]),
        2 => (id, prop::sample::select(vec!["add-sources", "remove-sources"]))
            .prop_map(|(i, a)| vec![i, a.to_string()]),
        1 => prop::collection::vec(".{0,12}", 0..4),
    ];
    let project = prop_oneof![6 => Just(PROJECT.to_string()), 1 => ".{0,8}"];
    prop_oneof![
        6 => (project, collection, tail).prop_map(|(p, c, t)| {
            let mut s = format!("/v3/{}/vpc/{c}", signer::encode(p.as_bytes()));
            for seg in t { s.push('/'); s.push_str(&signer::encode(seg.as_bytes())); }
            s
        }),
        1 => ".{0,40}".prop_map(|s| {
            let encoded = signer::encode(s.as_bytes()).replace("%2F", "/");
            format!("/{}", encoded.trim_start_matches('/'))
        }),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "limit",
            "marker",
            "name",
            "id",
            "priority",
            "enabled",
            "virtual_network_id",
            "direction"
        ])
        .prop_map(str::to_string),
        ".{0,6}",
    ];
    prop::collection::vec(
        (
            key,
            prop_oneof![".{0,10}", (0i64..3000).prop_map(|n| n.to_string())],
        ),
        0..4,
    )
    .prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    signer::encode(k.as_bytes()),
                    signer::encode(v.as_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever arrives (signed or not), the router never panics, never answers 5xx, and answers
    /// a JSON object with a request id (except for an empty 204), plus an `X-Request-Id` header.
    #[test]
    fn router_answers_json_to_anything(
        method in prop_oneof![
            4 => Just("GET"), 4 => Just("POST"), 4 => Just("PUT"), 2 => Just("DELETE"),
            1 => Just("PATCH"), 1 => Just("HEAD"),
        ],
        path in path(),
        query in query(),
        body in body(),
        sign in prop::bool::weighted(0.9),
    ) {
        let FuzzTarget { rt, app, .. } = fuzz_target();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), "emulator".to_string()),
        ];
        if sign {
            Signer::new(Credentials::new(AK, SK)).sign(method, &path, &query, &mut headers, &body, Utc::now());
        }
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut req = axum::http::Request::builder().method(method).uri(&uri);
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let req = req.body(Body::from(body.clone())).expect("request");
        let (status, resp_headers, resp_body) = rt.block_on(oneshot(app.clone(), req));
        prop_assert!(status < 500, "{method} {uri} -> {status}: {}", String::from_utf8_lossy(&resp_body));
        prop_assert!(resp_headers.contains_key("x-request-id"));
        if status == 204 {
            prop_assert!(resp_body.is_empty());
        } else if method != "HEAD" {
            let v: Value = serde_json::from_slice(&resp_body).map_err(|e| TestCaseError::fail(format!("{method} {uri} -> {status}: not JSON: {e}")))?;
            prop_assert!(v.is_object());
            prop_assert!(v["request_id"].is_string());
            if status >= 400 {
                prop_assert!(v["error_code"].is_string() && v["error_msg"].is_string(), "{v}");
            }
        }
    }
}

// ----- ports -------------------------------------------------------------------------------------

impl Api {
    /// Signed call to `/v3/{project}/ports{target}` (the port API is not under `/vpc`).
    async fn ports(&self, method: &str, target: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let full = format!("/v3/{PROJECT}/ports{target}");
        self.raw(method, &full, &bytes, Utc::now(), |_| {})
            .await
            .expect("request")
    }

    async fn seed_port(&self, id: &str, ip: &str, tags: Value) -> Reply {
        let port = json!({
            "id": id, "name": format!("nic-{id}"), "device_id": format!("server-{id}"),
            "device_owner": "compute:az1", "vpc_id": "vpc-1",
            "private_ips": [{"subnet_cidr_id": "subnet-1", "ip_address": ip}],
            "tags": tags, "zone_id": "az1"
        });
        self.admin(reqwest::Method::POST, "ports", Some(port)).await
    }

    async fn unseed_port(&self, id: &str) -> Reply {
        self.admin(reqwest::Method::DELETE, &format!("ports/{id}"), None)
            .await
    }
}

fn ids_of(list: &Value, key: &str, id_key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} array in {list}"))
        .iter()
        .map(|p| p[id_key].as_str().expect("id").to_string())
        .collect()
}

async fn seed_three_ports(api: &Api) {
    for (id, ip, tags) in [
        (
            "port-a",
            "10.0.0.1",
            json!([{"key": "role", "value": "web"}]),
        ),
        (
            "port-b",
            "10.0.0.2",
            json!([{"key": "role", "value": "db"}]),
        ),
        ("port-c", "10.0.0.3", json!([])),
    ] {
        let r = api.seed_port(id, ip, tags).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

#[tokio::test]
async fn ports_are_listed_filtered_paged_and_shown() {
    let (_emu, api) = start().await;
    seed_three_ports(&api).await;
    let r = api.ports("GET", "?device_id=server-port-b", None).await;
    r.expect(200, "");
    assert_eq!(ids_of(&r.body, "ports", "id"), ["port-b"]);
    assert_eq!(
        r.body["ports"][0]["zone_id"], "az1",
        "seeded extra fields are answered"
    );
    assert_eq!(r.body["ports"][0]["status"], "ACTIVE");
    let by_ip = "?private_ips=ip_address%3D10.0.0.1&private_ips=ip_address%3D10.0.0.3&vpc_id=vpc-1";
    let r = api.ports("GET", by_ip, None).await;
    assert_eq!(ids_of(&r.body, "ports", "id"), ["port-a", "port-c"]);
    let r = api.ports("GET", "?vpc_id=vpc-2", None).await;
    assert_eq!(r.body["page_info"], json!({"current_count": 0}));
    // Paging by marker.
    let r = api.ports("GET", "?limit=2", None).await;
    assert_eq!(ids_of(&r.body, "ports", "id"), ["port-a", "port-b"]);
    assert_eq!(
        r.body["page_info"],
        json!({"previous_marker": "port-a", "current_count": 2, "next_marker": "port-b"})
    );
    let r = api.ports("GET", "?limit=2&marker=port-b", None).await;
    assert_eq!(ids_of(&r.body, "ports", "id"), ["port-c"]);
    assert!(r.body["page_info"].get("next_marker").is_none());
    api.ports("GET", "?marker=nope", None)
        .await
        .expect(400, "VPC.0002");
    // Show.
    let r = api.ports("GET", "/port-a", None).await;
    r.expect(200, "");
    assert_eq!(r.body["port"]["private_ips"][0]["ip_address"], "10.0.0.1");
    assert!(r.body["request_id"].is_string());
    api.ports("GET", "/port-z", None)
        .await
        .expect(404, "VPC.1301");
    api.ports("DELETE", "/port-a", None)
        .await
        .expect(404, "APIGW.0101");
}

#[tokio::test]
async fn ports_are_listed_by_tags() {
    let (_emu, api) = start().await;
    seed_three_ports(&api).await;
    let path = "/resource-instances/filter";
    let body = json!({"tags": [{"key": "role", "values": ["web", "db"]}]});
    let r = api.ports("POST", path, Some(body)).await;
    r.expect(200, "");
    assert_eq!(
        ids_of(&r.body, "resources", "resource_id"),
        ["port-a", "port-b"]
    );
    assert_eq!(r.body["total_count"], 2);
    assert_eq!(
        r.body["resources"][1]["tags"],
        json!([{"key": "role", "value": "db"}])
    );
    let any_role = json!({"tags": [{"key": "role", "values": []}]});
    let r = api
        .ports("POST", &format!("{path}?limit=1&offset=1"), Some(any_role))
        .await;
    assert_eq!(ids_of(&r.body, "resources", "resource_id"), ["port-b"]);
    assert_eq!(r.body["total_count"], 2);
    let both = json!({"tags": [{"key": "role", "values": ["web"]}, {"key": "env", "values": []}]});
    let r = api.ports("POST", path, Some(both)).await;
    assert_eq!(r.body["total_count"], 0);
    let dup = json!({"tags": [{"key": "role", "values": []}, {"key": "role", "values": []}]});
    api.ports("POST", path, Some(dup))
        .await
        .expect(400, "VPC.0002");
}

#[tokio::test]
async fn port_calls_are_signed_logged_and_fault_injectable() {
    let (_emu, api) = start().await;
    seed_three_ports(&api).await;
    let unsigned = api
        .raw(
            "GET",
            &format!("/v3/{PROJECT}/ports"),
            b"",
            Utc::now(),
            |h| h.retain(|(n, _)| n != "Authorization"),
        )
        .await
        .expect("request");
    unsigned.expect(401, "APIGW.0301");
    let foreign = Api::new(api.url.clone());
    foreign
        .raw("GET", "/v3/otherproject/ports", b"", Utc::now(), |_| {})
        .await
        .expect("request")
        .expect(403, "APIGW.0302");
    api.fault(json!({"path_contains": "/ports", "status": 503, "times": 1}))
        .await;
    api.ports("GET", "", None).await.expect(503, "VPC.9999");
    api.ports("GET", "", None).await.expect(200, "");
    // Port calls share the project's rate-limit bucket.
    let limits = json!({"rate_limit": {"rps": 0.5, "burst": 1}});
    api.admin(reqwest::Method::PUT, "limits", Some(limits))
        .await;
    api.ports("GET", "/port-a", None).await.expect(200, "");
    api.ports("GET", "/port-a", None)
        .await
        .expect(429, "APIGW.0308");
    api.admin(reqwest::Method::PUT, "limits", Some(json!({})))
        .await;
    let calls = api.calls().await;
    let port_calls: Vec<u64> = calls
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.ends_with("/ports")))
        .map(|c| c["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(port_calls, [401, 403, 503, 200], "{calls:?}");
}

#[tokio::test]
async fn removing_a_port_removes_it_from_every_sessions_sources() {
    let (_emu, api) = start().await;
    seed_three_ports(&api).await;
    let fid = api.filter("f").await;
    let mut sids = Vec::new();
    for (name, sources) in [
        ("s1", json!(["port-a", "port-b"])),
        ("s2", json!(["port-a"])),
    ] {
        let mut body = session_body(&fid, name);
        body["traffic_mirror_sources"] = sources;
        let r = api.session(body).await;
        r.expect(201, "");
        sids.push(
            r.body["traffic_mirror_session"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    assert_eq!(api.unseed_port("port-a").await.status, 204);
    let sources = |r: &Reply| r.body["traffic_mirror_session"]["traffic_mirror_sources"].clone();
    let s1 = api
        .call(
            "GET",
            &format!("/traffic-mirror-sessions/{}", sids[0]),
            None,
        )
        .await;
    assert_eq!(sources(&s1), json!(["port-b"]));
    let s2 = api
        .call(
            "GET",
            &format!("/traffic-mirror-sessions/{}", sids[1]),
            None,
        )
        .await;
    assert_eq!(sources(&s2), json!([]));
    api.ports("GET", "/port-a", None)
        .await
        .expect(404, "VPC.1301");
    api.unseed_port("port-a").await.expect(404, "VPC.1301");
    // The state dump has the ports; a reset clears them.
    let state = api.admin(reqwest::Method::GET, "state", None).await;
    assert_eq!(ids_of(&state.body, "ports", "id"), ["port-b", "port-c"]);
    assert_eq!(
        api.admin(reqwest::Method::POST, "reset", None).await.status,
        204
    );
    let r = api.ports("GET", "", None).await;
    assert_eq!(r.body["ports"], json!([]));
    // An invalid port is refused by the admin API.
    let bad = api
        .admin(reqwest::Method::POST, "ports", Some(json!({"id": "x"})))
        .await;
    assert_eq!((bad.status, bad.code()), (400, "VPC.0001"), "{}", bad.body);
}

#[tokio::test]
async fn check_ports_refuses_unknown_sources_only_when_asked() {
    let mut cfg = config();
    cfg.check_ports = true;
    let emu = Emulator::start(cfg).await.expect("start");
    let api = Api::new(emu.url());
    seed_three_ports(&api).await;
    let fid = api.filter("f").await;
    let mut body = session_body(&fid, "s");
    body["traffic_mirror_sources"] = json!(["port-a", "port-unknown"]);
    let r = api.session(body.clone()).await;
    r.expect(400, "VPC.1005");
    assert!(
        r.body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("port-unknown")
    );
    body["traffic_mirror_sources"] = json!(["port-a"]);
    let r = api.session(body.clone()).await;
    r.expect(201, "");
    let sid = r.body["traffic_mirror_session"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let add =
        |sources: Value| json!({"traffic_mirror_session": {"traffic_mirror_sources": sources}});
    let target = format!("/traffic-mirror-sessions/{sid}/add-sources");
    api.call("PUT", &target, Some(add(json!(["port-unknown"]))))
        .await
        .expect(400, "VPC.1005");
    api.call("PUT", &target, Some(add(json!(["port-b"]))))
        .await
        .expect(200, "");
    let state = api.admin(reqwest::Method::GET, "state", None).await;
    assert_eq!(
        state.body["sessions"].as_array().expect("sessions").len(),
        1
    );

    // Without the flag, unknown ports are still accepted.
    let (_plain, api) = start().await;
    let fid = api.filter("f").await;
    body["traffic_mirror_filter_id"] = json!(fid);
    body["traffic_mirror_sources"] = json!(["port-unknown"]);
    api.session(body).await.expect(201, "");
}

#[tokio::test]
async fn seeded_ports_persist_in_the_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.state_file = Some(dir.path().join("state.json"));
    let first = Emulator::start(cfg.clone()).await.expect("start");
    seed_three_ports(&Api::new(first.url())).await;
    first.shutdown().await;
    let second = Emulator::start(cfg).await.expect("restart");
    let r = Api::new(second.url()).ports("GET", "", None).await;
    assert_eq!(
        ids_of(&r.body, "ports", "id"),
        ["port-a", "port-b", "port-c"]
    );
}

#[test]
fn port_and_identity_flags_are_documented_and_checked() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(args)
            .output()
            .expect("run the emulator")
    };
    let help = run(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--check-ports"), "{help}");
    assert!(help.contains("--credential-lifetime <DURATION>"), "{help}");
    for bad in ["0s", "soon", "5 parsecs"] {
        let out = run(&[
            "--project-id",
            "p",
            "--credential",
            "AK:SK",
            "--credential-lifetime",
            bad,
        ]);
        assert!(!out.status.success() && out.stdout.is_empty(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--credential-lifetime"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn credential_lifetime_flag_caps_issued_credentials() {
    let child = Child::start(&["--credential-lifetime", "90s"]).await;
    let api = Api::new(child.url.clone());
    let before = Utc::now();
    let r = api
        .unsigned("GET", "/openstack/latest/securitykey", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.body["credential"]["expires_at"]
        .as_str()
        .expect("expires_at");
    let at = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.6fZ")
        .expect("IAM time")
        .and_utc();
    let secs = (at - before).num_seconds();
    assert!((89..=95).contains(&secs), "{secs}");
}

// ----- identity ----------------------------------------------------------------------------------

const ISSUER: &str = "https://oidc.cluster.example";
const AUDIENCE: &str = "huaweicloud-iam";
const SUBJECT: &str = "system:serviceaccount:mirror:operator";

fn identity_fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/identity/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).expect("identity fixture")
}

/// An ID token signed with a fixture key; `claims` override the valid defaults.
fn id_token(key: &str, claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let now = Utc::now().timestamp();
    let mut all =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "exp": now + 600});
    if let (Value::Object(a), Value::Object(c)) = (&mut all, claims) {
        a.extend(c);
    }
    let pem = identity_fixture(key);
    let (alg, kid, key) = if key.starts_with("ec") {
        let k = EncodingKey::from_ec_pem(&pem).expect("ec key");
        (Algorithm::ES256, "ec-1", k)
    } else {
        let k = EncodingKey::from_rsa_pem(&pem).expect("rsa key");
        (Algorithm::RS256, "rsa-1", k)
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &all, &key).expect("sign")
}

impl Api {
    async fn register_idp(&self, subjects: Value) {
        let jwks: Value = serde_json::from_slice(&identity_fixture("jwks.json")).expect("jwks");
        let idp = json!({"id": "cce-oidc", "issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks,
                         "subjects": subjects});
        let r = self
            .admin(reqwest::Method::POST, "identity-providers", Some(idp))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// Unsigned request to an identity path.
    async fn unsigned(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            format!("{}{path}", self.url),
        );
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn exchange_id_token(&self, token: &str) -> Reply {
        let body = json!({"auth": {"id_token": {"id": token}}});
        self.unsigned(
            "POST",
            "/v3.0/OS-AUTH/id-token/tokens",
            &[("X-Idp-Id", "cce-oidc")],
            Some(body),
        )
        .await
    }

    async fn security_token_by_token(&self, subject_token: &str, duration: Option<u64>) -> Reply {
        let mut token = json!({"id": subject_token});
        if let Some(d) = duration {
            token["duration_seconds"] = json!(d);
        }
        let body = json!({"auth": {"identity": {"methods": ["token"], "token": token}}});
        self.unsigned(
            "POST",
            "/v3.0/OS-CREDENTIAL/securitytokens",
            &[],
            Some(body),
        )
        .await
    }

    /// The full federated flow: a temporary credential.
    async fn federated_credential(&self) -> Credentials {
        let r = self
            .exchange_id_token(&id_token("rsa-key.pem", json!({})))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let subject = header_str(&r, "x-subject-token");
        let r = self.security_token_by_token(&subject, None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        temporary_of(&r.body)
    }

    async fn list_sessions_with(&self, creds: Credentials) -> Reply {
        let api = Api::new(self.url.clone()).with_signer(Signer::new(creds));
        api.call("GET", "/traffic-mirror-sessions", None).await
    }
}

fn header_str(r: &Reply, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} in {:?}", r.headers))
        .to_string()
}

fn temporary_of(body: &Value) -> Credentials {
    let c = &body["credential"];
    let mut creds = Credentials::new(
        c["access"].as_str().expect("access"),
        c["secret"].as_str().expect("secret"),
    );
    creds.security_token = Some(c["securitytoken"].as_str().expect("token").to_string());
    creds
}

fn is_iam_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok() && s.len() == 27
    })
}

#[tokio::test]
async fn federated_exchange_issues_credentials_the_vpc_api_accepts() {
    let (_emu, api) = start().await;
    api.register_idp(json!([])).await;
    let r = api
        .exchange_id_token(&id_token("rsa-key.pem", json!({})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let subject = header_str(&r, "x-subject-token");
    assert!(!header_str(&r, "x-request-id").is_empty());
    assert_eq!(r.body["token"]["methods"], json!(["mapped"]));
    assert_eq!(
        r.body["token"]["user"]["OS-FEDERATION"]["identity_provider"]["id"],
        "cce-oidc"
    );
    assert!(is_iam_time(&r.body["token"]["expires_at"]), "{}", r.body);
    // ES256 tokens are accepted too.
    let es = api
        .exchange_id_token(&id_token("ec-key.pem", json!({})))
        .await;
    assert_eq!(es.status, 201, "{}", es.body);

    // Omitted duration_seconds: 900 s.
    let before = Utc::now();
    let r = api.security_token_by_token(&subject, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expires = &r.body["credential"]["expires_at"];
    assert!(is_iam_time(expires), "{}", r.body);
    let at = chrono::NaiveDateTime::parse_from_str(
        expires.as_str().expect("str"),
        "%Y-%m-%dT%H:%M:%S%.6fZ",
    )
    .expect("time")
    .and_utc();
    let secs = (at - before).num_seconds();
    assert!((899..=905).contains(&secs), "{secs}");
    let creds = temporary_of(&r.body);
    api.list_sessions_with(creds.clone()).await.expect(200, "");

    // Without the security token, or with another one: the gateway's 401.
    let mut without = creds.clone();
    without.security_token = None;
    let r = api.list_sessions_with(without).await;
    r.expect(401, "APIGW.0301");
    assert!(
        r.body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("X-Security-Token"),
        "{}",
        r.body
    );
    let mut other = creds;
    other.security_token = Some("not-the-token".into());
    api.list_sessions_with(other)
        .await
        .expect(401, "APIGW.0301");

    // X-Auth-Token wins over the body; durations are checked.
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "bogus"}}}});
    let path = "/v3.0/OS-CREDENTIAL/securitytokens";
    let r = api
        .unsigned("POST", path, &[("X-Auth-Token", &subject)], Some(body))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": subject}}}});
    let r = api
        .unsigned("POST", path, &[("X-Auth-Token", "bogus")], Some(body))
        .await;
    r.expect(401, "IAM.0001");
    api.security_token_by_token(&subject, Some(899))
        .await
        .expect(400, "IAM.0011");
    api.security_token_by_token(&subject, Some(86_401))
        .await
        .expect(400, "IAM.0011");
    api.security_token_by_token(&subject, Some(86_400))
        .await
        .expect(201, "");
    api.security_token_by_token("unknown-token", None)
        .await
        .expect(401, "IAM.0001");

    // The call log has the IAM calls, without the tokens.
    let calls = api.calls().await;
    let exchanges: Vec<&Value> = calls
        .iter()
        .filter(|c| c["path"] == "/v3.0/OS-AUTH/id-token/tokens")
        .collect();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0]["body"]["auth"]["id_token"]["id"], "***");
    assert!(
        !serde_json::to_string(&calls)
            .expect("json")
            .contains(&subject)
    );
}

#[tokio::test]
async fn id_tokens_are_verified_against_the_identity_provider() {
    let (_emu, api) = start().await;
    api.register_idp(json!([SUBJECT])).await;
    let now = Utc::now().timestamp();
    let cases = [
        ("forged signature", id_token("other-rsa-key.pem", json!({}))),
        (
            "wrong audience",
            id_token("rsa-key.pem", json!({"aud": "someone-else"})),
        ),
        (
            "wrong issuer",
            id_token("rsa-key.pem", json!({"iss": "https://evil.example"})),
        ),
        (
            "expired",
            id_token("rsa-key.pem", json!({"exp": now - 600})),
        ),
        (
            "subject not allowed",
            id_token("rsa-key.pem", json!({"sub": "system:serviceaccount:x:y"})),
        ),
    ];
    for (what, token) in cases {
        let r = api.exchange_id_token(&token).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "IAM.0001"),
            "{what}: {}",
            r.body
        );
        assert!(r.headers.get("x-subject-token").is_none(), "{what}");
    }
    api.exchange_id_token(&id_token("rsa-key.pem", json!({})))
        .await
        .expect(201, "");
    let body = json!({"auth": {"id_token": {"id": id_token("rsa-key.pem", json!({}))}}});
    let path = "/v3.0/OS-AUTH/id-token/tokens";
    api.unsigned(
        "POST",
        path,
        &[("X-Idp-Id", "no-such-idp")],
        Some(body.clone()),
    )
    .await
    .expect(404, "IAM.0004");
    api.unsigned("POST", path, &[], Some(body))
        .await
        .expect(400, "IAM.0011");
    api.unsigned(
        "POST",
        path,
        &[("X-Idp-Id", "cce-oidc")],
        Some(json!({"auth": {}})),
    )
    .await
    .expect(400, "IAM.0011");
    // A JWKS that is not one is refused at registration.
    let bad = json!({"id": "x", "issuer": ISSUER, "audience": AUDIENCE, "jwks": {"keys": [{"kty": "RSA"}]}});
    let r = api
        .admin(reqwest::Method::POST, "identity-providers", Some(bad))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn temporary_credentials_stop_working_when_they_expire() {
    let mut cfg = config();
    cfg.credential_lifetime = Some(Duration::from_secs(2));
    let emu = Emulator::start(cfg).await.expect("start");
    let api = Api::new(emu.url());
    api.register_idp(json!([])).await;
    let creds = api.federated_credential().await;
    api.list_sessions_with(creds.clone()).await.expect(200, "");
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        let r = api.list_sessions_with(creds.clone()).await;
        if r.status != 200 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the 2 s credential still works after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expired.expect(401, "APIGW.0301");
    assert!(
        expired.body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("expired"),
        "{}",
        expired.body
    );
}

#[tokio::test]
async fn assume_role_needs_a_signature_and_a_registered_agency() {
    let (_emu, api) = start().await;
    let agency =
        json!({"domain_name": "acme", "domain_id": "acme-id", "agency_name": "mirror-ops"});
    let r = api
        .admin(reqwest::Method::POST, "agencies", Some(agency))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let assume = |domain_key: &str, domain: &str, agency: &str| {
        json!({"auth": {"identity": {"methods": ["assume_role"],
               "assume_role": {domain_key: domain, "agency_name": agency, "duration_seconds": 3600}}}})
    };
    let path = "/v3.0/OS-CREDENTIAL/securitytokens";
    let signed = |api: &Api, body: Value| {
        let bytes = body.to_string().into_bytes();
        let api_url = api.url.clone();
        let signer = Signer::new(Credentials::new(AK, SK));
        async move {
            Api::new(api_url)
                .with_signer(signer)
                .raw("POST", path, &bytes, Utc::now(), |_| {})
                .await
                .expect("request")
        }
    };
    // Unsigned: IAM's 401.
    api.unsigned(
        "POST",
        path,
        &[],
        Some(assume("domain_name", "acme", "mirror-ops")),
    )
    .await
    .expect(401, "IAM.0001");
    // Signed with the permanent credential, by domain name or id.
    let r = signed(&api, assume("domain_name", "acme", "mirror-ops")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(is_iam_time(&r.body["credential"]["expires_at"]));
    let temp = temporary_of(&r.body);
    signed(&api, assume("domain_id", "acme-id", "mirror-ops"))
        .await
        .expect(201, "");
    signed(&api, assume("domain_name", "acme", "other"))
        .await
        .expect(404, "IAM.0004");
    // Signed with a temporary credential (chained), which needs its security token.
    let chained = assume("domain_name", "acme", "mirror-ops")
        .to_string()
        .into_bytes();
    let with_temp = Api::new(api.url.clone()).with_signer(Signer::new(temp.clone()));
    let r = with_temp
        .raw("POST", path, &chained, Utc::now(), |_| {})
        .await
        .expect("request");
    assert_eq!(r.status, 201, "{}", r.body);
    let mut no_token = temp;
    no_token.security_token = None;
    let without = Api::new(api.url.clone()).with_signer(Signer::new(no_token));
    let r = without
        .raw("POST", path, &chained, Utc::now(), |_| {})
        .await
        .expect("request");
    r.expect(401, "IAM.0001");
    // The assumed credential works on the VPC API.
    api.list_sessions_with(temporary_of(
        &signed(&api, assume("domain_name", "acme", "mirror-ops"))
            .await
            .body,
    ))
    .await
    .expect(200, "");
}

#[tokio::test]
async fn metadata_serves_the_agency_credential_with_and_without_session_tokens() {
    let (_emu, api) = start().await;
    let key = "/openstack/latest/securitykey";
    let token_path = "/meta-data/latest/api/token";
    let ttl = [("X-Metadata-Token-Ttl-Seconds", "21600")];
    // Default: agency bound, no tokens (the token path answers 404).
    api.unsigned("PUT", token_path, &ttl, None)
        .await
        .expect(404, "METADATA.0404");
    let r = api.unsigned("GET", key, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        is_iam_time(&r.body["credential"]["expires_at"]),
        "{}",
        r.body
    );
    api.list_sessions_with(temporary_of(&r.body))
        .await
        .expect(200, "");

    // Tokens required.
    let settings = json!({"agency_bound": true, "token_required": true});
    let r = api
        .admin(reqwest::Method::PUT, "metadata", Some(settings.clone()))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, settings));
    let r = api.unsigned("GET", key, &[], None).await;
    assert_eq!(r.status, 401);
    assert!(
        !r.body
            .to_string()
            .contains("Please configure Cloud Service Agency first")
    );
    api.unsigned("GET", key, &[("X-Metadata-Token", "bogus")], None)
        .await
        .expect(401, "METADATA.0401");
    api.unsigned("PUT", token_path, &[], None)
        .await
        .expect(400, "METADATA.0400");
    let t = api.unsigned("PUT", token_path, &ttl, None).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let token = t.body.as_str().expect("plain-text token").to_string();
    let r = api
        .unsigned("GET", key, &[("X-Metadata-Token", &token)], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // No agency bound: the real 401.
    let settings = json!({"agency_bound": false, "token_required": false});
    api.admin(reqwest::Method::PUT, "metadata", Some(settings))
        .await;
    let r = api.unsigned("GET", key, &[], None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body
            .to_string()
            .contains("Please configure Cloud Service Agency first"),
        "{}",
        r.body
    );
    // Reset restores the defaults.
    api.admin(reqwest::Method::POST, "reset", None).await;
    let r = api.admin(reqwest::Method::GET, "metadata", None).await;
    assert_eq!(
        r.body,
        json!({"agency_bound": true, "token_required": false})
    );
}

#[tokio::test]
async fn identity_calls_are_logged_fault_injectable_and_not_throttled() {
    let (_emu, api) = start().await;
    api.register_idp(json!([])).await;
    let limits = json!({"rate_limit": {"rps": 0.5, "burst": 1}});
    api.admin(reqwest::Method::PUT, "limits", Some(limits))
        .await;
    api.fault(json!({"path_contains": "/v3.0/OS-CREDENTIAL", "status": 503, "times": 2}))
        .await;
    api.fault(json!({"path_contains": "/openstack/", "status": 503}))
        .await;
    let r = api
        .exchange_id_token(&id_token("rsa-key.pem", json!({})))
        .await;
    let subject = header_str(&r, "x-subject-token");
    api.security_token_by_token(&subject, None)
        .await
        .expect(503, "VPC.9999");
    api.security_token_by_token(&subject, None)
        .await
        .expect(503, "VPC.9999");
    api.security_token_by_token(&subject, None)
        .await
        .expect(201, "");
    api.unsigned("GET", "/openstack/latest/securitykey", &[], None)
        .await
        .expect(503, "VPC.9999");
    api.unsigned("GET", "/openstack/latest/securitykey", &[], None)
        .await
        .expect(200, "");
    // Signed project lookup, never throttled (the bucket holds one call).
    for _ in 0..3 {
        let r = api
            .raw(
                "GET",
                "/v3/projects?name=cn-north-4",
                b"",
                Utc::now(),
                |_| {},
            )
            .await
            .expect("request");
        r.expect(200, "");
        assert_eq!(r.body["projects"][0]["id"], PROJECT);
    }
    api.unsigned("GET", "/v3/projects", &[], None)
        .await
        .expect(401, "APIGW.0301");
    let calls = api.calls().await;
    let statuses: Vec<(String, u64)> = calls
        .iter()
        .map(|c| {
            (
                c["path"].as_str().expect("path").to_string(),
                c["status"].as_u64().expect("status"),
            )
        })
        .collect();
    let iam: Vec<u64> = statuses
        .iter()
        .filter(|(p, _)| p.contains("securitytokens"))
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(iam, [503, 503, 201]);
    assert!(calls.iter().all(|c| c["throttled"] == false), "{calls:?}");
}

// ---- the per-session sources quota -----------------------------------------------------------

/// `n` distinct ENI ids starting at `from`.
fn enis(from: usize, n: usize) -> Value {
    json!(
        (from..from + n)
            .map(|i| format!("eni-{i}"))
            .collect::<Vec<_>>()
    )
}

/// Creates a session with `sources` through `api`; returns the reply.
async fn session_with(api: &Api, fid: &str, name: &str, sources: Value) -> Reply {
    let mut body = session_body(fid, name);
    body["traffic_mirror_sources"] = sources;
    api.session(body).await
}

#[tokio::test]
async fn max_sources_per_session_flag_sets_the_quota_of_create_and_add_sources() {
    // Default: the cloud's default quota, 10.
    let plain = Child::start(&[]).await;
    let api = Api::new(plain.url.clone());
    let fid = api.filter("f").await;
    let r = session_with(&api, &fid, "eleven", enis(0, 11)).await;
    r.expect(400, "VPC.1002");
    let msg = r.body["error_msg"].as_str().expect("msg");
    assert!(msg.contains("at most 10 sources"), "{msg}");
    session_with(&api, &fid, "ten", enis(0, 10))
        .await
        .expect(201, "");

    // Raised to 20: 15 at create, then add-sources up to 20 and not one more.
    let raised = Child::start(&["--max-sources-per-session", "20"]).await;
    let api = Api::new(raised.url.clone());
    let fid = api.filter("f").await;
    let r = session_with(&api, &fid, "fifteen", enis(0, 15)).await;
    r.expect(201, "");
    let sid = r.body["traffic_mirror_session"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    session_with(&api, &fid, "too-many", enis(0, 21))
        .await
        .expect(400, "VPC.1002");
    let add =
        |sources: Value| json!({"traffic_mirror_session": {"traffic_mirror_sources": sources}});
    let target = format!("/traffic-mirror-sessions/{sid}/add-sources");
    let r = api.call("PUT", &target, Some(add(enis(15, 6)))).await;
    r.expect(400, "VPC.1002");
    let msg = r.body["error_msg"].as_str().expect("msg");
    assert!(msg.contains("at most 20 sources"), "{msg}");
    let r = api.call("PUT", &target, Some(add(enis(15, 5)))).await;
    r.expect(200, "");
    let held = r.body["traffic_mirror_session"]["traffic_mirror_sources"]
        .as_array()
        .expect("sources")
        .len();
    assert_eq!(held, 20);
}

#[tokio::test]
async fn max_sources_per_session_flag_is_documented_and_refuses_nonsense() {
    let run = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(args)
            .output()
    };
    let help = run(&["--help"]).await.expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--max-sources-per-session <N>"), "{help}");
    for bad in ["0", "many"] {
        let args = [
            "--project-id",
            "p",
            "--credential",
            "A:S",
            "--max-sources-per-session",
            bad,
        ];
        let out = run(&args).await.expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--max-sources-per-session"), "{stderr}");
        assert!(stderr.contains("at least 1"), "{bad}: {stderr}");
    }
}

/// `BatchCreateTrafficMirrorFilterRules`: every rule in one call (201, the rules in the order
/// sent), all or nothing on one bad item (400 naming it, nothing stored), 404 `VPC.1101` for an
/// unknown filter, and 404 `APIGW.0101` while the admin switch has it off (a reset turns it on).
#[tokio::test]
async fn batch_rule_create_is_all_or_nothing_and_can_be_switched_off() {
    let (_emulator, api) = start().await;
    let fid = api.filter("batch").await;
    let path = format!("/traffic-mirror-filters/{fid}/traffic-mirror-filter-rules/batch-create");
    let two = json!({"traffic_mirror_filter_rules": [
        {"direction": "ingress", "priority": 1, "protocol": "tcp"},
        {"direction": "egress", "priority": 2, "traffic_mirror_filter_id": fid},
    ]});
    let r = api.call("POST", &path, Some(two.clone())).await;
    r.expect(201, "");
    let made = r.body["traffic_mirror_filter_rules"]
        .as_array()
        .expect("rules");
    assert_eq!(made.len(), 2, "{}", r.body);
    assert_eq!(
        (made[0]["direction"].as_str(), made[0]["protocol"].as_str()),
        (Some("ingress"), Some("tcp"))
    );
    assert!(
        made.iter()
            .all(|m| m["traffic_mirror_filter_id"] == json!(fid))
    );
    let rules_now = || async {
        let l = api
            .call(
                "GET",
                &format!("/traffic-mirror-filter-rules?traffic_mirror_filter_id={fid}"),
                None,
            )
            .await;
        l.body["traffic_mirror_filter_rules"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(rules_now().await, 2);
    // One bad item: nothing of the batch is stored, and the answer names the item.
    let bad = json!({"traffic_mirror_filter_rules": [
        {"direction": "ingress", "priority": 3},
        {"direction": "ingress", "priority": 4, "protocol": "BOGUS"},
    ]});
    let r = api.call("POST", &path, Some(bad)).await;
    r.expect(400, "VPC.0002");
    let msg = r.body["error_msg"].as_str().unwrap_or("");
    assert!(msg.starts_with("traffic_mirror_filter_rules[1]"), "{msg}");
    assert_eq!(rules_now().await, 2, "all or nothing");
    let r = api
        .call(
            "POST",
            "/traffic-mirror-filters/nope/traffic-mirror-filter-rules/batch-create",
            Some(two.clone()),
        )
        .await;
    r.expect(404, "VPC.1101");
    // Switched off: the gateway's 404 for an unknown API.
    let off = api
        .admin(
            reqwest::Method::PUT,
            "batch-rule-create",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (off.status, off.body.clone()),
        (200, json!({"enabled": false}))
    );
    api.call("POST", &path, Some(two.clone()))
        .await
        .expect(404, "APIGW.0101");
    assert_eq!(rules_now().await, 2);
    assert_eq!(
        api.admin(reqwest::Method::POST, "reset", None).await.status,
        204
    );
    let on = api
        .admin(reqwest::Method::GET, "batch-rule-create", None)
        .await;
    assert_eq!(
        on.body,
        json!({"enabled": true}),
        "a reset turns it back on"
    );
}
