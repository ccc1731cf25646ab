//! PreFilter (topology counts), Filter, and the AddPod/RemovePod extensions.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    AffinityTerm, CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterExtensions,
    PreFilterPlugin, PreFilterResult, Status,
};

use super::{
    ERR_REASON_AFFINITY, ERR_REASON_ANTI_AFFINITY, ERR_REASON_EXISTING_ANTI_AFFINITY,
    InterPodAffinity, TopologyCounts, matches_all, uses_namespace_selector,
};
use crate::helper::{node_labels, par_map};

const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";

/// The incoming pod with its required terms (namespace selectors resolved).
#[derive(Debug)]
pub(super) struct Incoming {
    pod: Arc<Pod>,
    affinity: Vec<AffinityTerm>,
    anti_affinity: Vec<AffinityTerm>,
    /// Labels of the pod's namespace, when existing pods' terms select namespaces by label.
    namespace_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
pub(super) struct PreFilterState {
    /// Existing pods whose required anti-affinity terms match the incoming pod, per pair.
    existing_anti_affinity: TopologyCounts,
    /// Existing pods matching all the incoming pod's required affinity terms, per pair.
    affinity: TopologyCounts,
    /// Existing pods matching the incoming pod's required anti-affinity terms, per pair.
    anti_affinity: TopologyCounts,
    incoming: Arc<Incoming>,
}

impl PreFilterState {
    fn update(&mut self, changed: &PodInfo, node: &Node, delta: i64) {
        let inc = &self.incoming;
        for t in changed.required_anti_affinity_terms() {
            if t.matches(&inc.pod, inc.namespace_labels.as_ref()) {
                self.existing_anti_affinity
                    .add(node, &t.topology_key, delta);
            }
        }
        if matches_all(&inc.affinity, changed.pod()) {
            for t in &inc.affinity {
                self.affinity.add(node, &t.topology_key, delta);
            }
        }
        for t in &inc.anti_affinity {
            if t.matches(changed.pod(), None) {
                self.anti_affinity.add(node, &t.topology_key, delta);
            }
        }
    }
}

fn has_pod_affinity(pod: &Pod) -> bool {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    a.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

#[async_trait]
impl PreFilterPlugin for InterPodAffinity {
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let snapshot = self.handle.snapshot();
        let with_anti = snapshot.have_pods_with_required_anti_affinity_list();
        if with_anti.is_empty() && !has_pod_affinity(pod) {
            return (None, Status::skip());
        }
        let info = PodInfo::new(Arc::new(pod.clone()));
        if let Some(e) = info
            .parse_errors()
            .iter()
            .find(|e| matches!(e, ksched_framework::PodInfoError::Affinity { .. }))
        {
            return (None, Status::unresolvable(format!("parsing pod: {e}")));
        }
        let mut affinity = info.required_affinity_terms().to_vec();
        let mut anti_affinity = info.required_anti_affinity_terms().to_vec();
        if let Err(e) = self.merge_namespaces(&mut affinity).await {
            return (None, Status::error(e));
        }
        if let Err(e) = self.merge_namespaces(&mut anti_affinity).await {
            return (None, Status::error(e));
        }
        let needs_ns_labels = with_anti.iter().any(|n| {
            n.pods_with_required_anti_affinity().iter().any(|p| {
                p.required_anti_affinity_terms()
                    .iter()
                    .any(uses_namespace_selector)
            })
        });
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let namespace_labels = self.namespace_labels(&ns, needs_ns_labels).await;
        let incoming = Arc::new(Incoming {
            pod: info.pod().clone(),
            affinity,
            anti_affinity,
            namespace_labels,
        });

        let existing = par_map(&self.handle, with_anti, |ni| {
            let mut c = TopologyCounts::default();
            let Some(node) = ni.node() else { return c };
            for p in ni.pods_with_required_anti_affinity() {
                for t in p.required_anti_affinity_terms() {
                    if t.matches(&incoming.pod, incoming.namespace_labels.as_ref()) {
                        c.add(node, &t.topology_key, 1);
                    }
                }
            }
            c
        });
        let mut existing_anti_affinity = TopologyCounts::default();
        existing
            .into_iter()
            .for_each(|c| existing_anti_affinity.merge(c));

        let (mut aff, mut anti) = (TopologyCounts::default(), TopologyCounts::default());
        if !incoming.affinity.is_empty() || !incoming.anti_affinity.is_empty() {
            let per_node = par_map(&self.handle, nodes, |ni| {
                let (mut a, mut b) = (TopologyCounts::default(), TopologyCounts::default());
                let Some(node) = ni.node() else { return (a, b) };
                for p in ni.pods() {
                    if matches_all(&incoming.affinity, p.pod()) {
                        for t in &incoming.affinity {
                            a.add(node, &t.topology_key, 1);
                        }
                    }
                    for t in &incoming.anti_affinity {
                        if t.matches(p.pod(), None) {
                            b.add(node, &t.topology_key, 1);
                        }
                    }
                }
                (a, b)
            });
            for (a, b) in per_node {
                aff.merge(a);
                anti.merge(b);
            }
        }
        if existing_anti_affinity.is_empty()
            && incoming.affinity.is_empty()
            && incoming.anti_affinity.is_empty()
        {
            return (None, Status::skip());
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                existing_anti_affinity,
                affinity: aff,
                anti_affinity: anti,
                incoming,
            },
        );
        (None, Status::success())
    }

    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for InterPodAffinity {
    fn add_pod(&self, state: &mut CycleState, _: &Pod, added: &PodInfo, node: &NodeInfo) -> Status {
        update(state, added, node, 1)
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &Pod,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        update(state, removed, node, -1)
    }
}

fn update(state: &mut CycleState, changed: &PodInfo, node: &NodeInfo, delta: i64) -> Status {
    let Ok(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
        return Status::error(format!(
            "reading {PRE_FILTER_KEY:?} from the cycle state: not found"
        ));
    };
    if let Some(n) = node.node() {
        s.update(changed, n, delta);
    }
    Status::success()
}

/// The node is in a domain with pods matching all required affinity terms — or no pod in the
/// cluster matches and the pod matches its own terms (the first pod of a group).
fn satisfies_affinity(s: &PreFilterState, node: &Node) -> bool {
    let labels = node_labels(node);
    let mut pods_exist = true;
    for t in &s.incoming.affinity {
        let Some(v) = labels.get(&t.topology_key) else {
            return false;
        };
        if s.affinity.get(&t.topology_key, v) <= 0 {
            pods_exist = false;
        }
    }
    pods_exist || (s.affinity.is_empty() && matches_all(&s.incoming.affinity, &s.incoming.pod))
}

fn satisfies_anti_affinity(s: &PreFilterState, node: &Node) -> bool {
    let labels = node_labels(node);
    !s.incoming.anti_affinity.iter().any(|t| {
        labels
            .get(&t.topology_key)
            .is_some_and(|v| s.anti_affinity.get(&t.topology_key, v) > 0)
    })
}

fn satisfies_existing_anti_affinity(s: &PreFilterState, node: &Node) -> bool {
    s.existing_anti_affinity.is_empty()
        || !node_labels(node)
            .iter()
            .any(|(k, v)| s.existing_anti_affinity.get(k, v) > 0)
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _: &Pod, node: &NodeInfo) -> Status {
        match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => filter_with(s, node),
            Err(e) => Status::error(e),
        }
    }

    /// [`FilterPlugin::filter`] with the PreFilter state read once for the chunk.
    fn filter_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => crate::helper::filter_each(nodes, rejected, |n| filter_with(s, n)),
            Err(e) => {
                let s = Status::error(e);
                crate::helper::filter_each(nodes, rejected, |_| s.clone());
            }
        }
    }
}

/// Filter of one node with the PreFilter state at hand.
fn filter_with(s: &PreFilterState, node: &NodeInfo) -> Status {
    let Some(n) = node.node() else {
        return Status::unresolvable("node not found");
    };
    if !satisfies_affinity(s, n) {
        return Status::unresolvable(ERR_REASON_AFFINITY);
    }
    if !satisfies_anti_affinity(s, n) {
        return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
    }
    if !satisfies_existing_anti_affinity(s, n) {
        return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
    }
    Status::success()
}
