//! PreScore (a score per topology pair), Score and NormalizeScore (min–max to [0, 100]).

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    AffinityTerm, CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PreScorePlugin,
    ScorePlugin, Status, WeightedAffinityTerm,
};

use super::{InterPodAffinity, TopologyCounts, uses_namespace_selector};
use crate::helper::{node_labels, par_map};

const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

#[derive(Debug, Clone)]
struct PreScoreState {
    scores: Arc<TopologyCounts>,
}

struct Incoming<'a> {
    pod: &'a Pod,
    affinity: Vec<WeightedAffinityTerm>,
    anti_affinity: Vec<WeightedAffinityTerm>,
    namespace_labels: Option<BTreeMap<String, String>>,
}

fn add_if(
    scores: &mut TopologyCounts,
    term: &AffinityTerm,
    weight: i64,
    pod: &Pod,
    ns: Option<&BTreeMap<String, String>>,
    node: &Node,
) {
    if term.matches(pod, ns) {
        scores.add(node, &term.topology_key, weight);
    }
}

impl InterPodAffinity {
    fn process_existing(
        &self,
        inc: &Incoming<'_>,
        existing: &PodInfo,
        node: &Node,
        scores: &mut TopologyCounts,
    ) {
        if node_labels(node).is_empty() {
            return;
        }
        for t in &inc.affinity {
            add_if(
                scores,
                &t.term,
                i64::from(t.weight),
                existing.pod(),
                None,
                node,
            );
        }
        for t in &inc.anti_affinity {
            add_if(
                scores,
                &t.term,
                -i64::from(t.weight),
                existing.pod(),
                None,
                node,
            );
        }
        let ns = inc.namespace_labels.as_ref();
        if self.args.hard_pod_affinity_weight > 0 {
            for t in existing.required_affinity_terms() {
                add_if(
                    scores,
                    t,
                    i64::from(self.args.hard_pod_affinity_weight),
                    inc.pod,
                    ns,
                    node,
                );
            }
        }
        for t in existing.preferred_affinity_terms() {
            add_if(scores, &t.term, i64::from(t.weight), inc.pod, ns, node);
        }
        for t in existing.preferred_anti_affinity_terms() {
            add_if(scores, &t.term, -i64::from(t.weight), inc.pod, ns, node);
        }
    }
}

#[async_trait]
impl PreScorePlugin for InterPodAffinity {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let has_preferred = affinity.is_some_and(|a| {
            a.pod_affinity
                .as_ref()
                .and_then(|p| {
                    p.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .is_some_and(|t| !t.is_empty())
                || a.pod_anti_affinity
                    .as_ref()
                    .and_then(|p| {
                        p.preferred_during_scheduling_ignored_during_execution
                            .as_ref()
                    })
                    .is_some_and(|t| !t.is_empty())
        });
        if self.args.ignore_preferred_terms_of_existing_pods && !has_preferred {
            return Status::skip();
        }
        let snapshot = self.handle.snapshot();
        // Without preferred terms of its own, only pods with (anti-)affinity can score.
        let nodes = if has_preferred {
            snapshot.list()
        } else {
            snapshot.have_pods_with_affinity_list()
        };
        if nodes.is_empty() {
            return Status::skip();
        }
        let info = PodInfo::new(Arc::new(pod.clone()));
        let mut aff = info.preferred_affinity_terms().to_vec();
        let mut anti = info.preferred_anti_affinity_terms().to_vec();
        for terms in [&mut aff, &mut anti] {
            let mut plain: Vec<AffinityTerm> = terms.iter().map(|t| t.term.clone()).collect();
            if let Err(e) = self.merge_namespaces(&mut plain).await {
                return Status::error(e);
            }
            for (t, p) in terms.iter_mut().zip(plain) {
                t.term = p;
            }
        }
        let needs_ns_labels = nodes.iter().any(|n| {
            n.pods_with_affinity().iter().any(|p| {
                p.required_affinity_terms()
                    .iter()
                    .any(uses_namespace_selector)
                    || p.preferred_affinity_terms()
                        .iter()
                        .any(|t| uses_namespace_selector(&t.term))
                    || p.preferred_anti_affinity_terms()
                        .iter()
                        .any(|t| uses_namespace_selector(&t.term))
            })
        });
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let namespace_labels = self.namespace_labels(&ns, needs_ns_labels).await;
        let inc = Incoming {
            pod,
            affinity: aff,
            anti_affinity: anti,
            namespace_labels,
        };
        let per_node = par_map(&self.handle, nodes, |ni| {
            let mut scores = TopologyCounts::default();
            let Some(node) = ni.node() else { return scores };
            let pods = if has_preferred {
                ni.pods()
            } else {
                ni.pods_with_affinity()
            };
            for p in pods {
                self.process_existing(&inc, p, node, &mut scores);
            }
            scores
        });
        let mut scores = TopologyCounts::default();
        per_node.into_iter().for_each(|s| scores.merge(s));
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                scores: Arc::new(scores),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .map_err(Status::error)?;
        let Some(n) = node.node() else { return Ok(0) };
        let labels = node_labels(n);
        Ok(s.scores
            .0
            .iter()
            .filter_map(|(k, values)| labels.get(k).and_then(|v| values.get(v)))
            .sum())
    }

    fn normalize_score(&self, state: &CycleState, _: &Pod, scores: &mut [NodeScore]) -> Status {
        let Ok(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::success();
        };
        if s.scores.is_empty() {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for n in scores.iter_mut() {
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let v = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((n.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
            n.score = v;
        }
        Status::success()
    }
}
