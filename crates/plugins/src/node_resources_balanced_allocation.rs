//! `NodeResourcesBalancedAllocation`: prefers nodes whose CPU and memory (by default)
//! utilization stay close to each other once the pod is placed (weight 1).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    CycleState, Handle, NodeInfo, Plugin, PluginArgs, PluginError, PreScorePlugin, ScorePlugin,
    Status,
};
use serde::Deserialize;

use crate::{
    names,
    node_resources_fit::validate_resources,
    resource_allocation::{ResourceScorer, ResourceSpec, Strategy, default_resources},
};

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// `NodeResourcesBalancedAllocationArgs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResourcesBalancedAllocationArgs {
    /// Resources to balance (CPU and memory when empty).
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
}

/// Upstream's NodeResourcesBalancedAllocation Score plugin.
#[derive(Debug, Clone)]
pub struct BalancedAllocation {
    scorer: ResourceScorer,
}

/// Factory.
///
/// # Errors
/// Args that do not decode, or weights outside [1, 100].
pub fn new(args: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: NodeResourcesBalancedAllocationArgs = args.decode()?;
    let resources = if args.resources.is_empty() {
        default_resources()
    } else {
        args.resources
    };
    validate_resources(&resources, "resources")?;
    Ok(Arc::new(BalancedAllocation {
        scorer: ResourceScorer::new(resources, true, Strategy::Balanced),
    }))
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &str {
        names::NODE_RESOURCES_BALANCED_ALLOCATION
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

#[async_trait]
impl PreScorePlugin for BalancedAllocation {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        let requests = self
            .scorer
            .pod_requests(&crate::helper::cached_pod_resource(state, pod).0);
        // Best-effort pods are not balanced: otherwise they would all pile onto one node
        // (kubernetes/kubernetes#129138).
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, Arc::new(requests));
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    /// Scores are already in [0, 100]; no NormalizeScore (upstream: no ScoreExtensions).
    fn has_normalize_score(&self) -> bool {
        false
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let requests = self.scorer.requests_in(state, PRE_SCORE_KEY, pod);
        // Without PreScore (which skips them), best-effort pods score 0 here.
        Ok(if requests.iter().all(|v| *v == 0) {
            0
        } else {
            self.scorer.score(node, &requests)
        })
    }

    /// [`ScorePlugin::score`] with the PreScore state read once for the chunk.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        let requests = self.scorer.requests_in(state, PRE_SCORE_KEY, pod);
        if requests.iter().all(|v| *v == 0) {
            scores.fill(0);
        } else {
            self.scorer.score_all(nodes, &requests, scores);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    #[tokio::test]
    async fn prefers_balance_and_skips_best_effort() {
        let pl = new(&PluginArgs::none(), &Arc::new(Handle::for_tests("t"))).unwrap();
        let pl = pl.as_score().unwrap();
        let pre = BalancedAllocation {
            scorer: ResourceScorer::new(default_resources(), true, Strategy::Balanced),
        };
        let mut state = CycleState::new();
        assert!(
            pre.pre_score(&mut state, &PodBuilder::new("be").pod(), &[])
                .await
                .is_skip()
        );
        // A memory-heavy pod evens out a CPU-heavy node but skews an empty one.
        let pod = PodBuilder::new("p")
            .req("cpu", "100m")
            .req("memory", "2Gi")
            .pod();
        assert!(pre.pre_score(&mut state, &pod, &[]).await.is_success());
        let empty = NodeBuilder::new("a").info();
        let cpu_heavy = NodeBuilder::new("b")
            .pod(PodBuilder::new("x").req("cpu", "2").req("memory", "1"))
            .info();
        // Empty: 100 before, |0.025 − 0.25| / 2 → 88 after: 50 + (50 + 88 − 100) / 2 = 69.
        assert_eq!(pl.score(&state, &pod, &empty).unwrap(), 69);
        // CPU-heavy: 75 before, |0.525 − 0.25| / 2 → 86 after: 50 + (50 + 86 − 75) / 2 = 80.
        assert_eq!(pl.score(&state, &pod, &cpu_heavy).unwrap(), 80);
    }
}
