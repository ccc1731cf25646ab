//! [`Snapshot`]: the immutable view of all nodes one scheduling cycle works on.

use std::{collections::HashMap, sync::Arc};

use crate::NodeInfo;

/// All NodeInfos at the start of a cycle, in a stable order, with the lists the affinity
/// plugins need. Plugins read it through the handle's snapshot lister.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    node_info_list: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    have_pods_with_affinity: Vec<Arc<NodeInfo>>,
    have_pods_with_required_anti_affinity: Vec<Arc<NodeInfo>>,
}

impl Snapshot {
    /// A snapshot of the given nodes (used by tests and simulators; the cache keeps its snapshot
    /// up to date incrementally).
    #[must_use]
    pub fn from_node_infos(nodes: Vec<NodeInfo>) -> Self {
        let node_info_list: Vec<Arc<NodeInfo>> = nodes.into_iter().map(Arc::new).collect();
        let index = node_info_list.iter().enumerate().map(|(i, n)| (n.node_name().to_owned(), i)).collect();
        Self { node_info_list, index, ..Self::default() }
    }

    /// All nodes, in the cycle's order.
    #[must_use]
    pub fn list(&self) -> &[Arc<NodeInfo>] {
        &self.node_info_list
    }

    /// Number of nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.node_info_list.len()
    }

    /// No nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.node_info_list.is_empty()
    }

    /// The node named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.node_info_list[i])
    }

    /// Nodes with at least one pod that has (anti-)affinity terms.
    #[must_use]
    pub fn have_pods_with_affinity_list(&self) -> &[Arc<NodeInfo>] {
        &self.have_pods_with_affinity
    }

    /// Nodes with at least one pod that has required anti-affinity terms.
    #[must_use]
    pub fn have_pods_with_required_anti_affinity_list(&self) -> &[Arc<NodeInfo>] {
        &self.have_pods_with_required_anti_affinity
    }
}
