//! Step "observe" of the filter reconciler (client required: the cloud; the sessions that use the
//! filter come from the session controller's cache, the last delete refusal from the ledger):
//! everything `decide` needs, in one [`Observed`].

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;

use super::super::claims;
use super::super::context::Context;
use super::super::error::Result;
use super::super::intent::FILTER_ID_ANNOTATION;
use super::super::intent::{self, INTENT_ANNOTATION};
use super::super::providers::registry::Provider;
use super::decide::{CloudState, Desired, Observed, RULE_INTENT_ANNOTATION, Refusal, RuleIntent};
use crate::api::{ManagementPolicy, TrafficMirrorFilter};
use crate::cloud::models::{ListFiltersQuery, TrafficMirrorFilter as CloudFilter};

/// What the status records of a create ([`intent::settled_by_status`]).
fn recorded_create(obj: &TrafficMirrorFilter) -> intent::RecordedCreate<'_> {
    let status = obj.status.as_ref();
    let observed = status.and_then(|s| s.at_provider.as_ref());
    intent::RecordedCreate {
        id: status.and_then(|s| s.filter_id.as_deref()),
        observed_id: observed.map(|o| o.id.as_str()),
        observed_created_at: observed.map(|o| o.created_at.as_str()),
    }
}

/// What the object asks for (no I/O).
pub fn desired(obj: &TrafficMirrorFilter, ctx: &Context) -> Desired {
    let known_id = claims::known_id(
        obj.spec.filter_id.as_deref(),
        obj.status.as_ref().and_then(|s| s.filter_id.as_deref()),
        obj.annotations()
            .get(FILTER_ID_ANNOTATION)
            .map(String::as_str),
    );
    Desired {
        object_name: obj.name_any(),
        spec: obj.spec.clone(),
        deleting: obj.metadata.deletion_timestamp.is_some(),
        known_id,
        confirm_window: chrono::Duration::from_std(ctx.config.create_confirm_window)
            .unwrap_or(chrono::Duration::seconds(30)),
    }
}

/// Observes; also returns the ready provider.
pub async fn observe(
    obj: &TrafficMirrorFilter,
    d: &Desired,
    ctx: &Context,
) -> Result<(Observed, Option<Arc<Provider>>)> {
    let (mut o, provider) = unread(obj, d, ctx);
    let Some(p) = &provider else {
        return Ok((o, provider));
    };
    if o.claimed_by.is_some() || (!d.deleting && d.id_mismatch().is_some()) {
        // Another object manages the cloud filter, or the spec names another id than the one this
        // object manages: nothing to read (decide waits, or releases).
        return Ok((o, provider));
    }
    let observe_only = d.spec.management_policy == ManagementPolicy::ObserveOnly;
    if d.deleting {
        if observe_only || d.spec.deletion_policy == crate::api::DeletionPolicy::Orphan {
            return Ok((o, provider));
        }
        o.users = users(obj, d, ctx, p);
        o.refusal = refusal(obj, ctx, p);
    } else if let Some(id) = &d.known_id {
        let fresh = needs_fresh_read(obj, ctx) || o.rule_intent.is_some();
        o.cloud = read_filter(ctx, p, id, fresh).await?;
    }
    search_names(ctx, p, d, &mut o).await?;
    Ok((o, provider))
}

/// What is known before any cloud read: the intents on the object, the ProviderConfig's client (or
/// why it cannot serve), and who else claims the cloud filter.
fn unread(
    obj: &TrafficMirrorFilter,
    d: &Desired,
    ctx: &Context,
) -> (Observed, Option<Arc<Provider>>) {
    let created = obj
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
        .unwrap_or_else(Utc::now);
    let annotations = obj.annotations();
    let intent = intent::outstanding(
        annotations.get(INTENT_ANNOTATION).map(String::as_str),
        &d.filter().name,
        created,
    )
    .filter(|i| !intent::settled_by_status(i, recorded_create(obj)));
    let new_user = !d.deleting && d.known_id.is_none() && intent.is_none();
    let (provider, provider_unavailable) = ctx.providers.serve(
        &d.spec.provider_config_ref.name,
        &obj.namespace().unwrap_or_default(),
        new_user,
    );
    let o = Observed {
        provider_unavailable,
        cloud: CloudState::NotRead,
        intent,
        rule_intent: annotations
            .get(RULE_INTENT_ANNOTATION)
            .and_then(|raw| serde_json::from_str::<RuleIntent>(raw).ok()),
        named: vec![],
        users: vec![],
        refusal: None,
        claimed_by: ctx.filter_claimed_by(obj),
        now: Utc::now(),
    };
    (o, provider)
}

/// The filters under the intended name, when a create, an intent resolution or a rename needs them.
async fn search_names(ctx: &Context, p: &Provider, d: &Desired, o: &mut Observed) -> Result<()> {
    let cloud_name = d.filter().name;
    let observe_only = d.spec.management_policy == ManagementPolicy::ObserveOnly;
    let live = matches!(o.cloud, CloudState::Present(_));
    let adopting = d.spec.filter_id.is_some() || observe_only;
    let settling_intent = o.intent.is_some() && (d.deleting || !live);
    // A rename is checked like a create, against the cloud itself (one search per rename).
    let renaming = matches!(&o.cloud, CloudState::Present(f) if f.name != cloud_name);
    if settling_intent || (!d.deleting && !live && !adopting) || (renaming && !observe_only) {
        let name = match &o.intent {
            Some(i) if !renaming => i.name.clone(),
            _ => cloud_name,
        };
        o.named = filters_named(ctx, p, &name).await?;
    }
    Ok(())
}

/// Sessions that use this filter: the objects that reference it (by name or by id), and cloud
/// sessions in the account snapshot that carry its id (made outside Kubernetes).
fn users(obj: &TrafficMirrorFilter, d: &Desired, ctx: &Context, p: &Provider) -> Vec<String> {
    let ns = obj.namespace().unwrap_or_default();
    let mut users = ctx.sessions_using_filter(&ns, &obj.name_any(), d.known_id.as_deref());
    if let Some(id) = &d.known_id {
        // Cloud sessions that no session object manages (made outside Kubernetes).
        let managed = ctx.managed_session_ids();
        for s in p.inventory.all() {
            if s.traffic_mirror_filter_id == *id && !managed.contains(&s.id) {
                users.push(format!("cloud session {} ({})", s.id, s.name));
            }
        }
    }
    users
}

/// The cloud's last refusal to delete this filter, with whether the session snapshot has been
/// listed again since.
fn refusal(obj: &TrafficMirrorFilter, ctx: &Context, p: &Provider) -> Option<Refusal> {
    let (since, mut r) = ctx.ledger.refusal(&obj.uid().unwrap_or_default())?;
    r.relisted = p.inventory.listed_since(since);
    Some(r)
}

/// [`Context::needs_fresh_read`] for this object.
fn needs_fresh_read(obj: &TrafficMirrorFilter, ctx: &Context) -> bool {
    let status = obj.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    ctx.needs_fresh_read(
        &obj.metadata,
        status.and_then(|s| s.observed_generation),
        conditions,
    )
}

/// The cloud filter `id` (with its rules): the snapshot unless `fresh`, else a GET.
async fn read_filter(ctx: &Context, p: &Provider, id: &str, fresh: bool) -> Result<CloudState> {
    let read = ("show_filter", id, fresh);
    Ok(
        match p
            .read(&ctx.metrics, &p.filters, read, p.client.show_filter(id))
            .await?
        {
            Some(found) => CloudState::Present(found),
            None => CloudState::Gone,
        },
    )
}

/// Cloud filters named `name`.
async fn filters_named(ctx: &Context, p: &Provider, name: &str) -> Result<Vec<CloudFilter>> {
    let q = ListFiltersQuery {
        name: Some(name.to_string()),
        ..Default::default()
    };
    p.cloud(&ctx.metrics, "list_filters", p.client.list_all_filters(q))
        .await
}
