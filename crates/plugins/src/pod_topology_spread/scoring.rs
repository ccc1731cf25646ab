//! PreScore (counts per domain over all nodes, for the feasible nodes' domains), Score and
//! NormalizeScore: fewer matching pods in a node's domains is better.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, PreScorePlugin, ScorePlugin, Status,
};

use super::{
    PodTopologySpread, SCHEDULE_ANYWAY,
    common::{Constraint, LABEL_HOSTNAME, count_matching, node_has_all_keys},
};
use crate::helper::{RequiredNodeAffinity, node_labels, par_map, pod_namespace};

const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

#[derive(Debug, Clone)]
struct PreScoreState {
    constraints: Arc<Vec<Constraint>>,
    /// Feasible nodes missing a topology key: they score 0.
    ignored: Arc<HashSet<String>>,
    /// Per constraint: domain value → matching pods (hostname domains are counted in Score).
    counts: Arc<Vec<HashMap<String, i64>>>,
    /// Per constraint: `ln(domains + 2)`, so that counts in small topologies weigh more.
    weights: Arc<Vec<f64>>,
}

#[async_trait]
impl PreScorePlugin for PodTopologySpread {
    async fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        filtered: &[Arc<NodeInfo>],
    ) -> Status {
        let inner = &self.inner;
        let snapshot = inner.handle.snapshot();
        let all = snapshot.list();
        if all.is_empty() {
            return Status::skip();
        }
        let constraints = match inner.constraints(pod, SCHEDULE_ANYWAY) {
            Ok(c) => c,
            Err(e) => {
                return Status::error(format!(
                    "obtaining pod's soft topology spread constraints: {e}"
                ));
            }
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        // Only the built-in defaults let nodes without a zone label keep hostname spreading.
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = own || !inner.system_defaulted;
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for ni in filtered {
            let Some(node) = ni.node() else { continue };
            if require_all && !node_has_all_keys(node, &constraints) {
                ignored.insert(ni.node_name().to_owned());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let v = node_labels(node)
                    .get(&c.topology_key)
                    .cloned()
                    .unwrap_or_default();
                if let Some(m) = counts.get_mut(i) {
                    m.entry(v).or_insert(0);
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let weights: Vec<f64> = constraints
            .iter()
            .zip(&counts)
            .map(|(c, m)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    filtered.len() - ignored.len()
                } else {
                    m.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let required = RequiredNodeAffinity::of_pod(pod);
        let ns = pod_namespace(pod);
        let keys: Vec<HashSet<&String>> = counts.iter().map(|m| m.keys().collect()).collect();
        let per_node = par_map(&inner.handle, all, |ni| {
            let Some(node) = ni.node() else {
                return Vec::new();
            };
            if require_all && !node_has_all_keys(node, &constraints) {
                return Vec::new();
            }
            let labels = node_labels(node);
            let mut out = Vec::new();
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(pod, node, &required) {
                    continue;
                }
                let v = labels.get(&c.topology_key).cloned().unwrap_or_default();
                // Only domains of feasible nodes matter; hostname domains are counted in Score.
                if keys.get(i).is_some_and(|k| k.contains(&v)) {
                    out.push((i, v, count_matching(ni.pods(), &c.selector, ns)));
                }
            }
            out
        });
        for (i, v, n) in per_node.into_iter().flatten() {
            if let Some(e) = counts.get_mut(i).and_then(|m| m.get_mut(&v)) {
                *e += n;
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints: Arc::new(constraints),
                ignored: Arc::new(ignored),
                counts: Arc::new(counts),
                weights: Arc::new(weights),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .map_err(Status::error)?;
        let Some(n) = node.node() else { return Ok(0) };
        if s.ignored.contains(node.node_name()) {
            return Ok(0);
        }
        let labels = node_labels(n);
        let mut score = 0.0f64;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node.pods(), &c.selector, pod_namespace(pod))
            } else {
                s.counts.get(i).and_then(|m| m.get(v)).copied().unwrap_or(0)
            };
            let w = s.weights.get(i).copied().unwrap_or(1.0);
            // maxSkew − 1 waters down differences the skew tolerates.
            #[allow(clippy::cast_precision_loss)]
            let add = count as f64 * w + (c.max_skew - 1) as f64;
            score += add;
        }
        #[allow(clippy::cast_possible_truncation)]
        let rounded = score.round() as i64;
        Ok(rounded)
    }

    fn normalize_score(&self, state: &CycleState, _: &Pod, scores: &mut [NodeScore]) -> Status {
        let Ok(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::success();
        };
        let valid = |n: &NodeScore| !s.ignored.contains(&n.name);
        let min = scores
            .iter()
            .filter(|n| valid(n))
            .map(|n| n.score)
            .min()
            .unwrap_or(0);
        let max = scores
            .iter()
            .filter(|n| valid(n))
            .map(|n| n.score)
            .max()
            .unwrap_or(0)
            .max(0);
        for n in scores.iter_mut() {
            n.score = if !valid(n) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
            };
        }
        Status::success()
    }
}
