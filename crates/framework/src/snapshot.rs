//! [`Snapshot`]: the immutable view of all nodes one scheduling cycle works on.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::{NodeInfo, PodInfo};

/// All NodeInfos at the start of a cycle, in a stable order, with the lists the affinity
/// plugins need. Plugins read it through the handle's snapshot lister.
///
/// Cloning is cheap (a few `Arc`s), so the scheduling loop can publish
/// `Arc::new(snapshot.clone())` to plugins each cycle while it keeps the original for the
/// cache to update (`ksched_cache::Cache::update_snapshot`): that update copies the node list
/// (one pointer per node) only if the published clone is still alive, never the NodeInfos.
/// Ghost nodes (deleted while pods remain) are never in a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    node_info_list: Arc<Vec<Arc<NodeInfo>>>,
    index: Arc<HashMap<String, Slot>>,
    have_pods_with_affinity: Arc<Vec<Arc<NodeInfo>>>,
    have_pods_with_required_anti_affinity: Arc<Vec<Arc<NodeInfo>>>,
    generation: u64,
}

/// Where a node sits in the snapshot's lists.
#[derive(Debug, Clone, Copy)]
struct Slot {
    list: usize,
    affinity: Option<usize>,
    required_anti_affinity: Option<usize>,
}

impl Snapshot {
    /// A snapshot of the given nodes, in that order (used by tests and simulators; the cache
    /// keeps its snapshot up to date incrementally). Ghosts are left out, and image states get
    /// the number of given nodes having each image.
    #[must_use]
    pub fn from_node_infos(nodes: Vec<NodeInfo>) -> Self {
        let mut nodes: Vec<NodeInfo> = nodes.into_iter().filter(|n| n.node().is_some()).collect();
        let mut image_nodes: HashMap<String, usize> = HashMap::new();
        for n in &nodes {
            for name in n.image_states().keys() {
                *image_nodes.entry(name.clone()).or_default() += 1;
            }
        }
        for n in &mut nodes {
            if n.image_states().is_empty() {
                continue;
            }
            let mut states = n.image_states().clone();
            for (name, state) in &mut states {
                state.num_nodes = image_nodes.get(name).copied().unwrap_or(1);
            }
            n.set_image_states(Arc::new(states));
        }
        let generation = nodes.iter().map(NodeInfo::generation).max().unwrap_or(0);
        let mut snapshot = Self::default();
        let _empty = snapshot.set_nodes(nodes.into_iter().map(Arc::new).collect(), generation);
        snapshot
    }

    /// A snapshot of `nodes` (in that order) with `pods` placed by their `spec.nodeName`; pods
    /// on no node or on a node not given are left out (upstream `NewSnapshot`).
    #[must_use]
    pub fn from_pods_and_nodes(
        pods: impl IntoIterator<Item = Arc<Pod>>,
        nodes: impl IntoIterator<Item = Arc<Node>>,
    ) -> Self {
        let mut infos: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::new).collect();
        let by_name: HashMap<String, usize> = infos
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node_name().to_owned(), i))
            .collect();
        for pod in pods {
            let info = PodInfo::new(pod);
            if let Some(&i) = info.node_name().and_then(|n| by_name.get(n)) {
                infos[i].add_pod(Arc::new(info));
            }
        }
        Self::from_node_infos(infos)
    }

    /// All nodes, in the cycle's order (zones interleaved, see the cache's node tree).
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
        self.index
            .get(name)
            .map(|slot| &self.node_info_list[slot.list])
    }

    /// Nodes with at least one pod that has (anti-)affinity terms, in list order.
    #[must_use]
    pub fn have_pods_with_affinity_list(&self) -> &[Arc<NodeInfo>] {
        &self.have_pods_with_affinity
    }

    /// Nodes with at least one pod that has required anti-affinity terms, in list order.
    #[must_use]
    pub fn have_pods_with_required_anti_affinity_list(&self) -> &[Arc<NodeInfo>] {
        &self.have_pods_with_required_anti_affinity
    }

    /// The newest NodeInfo generation the snapshot reflects; the cache copies only NodeInfos
    /// changed after it.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces every node with `nodes`, in that order, and records `generation` (for the
    /// cache, when nodes were added or removed). Returns the previous list, so that the caller
    /// chooses when to drop it (after releasing a lock, say).
    pub fn set_nodes(
        &mut self,
        nodes: Vec<Arc<NodeInfo>>,
        generation: u64,
    ) -> Arc<Vec<Arc<NodeInfo>>> {
        let previous = std::mem::replace(&mut self.node_info_list, Arc::new(nodes));
        self.rebuild_lists();
        self.generation = generation;
        previous
    }

    /// Replaces the given nodes in place (list order unchanged) and records `generation` (for
    /// the cache, when only existing nodes changed). Rebuilds the affinity lists only if a node
    /// gained its first or lost its last pod with (required anti-)affinity.
    ///
    /// Returns the replaced NodeInfos: dropping the last reference to a node's previous pod
    /// list touches every pod's reference count, so the caller chooses when to pay for it
    /// (after releasing a lock, say).
    ///
    /// # Errors
    /// Gives `changed` back, with the snapshot untouched, if any of them is not in the snapshot
    /// (or is a ghost); the cache then rebuilds with [`Snapshot::set_nodes`].
    pub fn replace_nodes(
        &mut self,
        changed: Vec<Arc<NodeInfo>>,
        generation: u64,
    ) -> Result<Vec<Arc<NodeInfo>>, Vec<Arc<NodeInfo>>> {
        let slots: Option<Vec<Slot>> = changed
            .iter()
            .map(|n| n.node().and(self.index.get(n.node_name()).copied()))
            .collect();
        let Some(slots) = slots else {
            return Err(changed);
        };
        let mut membership_changed = false;
        let mut replaced = Vec::with_capacity(changed.len());
        for (info, slot) in changed.into_iter().zip(slots) {
            let has_affinity = !info.pods_with_affinity().is_empty();
            let has_anti_affinity = !info.pods_with_required_anti_affinity().is_empty();
            membership_changed |= has_affinity != slot.affinity.is_some()
                || has_anti_affinity != slot.required_anti_affinity.is_some();
            if !membership_changed {
                if let Some(i) = slot.affinity {
                    Arc::make_mut(&mut self.have_pods_with_affinity)[i] = Arc::clone(&info);
                }
                if let Some(i) = slot.required_anti_affinity {
                    Arc::make_mut(&mut self.have_pods_with_required_anti_affinity)[i] =
                        Arc::clone(&info);
                }
            }
            let list = Arc::make_mut(&mut self.node_info_list);
            replaced.push(std::mem::replace(&mut list[slot.list], info));
        }
        if membership_changed {
            self.rebuild_lists();
        }
        self.generation = generation;
        Ok(replaced)
    }

    /// Rebuilds the index and the affinity lists from the node list.
    fn rebuild_lists(&mut self) {
        let mut index = HashMap::with_capacity(self.node_info_list.len());
        let mut affinity = Vec::new();
        let mut anti_affinity = Vec::new();
        for (i, info) in self.node_info_list.iter().enumerate() {
            let mut slot = Slot {
                list: i,
                affinity: None,
                required_anti_affinity: None,
            };
            if !info.pods_with_affinity().is_empty() {
                slot.affinity = Some(affinity.len());
                affinity.push(Arc::clone(info));
            }
            if !info.pods_with_required_anti_affinity().is_empty() {
                slot.required_anti_affinity = Some(anti_affinity.len());
                anti_affinity.push(Arc::clone(info));
            }
            index.insert(info.node_name().to_owned(), slot);
        }
        self.index = Arc::new(index);
        self.have_pods_with_affinity = Arc::new(affinity);
        self.have_pods_with_required_anti_affinity = Arc::new(anti_affinity);
    }

    /// Names of the nodes in the snapshot (for consistency checks).
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.node_info_list.iter().map(|n| n.node_name())
    }

    /// Whether every node name is unique and indexed (a cheap self-check for tests).
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        let names: HashSet<&str> = self.node_names().collect();
        names.len() == self.len()
            && self.index.len() == self.len()
            && self.node_info_list.iter().all(|n| n.node().is_some())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Affinity, ContainerImage, NodeStatus, PodAntiAffinity, PodSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn node(name: &str, images: &[&str]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                images: Some(
                    images
                        .iter()
                        .map(|i| ContainerImage {
                            names: Some(vec![(*i).into()]),
                            size_bytes: Some(10),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(name: &str, node: &str, anti_affinity: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                affinity: anti_affinity.then(|| Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            Default::default(),
                        ]),
                        preferred_during_scheduling_ignored_during_execution: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn from_pods_and_nodes() {
        let s = Snapshot::from_pods_and_nodes(
            [
                pod("a", "n1", false),
                pod("b", "n2", true),
                pod("c", "gone", false),
            ],
            [node("n1", &["img1", "img2"]), node("n2", &["img1"])],
        );
        assert_eq!(s.len(), 2);
        assert!(s.is_consistent());
        assert_eq!(s.list()[0].node_name(), "n1");
        assert_eq!(s.get("n1").unwrap().pods().len(), 1);
        assert!(s.get("gone").is_none());
        assert_eq!(s.have_pods_with_affinity_list().len(), 1);
        assert_eq!(
            s.have_pods_with_required_anti_affinity_list()[0].node_name(),
            "n2"
        );
        assert_eq!(s.get("n1").unwrap().image_states()["img1"].num_nodes, 2);
        assert_eq!(s.get("n1").unwrap().image_states()["img2"].num_nodes, 1);
    }

    #[test]
    fn replace_in_place_and_membership_changes() {
        let mut s = Snapshot::from_pods_and_nodes(
            [pod("b", "n2", true)],
            [node("n1", &[]), node("n2", &[])],
        );
        let published = s.clone();

        let mut n1 = (**s.get("n1").unwrap()).clone();
        n1.add_pod(Arc::new(PodInfo::new(pod("a", "n1", false))));
        s.replace_nodes(vec![Arc::new(n1)], 7).unwrap();
        assert_eq!(s.generation(), 7);
        assert_eq!(s.get("n1").unwrap().pods().len(), 1);
        assert_eq!(s.list()[0].pods().len(), 1);
        // The published clone did not change.
        assert!(published.get("n1").unwrap().pods().is_empty());

        // n2 keeps its anti-affinity pod: replaced inside the affinity lists too.
        let mut n2 = (**s.get("n2").unwrap()).clone();
        n2.add_pod(Arc::new(PodInfo::new(pod("c", "n2", false))));
        s.replace_nodes(vec![Arc::new(n2)], 8).unwrap();
        assert_eq!(s.have_pods_with_affinity_list()[0].pods().len(), 2);

        // n2 loses it: the lists are rebuilt.
        let mut n2 = (**s.get("n2").unwrap()).clone();
        n2.remove_pod("ns/b");
        s.replace_nodes(vec![Arc::new(n2)], 9).unwrap();
        assert!(s.have_pods_with_affinity_list().is_empty());
        assert!(s.have_pods_with_required_anti_affinity_list().is_empty());

        // Unknown node: refused, untouched.
        let err = s
            .replace_nodes(vec![Arc::new(NodeInfo::new(node("n3", &[])))], 10)
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(s.generation(), 9);
        assert!(s.is_consistent());
    }
}
