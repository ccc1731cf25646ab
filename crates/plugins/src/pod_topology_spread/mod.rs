//! `PodTopologySpread`: `topologySpreadConstraints` — DoNotSchedule constraints in Filter
//! (maxSkew, minDomains, nodeAffinityPolicy / nodeTaintsPolicy, matchLabelKeys), ScheduleAnyway
//! constraints in Score (weight 2) — and, for pods without constraints, the cluster-level
//! default constraints (`defaultingType: System`: hostname maxSkew 3 and zone maxSkew 5,
//! ScheduleAnyway) over the pod's Services and controller.

mod common;
mod filtering;
mod scoring;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, EnqueueExtensions, EventResource, FilterPlugin,
    Handle, Plugin, PluginArgs, PluginError, PreFilterPlugin, PreScorePlugin, QueueingHint,
    ScorePlugin,
};
use kube::{
    Api, Resource,
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde::{Deserialize, de::DeserializeOwned};

pub use self::common::Constraint;
use self::common::{SelectorSources, default_selector, filter_constraints};
use crate::{
    helper::{RequiredNodeAffinity, node_labels, pod_labels, pod_namespace},
    names,
};

/// Filter reason when a node lacks a constraint's topology label.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// Filter reason when placing the pod would exceed maxSkew.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";

const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// `PodTopologySpreadArgs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTopologySpreadArgs {
    /// Constraints for pods that define none (`defaultingType: List` only; no selectors).
    #[serde(default)]
    pub default_constraints: Vec<TopologySpreadConstraint>,
    /// `System` (the built-in defaults) or `List` (`defaultConstraints`).
    #[serde(default = "system")]
    pub defaulting_type: String,
}

fn system() -> String {
    "System".into()
}

impl Default for PodTopologySpreadArgs {
    fn default() -> Self {
        Self {
            default_constraints: Vec::new(),
            defaulting_type: system(),
        }
    }
}

/// Upstream's built-in default constraints (`defaultingType: System`).
pub fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    [
        ("kubernetes.io/hostname", 3),
        ("topology.kubernetes.io/zone", 5),
    ]
    .into_iter()
    .map(|(key, skew)| TopologySpreadConstraint {
        max_skew: skew,
        topology_key: key.into(),
        when_unsatisfiable: SCHEDULE_ANYWAY.into(),
        ..TopologySpreadConstraint::default()
    })
    .collect()
}

pub(crate) struct Inner {
    handle: Arc<Handle>,
    default_constraints: Vec<TopologySpreadConstraint>,
    /// The built-in defaults are in use: nodes without a zone label still get hostname
    /// spreading in Score.
    system_defaulted: bool,
    sources: Option<SelectorSources>,
}

/// Upstream's PodTopologySpread plugin.
#[derive(Clone)]
pub struct PodTopologySpread {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PodTopologySpread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTopologySpread")
            .field("system_defaulted", &self.inner.system_defaulted)
            .finish_non_exhaustive()
    }
}

fn validate(args: &PodTopologySpreadArgs) -> Result<(), PluginError> {
    match args.defaulting_type.as_str() {
        "System" if !args.default_constraints.is_empty() => {
            return Err(PluginError::invalid_arg(
                "defaultConstraints",
                "when .defaultingType is System, defaultConstraints must be empty",
            ));
        }
        "System" | "List" => {}
        other => {
            return Err(PluginError::invalid_arg(
                "defaultingType",
                format!("Unsupported value: {other:?}: supported values: \"System\", \"List\""),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in args.default_constraints.iter().enumerate() {
        let path = format!("defaultConstraints[{i}]");
        if c.max_skew <= 0 {
            return Err(PluginError::invalid_arg(
                format!("{path}.maxSkew"),
                "not in valid range: must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            return Err(PluginError::invalid_arg(
                format!("{path}.topologyKey"),
                "can not be empty",
            ));
        }
        if c.when_unsatisfiable != DO_NOT_SCHEDULE && c.when_unsatisfiable != SCHEDULE_ANYWAY {
            return Err(PluginError::invalid_arg(
                format!("{path}.whenUnsatisfiable"),
                "supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
            ));
        }
        if !seen.insert((c.topology_key.clone(), c.when_unsatisfiable.clone())) {
            return Err(PluginError::invalid_arg(
                path,
                "Duplicate value: topologyKey and whenUnsatisfiable",
            ));
        }
        if c.label_selector.is_some() {
            return Err(PluginError::invalid_arg(
                format!("{path}.labelSelector"),
                "constraint must not define a selector, as they deduced for each pod",
            ));
        }
    }
    Ok(())
}

/// Keeps a store of `K` filled from a watch in the background.
fn watch_store<K>(client: &kube::Client) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    // Backoff after `touched_objects`: kube's backoff resets on every `Ok` item, and the
    // watcher yields `Ok(Init)` before each list attempt, so placed before it would retry an
    // unreachable apiserver every second forever. Objects are what prove recovery.
    let stream = reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .touched_objects()
    .default_backoff();
    tokio::spawn(async move {
        // Errors are retried by the backoff; the stream ends only when the runtime does.
        stream.for_each(|_| futures::future::ready(())).await;
    });
    reader
}

/// Factory.
///
/// # Errors
/// Args that do not decode or fail upstream's validation.
pub fn new(args: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: PodTopologySpreadArgs = args.decode()?;
    validate(&args)?;
    let system_defaulted = args.defaulting_type == "System";
    let default_constraints = if system_defaulted {
        system_default_constraints()
    } else {
        args.default_constraints
    };
    // Default constraints need the pod's Services and controllers; watch them when running
    // against a cluster (inside the scheduler's runtime).
    let sources = match (handle.client(), tokio::runtime::Handle::try_current()) {
        (Some(client), Ok(_)) if !default_constraints.is_empty() => Some(SelectorSources {
            services: watch_store(client),
            replica_sets: watch_store(client),
            stateful_sets: watch_store(client),
            replication_controllers: watch_store(client),
        }),
        _ => None,
    };
    Ok(Arc::new(PodTopologySpread {
        inner: Arc::new(Inner {
            handle: handle.clone(),
            default_constraints,
            system_defaulted,
            sources,
        }),
    }))
}

impl PodTopologySpread {
    /// A plugin without Service/controller listers (tests, simulators): default constraints
    /// then never apply, as no pod has a default selector.
    #[must_use]
    pub fn without_listers(handle: Arc<Handle>, args: &PodTopologySpreadArgs) -> Self {
        let system_defaulted = args.defaulting_type == "System";
        let default_constraints = if system_defaulted {
            system_default_constraints()
        } else {
            args.default_constraints.clone()
        };
        Self {
            inner: Arc::new(Inner {
                handle,
                default_constraints,
                system_defaulted,
                sources: None,
            }),
        }
    }
}

impl Inner {
    /// The pod's constraints for `action`: its own, or the defaults with its default selector.
    fn constraints(&self, pod: &Pod, action: &str) -> Result<Vec<Constraint>, String> {
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if !own.is_empty() {
            return filter_constraints(own, pod_labels(pod), action);
        }
        let mut constraints =
            filter_constraints(&self.default_constraints, pod_labels(pod), action)?;
        if constraints.is_empty() {
            return Ok(constraints);
        }
        let selector = default_selector(pod, self.sources.as_ref());
        if selector.is_everything() {
            return Ok(Vec::new());
        }
        for c in &mut constraints {
            c.selector = selector.clone();
        }
        Ok(constraints)
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &str {
        names::POD_TOPOLOGY_SPREAD
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

impl EnqueueExtensions for PodTopologySpread {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        let inner = self.inner.clone();
        let pod_hint = move |pod: &Pod,
                             old: Option<&ksched_framework::ClusterObject>,
                             new: Option<&ksched_framework::ClusterObject>| {
            let (old, new) = (old.and_then(|o| o.as_pod()), new.and_then(|n| n.as_pod()));
            let assigned = |p: &Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty())
            };
            // Only assigned pods of the same namespace are counted.
            if new.is_some_and(|p| !assigned(p)) || old.is_some_and(|p| !assigned(p)) {
                return Ok(QueueingHint::QueueSkip);
            }
            let Some(changed) = new.or(old) else {
                return Ok(QueueingHint::Queue);
            };
            if pod_namespace(changed) != pod_namespace(pod) {
                return Ok(QueueingHint::QueueSkip);
            }
            let constraints = inner
                .constraints(pod, DO_NOT_SCHEDULE)
                .map_err(ksched_framework::events::HintError::from)?;
            let hit = |p: Option<&Pod>| {
                p.is_some_and(|p| {
                    constraints
                        .iter()
                        .any(|c| c.selector.matches(pod_labels(p)))
                })
            };
            Ok(if hit(new) || hit(old) {
                QueueingHint::Queue
            } else {
                QueueingHint::QueueSkip
            })
        };
        let inner = self.inner.clone();
        let node_hint =
            move |pod: &Pod,
                  old: Option<&ksched_framework::ClusterObject>,
                  new: Option<&ksched_framework::ClusterObject>| {
                let constraints = inner
                    .constraints(pod, DO_NOT_SCHEDULE)
                    .map_err(ksched_framework::events::HintError::from)?;
                let (old, new) = (old.and_then(|o| o.as_node()), new.and_then(|n| n.as_node()));
                let has_keys = |n: Option<&k8s_openapi::api::core::v1::Node>| {
                    n.is_some_and(|n| common::node_has_all_keys(n, &constraints))
                };
                let queue = match (old, new) {
                    (None, _) | (_, None) => has_keys(new) || has_keys(old),
                    (Some(o), Some(n)) => {
                        let keys_changed = constraints.iter().any(|c| {
                            node_labels(o).get(&c.topology_key)
                                != node_labels(n).get(&c.topology_key)
                        });
                        let taints = |x: &k8s_openapi::api::core::v1::Node| {
                            x.spec.as_ref().and_then(|s| s.taints.clone())
                        };
                        let taint_policy = constraints.iter().any(|c| c.honor_node_taints)
                            && taints(o) != taints(n);
                        let required = RequiredNodeAffinity::of_pod(pod);
                        let affinity_changed = required.matches(o) != required.matches(n);
                        has_keys(Some(n))
                            && (!has_keys(Some(o))
                                || keys_changed
                                || taint_policy
                                || affinity_changed)
                    }
                };
                Ok(if queue {
                    QueueingHint::Queue
                } else {
                    QueueingHint::QueueSkip
                })
            };
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Pod,
                    ActionType::ADD | ActionType::UPDATE_POD_LABEL | ActionType::DELETE,
                ),
                pod_hint,
            ),
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Node,
                    ActionType::ADD
                        | ActionType::DELETE
                        | ActionType::UPDATE_NODE_LABEL
                        | ActionType::UPDATE_NODE_TAINT,
                ),
                node_hint,
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
