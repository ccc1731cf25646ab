//! `NodeAffinity`: `nodeSelector` and required node affinity in Filter (with PreFilter
//! narrowing to the nodes named by `metadata.name` field terms), preferred node affinity in
//! Score (weight 2), plus the profile-wide `addedAffinity` argument.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeAffinity as ApiNodeAffinity, Pod};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PluginArgs, PluginError,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, QueueingHint, ScorePlugin, Status,
};
use serde::Deserialize;

use crate::{
    helper::{
        NodeSelectorMatcher, PreferredSchedulingTerms, RequiredNodeAffinity,
        default_normalize_score,
    },
    names,
};

/// Upstream's reason when the pod's own selector or affinity does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Upstream's reason when `addedAffinity` does not match.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
/// Upstream's reason when every term names nodes and no node is named by all of them.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

/// `NodeAffinityArgs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinityArgs {
    /// Node affinity applied to every pod of the profile, on top of the pod's own.
    #[serde(default)]
    pub added_affinity: Option<ApiNodeAffinity>,
}

/// Upstream's NodeAffinity plugin.
#[derive(Debug, Clone, Default)]
pub struct NodeAffinity {
    added_node_selector: Option<NodeSelectorMatcher>,
    added_preferred: Option<PreferredSchedulingTerms>,
}

/// Factory.
///
/// # Errors
/// Args that do not decode, or `addedAffinity` terms that do not parse.
pub fn new(args: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: NodeAffinityArgs = args.decode()?;
    Ok(Arc::new(NodeAffinity::from_args(&args)?))
}

impl NodeAffinity {
    /// The plugin for `args`.
    ///
    /// # Errors
    /// `addedAffinity` terms that do not parse.
    pub fn from_args(args: &NodeAffinityArgs) -> Result<Self, PluginError> {
        let Some(added) = &args.added_affinity else {
            return Ok(Self::default());
        };
        let added_node_selector = added
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .map(NodeSelectorMatcher::new);
        if let Some(e) = added_node_selector.as_ref().and_then(|s| s.errors().next()) {
            return Err(PluginError::invalid_arg(
                "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution",
                e,
            ));
        }
        let added_preferred = match added
            .preferred_during_scheduling_ignored_during_execution
            .as_deref()
        {
            Some(terms) if !terms.is_empty() => Some(
                PreferredSchedulingTerms::new(terms)
                    .map_err(|e| PluginError::invalid_arg("addedAffinity", e))?,
            ),
            _ => None,
        };
        Ok(Self {
            added_node_selector,
            added_preferred,
        })
    }

    fn enforced(&self, node: &Node) -> bool {
        self.added_node_selector
            .as_ref()
            .is_none_or(|s| s.matches(node))
    }
}

fn pod_node_affinity(pod: &Pod) -> Option<&ApiNodeAffinity> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
}

/// The node names the required terms restrict the pod to: `None` when some term names no
/// node (terms are ORed), else the union over terms of the intersection of their
/// `metadata.name In` field requirements.
fn named_nodes(affinity: &ApiNodeAffinity) -> Option<BTreeSet<String>> {
    let terms = &affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut union = BTreeSet::new();
    for t in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        union.extend(term_names?);
    }
    Some(union)
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &str {
        names::NODE_AFFINITY
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
impl PreFilterPlugin for NodeAffinity {
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let required = RequiredNodeAffinity::of_pod(pod);
        if required.is_empty() && self.added_node_selector.is_none() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, Arc::new(required));
        match pod_node_affinity(pod).and_then(named_nodes) {
            Some(names) if names.is_empty() => (None, Status::unresolvable(ERR_REASON_CONFLICT)),
            Some(names) => (
                Some(PreFilterResult {
                    node_names: Some(names),
                }),
                Status::success(),
            ),
            None => (None, Status::success()),
        }
    }
}

impl NodeAffinity {
    fn filter_with(&self, required: &RequiredNodeAffinity, node: &NodeInfo) -> Status {
        let Some(n) = node.node() else {
            return Status::unresolvable("node not found");
        };
        if !self.enforced(n) {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        if required.matches(n) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let required = crate::helper::pre_filter_state(state, PRE_FILTER_KEY, || {
            RequiredNodeAffinity::of_pod(pod)
        });
        self.filter_with(&required, node)
    }

    /// [`FilterPlugin::filter`] with the PreFilter state read (or computed) once per chunk.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        let required = crate::helper::pre_filter_state(state, PRE_FILTER_KEY, || {
            RequiredNodeAffinity::of_pod(pod)
        });
        crate::helper::filter_each(nodes, rejected, |n| self.filter_with(&required, n));
    }
}

#[async_trait]
impl PreScorePlugin for NodeAffinity {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        let preferred = pod_node_affinity(pod)
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .filter(|t| !t.is_empty());
        let mut terms = match preferred.map(PreferredSchedulingTerms::new).transpose() {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => return Status::error(format!("spec.affinity.nodeAffinity.{e}")),
        };
        if let Some(added) = &self.added_preferred {
            terms.extend(added.clone());
        }
        if preferred.is_none() && self.added_preferred.is_none() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, Arc::new(terms));
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let Some(n) = node.node() else { return Ok(0) };
        match state.read::<Arc<PreferredSchedulingTerms>>(PRE_SCORE_KEY) {
            Ok(t) => Ok(t.score(n)),
            Err(_) => {
                // PreScore disabled: compute here.
                let preferred = pod_node_affinity(pod)
                    .and_then(|a| {
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_deref()
                    })
                    .unwrap_or_default();
                let terms = PreferredSchedulingTerms::new(preferred).map_err(Status::error)?;
                Ok(terms.score(n) + self.added_preferred.as_ref().map_or(0, |t| t.score(n)))
            }
        }
    }

    fn normalize_score(&self, _: &CycleState, _: &Pod, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

impl EnqueueExtensions for NodeAffinity {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        let added = self.added_node_selector.clone();
        vec![ClusterEventWithHint::with_hint(
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
            ),
            move |pod, old, new| {
                let Some(new) = new.and_then(|n| n.as_node()) else {
                    return Ok(QueueingHint::Queue);
                };
                if added.as_ref().is_some_and(|s| !s.matches(new)) {
                    return Ok(QueueingHint::QueueSkip);
                }
                let required = RequiredNodeAffinity::of_pod(pod);
                if !required.matches(new) {
                    return Ok(QueueingHint::QueueSkip);
                }
                // A node that already matched did not change this plugin's verdict.
                let was_matched = old
                    .and_then(|o| o.as_node())
                    .is_some_and(|o| required.matches(o));
                Ok(if was_matched {
                    QueueingHint::QueueSkip
                } else {
                    QueueingHint::Queue
                })
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> Affinity {
        Affinity {
            node_affinity: Some(ApiNodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        }
    }

    fn exprs(rs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(rs),
            match_fields: None,
        }
    }

    async fn run(pl: &NodeAffinity, pod: &Pod, node: &NodeInfo) -> Status {
        let mut state = CycleState::new();
        let (_, s) = pl.pre_filter(&mut state, pod, &[]).await;
        if s.is_skip() {
            return Status::success();
        }
        if !s.is_success() {
            return s;
        }
        pl.filter(&state, pod, node)
    }

    #[tokio::test]
    async fn required_operators_and_node_selector() {
        let node = NodeBuilder::new("n1")
            .label("zone", "a")
            .label("gen", "3")
            .info();
        let pl = NodeAffinity::default();
        let cases = [
            ("In", exprs(vec![req("zone", "In", &["a", "b"])]), true),
            ("In miss", exprs(vec![req("zone", "In", &["b"])]), false),
            ("NotIn", exprs(vec![req("zone", "NotIn", &["b"])]), true),
            (
                "NotIn hit",
                exprs(vec![req("zone", "NotIn", &["a"])]),
                false,
            ),
            ("Exists", exprs(vec![req("gen", "Exists", &[])]), true),
            (
                "DoesNotExist",
                exprs(vec![req("gen", "DoesNotExist", &[])]),
                false,
            ),
            ("Gt", exprs(vec![req("gen", "Gt", &["2"])]), true),
            ("Gt equal", exprs(vec![req("gen", "Gt", &["3"])]), false),
            ("Lt", exprs(vec![req("gen", "Lt", &["4"])]), true),
            ("Lt less", exprs(vec![req("gen", "Lt", &["1"])]), false),
            (
                "AND within a term",
                exprs(vec![req("zone", "In", &["a"]), req("gen", "Lt", &["1"])]),
                false,
            ),
        ];
        for (name, term, fits) in cases {
            let pod = PodBuilder::new("p").affinity(required(vec![term])).pod();
            let s = run(&pl, &pod, &node).await;
            assert_eq!(s.is_success(), fits, "{name}: {s}");
            if !fits {
                assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
                assert_eq!(s.message(), ERR_REASON_POD);
            }
        }
        let or = PodBuilder::new("p")
            .affinity(required(vec![
                exprs(vec![req("zone", "In", &["x"])]),
                exprs(vec![req("gen", "Exists", &[])]),
            ]))
            .pod();
        assert!(run(&pl, &or, &node).await.is_success());
        let selector = PodBuilder::new("p").node_selector("zone", "a").pod();
        assert!(run(&pl, &selector, &node).await.is_success());
        let selector = PodBuilder::new("p").node_selector("zone", "b").pod();
        assert_eq!(run(&pl, &selector, &node).await.message(), ERR_REASON_POD);
        // nodeSelector and affinity must both hold.
        let both = PodBuilder::new("p")
            .node_selector("zone", "a")
            .affinity(required(vec![exprs(vec![req("gen", "Gt", &["5"])])]))
            .pod();
        assert!(!run(&pl, &both, &node).await.is_success());
    }

    #[tokio::test]
    async fn pre_filter_narrows_to_named_nodes() {
        let pl = NodeAffinity::default();
        let names = |vals: &[&str]| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", vals)]),
        };
        let mut state = CycleState::new();
        let pod = PodBuilder::new("p")
            .affinity(required(vec![names(&["a", "b"]), names(&["c"])]))
            .pod();
        let (r, s) = pl.pre_filter(&mut state, &pod, &[]).await;
        assert!(s.is_success());
        assert_eq!(r, Some(PreFilterResult::nodes(["a", "b", "c"])));
        // A term without a name requirement allows every node.
        let pod = PodBuilder::new("p")
            .affinity(required(vec![
                names(&["a"]),
                exprs(vec![req("zone", "Exists", &[])]),
            ]))
            .pod();
        assert_eq!(pl.pre_filter(&mut state, &pod, &[]).await.0, None);
        // Conflicting name requirements within a term.
        let conflict = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![
                req("metadata.name", "In", &["a"]),
                req("metadata.name", "In", &["b"]),
            ]),
        };
        let pod = PodBuilder::new("p")
            .affinity(required(vec![conflict]))
            .pod();
        let (_, s) = pl.pre_filter(&mut state, &pod, &[]).await;
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), ERR_REASON_CONFLICT);
        // Nothing to check: Skip.
        assert!(
            pl.pre_filter(&mut state, &PodBuilder::new("p").pod(), &[])
                .await
                .1
                .is_skip()
        );
    }

    #[tokio::test]
    async fn added_affinity_is_enforced_and_scored() {
        let args: NodeAffinityArgs = serde_json::from_value(serde_json::json!({
            "addedAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]
            }
        }))
        .unwrap();
        let pl = NodeAffinity::from_args(&args).unwrap();
        let pod = PodBuilder::new("p").pod();
        let s = run(
            &pl,
            &pod,
            &NodeBuilder::new("n").label("pool", "web").info(),
        )
        .await;
        assert_eq!(s.message(), ERR_REASON_ENFORCED);
        assert!(
            run(
                &pl,
                &pod,
                &NodeBuilder::new("n").label("pool", "batch").info()
            )
            .await
            .is_success()
        );
        let mut state = CycleState::new();
        assert!(pl.pre_score(&mut state, &pod, &[]).await.is_success());
        assert_eq!(
            pl.score(
                &state,
                &pod,
                &NodeBuilder::new("n").label("disk", "ssd").info()
            )
            .unwrap(),
            10
        );
    }

    #[tokio::test]
    async fn preferred_scores_normalize() {
        let pl = NodeAffinity::default();
        let pod = PodBuilder::new("p")
            .affinity(Affinity {
                node_affinity: Some(ApiNodeAffinity {
                    required_during_scheduling_ignored_during_execution: None,
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            weight: 2,
                            preference: exprs(vec![req("zone", "In", &["a"])]),
                        },
                        PreferredSchedulingTerm {
                            weight: 6,
                            preference: exprs(vec![req("disk", "Exists", &[])]),
                        },
                    ]),
                }),
                ..Affinity::default()
            })
            .pod();
        let mut state = CycleState::new();
        assert!(pl.pre_score(&mut state, &pod, &[]).await.is_success());
        let nodes = [
            NodeBuilder::new("a").label("zone", "a").info(),
            NodeBuilder::new("b").label("disk", "x").info(),
            NodeBuilder::new("c")
                .label("zone", "a")
                .label("disk", "x")
                .info(),
            NodeBuilder::new("d").info(),
        ];
        let mut scores: Vec<NodeScore> = nodes
            .iter()
            .map(|n| NodeScore {
                name: n.node_name().into(),
                score: pl.score(&state, &pod, n).unwrap(),
            })
            .collect();
        pl.normalize_score(&state, &pod, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [25, 75, 100, 0]
        );
        assert!(
            pl.pre_score(&mut state, &PodBuilder::new("q").pod(), &[])
                .await
                .is_skip()
        );
    }
}
