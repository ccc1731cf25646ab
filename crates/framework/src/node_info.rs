//! [`NodeInfo`]: one node and what is placed on it, as a scheduling cycle sees it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::PodInfo;

/// A node with its pods (bound and assumed) and aggregates derived from them.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    node: Option<Arc<Node>>,
    pods: Vec<Arc<PodInfo>>,
    generation: u64,
}

impl NodeInfo {
    /// A NodeInfo for `node` with no pods.
    #[must_use]
    pub fn new(node: Arc<Node>) -> Self {
        Self { node: Some(node), ..Self::default() }
    }

    /// The node; `None` for a ghost entry whose node was deleted while pods remain.
    #[must_use]
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The node's name ("" for a ghost).
    #[must_use]
    pub fn node_name(&self) -> &str {
        self.node.as_ref().and_then(|n| n.metadata.name.as_deref()).unwrap_or_default()
    }

    /// Pods on the node.
    #[must_use]
    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    /// Changes on every mutation; the snapshot copies only NodeInfos whose generation moved.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds a pod to the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes a pod by key; false when it was not there.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let before = self.pods.len();
        self.pods.retain(|p| p.key() != key);
        let removed = self.pods.len() != before;
        if removed {
            self.generation += 1;
        }
        removed
    }
}
