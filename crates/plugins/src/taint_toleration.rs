//! `TaintToleration`: Filter rejects nodes with a NoSchedule/NoExecute taint the pod does not
//! tolerate; Score prefers nodes with fewer untolerated PreferNoSchedule taints (weight 3).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PluginArgs, PluginError,
    PreScorePlugin, QueueingHint, ScorePlugin, Status,
};

use crate::{
    helper::{
        default_normalize_score, do_not_schedule_taint, find_untolerated_taint, same_pod,
        tolerates_taint,
    },
    names,
};

/// Upstream's Filter reason (it does not name the taint, so the message does not leak it).
pub const ERR_REASON: &str = "node(s) had untolerated taint(s)";

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// Upstream's TaintToleration plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaintToleration;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(TaintToleration))
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The raw score: how many PreferNoSchedule taints of the node `tolerations` do not tolerate.
fn untolerated_prefer_no_schedule(node: &NodeInfo, tolerations: &[Toleration]) -> i64 {
    // The usual untainted node: decided without reading the `Node` (a cache miss).
    let Some(n) = node.node().filter(|_| node.has_taints()) else {
        return 0;
    };
    let count = taints(n)
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|t| tolerates_taint(t, taint)))
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The pod's tolerations that can tolerate PreferNoSchedule taints (that effect, or none).
#[derive(Debug, Clone)]
struct PreScoreState {
    tolerations: Arc<Vec<Toleration>>,
}

impl Plugin for TaintToleration {
    fn name(&self) -> &str {
        names::TAINT_TOLERATION
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

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let Some(n) = node.node() else {
            return Status::unresolvable("node not found");
        };
        // The usual untainted node: decided without reading the `Node` (a cache miss).
        if !node.has_taints() {
            return Status::success();
        }
        match find_untolerated_taint(taints(n), tolerations(pod), do_not_schedule_taint) {
            Some(_) => Status::unresolvable(ERR_REASON),
            None => Status::success(),
        }
    }
}

#[async_trait]
impl PreScorePlugin for TaintToleration {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        let tolerations = tolerations(pod)
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("" | "PreferNoSchedule")))
            .cloned()
            .collect();
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                tolerations: Arc::new(tolerations),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .map_err(Status::error)?;
        Ok(untolerated_prefer_no_schedule(node, &s.tolerations))
    }

    /// [`ScorePlugin::score`] with the PreScore state read once for the chunk.
    fn score_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .map_err(|e| (0, Status::error(e)))?;
        for (node, out) in nodes.iter().zip(scores) {
            *out = untolerated_prefer_no_schedule(node, &s.tolerations);
        }
        Ok(())
    }

    fn normalize_score(&self, _: &CycleState, _: &Pod, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

impl EnqueueExtensions for TaintToleration {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Node,
                    ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
                ),
                |pod, old, new| {
                    let Some(new) = new.and_then(|n| n.as_node()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let fits = |n: &Node| {
                        find_untolerated_taint(taints(n), tolerations(pod), do_not_schedule_taint)
                            .is_none()
                    };
                    let was_ok = old.and_then(|o| o.as_node()).is_some_and(fits);
                    Ok(if fits(new) && !was_ok {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::UnschedulablePod,
                    ActionType::UPDATE_POD_TOLERATION,
                ),
                |pod, _, new| {
                    let same = new
                        .and_then(|n| n.as_pod())
                        .is_some_and(|n| same_pod(pod, n));
                    Ok(if same {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    #[test]
    fn filter_taint_effects_and_operators() {
        let state = CycleState::new();
        let cases: Vec<(&str, NodeBuilder, PodBuilder, bool)> = vec![
            (
                "no taints",
                NodeBuilder::new("n"),
                PodBuilder::new("p"),
                true,
            ),
            (
                "NoSchedule untolerated",
                NodeBuilder::new("n").taint("k", "v", "NoSchedule"),
                PodBuilder::new("p"),
                false,
            ),
            (
                "NoExecute untolerated",
                NodeBuilder::new("n").taint("k", "v", "NoExecute"),
                PodBuilder::new("p"),
                false,
            ),
            (
                "PreferNoSchedule is not filtered",
                NodeBuilder::new("n").taint("k", "v", "PreferNoSchedule"),
                PodBuilder::new("p"),
                true,
            ),
            (
                "Equal with the same value",
                NodeBuilder::new("n").taint("k", "v", "NoSchedule"),
                PodBuilder::new("p").toleration("k", "Equal", "v", "NoSchedule"),
                true,
            ),
            (
                "Equal with another value",
                NodeBuilder::new("n").taint("k", "v", "NoSchedule"),
                PodBuilder::new("p").toleration("k", "Equal", "w", "NoSchedule"),
                false,
            ),
            (
                "Exists any value",
                NodeBuilder::new("n").taint("k", "v", "NoExecute"),
                PodBuilder::new("p").toleration("k", "Exists", "", ""),
                true,
            ),
            (
                "effect must match",
                NodeBuilder::new("n").taint("k", "v", "NoExecute"),
                PodBuilder::new("p").toleration("k", "Exists", "", "NoSchedule"),
                false,
            ),
            (
                "empty key with Exists tolerates everything",
                NodeBuilder::new("n")
                    .taint("a", "1", "NoSchedule")
                    .taint("b", "2", "NoExecute"),
                PodBuilder::new("p").toleration("", "Exists", "", ""),
                true,
            ),
            (
                "one of two taints tolerated",
                NodeBuilder::new("n")
                    .taint("a", "1", "NoSchedule")
                    .taint("b", "2", "NoSchedule"),
                PodBuilder::new("p").toleration("a", "Exists", "", ""),
                false,
            ),
        ];
        for (name, node, pod, fits) in cases {
            let s = TaintToleration.filter(&state, &pod.pod(), &node.info());
            assert_eq!(s.is_success(), fits, "{name}: {s}");
            if !fits {
                assert_eq!(s.code(), Code::UnschedulableAndUnresolvable, "{name}");
                assert_eq!(s.message(), ERR_REASON);
            }
        }
    }

    #[tokio::test]
    async fn score_counts_prefer_no_schedule() {
        let nodes = [
            NodeBuilder::new("clean").info(),
            NodeBuilder::new("one")
                .taint("a", "1", "PreferNoSchedule")
                .info(),
            NodeBuilder::new("two")
                .taint("a", "1", "PreferNoSchedule")
                .taint("b", "2", "PreferNoSchedule")
                .info(),
            NodeBuilder::new("tolerated")
                .taint("c", "3", "PreferNoSchedule")
                .info(),
            NodeBuilder::new("noschedule")
                .taint("d", "4", "NoSchedule")
                .info(),
        ];
        let pod = PodBuilder::new("p")
            .toleration("c", "Equal", "3", "PreferNoSchedule")
            .pod();
        let mut state = CycleState::new();
        assert!(
            TaintToleration
                .pre_score(&mut state, &pod, &[])
                .await
                .is_success()
        );
        let mut scores: Vec<NodeScore> = nodes
            .iter()
            .map(|n| NodeScore {
                name: n.node_name().into(),
                score: TaintToleration.score(&state, &pod, n).unwrap(),
            })
            .collect();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [0, 1, 2, 0, 0]
        );
        TaintToleration.normalize_score(&state, &pod, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 50, 0, 100, 100]
        );
    }
}
