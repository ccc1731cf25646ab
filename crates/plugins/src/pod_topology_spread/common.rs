//! Parsed constraints, node inclusion policies, counting matching pods, and the default
//! selector of a pod (its Services, and its controlling ReplicaSet / StatefulSet /
//! ReplicationController).

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    apps::v1::{ReplicaSet, StatefulSet},
    core::v1::{Node, Pod, ReplicationController, Service, TopologySpreadConstraint},
};
use ksched_framework::{LabelOperator, LabelRequirement, LabelSelector, PodInfo};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::helper::{
    RequiredNodeAffinity, do_not_schedule_taint, find_untolerated_taint, node_labels, pod_labels,
};

/// The well-known hostname label: per-node domains, counted in Score rather than PreScore.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// A spread constraint with its selector parsed and defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Largest allowed difference between domains.
    pub max_skew: i64,
    /// The domain label.
    pub topology_key: String,
    /// Pods counted.
    pub selector: LabelSelector,
    /// Fewer eligible domains than this make the global minimum 0.
    pub min_domains: usize,
    /// Only nodes matching the pod's required node affinity count (`nodeAffinityPolicy:
    /// Honor`, the default).
    pub honor_node_affinity: bool,
    /// Only nodes whose taints the pod tolerates count (`nodeTaintsPolicy: Honor`; default
    /// Ignore).
    pub honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node` takes part in this constraint for `pod` (upstream
    /// `matchNodeInclusionPolicies`).
    pub fn includes(&self, pod: &Pod, node: &Node, required: &RequiredNodeAffinity) -> bool {
        if self.honor_node_affinity && !required.matches(node) {
            return false;
        }
        if self.honor_node_taints {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default();
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default();
            if find_untolerated_taint(taints, tolerations, do_not_schedule_taint).is_some() {
                return false;
            }
        }
        true
    }
}

/// The constraints of `constraints` with `when_unsatisfiable == action`, parsed; `matchLabelKeys`
/// values from the pod's labels are added to the selector.
///
/// # Errors
/// An invalid label selector.
pub fn filter_constraints(
    constraints: &[TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for c in constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == action)
    {
        let mut selector = LabelSelector::parse(c.label_selector.as_ref())
            .map_err(|e| format!("topologySpreadConstraints[{}]: {e}", c.topology_key))?;
        if let LabelSelector::Requirements(reqs) = &mut selector {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(key) {
                    reqs.push(LabelRequirement {
                        key: key.clone(),
                        operator: LabelOperator::In([v.clone()].into()),
                    });
                }
            }
        }
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map_or(1, |m| usize::try_from(m).unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(out)
}

/// Whether the node has every constraint's topology label.
pub fn node_has_all_keys(node: &Node, constraints: &[Constraint]) -> bool {
    let labels = node_labels(node);
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// Pods of namespace `ns` on a node matching `selector`; terminating pods do not count, and
/// an empty selector counts nothing (upstream `countPodsMatchSelector`).
pub fn count_matching(pods: &[Arc<PodInfo>], selector: &LabelSelector, ns: &str) -> i64 {
    if selector.is_everything() || matches!(selector, LabelSelector::Nothing) {
        return 0;
    }
    let n = pods
        .iter()
        .map(|p| p.pod())
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == ns)
        .filter(|p| selector.matches(pod_labels(p)))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Listers for the objects a pod's default spreading selector comes from.
#[derive(Clone)]
pub struct SelectorSources {
    /// Services.
    pub services: Store<Service>,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// StatefulSets.
    pub stateful_sets: Store<StatefulSet>,
    /// ReplicationControllers.
    pub replication_controllers: Store<ReplicationController>,
}

/// The selector of the pod's Services and controller (upstream `helper.DefaultSelector`), or
/// an empty selector when there is none.
pub fn default_selector(pod: &Pod, sources: Option<&SelectorSources>) -> LabelSelector {
    let mut reqs: Vec<LabelRequirement> = Vec::new();
    let Some(src) = sources else {
        return LabelSelector::everything();
    };
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod_labels(pod);
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for svc in src.services.state() {
        if svc.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let Some(sel) = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            merged.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if let Some(o) = owner {
        match (o.api_version.as_str(), o.kind.as_str()) {
            ("v1", "ReplicationController") => {
                if let Some(rc) = src
                    .replication_controllers
                    .get(&ObjectRef::new(&o.name).within(&ns))
                    && let Some(sel) = rc.spec.as_ref().and_then(|s| s.selector.as_ref())
                {
                    merged.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            ("apps/v1", "ReplicaSet") => {
                if let Some(rs) = src.replica_sets.get(&ObjectRef::new(&o.name).within(&ns))
                    && let Ok(LabelSelector::Requirements(r)) =
                        LabelSelector::parse(Some(&rs.spec.selector))
                {
                    reqs.extend(r);
                }
            }
            ("apps/v1", "StatefulSet") => {
                if let Some(ss) = src.stateful_sets.get(&ObjectRef::new(&o.name).within(&ns))
                    && let Ok(LabelSelector::Requirements(r)) =
                        LabelSelector::parse(Some(&ss.spec.selector))
                {
                    reqs.extend(r);
                }
            }
            _ => {}
        }
    }
    let mut all: Vec<LabelRequirement> = merged
        .into_iter()
        .map(|(k, v)| LabelRequirement {
            key: k,
            operator: LabelOperator::In([v].into()),
        })
        .collect();
    all.extend(reqs);
    LabelSelector::Requirements(all)
}
