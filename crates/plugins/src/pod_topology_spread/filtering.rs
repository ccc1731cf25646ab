//! PreFilter (counts per domain over all nodes), Filter (skew), and the AddPod/RemovePod
//! extensions that keep the counts right in preemption dry runs and with nominated pods.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, Status,
};

use super::{
    DO_NOT_SCHEDULE, ERR_REASON_CONSTRAINTS_NOT_MATCH, ERR_REASON_NODE_LABEL_NOT_MATCH, Inner,
    PodTopologySpread,
    common::{Constraint, count_matching, node_has_all_keys},
};
use crate::helper::{RequiredNodeAffinity, node_labels, par_map, pod_labels, pod_namespace};

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";

/// Per DoNotSchedule constraint: matching pods per domain and the smallest count.
#[derive(Debug, Clone)]
pub(super) struct PreFilterState {
    constraints: Arc<Vec<Constraint>>,
    required: Arc<RequiredNodeAffinity>,
    /// Per constraint: domain value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count over the domains (`i32::MAX` with no domain).
    min: Vec<i64>,
}

impl PreFilterState {
    fn min_match(&self, i: usize, c: &Constraint) -> i64 {
        // Fewer domains than minDomains: the global minimum is taken as 0.
        if self.counts.get(i).is_none_or(|m| m.len() < c.min_domains) {
            0
        } else {
            self.min.get(i).copied().unwrap_or(0)
        }
    }

    fn update(&mut self, changed: &Pod, preemptor: &Pod, node: &Node, delta: i64) {
        if pod_namespace(changed) != pod_namespace(preemptor)
            || !node_has_all_keys(node, &self.constraints)
        {
            return;
        }
        let labels = pod_labels(changed);
        let constraints = self.constraints.clone();
        for (i, c) in constraints.iter().enumerate() {
            if !c.selector.matches(labels) || !c.includes(preemptor, node, &self.required) {
                continue;
            }
            let Some(v) = node_labels(node).get(&c.topology_key) else {
                continue;
            };
            let (Some(counts), Some(min)) = (self.counts.get_mut(i), self.min.get_mut(i)) else {
                continue;
            };
            let entry = counts.entry(v.clone()).or_insert(0);
            let old = *entry;
            *entry += delta;
            let cur = *entry;
            if cur < *min {
                *min = cur;
            } else if old == *min {
                *min = counts
                    .values()
                    .copied()
                    .min()
                    .unwrap_or(i64::from(i32::MAX));
            }
        }
    }
}

impl Inner {
    fn pre_filter_state(
        &self,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Option<PreFilterState>, String> {
        let constraints = self.constraints(pod, DO_NOT_SCHEDULE)?;
        if constraints.is_empty() {
            return Ok(None);
        }
        let required = RequiredNodeAffinity::of_pod(pod);
        let ns = pod_namespace(pod);
        let per_node = par_map(&self.handle, nodes, |ni| {
            let Some(node) = ni.node() else {
                return Vec::new();
            };
            if !node_has_all_keys(node, &constraints) {
                return Vec::new();
            }
            let labels = node_labels(node);
            constraints
                .iter()
                .enumerate()
                .filter(|(_, c)| c.includes(pod, node, &required))
                .filter_map(|(i, c)| {
                    let v = labels.get(&c.topology_key)?;
                    Some((i, v.clone(), count_matching(ni.pods(), &c.selector, ns)))
                })
                .collect::<Vec<_>>()
        });
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for (i, v, n) in per_node.into_iter().flatten() {
            if let Some(m) = counts.get_mut(i) {
                *m.entry(v).or_insert(0) += n;
            }
        }
        let min = counts
            .iter()
            .map(|m| m.values().copied().min().unwrap_or(i64::from(i32::MAX)))
            .collect();
        Ok(Some(PreFilterState {
            constraints: Arc::new(constraints),
            required: Arc::new(required),
            counts,
            min,
        }))
    }
}

#[async_trait]
impl PreFilterPlugin for PodTopologySpread {
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        match self.inner.pre_filter_state(pod, nodes) {
            Ok(Some(s)) => {
                state.write(PRE_FILTER_KEY, s);
                (None, Status::success())
            }
            Ok(None) => (None, Status::skip()),
            Err(e) => (None, Status::unresolvable(e)),
        }
    }

    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for PodTopologySpread {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        update(state, pod, added, node, 1)
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        update(state, pod, removed, node, -1)
    }
}

fn update(
    state: &mut CycleState,
    pod: &Pod,
    changed: &PodInfo,
    node: &NodeInfo,
    delta: i64,
) -> Status {
    let Ok(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
        return Status::error(format!(
            "reading {PRE_FILTER_KEY:?} from the cycle state: not found"
        ));
    };
    if let Some(n) = node.node() {
        s.update(changed.pod(), pod, n, delta);
    }
    Status::success()
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => filter_with(s, pod, node),
            Err(e) => Status::error(e),
        }
    }

    /// [`FilterPlugin::filter`] with the PreFilter state read once for the chunk.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => crate::helper::filter_each(nodes, rejected, |n| filter_with(s, pod, n)),
            Err(e) => {
                let s = Status::error(e);
                crate::helper::filter_each(nodes, rejected, |_| s.clone());
            }
        }
    }
}

/// Filter of one node with the PreFilter state at hand.
fn filter_with(s: &PreFilterState, pod: &Pod, node: &NodeInfo) -> Status {
    let Some(n) = node.node() else {
        return Status::unresolvable("node not found");
    };
    let labels = node_labels(n);
    let own = pod_labels(pod);
    for (i, c) in s.constraints.iter().enumerate() {
        let Some(value) = labels.get(&c.topology_key) else {
            return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
        };
        let self_match = i64::from(c.selector.matches(own));
        let matched = s
            .counts
            .get(i)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0);
        if matched + self_match - s.min_match(i, c) > c.max_skew {
            return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
        }
    }
    Status::success()
}
