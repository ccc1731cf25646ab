//! Values extension points exchange: scores, PreFilter and PostFilter results, per-node
//! statuses.

use std::collections::{BTreeSet, HashMap};

use crate::{Code, Status};

/// Highest score a Score plugin may give after NormalizeScore.
pub const MAX_NODE_SCORE: i64 = 100;
/// Lowest score a Score plugin may give after NormalizeScore.
pub const MIN_NODE_SCORE: i64 = 0;

/// One node's score from one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    /// Node name.
    pub name: String,
    /// The score (within [`MIN_NODE_SCORE`], [`MAX_NODE_SCORE`] after normalization).
    pub score: i64,
}

/// One plugin's weighted contribution to a node's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginScore {
    /// Plugin name.
    pub name: String,
    /// Score × weight.
    pub score: i64,
}

/// A node's scores from every plugin and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePluginScores {
    /// Node name.
    pub name: String,
    /// Per-plugin weighted scores, in plugin order; filled only when trace logging of
    /// `ksched_framework::score` is on (the breakdown costs allocations per node).
    pub scores: Vec<PluginScore>,
    /// Sum of the weighted scores.
    pub total_score: i64,
}

/// What PreFilter plugins may say about where the pod can go: `None` node names means every
/// node. Results of several plugins are intersected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// The only nodes worth filtering, or `None` for all.
    pub node_names: Option<BTreeSet<String>>,
}

impl PreFilterResult {
    /// A result restricting the pod to `names`.
    #[must_use]
    pub fn nodes<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self {
            node_names: Some(names.into_iter().map(Into::into).collect()),
        }
    }

    /// True when every node is allowed.
    #[must_use]
    pub fn all_nodes(&self) -> bool {
        self.node_names.is_none()
    }

    /// The intersection of two results.
    #[must_use]
    pub fn merge(&self, other: &PreFilterResult) -> PreFilterResult {
        match (&self.node_names, &other.node_names) {
            (None, None) => PreFilterResult::default(),
            (Some(a), None) | (None, Some(a)) => PreFilterResult {
                node_names: Some(a.clone()),
            },
            (Some(a), Some(b)) => PreFilterResult {
                node_names: Some(a.intersection(b).cloned().collect()),
            },
        }
    }
}

/// How a PostFilter result changes the pod's nominated node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NominatingMode {
    /// Leave the nomination as it is.
    #[default]
    Noop,
    /// Set (or clear, with an empty name) the nominated node.
    Override,
}

/// The node a pod is nominated to after preemption.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NominatingInfo {
    /// Nominated node name ("" clears).
    pub nominated_node_name: String,
    /// Whether to apply it.
    pub mode: NominatingMode,
}

/// What a PostFilter plugin (preemption) achieved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostFilterResult {
    /// The nomination to record, if any.
    pub nominating_info: Option<NominatingInfo>,
}

/// The reason each node was rejected in a cycle. Nodes not listed (not evaluated, e.g. cut
/// by a PreFilter result) read as `absent_status`.
#[derive(Debug, Clone)]
pub struct NodeToStatus {
    statuses: HashMap<String, Status>,
    absent_status: Status,
}

impl Default for NodeToStatus {
    fn default() -> Self {
        Self {
            statuses: HashMap::new(),
            absent_status: Status::with_reason(
                Code::UnschedulableAndUnresolvable,
                "node(s) didn't satisfy the PreFilter result",
            ),
        }
    }
}

impl NodeToStatus {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `status` for `node`.
    pub fn set(&mut self, node: impl Into<String>, status: Status) {
        self.statuses.insert(node.into(), status);
    }

    /// The status of `node` (the absent status when unlisted).
    #[must_use]
    pub fn get(&self, node: &str) -> &Status {
        self.statuses.get(node).unwrap_or(&self.absent_status)
    }

    /// The status of nodes not listed.
    #[must_use]
    pub fn absent_status(&self) -> &Status {
        &self.absent_status
    }

    /// Sets the status of nodes not listed.
    pub fn set_absent_status(&mut self, status: Status) {
        self.absent_status = status;
    }

    /// Number of listed nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.statuses.len()
    }

    /// No listed nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
    }

    /// Listed nodes and their statuses.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Status)> {
        self.statuses.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Names of nodes whose status has `code`, among `all_nodes` (absent nodes count with the
    /// absent status) — what preemption uses to find candidates (`Unschedulable`).
    #[must_use]
    pub fn nodes_with_code<'a>(
        &self,
        code: Code,
        all_nodes: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        all_nodes
            .into_iter()
            .filter(|n| self.get(n).code() == code)
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_filter_results_intersect() {
        let all = PreFilterResult::default();
        let ab = PreFilterResult::nodes(["a", "b"]);
        let bc = PreFilterResult::nodes(["b", "c"]);
        assert!(all.merge(&all).all_nodes());
        assert_eq!(all.merge(&ab), ab);
        assert_eq!(ab.merge(&bc), PreFilterResult::nodes(["b"]));
    }
}
