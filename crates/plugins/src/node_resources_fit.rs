//! `NodeResourcesFit`: the pod's requests must fit the node's free allocatable (Filter), and
//! nodes are ranked by a scoring strategy (weight 1): LeastAllocated (default), MostAllocated
//! or RequestedToCapacityRatio.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, NodeInfo, Plugin, PluginArgs, PluginError, PodResource, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, QueueingHint, Resource, ScorePlugin, Status,
};
use serde::Deserialize;

use crate::{
    helper::same_pod,
    names,
    resource_allocation::{ResourceScorer, ResourceSpec, Strategy, default_resources},
};

const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";
/// Upstream's `MaxCustomPriorityScore`: shape scores are 0–10, scaled to 0–100.
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// `NodeResourcesFitArgs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResourcesFitArgs {
    /// Extended resources Filter does not check.
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (the part before `/`) Filter does not check.
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    /// How nodes are scored (LeastAllocated on CPU and memory by default).
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
}

/// `ScoringStrategy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoringStrategy {
    /// `LeastAllocated`, `MostAllocated` or `RequestedToCapacityRatio`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Resources and weights (CPU and memory, weight 1, when empty).
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    /// The shape for `RequestedToCapacityRatio`.
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

/// `RequestedToCapacityRatioParam`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedToCapacityRatioParam {
    /// Points of the scoring function.
    #[serde(default)]
    pub shape: Vec<UtilizationShapePoint>,
}

/// `UtilizationShapePoint`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UtilizationShapePoint {
    /// Utilization, 0–100, strictly increasing along the shape.
    pub utilization: i32,
    /// Score at that utilization, 0–10.
    pub score: i32,
}

/// Upstream's NodeResourcesFit plugin.
#[derive(Debug, Clone)]
pub struct NodeResourcesFit {
    ignored_resources: BTreeSet<String>,
    ignored_resource_groups: BTreeSet<String>,
    scorer: ResourceScorer,
}

/// Factory.
///
/// # Errors
/// Args that do not decode or fail upstream's validation.
pub fn new(args: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(NodeResourcesFit::from_args(args.decode()?)?))
}

/// Checks resource weights as upstream (1–100 after defaulting 0 to 1).
pub(crate) fn validate_resources(
    resources: &[ResourceSpec],
    path: &str,
) -> Result<(), PluginError> {
    for (i, r) in resources.iter().enumerate() {
        if !(0..=100).contains(&r.weight) {
            return Err(PluginError::invalid_arg(
                format!("{path}[{i}].weight"),
                format!(
                    "resource weight of {} not in valid range [1, 100]",
                    r.weight
                ),
            ));
        }
    }
    Ok(())
}

impl NodeResourcesFit {
    /// The plugin for `args`, with upstream's defaults and validation.
    ///
    /// # Errors
    /// An unknown strategy, a weight outside [1, 100], a bad shape, a group containing `/`.
    pub fn from_args(args: NodeResourcesFitArgs) -> Result<Self, PluginError> {
        for (i, g) in args.ignored_resource_groups.iter().enumerate() {
            if g.contains('/') {
                return Err(PluginError::invalid_arg(
                    format!("ignoredResourceGroups[{i}]"),
                    "resource group name can't contain '/'",
                ));
            }
        }
        let strategy = args.scoring_strategy.unwrap_or_else(|| ScoringStrategy {
            kind: "LeastAllocated".into(),
            ..ScoringStrategy::default()
        });
        let resources = if strategy.resources.is_empty() {
            default_resources()
        } else {
            strategy.resources
        };
        validate_resources(&resources, "scoringStrategy.resources")?;
        let kind = match strategy.kind.as_str() {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            "RequestedToCapacityRatio" => {
                let shape = strategy
                    .requested_to_capacity_ratio
                    .map(|r| r.shape)
                    .unwrap_or_default();
                Strategy::RequestedToCapacityRatio(validate_shape(&shape)?)
            }
            other => {
                return Err(PluginError::invalid_arg(
                    "scoringStrategy.type",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
                    ),
                ));
            }
        };
        Ok(Self {
            ignored_resources: args.ignored_resources.into_iter().collect(),
            ignored_resource_groups: args.ignored_resource_groups.into_iter().collect(),
            scorer: ResourceScorer::new(resources, false, kind),
        })
    }

    fn ignored(&self, name: &str) -> bool {
        is_extended_resource_name(name)
            && (self.ignored_resources.contains(name)
                || name
                    .split('/')
                    .next()
                    .is_some_and(|g| self.ignored_resource_groups.contains(g)))
    }
}

fn validate_shape(shape: &[UtilizationShapePoint]) -> Result<Vec<(i64, i64)>, PluginError> {
    const PATH: &str = "scoringStrategy.requestedToCapacityRatio.shape";
    if shape.is_empty() {
        return Err(PluginError::invalid_arg(
            PATH,
            "at least one point must be specified",
        ));
    }
    let mut out = Vec::with_capacity(shape.len());
    for (i, p) in shape.iter().enumerate() {
        if !(0..=100).contains(&p.utilization) {
            return Err(PluginError::invalid_arg(
                format!("{PATH}[{i}].utilization"),
                "utilization values must be between 0 and 100",
            ));
        }
        if i > 0
            && shape
                .get(i - 1)
                .is_some_and(|prev| prev.utilization >= p.utilization)
        {
            return Err(PluginError::invalid_arg(
                format!("{PATH}[{i}].utilization"),
                "utilization values must be sorted in increasing order",
            ));
        }
        if !(0..=10).contains(&p.score) {
            return Err(PluginError::invalid_arg(
                format!("{PATH}[{i}].score"),
                "score values must be between 0 and 10",
            ));
        }
        out.push((
            i64::from(p.utilization),
            i64::from(p.score) * (ksched_framework::MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
        ));
    }
    Ok(out)
}

/// Extended resources: names with a `/` outside the `kubernetes.io/` namespace (upstream
/// `v1helper.IsExtendedResourceName`); only they may be ignored.
fn is_extended_resource_name(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// One resource the node lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    /// The resource (`pods`, `cpu`, …).
    pub name: String,
    /// `Too many pods`, `Insufficient cpu`, …
    pub reason: String,
    /// True when even an empty node could not hold the request (preemption cannot help).
    pub unresolvable: bool,
}

/// What the node lacks for a pod requesting `req` (upstream `fitsRequest`), skipping
/// `ignored` extended resources.
pub fn fits_request(
    req: &Resource,
    node: &NodeInfo,
    ignored: impl Fn(&str) -> bool,
) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let alloc = node.allocatable();
    let used = node.requested();
    let pods = i64::try_from(node.num_pods()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > alloc.allowed_pod_number {
        out.push(InsufficientResource {
            name: "pods".into(),
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && want > have.saturating_sub(used) {
            out.push(InsufficientResource {
                name: name.into(),
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, &want) in &req.scalar_resources {
        if want == 0 || ignored(name) {
            continue;
        }
        check(name, want, alloc.scalar(name), used.scalar(name));
    }
    out
}

fn pod_requests(pod: &Pod) -> Result<Resource, Status> {
    let (res, errors) = PodResource::of_pod(pod);
    requests_or_error(&res, &errors)
}

/// The requests, or the first malformed quantity as an unresolvable status.
fn requests_or_error(
    res: &PodResource,
    errors: &[ksched_framework::ResourceError],
) -> Result<Resource, Status> {
    match errors.first() {
        Some(e) => Err(Status::unresolvable(format!(
            "invalid resource request: {e}"
        ))),
        None => Ok(res.requests.clone()),
    }
}

fn fits_empty_node(req: &Resource, node: &Node) -> bool {
    fits_request(req, &NodeInfo::new(Arc::new(node.clone())), |_| false).is_empty()
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &str {
        names::NODE_RESOURCES_FIT
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

#[async_trait]
impl PreFilterPlugin for NodeResourcesFit {
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let res = crate::helper::cached_pod_resource(state, pod);
        match requests_or_error(&res.0, &res.1) {
            Ok(r) => {
                state.write(PRE_FILTER_KEY, Arc::new(r));
                (None, Status::success())
            }
            Err(s) => (None, s),
        }
    }
}

impl NodeResourcesFit {
    /// Runs `f` with the pod's requests: PreFilter's, or computed here when PreFilter did not
    /// run. An unparsable request is the status of every node.
    fn with_requests(state: &CycleState, pod: &Pod, f: impl FnOnce(Result<&Resource, Status>)) {
        match state.read::<Arc<Resource>>(PRE_FILTER_KEY) {
            Ok(r) => f(Ok(r)),
            Err(_) => match pod_requests(pod) {
                Ok(r) => f(Ok(&r)),
                Err(s) => f(Err(s)),
            },
        }
    }

    fn filter_with(&self, req: &Resource, node: &NodeInfo) -> Status {
        let missing = fits_request(req, node, |n| self.ignored(n));
        if missing.is_empty() {
            return Status::success();
        }
        let code = if missing.iter().any(|m| m.unresolvable) {
            ksched_framework::Code::UnschedulableAndUnresolvable
        } else {
            ksched_framework::Code::Unschedulable
        };
        Status::new(code, missing.into_iter().map(|m| m.reason))
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let mut out = Status::success();
        Self::with_requests(state, pod, |req| {
            out = match req {
                Ok(r) => self.filter_with(r, node),
                Err(s) => s,
            };
        });
        out
    }

    /// [`FilterPlugin::filter`] with the PreFilter state read once for the chunk.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        Self::with_requests(state, pod, |req| match req {
            Ok(r) => crate::helper::filter_each(nodes, rejected, |n| self.filter_with(r, n)),
            Err(s) => crate::helper::filter_each(nodes, rejected, |_| s.clone()),
        });
    }
}

#[async_trait]
impl PreScorePlugin for NodeResourcesFit {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        let res = crate::helper::cached_pod_resource(state, pod);
        state.write(PRE_SCORE_KEY, Arc::new(self.scorer.pod_requests(&res.0)));
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    /// Scores are already in [0, 100]; no NormalizeScore (upstream: no ScoreExtensions).
    fn has_normalize_score(&self) -> bool {
        false
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let requests = self.scorer.requests_in(state, PRE_SCORE_KEY, pod);
        Ok(self.scorer.score(node, &requests))
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
        self.scorer.score_all(nodes, &requests, scores);
        Ok(())
    }
}

impl EnqueueExtensions for NodeResourcesFit {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Pod,
                    ActionType::DELETE | ActionType::UPDATE_POD_SCALE_DOWN,
                ),
                |pod, old, new| {
                    let Some(old) = old.and_then(|o| o.as_pod()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let Some(new) = new.and_then(|n| n.as_pod()) else {
                        // Deleted: only a pod holding resources (bound, or nominated) frees any.
                        let bound = old
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some_and(|n| !n.is_empty());
                        let nominated = old
                            .status
                            .as_ref()
                            .and_then(|s| s.nominated_node_name.as_deref())
                            .is_some_and(|n| !n.is_empty());
                        return Ok(if bound || nominated {
                            QueueingHint::Queue
                        } else {
                            QueueingHint::QueueSkip
                        });
                    };
                    if same_pod(pod, new) {
                        return Ok(QueueingHint::Queue);
                    }
                    if new
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                    {
                        return Ok(QueueingHint::QueueSkip);
                    }
                    let want = PodResource::of_pod(pod).0.requests;
                    let (before, after) = (
                        PodResource::of_pod(old).0.requests,
                        PodResource::of_pod(new).0.requests,
                    );
                    let freed = (want.milli_cpu > 0 && after.milli_cpu < before.milli_cpu)
                        || (want.memory > 0 && after.memory < before.memory)
                        || (want.ephemeral_storage > 0
                            && after.ephemeral_storage < before.ephemeral_storage)
                        || want
                            .scalar_resources
                            .keys()
                            .any(|k| after.scalar(k) < before.scalar(k));
                    Ok(if freed {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Node,
                    ActionType::ADD | ActionType::UPDATE_NODE_ALLOCATABLE,
                ),
                |pod, old, new| {
                    let Some(new) = new.and_then(|n| n.as_node()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let want = PodResource::of_pod(pod).0.requests;
                    if !fits_empty_node(&want, new) {
                        return Ok(QueueingHint::QueueSkip);
                    }
                    let Some(old) = old.and_then(|o| o.as_node()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let (a, b) = (
                        NodeInfo::new(Arc::new(old.clone())),
                        NodeInfo::new(Arc::new(new.clone())),
                    );
                    let (a, b) = (a.allocatable(), b.allocatable());
                    let grew = b.allowed_pod_number > a.allowed_pod_number
                        || (want.milli_cpu > 0 && b.milli_cpu > a.milli_cpu)
                        || (want.memory > 0 && b.memory > a.memory)
                        || (want.ephemeral_storage > 0
                            && b.ephemeral_storage > a.ephemeral_storage)
                        || want
                            .scalar_resources
                            .iter()
                            .any(|(k, v)| *v > 0 && b.scalar(k) > a.scalar(k));
                    Ok(if grew {
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

    fn plugin(args: serde_json::Value) -> Result<NodeResourcesFit, PluginError> {
        NodeResourcesFit::from_args(PluginArgs::from_value(args).decode()?)
    }

    async fn filter(pl: &NodeResourcesFit, pod: &Pod, node: &NodeInfo) -> Status {
        let mut state = CycleState::new();
        let (_, s) = pl.pre_filter(&mut state, pod, &[]).await;
        if !s.is_success() {
            return s;
        }
        pl.filter(&state, pod, node)
    }

    #[tokio::test]
    async fn filter_reasons() {
        let pl = plugin(serde_json::json!({})).unwrap();
        let node = NodeBuilder::new("n")
            .alloc("pods", "2")
            .alloc("example.com/gpu", "1")
            .pod(PodBuilder::new("a").req("cpu", "3").req("memory", "6Gi"))
            .info();
        let ok = PodBuilder::new("p")
            .req("cpu", "1")
            .req("memory", "2Gi")
            .pod();
        assert!(filter(&pl, &ok, &node).await.is_success());
        let cpu = PodBuilder::new("p").req("cpu", "2").pod();
        let s = filter(&pl, &cpu, &node).await;
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unschedulable, "Insufficient cpu".to_owned())
        );
        let both = PodBuilder::new("p")
            .req("cpu", "2")
            .req("memory", "3Gi")
            .req("example.com/gpu", "2")
            .pod();
        let s = filter(&pl, &both, &node).await;
        assert_eq!(
            s.reasons(),
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        // More than the whole node: preemption cannot help.
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        let full = NodeBuilder::new("n")
            .alloc("pods", "1")
            .pod(PodBuilder::new("a"))
            .info();
        let s = filter(&pl, &PodBuilder::new("p").pod(), &full).await;
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unschedulable, "Too many pods".to_owned())
        );
        let bad = PodBuilder::new("p").req("cpu", "lots").pod();
        assert_eq!(
            filter(&pl, &bad, &node).await.code(),
            Code::UnschedulableAndUnresolvable
        );
    }

    #[tokio::test]
    async fn ignored_resources() {
        let node = NodeBuilder::new("n").info();
        let pod = PodBuilder::new("p")
            .req("example.com/foo", "1")
            .req("other.io/bar", "1")
            .pod();
        let pl = plugin(serde_json::json!({"ignoredResources": ["example.com/foo"], "ignoredResourceGroups": ["other.io"]})).unwrap();
        assert!(filter(&pl, &pod, &node).await.is_success());
        let pl = plugin(serde_json::json!({"ignoredResources": ["example.com/foo"]})).unwrap();
        assert_eq!(
            filter(&pl, &pod, &node).await.message(),
            "Insufficient other.io/bar"
        );
        assert!(plugin(serde_json::json!({"ignoredResourceGroups": ["a/b"]})).is_err());
    }

    #[tokio::test]
    async fn strategies() {
        let node = NodeBuilder::new("n")
            .pod(PodBuilder::new("x").req("cpu", "1").req("memory", "2Gi"))
            .info();
        let pod = PodBuilder::new("p")
            .req("cpu", "1")
            .req("memory", "2Gi")
            .pod();
        let score = |pl: NodeResourcesFit| {
            let (pod, node) = (pod.clone(), node.clone());
            async move {
                let mut state = CycleState::new();
                assert!(pl.pre_score(&mut state, &pod, &[]).await.is_success());
                pl.score(&state, &pod, &node).unwrap()
            }
        };
        assert_eq!(score(plugin(serde_json::json!({})).unwrap()).await, 50);
        let most = plugin(
            serde_json::json!({"scoringStrategy": {"type": "MostAllocated", "resources": [{"name": "cpu", "weight": 1}]}}),
        );
        assert_eq!(score(most.unwrap()).await, 50);
        let ratio = plugin(
            serde_json::json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}}),
        );
        assert_eq!(score(ratio.unwrap()).await, 50);
        assert!(plugin(serde_json::json!({"scoringStrategy": {"type": "Bogus"}})).is_err());
        assert!(
            plugin(serde_json::json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}}))
                .is_err()
        );
        assert!(plugin(serde_json::json!({"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu", "weight": 101}]}})).is_err());
        assert!(plugin(serde_json::json!({"bogus": 1})).is_err());
    }
}
