//! The set's children (API server): reading them (by label, then by the set's uid in their controller
//! ownerReference), and carrying out a [`SetPlan`]: new children first, then the changed ones, then
//! the emptied ones deleted, so a port is added before anything is taken away.
//!
//! A child is created with its sources in the same POST, so there is no window in which a child
//! exists without them; its name is `<set>-<n>`, so a set restarted after a crash finds the children
//! it made by listing them, never makes a second one for the same ports.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::error::SetError;
use super::plan::SetPlan;
use crate::api::session_set::SET_LABEL;
use crate::api::{TrafficMirrorSession, TrafficMirrorSessionSet, TrafficMirrorSessionSpec};
use crate::controller::config::MANAGER;

/// The set's children as the API server has them now (not from a cache: a child created by the last
/// reconcile must be seen, or a second one would be planned).
pub async fn list(
    api: &Api<TrafficMirrorSession>,
    set: &TrafficMirrorSessionSet,
) -> Result<Vec<TrafficMirrorSession>, SetError> {
    let lp = ListParams::default().labels(&format!("{SET_LABEL}={}", set.name_any()));
    let all = api.list(&lp).await.map_err(SetError::ListChildren)?;
    let uid = set.uid().unwrap_or_default();
    Ok(all
        .items
        .into_iter()
        .filter(|c| owned_by(c, &uid))
        .collect())
}

/// Whether `child`'s controller ownerReference is the set with `uid`.
pub fn owned_by(child: &TrafficMirrorSession, uid: &str) -> bool {
    child
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The children's sources by name.
pub fn sources(children: &[TrafficMirrorSession]) -> BTreeMap<String, BTreeSet<String>> {
    children
        .iter()
        .map(|c| {
            let s = c.spec.traffic_mirror_sources.iter().cloned().collect();
            (c.name_any(), s)
        })
        .collect()
}

/// The spec a child must have: the template with these sources.
pub fn child_spec(
    set: &TrafficMirrorSessionSet,
    sources: &BTreeSet<String>,
) -> TrafficMirrorSessionSpec {
    set.spec
        .session_template
        .child_spec(sources.iter().cloned().collect())
}

/// The controller ownerReference a child carries, so `kubectl delete` of the set cascades.
fn owner(set: &TrafficMirrorSessionSet) -> Option<OwnerReference> {
    set.controller_owner_ref(&())
}

/// The new child `name`, labelled and owned by the set.
fn new_child(
    set: &TrafficMirrorSessionSet,
    name: &str,
    sources: &BTreeSet<String>,
) -> TrafficMirrorSession {
    let mut child = TrafficMirrorSession::new(name, child_spec(set, sources));
    child.metadata.namespace = set.namespace();
    child.metadata.labels = Some([(SET_LABEL.to_string(), set.name_any())].into());
    child.metadata.owner_references = owner(set).map(|o| vec![o]);
    child
}

/// A merge patch giving the child exactly `spec`: the optional fields the spec leaves unset are
/// written as `null`, so a field dropped from the template is dropped from the child.
fn spec_patch(spec: &TrafficMirrorSessionSpec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for key in [
            "name",
            "description",
            "trafficMirrorFilterId",
            "trafficMirrorFilterRef",
        ] {
            m.entry(key).or_insert(Value::Null);
        }
    }
    json!({ "spec": v })
}

/// What carrying out a plan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Children created.
    pub created: usize,
    /// Children whose spec was changed.
    pub updated: usize,
    /// Children deleted.
    pub deleted: usize,
}

/// Carries out `plan` against the `current` children: create, then update, then delete.
pub async fn apply(
    api: &Api<TrafficMirrorSession>,
    set: &TrafficMirrorSessionSet,
    current: &[TrafficMirrorSession],
    plan: &SetPlan,
) -> Result<Applied, SetError> {
    Ok(Applied {
        created: create(api, set, plan).await?,
        updated: update(api, set, current, plan).await?,
        deleted: delete(api, current, plan).await?,
    })
}

/// Creates the new children, each with its sources in the same POST.
async fn create(
    api: &Api<TrafficMirrorSession>,
    set: &TrafficMirrorSessionSet,
    plan: &SetPlan,
) -> Result<usize, SetError> {
    let pp = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    for (name, sources) in &plan.create {
        let child = new_child(set, name, sources);
        api.create(&pp, &child)
            .await
            .map_err(|source| SetError::CreateChild {
                name: name.clone(),
                source,
            })?;
        crate::failpoint::hit("sessionset-child-create-after");
    }
    Ok(plan.create.len())
}

/// Patches the kept children whose spec is not the template with their planned sources.
async fn update(
    api: &Api<TrafficMirrorSession>,
    set: &TrafficMirrorSessionSet,
    current: &[TrafficMirrorSession],
    plan: &SetPlan,
) -> Result<usize, SetError> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    let mut updated = 0;
    for (name, sources) in &plan.keep {
        let want = child_spec(set, sources);
        let Some(child) = current.iter().find(|c| &c.name_any() == name) else {
            continue;
        };
        if child.spec == want {
            continue;
        }
        api.patch(name, &pp, &Patch::Merge(&spec_patch(&want)))
            .await
            .map_err(|source| SetError::UpdateChild {
                name: name.clone(),
                source,
            })?;
        updated += 1;
    }
    Ok(updated)
}

/// Deletes the emptied children (the uid as a precondition: never a namesake made since); a child
/// already gone counts as done.
async fn delete(
    api: &Api<TrafficMirrorSession>,
    current: &[TrafficMirrorSession],
    plan: &SetPlan,
) -> Result<usize, SetError> {
    let mut deleted = 0;
    for name in &plan.delete {
        let uid = current
            .iter()
            .find(|c| &c.name_any() == name)
            .and_then(|c| c.uid());
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(SetError::DeleteChild {
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Whether `child` is Ready for its current generation.
pub fn is_ready(child: &TrafficMirrorSession) -> bool {
    let Some(status) = &child.status else {
        return false;
    };
    status.observed_generation == child.meta().generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == crate::controller::conditions::READY && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> TrafficMirrorSessionSet {
        let mut s: TrafficMirrorSessionSet = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "sources": {"nodeSelector": {}},
                "sessionTemplate": {"trafficMirrorFilterRef": {"name": "f"},
                    "trafficMirrorTargetId": "t", "trafficMirrorTargetType": "eni", "priority": 5}
            }
        }))
        .unwrap();
        s.metadata.generation = Some(1);
        s
    }

    #[test]
    fn a_new_child_is_labelled_owned_and_has_its_sources() {
        let s = set();
        let sources: BTreeSet<String> = ["p-1".to_string()].into();
        let c = new_child(&s, "web-0", &sources);
        assert_eq!(c.labels()[SET_LABEL], "web");
        assert!(owned_by(&c, "set-uid") && !owned_by(&c, "other"));
        let o = &c.owner_references()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str()),
            ("TrafficMirrorSessionSet", "web")
        );
        assert_eq!(c.spec.traffic_mirror_sources, ["p-1"]);
        assert_eq!(c.spec.priority, 5);
    }

    #[test]
    fn the_spec_patch_clears_what_the_template_dropped() {
        let s = set();
        let patch = spec_patch(&child_spec(&s, &["p".to_string()].into()));
        assert_eq!(patch["spec"]["trafficMirrorFilterId"], Value::Null);
        assert_eq!(patch["spec"]["trafficMirrorFilterRef"]["name"], "f");
        assert_eq!(patch["spec"]["trafficMirrorSources"], json!(["p"]));
        assert!(patch["spec"].get("sessionId").is_none());
    }
}
