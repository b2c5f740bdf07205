//! The operator's own identity in the test cluster, so the tests run it as it runs in production and
//! not as a cluster admin: a ServiceAccount bound by the RBAC rules shipped in
//! `deploy/kustomize/base` (ClusterRole, credentials Role, leader election Role), and a kubeconfig
//! holding a token that the TokenRequest API issued for it.
//!
//! [`Grants::from_deploy`] reads the rules from the manifests themselves (so a rule missing there
//! breaks the lifecycle tests); `tests/rbac.rs` passes reduced [`Grants`] to prove each verb is
//! needed. The roles are bound in the test namespace, which is also the operator's credentials
//! namespace and leader election namespace there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ControlPlane, FIELD_MANAGER, wait_for};

/// The operator's ServiceAccount name (as in `deploy/kustomize/base/serviceaccount.yaml`).
pub const SERVICE_ACCOUNT: &str = "traffic-mirror-operator";
/// How long the issued tokens live: longer than any test.
const TOKEN_SECONDS: i64 = 3600;
/// How long the authorizer may take to see new bindings.
const RBAC_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(30);

/// The RBAC rules granted to the operator, as `rules` entries (`apiGroups`, `resources`, `verbs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Grants {
    /// The ClusterRole's rules (`clusterrole.yaml`).
    pub cluster: Vec<Value>,
    /// The credentials Role's rules, bound in the credentials namespace (`role-credentials.yaml`).
    pub credentials: Vec<Value>,
    /// The leader election Role's rules, bound in the Lease's namespace
    /// (`role-leader-election.yaml`).
    pub leader: Vec<Value>,
}

impl Grants {
    /// The rules exactly as `deploy/kustomize/base` ships them.
    pub fn from_deploy() -> Grants {
        Grants {
            cluster: deploy_rules("clusterrole.yaml", "ClusterRole"),
            credentials: deploy_rules("role-credentials.yaml", "Role"),
            leader: deploy_rules("role-leader-election.yaml", "Role"),
        }
    }

    /// Every (role, apiGroup, resource, verb) the grants allow, one per line of each rule.
    pub fn atoms(&self) -> Vec<Atom> {
        let mut out = vec![];
        for (role, rules) in [
            (RoleKind::Cluster, &self.cluster),
            (RoleKind::Credentials, &self.credentials),
            (RoleKind::Leader, &self.leader),
        ] {
            for rule in rules {
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            out.push(Atom {
                                role,
                                group: group.clone(),
                                resource: resource.clone(),
                                verb,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// These grants without `atom` (the rule holding it is split so everything else stays).
    pub fn without(&self, atom: &Atom) -> Grants {
        let mut out = self.clone();
        let rules = match atom.role {
            RoleKind::Cluster => &mut out.cluster,
            RoleKind::Credentials => &mut out.credentials,
            RoleKind::Leader => &mut out.leader,
        };
        let mut kept = vec![];
        for rule in rules.drain(..) {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    let verbs: Vec<String> = strings(&rule["verbs"])
                        .into_iter()
                        .filter(|v| {
                            !(group == atom.group && resource == atom.resource && *v == atom.verb)
                        })
                        .collect();
                    if !verbs.is_empty() {
                        kept.push(
                            json!({"apiGroups": [group], "resources": [resource], "verbs": verbs}),
                        );
                    }
                }
            }
        }
        *rules = kept;
        out
    }
}

/// Which of the operator's roles a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleKind {
    /// The ClusterRole.
    Cluster,
    /// The credentials Role.
    Credentials,
    /// The leader election Role.
    Leader,
}

/// One permission: a verb on a resource of an API group, granted by one role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    /// The role granting it.
    pub role: RoleKind,
    /// API group (`""` for core).
    pub group: String,
    /// Resource, possibly with a subresource (`trafficmirrorsessions/status`).
    pub resource: String,
    /// Verb.
    pub verb: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `rules` of the (first) object of `kind` in `deploy/kustomize/base/<file>`.
fn deploy_rules(file: &str, kind: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kustomize/base")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for document in serde_yaml::Deserializer::from_str(&text) {
        let manifest = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        if manifest["kind"] == kind {
            let rules = manifest["rules"].as_array().cloned().unwrap_or_default();
            assert!(
                !rules.is_empty(),
                "{}: a {kind} without rules",
                path.display()
            );
            return rules;
        }
    }
    panic!("{} holds no {kind}", path.display())
}

/// The kubeconfig of the operator's identity for namespace `ns` with the shipped grants, made on
/// first use and kept for the test binary (a restarted operator reuses it). Blocking: callable
/// from sync code and from inside a tokio runtime.
pub fn default_kubeconfig(cp: &ControlPlane, ns: &str) -> PathBuf {
    static MADE: Mutex<BTreeMap<(String, String), PathBuf>> = Mutex::new(BTreeMap::new());
    let key = (cp.server_url.clone(), ns.to_string());
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = made.get(&key) {
        return path.clone();
    }
    let path = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async {
                    let client = cp.client().await;
                    create(cp, &client, ns, &Grants::from_deploy()).await
                })
            })
            .join()
            .unwrap_or_else(|_| panic!("creating the operator identity for {ns} panicked"))
    });
    made.insert(key, path.clone());
    path
}

/// Creates the operator's ServiceAccount in `ns`, binds `grants` to it (a ClusterRole and
/// ClusterRoleBinding named `tmo-operator-<ns>`, the credentials and leader election Roles in
/// `ns`), waits until the authorizer allows every granted verb, requests a token, and writes a
/// kubeconfig for it into the control plane's scratch directory. Returns its path.
pub async fn create(cp: &ControlPlane, client: &Client, ns: &str, grants: &Grants) -> PathBuf {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": SERVICE_ACCOUNT}});
    sas.patch(SERVICE_ACCOUNT, &apply, &Patch::Apply(&sa))
        .await
        .unwrap_or_else(|e| panic!("apply ServiceAccount {ns}/{SERVICE_ACCOUNT}: {e}"));
    bind(client, ns, grants).await;
    wait_until_allowed(client, ns, grants).await;
    let token = request_token(client, ns).await;
    let dir = cp.work_dir.join("identities");
    std::fs::create_dir_all(&dir).expect("create the identities directory");
    let path = dir.join(format!("{ns}-{}.kubeconfig", uuid::Uuid::new_v4().simple()));
    write_kubeconfig(&path, cp, &token);
    path
}

/// The RBAC objects: the ClusterRole and its binding, the two Roles in `ns` and their bindings.
async fn bind(client: &Client, ns: &str, grants: &Grants) {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let subject = json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]);
    let cluster_name = format!("tmo-operator-{ns}");
    let crs: Api<ClusterRole> = Api::all(client.clone());
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let cr = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": cluster_name}, "rules": grants.cluster});
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": cluster_name}, "subjects": subject,
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": cluster_name}});
    crs.patch(&cluster_name, &apply, &Patch::Apply(&cr))
        .await
        .unwrap_or_else(|e| panic!("apply ClusterRole {cluster_name}: {e}"));
    crbs.patch(&cluster_name, &apply, &Patch::Apply(&crb))
        .await
        .unwrap_or_else(|e| panic!("apply ClusterRoleBinding {cluster_name}: {e}"));
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    for (name, rules) in [
        ("traffic-mirror-operator-credentials", &grants.credentials),
        ("traffic-mirror-operator-leader-election", &grants.leader),
    ] {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": name}, "rules": rules});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                             "metadata": {"name": name}, "subjects": subject,
                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                         "name": name}});
        roles
            .patch(name, &apply, &Patch::Apply(&role))
            .await
            .unwrap_or_else(|e| panic!("apply Role {ns}/{name}: {e}"));
        bindings
            .patch(name, &apply, &Patch::Apply(&binding))
            .await
            .unwrap_or_else(|e| panic!("apply RoleBinding {ns}/{name}: {e}"));
    }
}

/// The full user name of the operator's ServiceAccount in `ns`.
pub fn user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:{SERVICE_ACCOUNT}")
}

/// Whether the authorizer lets the operator's identity in `ns` do `verb` on `group`/`resource`
/// (with an optional subresource after `/`) in `namespace` (`None`: cluster-wide).
pub async fn allowed(
    client: &Client,
    ns: &str,
    (group, resource, verb): (&str, &str, &str),
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user(ns)),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(verb.to_string()),
                namespace: namespace.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// Waits until the authorizer (which learns bindings through its own watch) allows every granted
/// verb, so an operator started next never sees a transient 403.
async fn wait_until_allowed(client: &Client, ns: &str, grants: &Grants) {
    for atom in grants.atoms() {
        let namespace = match atom.role {
            RoleKind::Cluster => None,
            RoleKind::Credentials | RoleKind::Leader => Some(ns),
        };
        wait_for(RBAC_PROPAGATION, || {
            let atom = &atom;
            async move {
                let triple = (
                    atom.group.as_str(),
                    atom.resource.as_str(),
                    atom.verb.as_str(),
                );
                allowed(client, ns, triple, namespace).await.then_some(())
            }
        })
        .await;
    }
}

/// A token for the ServiceAccount from the TokenRequest API (audience: the API server's own).
async fn request_token(client: &Client, ns: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued = sas
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{SERVICE_ACCOUNT}: {e}"));
    issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("TokenRequest for {ns}/{SERVICE_ACCOUNT} returned no token"))
}

fn write_kubeconfig(path: &Path, cp: &ControlPlane, token: &str) {
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tmo-test", "cluster": {
            "server": cp.server_url,
            "certificate-authority": cp.ca_cert,
        }}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "tmo-test", "user": "operator"}}],
        "current-context": "operator",
    });
    let yaml = serde_yaml::to_string(&kubeconfig).expect("kubeconfig yaml");
    std::fs::write(path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A kube client authenticated by the kubeconfig at `path` (proxy settings ignored).
pub async fn client_from(path: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    config.proxy_url = None;
    Client::try_from(config).expect("kube client for the operator identity")
}
