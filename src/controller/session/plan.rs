//! The session's cloud diff (no client required): a pure function from the desired session (the spec,
//! resolved) and the observed cloud session to the minimal list of cloud calls. The reconciler's
//! `decide` step uses it to pick the calls; `status` uses it to say what differs.
//!
//! Everything the operator decides about a session's cloud calls is decided here, so it can be unit- and
//! property-tested without an API server or a cloud: create (one POST carrying every field), update (one
//! PUT carrying exactly the fields that differ), add/remove sources (the set differences), or nothing.

use std::collections::BTreeSet;

pub use super::super::events::FieldChange;
use crate::api::TrafficMirrorSessionSpec;
use crate::cloud::models::{CreateSessionRequest, TrafficMirrorSession, UpdateSessionRequest};

/// The cloud's default quota of sources per session; it is raised on request, and the operator cannot
/// read it, so [`source_bound`] derives the bound it plans under from this and the spec.
pub const DEFAULT_QUOTA: usize = 10;

/// The most sources a session may hold while the operator changes it: `max(10, desired)`. A spec asking
/// for N > 10 sources means the quota was raised to at least N (else the cloud refuses the create or
/// add-sources anyway, and the refusal is shown), so N is a bound that is known to be allowed.
pub fn source_bound(desired_sources: usize) -> usize {
    DEFAULT_QUOTA.max(desired_sources)
}

/// Whether removals must go before additions: only when adding first would hold more than `bound`
/// sources at once. Add-first is the default because it never leaves a wanted port unmirrored.
pub fn removes_first(have: usize, adding: usize, bound: usize) -> bool {
    have.saturating_add(adding) > bound
}

/// The session as the spec wants it in the cloud, with every default applied and references resolved.
///
/// Comparing this (not the raw spec) with the cloud object is what keeps defaults on either side from
/// ever showing up as a difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredSession {
    /// Cloud-side name (`spec.name`, else `metadata.name`).
    pub name: String,
    /// Description; absent in the spec means the cloud default, the empty string.
    pub description: String,
    /// The filter id, either given directly or resolved from `trafficMirrorFilterRef`.
    pub traffic_mirror_filter_id: String,
    /// Source ENI ids; order carries no meaning, so a set.
    pub traffic_mirror_sources: BTreeSet<String>,
    /// Target id (ENI or ELB).
    pub traffic_mirror_target_id: String,
    /// Target type wire value (`eni` / `elb`).
    pub traffic_mirror_target_type: String,
    /// VNI, 0-16777215.
    pub virtual_network_id: i64,
    /// Mirrored packet length, 1-1460.
    pub packet_length: i64,
    /// Session priority, 1-32766.
    pub priority: i64,
    /// Whether mirroring is on.
    pub enabled: bool,
    /// Source type wire value (`eni`).
    pub source_type: String,
}

impl DesiredSession {
    /// Builds the desired cloud session from a spec. `default_name` is `metadata.name`; `filter_id` is
    /// the resolved filter id (the caller resolves `trafficMirrorFilterRef`, which needs the API server).
    ///
    /// The spec is destructured without `..`, so adding a spec field breaks the build here until the
    /// field is either compared or explicitly declared not to be a cloud field.
    pub fn from_spec(
        spec: &TrafficMirrorSessionSpec,
        default_name: &str,
        filter_id: String,
    ) -> Self {
        let TrafficMirrorSessionSpec {
            name: _, // the cloud name rule lives in TrafficMirrorSessionSpec::cloud_name
            description,
            traffic_mirror_filter_id: _, // resolved by the caller into `filter_id`
            traffic_mirror_filter_ref: _, // resolved by the caller into `filter_id`
            traffic_mirror_sources,
            traffic_mirror_target_id,
            traffic_mirror_target_type,
            virtual_network_id,
            packet_length,
            priority,
            enabled,
            source_type,
            provider_config_ref: _, // which cloud account, not a cloud field
            deletion_policy: _,     // operator behaviour, not a cloud field
            management_policy: _,   // operator behaviour, not a cloud field
            session_id: _,          // identity, not a cloud field
        } = spec;
        DesiredSession {
            name: spec.cloud_name(default_name),
            description: description.clone().unwrap_or_default(),
            traffic_mirror_filter_id: filter_id,
            traffic_mirror_sources: traffic_mirror_sources.iter().cloned().collect(),
            traffic_mirror_target_id: traffic_mirror_target_id.clone(),
            traffic_mirror_target_type: traffic_mirror_target_type.as_str().to_string(),
            virtual_network_id: *virtual_network_id,
            packet_length: *packet_length,
            priority: *priority,
            enabled: *enabled,
            source_type: source_type.as_str().to_string(),
        }
    }

    /// The create request: one POST carrying every field, so the new session needs no follow-up PUT.
    pub fn create_request(&self) -> CreateSessionRequest {
        CreateSessionRequest {
            name: self.name.clone(),
            description: Some(self.description.clone()),
            traffic_mirror_filter_id: self.traffic_mirror_filter_id.clone(),
            traffic_mirror_sources: self.traffic_mirror_sources.iter().cloned().collect(),
            traffic_mirror_target_id: self.traffic_mirror_target_id.clone(),
            traffic_mirror_target_type: self.traffic_mirror_target_type.clone(),
            virtual_network_id: Some(self.virtual_network_id),
            packet_length: Some(self.packet_length),
            priority: self.priority,
            enabled: Some(self.enabled),
            source_type: Some(self.source_type.clone()),
        }
    }
}

/// The calls that bring an existing session to the desired state. Empty means "in sync".
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Convergence {
    /// One PUT with exactly the differing fields, or `None` when no scalar field differs.
    pub update: Option<UpdateSessionRequest>,
    /// Sources to add (desired minus observed), sorted.
    pub add_sources: Vec<String>,
    /// Sources to remove (observed minus desired), sorted.
    pub remove_sources: Vec<String>,
    /// Whether removals go first: only when adding first would exceed [`source_bound`].
    pub remove_first: bool,
}

impl Convergence {
    /// True when the cloud already matches the desired state.
    pub fn is_empty(&self) -> bool {
        self.update.is_none() && self.add_sources.is_empty() && self.remove_sources.is_empty()
    }
}

/// The calls that turn an existing cloud session into the desired one (empty when in sync). A missing
/// session needs no plan: its create request is [`DesiredSession::create_request`].
pub fn convergence(desired: &DesiredSession, observed: &TrafficMirrorSession) -> Convergence {
    let update = update_request(desired, observed);
    let have: BTreeSet<&String> = observed.traffic_mirror_sources.iter().collect();
    let add_sources: Vec<String> = desired
        .traffic_mirror_sources
        .iter()
        .filter(|s| !have.contains(s))
        .cloned()
        .collect();
    let remove_sources: Vec<String> = have
        .iter()
        .filter(|s| !desired.traffic_mirror_sources.contains(s.as_str()))
        .map(|s| (*s).clone())
        .collect();
    let bound = source_bound(desired.traffic_mirror_sources.len());
    let remove_first = removes_first(have.len(), add_sources.len(), bound);
    Convergence {
        update,
        add_sources,
        remove_sources,
        remove_first,
    }
}

/// The spec paths (`spec.packetLength`) of the fields that differ; used in conditions and events,
/// where a person wants to read what drifted in the terms of the object they wrote.
pub fn differing_fields(
    desired: &DesiredSession,
    observed: &TrafficMirrorSession,
) -> Vec<&'static str> {
    let c = convergence(desired, observed);
    let mut fields = Vec::new();
    if let Some(u) = &c.update {
        fields.extend(update_field_names(u).into_iter().map(spec_path));
    }
    if !c.add_sources.is_empty() || !c.remove_sources.is_empty() {
        fields.push(spec_path("traffic_mirror_sources"));
    }
    fields
}

/// The spec path of a cloud session field (its wire name): what messages name.
pub fn spec_path(wire: &str) -> &'static str {
    match wire {
        "name" => "spec.name",
        "description" => "spec.description",
        "traffic_mirror_filter_id" => "spec.trafficMirrorFilterId",
        "traffic_mirror_sources" => "spec.trafficMirrorSources",
        "traffic_mirror_target_id" => "spec.trafficMirrorTargetId",
        "traffic_mirror_target_type" => "spec.trafficMirrorTargetType",
        "virtual_network_id" => "spec.virtualNetworkId",
        "packet_length" => "spec.packetLength",
        "priority" => "spec.priority",
        "enabled" => "spec.enabled",
        "type" => "spec.sourceType",
        _ => "spec",
    }
}

/// The fields `update` changes on `observed`, with both values (for a drift correction's event).
pub fn field_changes(
    update: &UpdateSessionRequest,
    observed: &TrafficMirrorSession,
) -> Vec<FieldChange> {
    let sent = serde_json::to_value(update).unwrap_or_default();
    let had = serde_json::to_value(observed).unwrap_or_default();
    let Some(sent) = sent.as_object() else {
        return vec![];
    };
    sent.iter()
        .map(|(wire, now)| FieldChange {
            path: spec_path(wire),
            was: had
                .get(wire)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unset".into()),
            now: now.to_string(),
        })
        .collect()
}

/// The wire names of the fields an update request carries.
pub fn update_field_names(u: &UpdateSessionRequest) -> Vec<&'static str> {
    let UpdateSessionRequest {
        name,
        description,
        traffic_mirror_filter_id,
        traffic_mirror_target_id,
        traffic_mirror_target_type,
        virtual_network_id,
        packet_length,
        priority,
        enabled,
        source_type,
    } = u;
    let mut out = Vec::new();
    let mut push = |present: bool, name: &'static str| {
        if present {
            out.push(name)
        }
    };
    push(name.is_some(), "name");
    push(description.is_some(), "description");
    push(
        traffic_mirror_filter_id.is_some(),
        "traffic_mirror_filter_id",
    );
    push(
        traffic_mirror_target_id.is_some(),
        "traffic_mirror_target_id",
    );
    push(
        traffic_mirror_target_type.is_some(),
        "traffic_mirror_target_type",
    );
    push(virtual_network_id.is_some(), "virtual_network_id");
    push(packet_length.is_some(), "packet_length");
    push(priority.is_some(), "priority");
    push(enabled.is_some(), "enabled");
    push(source_type.is_some(), "type");
    out
}

/// One PUT body with only the differing scalar fields, or `None`.
fn update_request(d: &DesiredSession, o: &TrafficMirrorSession) -> Option<UpdateSessionRequest> {
    fn differ<T: PartialEq + Clone>(want: &T, have: &T) -> Option<T> {
        (want != have).then(|| want.clone())
    }
    // The cloud answers an unset type as "" on some paths; treat empty as the default source type.
    let observed_type = if o.source_type.is_empty() {
        "eni".to_string()
    } else {
        o.source_type.clone()
    };
    let u = UpdateSessionRequest {
        name: differ(&d.name, &o.name),
        description: differ(&d.description, &o.description),
        traffic_mirror_filter_id: differ(&d.traffic_mirror_filter_id, &o.traffic_mirror_filter_id),
        traffic_mirror_target_id: differ(&d.traffic_mirror_target_id, &o.traffic_mirror_target_id),
        traffic_mirror_target_type: differ(
            &d.traffic_mirror_target_type,
            &o.traffic_mirror_target_type,
        ),
        virtual_network_id: differ(&d.virtual_network_id, &o.virtual_network_id),
        packet_length: differ(&d.packet_length, &o.packet_length),
        priority: differ(&d.priority, &o.priority),
        enabled: differ(&d.enabled, &o.enabled),
        source_type: differ(&d.source_type, &observed_type),
    };
    (u != UpdateSessionRequest::default()).then_some(u)
}

/// Applies a convergence to a session the way the cloud does (update changes exactly the sent fields,
/// add/remove change the source set): a model of the cloud for the property tests, which check
/// that executing a plan yields the desired state. The reconciler does not use it: it records the
/// cloud's own answers.
pub fn apply_convergence(observed: &TrafficMirrorSession, c: &Convergence) -> TrafficMirrorSession {
    let mut s = observed.clone();
    if let Some(u) = &c.update {
        let UpdateSessionRequest {
            name,
            description,
            traffic_mirror_filter_id,
            traffic_mirror_target_id,
            traffic_mirror_target_type,
            virtual_network_id,
            packet_length,
            priority,
            enabled,
            source_type,
        } = u.clone();
        if let Some(v) = name {
            s.name = v;
        }
        if let Some(v) = description {
            s.description = v;
        }
        if let Some(v) = traffic_mirror_filter_id {
            s.traffic_mirror_filter_id = v;
        }
        if let Some(v) = traffic_mirror_target_id {
            s.traffic_mirror_target_id = v;
        }
        if let Some(v) = traffic_mirror_target_type {
            s.traffic_mirror_target_type = v;
        }
        if let Some(v) = virtual_network_id {
            s.virtual_network_id = v;
        }
        if let Some(v) = packet_length {
            s.packet_length = v;
        }
        if let Some(v) = priority {
            s.priority = v;
        }
        if let Some(v) = enabled {
            s.enabled = v;
        }
        if let Some(v) = source_type {
            s.source_type = v;
        }
    }
    let mut sources: Vec<String> = s.traffic_mirror_sources.clone();
    sources.retain(|x| !c.remove_sources.contains(x));
    for a in &c.add_sources {
        if !sources.contains(a) {
            sources.push(a.clone());
        }
    }
    s.traffic_mirror_sources = sources;
    s
}

/// What a freshly created session looks like, per the API: a model of the cloud for the unit and
/// property tests and the plan benchmark (the reconciler records the cloud's own answer).
pub fn created_from(req: &CreateSessionRequest, id: &str) -> TrafficMirrorSession {
    TrafficMirrorSession {
        id: id.to_string(),
        name: req.name.clone(),
        description: req.description.clone().unwrap_or_default(),
        traffic_mirror_filter_id: req.traffic_mirror_filter_id.clone(),
        traffic_mirror_sources: req.traffic_mirror_sources.clone(),
        traffic_mirror_target_id: req.traffic_mirror_target_id.clone(),
        traffic_mirror_target_type: req.traffic_mirror_target_type.clone(),
        virtual_network_id: req.virtual_network_id.unwrap_or(1),
        packet_length: req.packet_length.unwrap_or(96),
        priority: req.priority,
        enabled: req.enabled.unwrap_or(false),
        source_type: req.source_type.clone().unwrap_or_else(|| "eni".into()),
        ..Default::default()
    }
}

/// Whether the observed session satisfies the desired one (what `Ready=True` means).
pub fn in_sync(desired: &DesiredSession, observed: &TrafficMirrorSession) -> bool {
    convergence(desired, observed).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn desired() -> DesiredSession {
        DesiredSession {
            name: "tap".into(),
            description: String::new(),
            traffic_mirror_filter_id: "f1".into(),
            traffic_mirror_sources: ["eni-1".to_string(), "eni-2".to_string()].into(),
            traffic_mirror_target_id: "t1".into(),
            traffic_mirror_target_type: "eni".into(),
            virtual_network_id: 1,
            packet_length: 96,
            priority: 10,
            enabled: false,
            source_type: "eni".into(),
        }
    }

    fn observed_of(d: &DesiredSession) -> TrafficMirrorSession {
        created_from(&d.create_request(), "s-1")
    }

    #[test]
    fn no_session_plans_one_create_with_every_field() {
        let d = desired();
        let req = d.create_request();
        assert_eq!(req.name, "tap");
        assert_eq!(req.virtual_network_id, Some(1));
        assert_eq!(req.packet_length, Some(96));
        assert_eq!(req.enabled, Some(false));
        assert_eq!(req.source_type.as_deref(), Some("eni"));
        assert_eq!(req.traffic_mirror_sources, vec!["eni-1", "eni-2"]);
    }

    #[test]
    fn equal_states_plan_nothing() {
        let d = desired();
        assert!(convergence(&d, &observed_of(&d)).is_empty());
    }

    #[test]
    fn source_order_is_not_a_difference() {
        let d = desired();
        let mut o = observed_of(&d);
        o.traffic_mirror_sources.reverse();
        assert!(convergence(&d, &o).is_empty());
    }

    #[test]
    fn empty_cloud_type_counts_as_default() {
        let d = desired();
        let mut o = observed_of(&d);
        o.source_type = String::new();
        assert!(convergence(&d, &o).is_empty());
    }

    #[test]
    fn each_field_alone_gives_a_put_with_only_that_field() {
        let base = desired();
        let o = observed_of(&base);
        type Change = Box<dyn Fn(&mut DesiredSession)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|d| d.name = "other".into())),
            ("description", Box::new(|d| d.description = "x".into())),
            (
                "traffic_mirror_filter_id",
                Box::new(|d| d.traffic_mirror_filter_id = "f2".into()),
            ),
            (
                "traffic_mirror_target_id",
                Box::new(|d| d.traffic_mirror_target_id = "t2".into()),
            ),
            (
                "traffic_mirror_target_type",
                Box::new(|d| d.traffic_mirror_target_type = "elb".into()),
            ),
            ("virtual_network_id", Box::new(|d| d.virtual_network_id = 0)),
            ("packet_length", Box::new(|d| d.packet_length = 1460)),
            ("priority", Box::new(|d| d.priority = 32766)),
            ("enabled", Box::new(|d| d.enabled = true)),
        ];
        for (field, change) in cases {
            let mut d = base.clone();
            change(&mut d);
            let c = convergence(&d, &o);
            let u = c.update.clone().expect("an update");
            assert_eq!(update_field_names(&u), vec![field], "field {field}");
            assert!(c.add_sources.is_empty() && c.remove_sources.is_empty());
            assert_eq!(apply_convergence(&o, &c).name, d.name);
            assert!(in_sync(&d, &apply_convergence(&o, &c)), "field {field}");
        }
    }

    #[test]
    fn sources_change_by_set_difference() {
        let mut d = desired();
        let o = observed_of(&d);
        d.traffic_mirror_sources = ["eni-2".to_string(), "eni-3".to_string()].into();
        let c = convergence(&d, &o);
        assert!(c.update.is_none());
        assert_eq!(c.add_sources, vec!["eni-3"]);
        assert_eq!(c.remove_sources, vec!["eni-1"]);
        assert!(!c.remove_first);
    }

    #[test]
    fn the_bound_is_the_default_quota_or_the_desired_count() {
        for (desired, bound) in [(1, 10), (10, 10), (11, 11), (15, 15), (100, 100)] {
            assert_eq!(source_bound(desired), bound, "{desired} desired sources");
        }
    }

    #[test]
    fn removal_goes_first_only_when_adding_first_would_exceed_the_bound() {
        // (have, adding, bound, removes first?)
        let cases = [
            (0, 10, 10, false),
            (5, 5, 10, false),
            (10, 1, 10, true),
            (10, 10, 10, true),
            (10, 5, 15, false),
            (12, 4, 15, true),
            (15, 0, 10, true),
            (0, 0, 10, false),
            (usize::MAX, 1, 10, true),
        ];
        for (have, adding, bound, want) in cases {
            assert_eq!(
                removes_first(have, adding, bound),
                want,
                "{have} + {adding} vs {bound}"
            );
        }
    }

    #[test]
    fn above_ten_desired_sources_the_swap_adds_first_while_it_fits() {
        let mut d = desired();
        d.traffic_mirror_sources = (0..12).map(|i| format!("a{i}")).collect();
        let o = observed_of(&d);
        // 12 wanted: three swapped leave 12 + 3 = 15 > 12 at once, so removals go first.
        d.traffic_mirror_sources = (3..15).map(|i| format!("a{i}")).collect();
        assert!(convergence(&d, &o).remove_first);
        // 15 wanted (a raised quota of at least 15): adding 3 first peaks at 15, which fits.
        d.traffic_mirror_sources = (0..15).map(|i| format!("a{i}")).collect();
        let c = convergence(&d, &o);
        assert!(!c.remove_first);
        assert_eq!(c.add_sources.len(), 3);
    }

    #[test]
    fn full_swap_at_quota_removes_first() {
        let mut d = desired();
        d.traffic_mirror_sources = (0..10).map(|i| format!("a{i}")).collect();
        let o = observed_of(&d);
        d.traffic_mirror_sources = (0..10).map(|i| format!("b{i}")).collect();
        let c = convergence(&d, &o);
        assert!(c.remove_first);
        assert_eq!(c.add_sources.len(), 10);
        assert_eq!(c.remove_sources.len(), 10);
    }

    #[test]
    fn differing_fields_names_what_drifted() {
        let d = desired();
        let mut o = observed_of(&d);
        o.priority = 99;
        o.traffic_mirror_sources.push("eni-9".into());
        assert_eq!(
            differing_fields(&d, &o),
            vec!["spec.priority", "spec.trafficMirrorSources"]
        );
    }

    #[test]
    fn field_changes_name_spec_paths_and_both_values() {
        let d = desired();
        let mut o = observed_of(&d);
        o.priority = 3;
        o.packet_length = 1;
        let u = convergence(&d, &o).update.expect("an update");
        let mut got: Vec<(&str, String, String)> = field_changes(&u, &o)
            .into_iter()
            .map(|c| (c.path, c.was, c.now))
            .collect();
        got.sort();
        let want = vec![
            (
                "spec.packetLength",
                "1".to_string(),
                d.packet_length.to_string(),
            ),
            ("spec.priority", "3".to_string(), d.priority.to_string()),
        ];
        assert_eq!(got, want);
    }

    fn arb_desired() -> impl Strategy<Value = DesiredSession> {
        (
            "[a-z]{1,5}",
            "[a-z]{0,3}",
            prop::sample::select(vec!["f1", "f2"]),
            prop::collection::btree_set("eni-[0-9]{1,2}", 1..=15),
            prop::sample::select(vec!["t1", "t2"]),
            prop::sample::select(vec!["eni", "elb"]),
            0i64..3,
            1i64..4,
            1i64..4,
            any::<bool>(),
        )
            .prop_map(
                |(name, desc, f, src, t, tt, vni, pl, pr, en)| DesiredSession {
                    name,
                    description: desc,
                    traffic_mirror_filter_id: f.into(),
                    traffic_mirror_sources: src,
                    traffic_mirror_target_id: t.into(),
                    traffic_mirror_target_type: tt.into(),
                    virtual_network_id: vni,
                    packet_length: pl,
                    priority: pr,
                    enabled: en,
                    source_type: "eni".into(),
                },
            )
    }

    proptest! {
        /// Executing the plan against the observed state always yields the desired state, and the
        /// result then plans nothing.
        #[test]
        fn applying_the_plan_reaches_the_desired_state(d in arb_desired(), start in arb_desired()) {
            let o = observed_of(&start);
            let c = convergence(&d, &o);
            let after = apply_convergence(&o, &c);
            prop_assert!(in_sync(&d, &after));
            prop_assert!(convergence(&d, &after).is_empty());
            // Never a source both added and removed, never an empty field set in a PUT.
            for a in &c.add_sources { prop_assert!(!c.remove_sources.contains(a)); }
            if let Some(u) = &c.update { prop_assert!(!update_field_names(u).is_empty()); }
            // Quota: following the chosen order never holds more than max(10, desired) sources
            // after any call, and removal goes first only when adding first would.
            let have = o.traffic_mirror_sources.len();
            let bound = source_bound(d.traffic_mirror_sources.len());
            let peak = if c.remove_first {
                (have - c.remove_sources.len()).max(have - c.remove_sources.len() + c.add_sources.len())
            } else {
                (have + c.add_sources.len()).max(have + c.add_sources.len() - c.remove_sources.len())
            };
            prop_assert!(peak <= bound, "peak {} above bound {}", peak, bound);
            prop_assert_eq!(c.remove_first, have + c.add_sources.len() > bound);
        }

        /// Equal states plan nothing, whatever the values.
        #[test]
        fn equal_states_never_plan(d in arb_desired()) {
            prop_assert!(convergence(&d, &observed_of(&d)).is_empty());
        }

        /// A PUT carries exactly the fields that differ.
        #[test]
        fn put_carries_exactly_the_differing_fields(d in arb_desired(), start in arb_desired()) {
            let o = observed_of(&start);
            let fields = update_field_names(&convergence(&d, &o).update.unwrap_or_default());
            prop_assert_eq!(fields.contains(&"name"), d.name != o.name);
            prop_assert_eq!(fields.contains(&"priority"), d.priority != o.priority);
            prop_assert_eq!(fields.contains(&"enabled"), d.enabled != o.enabled);
            prop_assert_eq!(fields.contains(&"packet_length"), d.packet_length != o.packet_length);
            prop_assert_eq!(fields.contains(&"virtual_network_id"), d.virtual_network_id != o.virtual_network_id);
            prop_assert_eq!(fields.contains(&"description"), d.description != o.description);
        }
    }
}
