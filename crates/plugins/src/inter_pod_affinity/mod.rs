//! `InterPodAffinity`: required pod affinity and anti-affinity of the incoming pod and the
//! required anti-affinity of existing pods (symmetric) in Filter; preferred terms of both
//! sides, and existing pods' required affinity weighted by `hardPodAffinityWeight`, in Score
//! (weight 2).

mod filtering;
mod scoring;

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use ksched_framework::{
    ActionType, AffinityTerm, ClusterEvent, ClusterEventWithHint, ClusterObject, EnqueueExtensions,
    EventResource, FilterPlugin, Handle, LabelSelector, Plugin, PluginArgs, PluginError,
    PreFilterPlugin, PreScorePlugin, QueueingHint, ScorePlugin,
};
use kube::{Api, api::ListParams};
use serde::Deserialize;

use crate::{helper::node_labels, names};

/// Filter reason: an existing pod's required anti-affinity matches the incoming pod.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Filter reason: the incoming pod's required affinity is not satisfied.
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Filter reason: the incoming pod's required anti-affinity is violated.
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// `InterPodAffinityArgs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterPodAffinityArgs {
    /// Score weight of an existing pod's required affinity term the incoming pod matches
    /// (0–100, default 1).
    #[serde(default = "one")]
    pub hard_pod_affinity_weight: i32,
    /// Score only the incoming pod's preferred terms, not those of existing pods.
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
}

fn one() -> i32 {
    1
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        Self {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

/// Upstream's InterPodAffinity plugin.
#[derive(Debug, Clone)]
pub struct InterPodAffinity {
    handle: Arc<Handle>,
    args: InterPodAffinityArgs,
}

/// Factory.
///
/// # Errors
/// Args that do not decode, or `hardPodAffinityWeight` outside [0, 100].
pub fn new(args: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: InterPodAffinityArgs = args.decode()?;
    if !(0..=100).contains(&args.hard_pod_affinity_weight) {
        return Err(PluginError::invalid_arg(
            "hardPodAffinityWeight",
            "not in valid range [0, 100]",
        ));
    }
    Ok(Arc::new(InterPodAffinity {
        handle: handle.clone(),
        args,
    }))
}

impl InterPodAffinity {
    /// The plugin with `args` (tests, simulators).
    #[must_use]
    pub fn with_args(handle: Arc<Handle>, args: InterPodAffinityArgs) -> Self {
        Self { handle, args }
    }

    /// Replaces a term's namespace selector by the names of the namespaces it selects (upstream
    /// `mergeAffinityTermNamespacesIfNotEmpty`): the incoming pod's terms are then matched
    /// without looking up namespaces again. An empty selector (every namespace) is kept.
    async fn merge_namespaces(&self, terms: &mut [AffinityTerm]) -> Result<(), String> {
        for t in terms {
            let LabelSelector::Requirements(reqs) = &t.namespace_selector else {
                continue;
            };
            if reqs.is_empty() {
                continue;
            }
            if let Some(client) = self.handle.client() {
                let selector = selector_string(&t.namespace_selector);
                let list = Api::<Namespace>::all(client.clone())
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| format!("listing namespaces for a namespaceSelector: {e}"))?;
                t.namespaces
                    .extend(list.items.into_iter().filter_map(|n| n.metadata.name));
            }
            t.namespace_selector = LabelSelector::Nothing;
        }
        Ok(())
    }

    /// The labels of `ns`, when some existing pod's term needs them (namespace selectors).
    async fn namespace_labels(&self, ns: &str, needed: bool) -> Option<BTreeMap<String, String>> {
        if !needed {
            return None;
        }
        let client = self.handle.client()?;
        let got = Api::<Namespace>::all(client.clone())
            .get_metadata_opt(ns)
            .await
            .ok()??;
        Some(got.metadata.labels.unwrap_or_default())
    }
}

/// A label selector in the API's string form (`a=b,c in (d,e),!f`).
fn selector_string(s: &LabelSelector) -> String {
    use ksched_framework::LabelOperator as Op;
    let LabelSelector::Requirements(reqs) = s else {
        return String::new();
    };
    reqs.iter()
        .map(|r| {
            let join = |v: &std::collections::BTreeSet<String>| {
                v.iter().cloned().collect::<Vec<_>>().join(",")
            };
            match &r.operator {
                Op::In(v) => format!("{} in ({})", r.key, join(v)),
                Op::NotIn(v) => format!("{} notin ({})", r.key, join(v)),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a term selects namespaces by label (its owner's namespace labels are then needed to
/// match it).
fn uses_namespace_selector(t: &AffinityTerm) -> bool {
    !matches!(t.namespace_selector, LabelSelector::Nothing)
}

/// Counts per topology pair: key → value → count.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `delta` for the node's value of `key` (nothing when the node lacks the label);
    /// pairs that drop to zero are removed.
    fn add(&mut self, node: &Node, key: &str, delta: i64) {
        let Some(v) = node_labels(node).get(key) else {
            return;
        };
        let values = self.0.entry(key.to_owned()).or_default();
        let c = values.entry(v.clone()).or_insert(0);
        *c += delta;
        if *c == 0 {
            values.remove(v);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn merge(&mut self, other: Self) {
        for (k, vs) in other.0 {
            let mine = self.0.entry(k).or_default();
            for (v, c) in vs {
                // Only this pair can drop to zero: remove it here rather than sweeping the
                // whole map on every merge (thousands of hostname pairs, once per node).
                match mine.entry(v) {
                    Entry::Occupied(mut o) => {
                        *o.get_mut() += c;
                        if *o.get() == 0 {
                            o.remove();
                        }
                    }
                    Entry::Vacant(e) => {
                        if c != 0 {
                            e.insert(c);
                        }
                    }
                }
            }
        }
        self.0.retain(|_, vs| !vs.is_empty());
    }
}

/// Whether `pod` matches every term (and there is at least one).
fn matches_all(terms: &[AffinityTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, None))
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &str {
        names::INTER_POD_AFFINITY
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

fn assigned(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn pod_hint(pod: &Pod, old: Option<&ClusterObject>, new: Option<&ClusterObject>) -> QueueingHint {
    let info = ksched_framework::PodInfo::new(Arc::new(pod.clone()));
    let (old, new) = (old.and_then(|o| o.as_pod()), new.and_then(|n| n.as_pod()));
    let Some(changed) = new.or(old) else {
        return QueueingHint::Queue;
    };
    if !assigned(changed) {
        return QueueingHint::QueueSkip;
    }
    let required = info
        .required_affinity_terms()
        .iter()
        .chain(info.required_anti_affinity_terms());
    // The pod's own terms select the changed pod (before or after the change)…
    let selected =
        |p: Option<&Pod>| p.is_some_and(|p| required.clone().any(|t| t.matches(p, None)));
    // …or the changed pod has anti-affinity terms: removing it may lift them.
    let has_anti = |p: Option<&Pod>| {
        p.is_some_and(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .is_some()
        })
    };
    if selected(new)
        || selected(old)
        || (new.is_none() && has_anti(old))
        || (new.is_some() && old.is_some() && has_anti(old))
    {
        QueueingHint::Queue
    } else {
        QueueingHint::QueueSkip
    }
}

fn node_hint(pod: &Pod, old: Option<&ClusterObject>, new: Option<&ClusterObject>) -> QueueingHint {
    let info = ksched_framework::PodInfo::new(Arc::new(pod.clone()));
    let Some(new) = new.and_then(|n| n.as_node()) else {
        return QueueingHint::Queue;
    };
    let keys: Vec<&str> = info
        .required_affinity_terms()
        .iter()
        .chain(info.required_anti_affinity_terms())
        .map(|t| t.topology_key.as_str())
        .collect();
    match old.and_then(|o| o.as_node()) {
        None => QueueingHint::Queue,
        Some(old) => {
            let changed = keys.is_empty() && node_labels(old) != node_labels(new)
                || keys
                    .iter()
                    .any(|k| node_labels(old).get(*k) != node_labels(new).get(*k));
            if changed {
                QueueingHint::Queue
            } else {
                QueueingHint::QueueSkip
            }
        }
    }
}

impl EnqueueExtensions for InterPodAffinity {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Pod,
                    ActionType::ADD | ActionType::UPDATE_POD_LABEL | ActionType::DELETE,
                ),
                |pod, old, new| Ok(pod_hint(pod, old, new)),
            ),
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Node,
                    ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
                ),
                |pod, old, new| Ok(node_hint(pod, old, new)),
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
