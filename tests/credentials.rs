//! Keyless credentials against the real API server and the emulator (docs/credentials.md):
//! `WorkloadIdentity` with tokens from the API server's own TokenRequest API (audience set) and the
//! API server's JWKS registered as an identity provider in the emulator, through several expiries
//! of short-lived credentials with a bounded number of IAM calls; a forged token (signed with
//! another key) and a wrong audience refused and reported; IAM down and a missing token file shown
//! on the ProviderConfig and recovered by themselves; `InstanceMetadata` with and without the
//! session token.
//!
//! The emulator plays IAM and the metadata service on its own address, so `spec.iamEndpoint` and
//! `credentials.instanceMetadata.endpoint` both point at it.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorSession};

use support::workload_identity::{
    AUDIENCE, TokenFile, cluster_jwks, identity_provider, register_identity_provider,
    service_account_token, workload_identity_credentials,
};
use support::{Env, wait_for};

/// How long the emulator's temporary credentials live.
const LIFETIME_S: u64 = 4;

// ----- the cluster side: tokens and keys -----

/// `token` with its signature replaced by one of a fresh P-256 key: the same claims, another key.
fn forged(token: &str) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let mut parts = token.split('.');
    let (_, payload) = (parts.next(), parts.next().expect("a JWT payload"));
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"forged","typ":"JWT"}"#);
    let signed = format!("{header}.{payload}");
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
    let signature = key
        .sign(&SystemRandom::new(), signed.as_bytes())
        .expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

// ----- the cloud side: the emulator's identity admin API (docs/emulator.md) -----

/// One admin call to the emulator; panics on a non-2xx answer.
async fn admin(env: &Env, method: reqwest::Method, path: &str, body: Value) -> Value {
    let url = format!("{}/_emulator/{path}", env.emu().url);
    let answer = reqwest::Client::new()
        .request(method.clone(), &url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{method} {url} {body}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Sets the emulated node's metadata service: an agency bound or not, session token required or not.
async fn set_metadata(env: &Env, agency_bound: bool, token_required: bool) {
    let body = json!({"agency_bound": agency_bound, "token_required": token_required});
    admin(env, reqwest::Method::PUT, "metadata", body).await;
}

/// The identity calls in the emulator's call log: (id-token exchanges, securitytokens calls,
/// metadata securitykey reads, metadata token requests).
fn identity_calls(calls: &[Value]) -> (usize, usize, usize, usize) {
    let count = |method: &str, suffix: &str| {
        calls
            .iter()
            .filter(|c| {
                c["method"] == method && c["path"].as_str().is_some_and(|p| p.ends_with(suffix))
            })
            .count()
    };
    (
        count("POST", "/OS-AUTH/id-token/tokens"),
        count("POST", "/OS-CREDENTIAL/securitytokens"),
        count("GET", "/openstack/latest/securitykey"),
        count("PUT", "/meta-data/latest/api/token"),
    )
}

// ----- the ProviderConfig -----

/// Switches the env's ProviderConfig to `credentials` (its `secretRef` removed), with IAM at the
/// emulator.
async fn use_credentials(env: &Env, mut credentials: Value) {
    credentials["secretRef"] = Value::Null; // a merge patch removes what is null
    let patch = json!({"spec": {"credentials": credentials, "iamEndpoint": env.emu().url}});
    env.pcs()
        .patch(
            &env.account.pc,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("switch the ProviderConfig's credentials");
}

/// The Ready condition of the env's ProviderConfig: (status, reason, message).
fn ready_of(pc: &ProviderConfig) -> Option<(String, String, String)> {
    let status = pc.status.as_ref()?;
    if status.observed_generation != pc.metadata.generation {
        return None;
    }
    let c = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the env's ProviderConfig is Ready=`status` with a reason `ok` accepts; returns the
/// reason and message.
async fn wait_pc_ready(env: &Env, status: &str, ok: impl Fn(&str) -> bool) -> (String, String) {
    let api = env.pcs();
    let name = env.account.pc.clone();
    let ok = &ok;
    wait_for(env.deadline(), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let pc = api.get_opt(&name).await.ok().flatten()?;
            let (s, reason, message) = ready_of(&pc)?;
            (s == status && ok(&reason)).then_some((reason, message))
        }
    })
    .await
}

async fn session(env: &Env, name: &str, n: usize) {
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": [format!("eni-src-{n}")],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10 + n,
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
}

/// A token of the test's workload for `audience`, valid for an hour.
async fn token(env: &Env, audience: &str) -> String {
    service_account_token(&env.client, &env.ns, audience, 3600).await
}

/// An env whose emulator issues credentials that live [`LIFETIME_S`] seconds, with the cluster
/// registered as its identity provider and a valid token in a file; the operator not started.
async fn workload_env(prefix: &str) -> (Env, TokenFile) {
    let lifetime = format!("{LIFETIME_S}s");
    let env = Env::builder(prefix)
        .emulator_args(&["--credential-lifetime", &lifetime])
        .build()
        .await;
    let provider = identity_provider(&cluster_jwks(&env.client).await);
    register_identity_provider(&env.emu().url, &provider).await;
    let token_file = TokenFile::in_dir(env.dir.path());
    token_file.write(&token(&env, AUDIENCE).await);
    use_credentials(&env, workload_identity_credentials(&token_file)).await;
    (env, token_file)
}

/// Secrets never leave the operator: neither the token nor any temporary key is in its log.
fn assert_log_has_no(env: &Env, secrets: &[&str]) {
    let log = env.logs();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!log.contains(s), "a secret is in the operator's log");
    }
}

#[tokio::test]
async fn workload_identity_sessions_converge_through_expiries_with_bounded_iam_calls() {
    let (mut env, token_file) = workload_env("cred-wi").await;
    env.start_operator();
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    let started = std::time::Instant::now();
    // Eight sessions need credentials at once: one exchange serves them (single-flight).
    for n in 0..8 {
        session(&env, &format!("s{n}"), n).await;
    }
    for n in 0..8 {
        env.wait_ready::<TrafficMirrorSession>(&format!("s{n}"))
            .await;
    }
    // Keep working through several expiries: wait until the emulator issued at least four more
    // credentials, then an edit still reaches the cloud.
    let issued_before = identity_calls(&env.calls().await).1;
    wait_for(Duration::from_secs(8 * LIFETIME_S + 30), || async {
        (identity_calls(&env.calls().await).1 >= issued_before + 4).then_some(())
    })
    .await;
    let patch = json!({"spec": {"priority": 99}});
    env.sessions()
        .patch("s3", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit a session");
    env.wait_until::<TrafficMirrorSession>("s3", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.at_provider.as_ref())
            .is_some_and(|p| p.priority == 99)
    })
    .await;
    // Bounded: at most one exchange (2 calls) per 3/4 of a lifetime, plus a few for the start, the
    // 401-forced refreshes and the checks' timing: never one per request or per reconcile.
    let calls = env.calls().await;
    let (id_tokens, securitytokens, _, _) = identity_calls(&calls);
    let elapsed = started.elapsed().as_secs_f64();
    let bound = (elapsed / (LIFETIME_S as f64 * 0.75)).ceil() as usize + 4;
    println!("{id_tokens} exchanges in {elapsed:.1} s (bound {bound})");
    assert!(
        id_tokens <= bound && securitytokens <= bound,
        "{id_tokens} id-token and {securitytokens} securitytokens calls in {elapsed:.0} s (bound {bound})"
    );
    assert_eq!(id_tokens, securitytokens, "each exchange is two calls");
    assert!(
        id_tokens >= 4,
        "credentials expire every {LIFETIME_S}s: {id_tokens} exchanges"
    );
    let token = std::fs::read_to_string(token_file.path()).expect("token");
    assert_log_has_no(&env, &[token.trim()]);
}

/// The calls after the first one answered 401, as `METHOD path-suffix status` words.
fn after_first_401(calls: &[Value]) -> Vec<String> {
    let words = calls.iter().map(|c| {
        let path = c["path"].as_str().unwrap_or("");
        let tail = path.rsplit('/').next().unwrap_or("");
        format!(
            "{} {tail} {}",
            c["method"].as_str().unwrap_or("?"),
            c["status"]
        )
    });
    words
        .skip_while(|w| !w.ends_with(" 401"))
        .collect::<Vec<_>>()
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    // Credentials that live long enough (900 s): no refresh but the one the 401 forces.
    let env = Env::builder("cred-401").build().await;
    let provider = identity_provider(&cluster_jwks(&env.client).await);
    register_identity_provider(&env.emu().url, &provider).await;
    let token_file = TokenFile::in_dir(env.dir.path());
    token_file.write(&token(&env, AUDIENCE).await);
    use_credentials(&env, workload_identity_credentials(&token_file)).await;
    let mut env = env;
    env.start_operator();
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    session(&env, "s", 0).await;
    let s = env.wait_ready::<TrafficMirrorSession>("s").await;
    let id = s.status.and_then(|st| st.session_id).expect("session id");
    for (times, priority) in [(1, 31), (2, 32)] {
        env.clear_calls().await;
        env.emu()
            .fault(json!({"method": "PUT", "path_contains": id, "status": 401,
                          "error_code": "APIGW.0301", "error_msg": "security token expired",
                          "times": times}))
            .await;
        let patch = json!({"spec": {"priority": priority}});
        env.sessions()
            .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("edit the session");
        if times == 1 {
            env.wait_until::<TrafficMirrorSession>("s", |s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.at_provider.as_ref())
                    .is_some_and(|p| p.priority == priority)
            })
            .await;
        } else {
            // A 401 is terminal for the object (until its next spec change): it is reported.
            env.wait_condition::<TrafficMirrorSession>("s", "Synced", "False", Some("APIGW_0301"))
                .await;
        }
        let seen = after_first_401(&env.calls().await);
        let exchanges = seen
            .iter()
            .filter(|w| w.starts_with("POST tokens "))
            .count();
        assert_eq!(exchanges, 1, "one refresh per 401, never a loop: {seen:?}");
        if times == 1 {
            // The refresh, then the same call once more, which succeeds.
            assert_eq!(
                seen[..4],
                [
                    format!("PUT {id} 401"),
                    "POST tokens 201".to_string(),
                    "POST securitytokens 201".to_string(),
                    format!("PUT {id} 200"),
                ],
                "{seen:?}"
            );
        } else {
            // The retry is refused too: reported as it is, not retried again.
            assert_eq!(seen[3], format!("PUT {id} 401"), "{seen:?}");
            assert_eq!(
                seen.iter().filter(|w| w.starts_with("PUT ")).count(),
                2,
                "{seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_forged_token_and_a_wrong_audience_are_refused_and_reported_then_recover() {
    let (mut env, token_file) = workload_env("cred-refused").await;
    let good = token(&env, AUDIENCE).await;
    token_file.write(&forged(&good));
    env.start_operator();
    let (reason, forged_message) = wait_pc_ready(&env, "False", |r| r != "CredentialsValid").await;
    assert_eq!(reason, "IAM_0001", "{forged_message}");
    assert!(
        forged_message.contains("obtaining credentials from source WorkloadIdentity")
            && forged_message.contains("id-token answered HTTP 401 IAM.0001")
            // IAM's own words (the emulator's): which check refused the token.
            && forged_message.contains("no key of the identity provider matches"),
        "{forged_message}"
    );
    // A session waits on the ProviderConfig, saying so.
    session(&env, "waits", 0).await;
    env.wait_condition::<TrafficMirrorSession>(
        "waits",
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    // A token for another audience is refused too.
    let other = token(&env, "someone-else").await;
    token_file.write(&other);
    wait_for(env.deadline(), || async {
        let pc = env.pcs().get(&env.account.pc).await.ok()?;
        let (status, reason, message) = ready_of(&pc)?;
        (status == "False" && reason == "IAM_0001" && message.contains("audience is not"))
            .then_some(())
    })
    .await;
    // The right token again: Ready by itself, and the waiting session goes on.
    token_file.write(&good);
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    env.wait_ready::<TrafficMirrorSession>("waits").await;
    assert_log_has_no(&env, &[good.trim(), other.trim()]);
}

#[tokio::test]
async fn a_missing_token_file_and_iam_down_show_and_recover_by_themselves() {
    let (mut env, token_file) = workload_env("cred-down").await;
    env.start_operator();
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    session(&env, "s", 0).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let token = std::fs::read_to_string(token_file.path()).expect("token");

    // The token file goes away: the next refresh fails and says which file.
    token_file.remove();
    let (_, message) = wait_pc_ready(&env, "False", |r| r == "TokenFileUnreadable").await;
    assert!(message.contains(token_file.path()), "{message}");
    token_file.write(&token);
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;

    // IAM answers 503 for a while: shown with the status, then recovered by itself.
    env.emu()
        .fault(json!({"path_contains": "/v3.0/OS-", "status": 503, "times": 1000}))
        .await;
    let (reason, message) = wait_pc_ready(&env, "False", |r| r != "CredentialsValid").await;
    assert!(message.contains("HTTP 503"), "{reason}: {message}");
    env.emu().clear_faults().await;
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    let patch = json!({"spec": {"priority": 42}});
    env.sessions()
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the session");
    env.wait_until::<TrafficMirrorSession>("s", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.at_provider.as_ref())
            .is_some_and(|p| p.priority == 42)
    })
    .await;
}

#[tokio::test]
async fn instance_metadata_with_and_without_the_session_token() {
    let mut env = Env::builder("cred-imds")
        .emulator_args(&["--credential-lifetime", &format!("{LIFETIME_S}s")])
        .build()
        .await;
    set_metadata(&env, true, false).await;
    let metadata = json!({"source": "InstanceMetadata",
                          "instanceMetadata": {"endpoint": env.emu().url}});
    use_credentials(&env, metadata).await;
    env.start_operator();
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    session(&env, "s", 0).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let (_, _, reads, _) = identity_calls(&env.calls().await);
    assert!(reads >= 1, "the credentials came from the metadata service");

    // Tokens now required: the operator gets one and keeps working.
    set_metadata(&env, true, true).await;
    env.clear_calls().await;
    wait_for(Duration::from_secs(6 * LIFETIME_S + 30), || async {
        let (_, _, reads, tokens) = identity_calls(&env.calls().await);
        (reads >= 2 && tokens >= 1).then_some(())
    })
    .await;
    let patch = json!({"spec": {"priority": 77}});
    env.sessions()
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the session");
    env.wait_until::<TrafficMirrorSession>("s", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.at_provider.as_ref())
            .is_some_and(|p| p.priority == 77)
    })
    .await;
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;

    // No agency bound any more: shown as such, and recovered once one is bound again.
    set_metadata(&env, false, true).await;
    wait_pc_ready(&env, "False", |r| r == "NoAgencyBound").await;
    set_metadata(&env, true, false).await;
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
}

#[tokio::test]
async fn an_assumed_agency_serves_the_account_with_refreshed_temporary_credentials() {
    let mut env = Env::builder("cred-assume")
        .emulator_args(&["--credential-lifetime", &format!("{LIFETIME_S}s")])
        .build()
        .await;
    let agency = json!({"domain_name": "other-account", "agency_name": "mirror-operator"});
    admin(&env, reqwest::Method::POST, "agencies", agency).await;
    // The Secret's keys now only assume the agency.
    let patch = json!({"spec": {"iamEndpoint": env.emu().url, "credentials": {"assumeAgency":
        {"agencyName": "mirror-operator", "domainName": "other-account"}}}});
    env.pcs()
        .patch(
            &env.account.pc,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("add assumeAgency");
    env.start_operator();
    wait_pc_ready(&env, "True", |r| r == "CredentialsValid").await;
    session(&env, "s", 0).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    // The agency's credentials expire every few seconds and are assumed again.
    wait_for(Duration::from_secs(6 * LIFETIME_S + 30), || async {
        (identity_calls(&env.calls().await).1 >= 3).then_some(())
    })
    .await;
    let patch = json!({"spec": {"priority": 55}});
    env.sessions()
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the session");
    env.wait_until::<TrafficMirrorSession>("s", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.at_provider.as_ref())
            .is_some_and(|p| p.priority == 55)
    })
    .await;
    // An agency nobody registered: refused with IAM's code, named on the ProviderConfig.
    let patch = json!({"spec": {"credentials": {"assumeAgency":
        {"agencyName": "nobody", "domainName": "other-account"}}}});
    env.pcs()
        .patch(
            &env.account.pc,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("name an unknown agency");
    let (reason, message) = wait_pc_ready(&env, "False", |r| r != "CredentialsValid").await;
    assert!(
        message.contains("assume_role answered HTTP 4"),
        "{reason}: {message}"
    );
}

/// Not a test of the operator: the forged token really is the real one's claims under another key.
#[test]
fn a_forged_token_keeps_the_claims() {
    let real = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"aud":["a"]}"#)
    );
    let f = forged(&real);
    let parts: Vec<&str> = f.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1], real.split('.').nth(1).unwrap());
    assert_ne!(parts[2], "sig");
}
