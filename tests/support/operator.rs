//! The operator under test: a cloud account (emulator, a filter, the credentials Secret and a
//! ProviderConfig labelled for one namespace) and the operator binary as a child process.
//!
//! Shared by the lifecycle tests and the convergence benchmark, so both drive the operator exactly
//! the way a user does: a real binary, a real kube-apiserver, the emulator as the cloud.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use traffic_mirror_operator::api::ProviderConfig;
use traffic_mirror_operator::cloud::models::CreateFilterRequest;
use traffic_mirror_operator::cloud::{ClientConfig, Credentials, VpcClient};

use super::{ControlPlane, Emulator, FIELD_MANAGER, control_plane};

/// Project id of the emulated account.
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// Access key of the emulated account.
pub const AK: &str = "TESTAK0000000000";
/// Secret key of the emulated account.
pub const SK: &str = "test-secret-key-0000000000000000";
/// Label that ties a ProviderConfig to the namespace (and operator instance) of one test.
pub const SELECTOR_LABEL: &str = "tmo-test";
/// Name of the credentials Secret in the test namespace.
pub const SECRET_NAME: &str = "hwcloud";

/// One emulated cloud account wired into the cluster for namespace `ns`.
pub struct CloudAccount {
    /// The emulator (killed on drop).
    pub emu: Emulator,
    /// A signed client for the account, for the test's own out-of-band calls.
    pub cloud: VpcClient,
    /// A filter that exists in the account.
    pub filter_id: String,
    /// The ProviderConfig's name (`pc-<ns>`).
    pub pc: String,
    client: Client,
    ns: String,
    credentials_ns: String,
}

impl CloudAccount {
    /// Starts an emulator, creates a filter in it, and applies the Secret and ProviderConfig.
    pub async fn create(client: &Client, ns: &str) -> CloudAccount {
        CloudAccount::create_with_credentials_in(client, ns, ns).await
    }

    /// [`CloudAccount::create`] with the Secret in `credentials_ns` instead of `ns`: for a test
    /// that deletes `ns`, where the credentials must outlive the objects whose cloud resources
    /// they delete (as they do in a real install, in the operator's own namespace).
    pub async fn create_with_credentials_in(
        client: &Client,
        ns: &str,
        credentials_ns: &str,
    ) -> CloudAccount {
        CloudAccount::create_with_emulator_args(client, ns, credentials_ns, &[]).await
    }

    /// [`CloudAccount::create_with_credentials_in`] with extra flags for the emulator.
    pub async fn create_with_emulator_args(
        client: &Client,
        ns: &str,
        credentials_ns: &str,
        emulator_args: &[&str],
    ) -> CloudAccount {
        let emu = Emulator::start_with_args(PROJECT, &[(AK, SK)], emulator_args);
        let cloud = VpcClient::new(ClientConfig::new(
            &emu.url,
            PROJECT,
            Credentials {
                access_key: AK.into(),
                secret_key: SK.into(),
                security_token: None,
            },
        ))
        .expect("cloud client");
        let filter = cloud
            .create_filter(&CreateFilterRequest {
                name: "f1".into(),
                description: None,
            })
            .await
            .expect("create a filter in the emulator");
        let account = CloudAccount {
            emu,
            cloud,
            filter_id: filter.id,
            pc: format!("pc-{ns}"),
            client: client.clone(),
            ns: ns.to_string(),
            credentials_ns: credentials_ns.to_string(),
        };
        account.apply_provider(SK).await;
        account
    }

    /// (Re)applies the Secret (with `secret_key`) and the ProviderConfig.
    pub async fn apply_provider(&self, secret_key: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.credentials_ns);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": SECRET_NAME},
            "stringData": {"accessKey": AK, "secretKey": secret_key},
        }))
        .expect("secret manifest");
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        secrets
            .patch(SECRET_NAME, &apply, &Patch::Apply(&secret))
            .await
            .expect("apply the secret");
        let pcs: Api<ProviderConfig> = Api::all(self.client.clone());
        let pc: ProviderConfig = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1",
            "kind": "ProviderConfig",
            "metadata": {"name": self.pc, "labels": {SELECTOR_LABEL: self.ns}},
            "spec": {
                "region": "emulated-1",
                "projectId": PROJECT,
                "endpoint": self.emu.url,
                "credentials": {"secretRef": {"namespace": self.credentials_ns, "name": SECRET_NAME}},
            }
        }))
        .expect("provider config manifest");
        pcs.patch(&self.pc, &apply, &Patch::Apply(&pc))
            .await
            .expect("apply the provider config");
    }
}

/// Leader election flags for a test on `ns`: the Lease lives in the test namespace (so tests never
/// share one). A test that passes no `--leader-elect...` flag of its own runs with
/// `--leader-elect=false`: it starts exactly one operator (and restarts it after a crash without
/// waiting for the dead process's lease to expire).
fn leader_args(ns: &str, extra_args: &[&str]) -> Vec<String> {
    let mut args = vec![];
    if !extra_args
        .iter()
        .any(|a| a.starts_with("--leader-elect-namespace"))
    {
        args.extend(["--leader-elect-namespace".to_string(), ns.to_string()]);
    }
    if !extra_args
        .iter()
        .any(|a| *a == "--leader-elect" || a.starts_with("--leader-elect="))
    {
        args.push("--leader-elect=false".into());
    }
    args
}

/// `--credentials-namespace <ns>` unless the test passes its own: the test's Secret is in its
/// namespace, where the operator's identity has its credentials Role.
fn credentials_args(ns: &str, extra_args: &[&str]) -> Vec<String> {
    if extra_args
        .iter()
        .any(|a| a.starts_with("--credentials-namespace"))
    {
        return vec![];
    }
    vec!["--credentials-namespace".into(), ns.into()]
}

/// The operator binary as a child process: killed on drop, and by the kernel if the test process
/// dies.
pub struct Operator {
    /// The process.
    pub child: Child,
    /// Its stderr (the log).
    pub log: PathBuf,
}

impl Operator {
    /// Starts `traffic-mirror-operator run` against [`control_plane()`] for namespace `ns` (and
    /// only the ProviderConfigs labelled for it), with the given resync interval, extra flags and
    /// armed failpoints.
    pub fn start(
        ns: &str,
        resync: &str,
        extra_args: &[&str],
        failpoints: Option<&str>,
        log: PathBuf,
    ) -> Operator {
        Operator::start_on(control_plane(), ns, resync, extra_args, failpoints, log)
    }

    /// [`Operator::start`] against the control plane `cp` (e.g. the oldest supported version's).
    /// The operator runs as its own ServiceAccount in `ns`, bound by the RBAC of `deploy/`
    /// ([`super::identity`]), with `ns` as its credentials namespace: never as an admin.
    pub fn start_on(
        cp: &ControlPlane,
        ns: &str,
        resync: &str,
        extra_args: &[&str],
        failpoints: Option<&str>,
        log: PathBuf,
    ) -> Operator {
        let kubeconfig = super::identity::default_kubeconfig(cp, ns);
        Operator::start_as(ns, resync, extra_args, failpoints, log, &kubeconfig)
    }

    /// [`Operator::start`] as the cluster admin (opt-out of the operator's own identity), for a
    /// test whose subject needs rights the operator must not have.
    pub fn start_admin(
        ns: &str,
        resync: &str,
        extra_args: &[&str],
        failpoints: Option<&str>,
        log: PathBuf,
    ) -> Operator {
        let cp = control_plane();
        let kubeconfig = cp.kubeconfig_path.clone();
        Operator::start_as(ns, resync, extra_args, failpoints, log, &kubeconfig)
    }

    /// [`Operator::start_on`] authenticated by `kubeconfig` (e.g. an identity with reduced
    /// grants from [`super::identity::create`]).
    pub fn start_as(
        ns: &str,
        resync: &str,
        extra_args: &[&str],
        failpoints: Option<&str>,
        log: PathBuf,
        kubeconfig: &std::path::Path,
    ) -> Operator {
        let file = std::fs::File::create(&log).expect("create the operator log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_traffic-mirror-operator"));
        cmd.args([
            "run",
            "--namespace",
            ns,
            "--resync-interval",
            resync,
            "--metrics-addr",
            "127.0.0.1:0",
            "--create-confirm-window",
            "2s",
            "--provider-config-selector",
            &format!("{SELECTOR_LABEL}={ns}"),
        ])
        .args(extra_args)
        .args(leader_args(ns, extra_args))
        .args(credentials_args(ns, extra_args))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,traffic_mirror_operator=debug")
        .env_remove("TMO_FAILPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
        if let Some(fp) = failpoints {
            cmd.env("TMO_FAILPOINTS", fp);
        }
        let child = super::process::spawn_guarded(cmd).expect("start the operator");
        Operator { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// The whole log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
