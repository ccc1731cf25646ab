//! [`Cache`]: nodes with their bound and assumed pods, kept by the informer event handlers and
//! the scheduling loop, and copied incrementally into [`Snapshot`]s.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{ImageStateSummary, NodeInfo, PodInfo, Snapshot, pod_key};
use parking_lot::RwLock;

use crate::{
    Error,
    dump::{Dump, DumpedPod},
    node_tree::{NodeTree, zone_key},
    retired::Retired,
};

/// The scheduler's view of which pods sit on which node, including pods it has decided on but
/// whose binding has not been observed yet (assumed pods).
///
/// Pod life cycle (upstream `backend/cache/interface.go`):
///
/// ```text
///  Initial --assume_pod--> Assumed --add_pod (informer)--> Added --update_pod / remove_pod
///     ^                       |
///     +------forget_pod-------+          (finish_binding only marks the binding as done)
/// ```
///
/// Assumed pods never expire. Upstream used to drop an assumed pod a while after its binding
/// finished if the informer had not confirmed it, but a slow API server made that double-book
/// nodes: the pod disappeared from the cache while it was in fact bound, and the scheduler put
/// a second pod in its place (kubernetes#106361). Since 1.25 the TTL has been 0 ("never"), and
/// 1.36 removed the code. An assumed pod leaves the cache only explicitly: the informer's add
/// confirms it, `forget_pod` undoes it when binding fails, `remove_pod` drops it when the pod is
/// deleted.
///
/// All methods take `&self`; one lock guards the state and is held only for the duration of a
/// call, never across a scheduling cycle: the scheduling loop takes its view with
/// [`Cache::update_snapshot`] and works on the [`Snapshot`] without the lock.
#[derive(Debug, Default)]
pub struct Cache {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, NodeEntry>,
    /// Node names by their NodeInfo's generation: the newest entries are the most recently
    /// changed nodes (upstream's doubly linked list with the head as the latest). Generations
    /// are unique, so walking down from the top and stopping at the snapshot's generation
    /// visits exactly the nodes changed since that snapshot.
    by_generation: BTreeMap<u64, String>,
    tree: NodeTree,
    pods: HashMap<String, PodState>,
    /// Cluster-wide image presence.
    images: HashMap<String, ImageEntry>,
    /// Bumped whenever any node's image set changes: a node's cached image summaries older
    /// than this are recomputed when the node is next copied into a snapshot.
    images_generation: u64,
}

#[derive(Debug, Default)]
struct NodeEntry {
    info: NodeInfo,
    /// The zone the node is filed under in the node tree; `None` while it is not in the tree
    /// (a ghost, or pods seen before the node).
    zone: Option<String>,
    /// The node's image summaries with cluster-wide counts, and the images generation they
    /// were computed at.
    image_summaries: Option<(u64, Arc<HashMap<String, ImageStateSummary>>)>,
}

#[derive(Debug)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
    binding_finished: bool,
}

#[derive(Debug)]
struct ImageEntry {
    size: i64,
    nodes: HashSet<String>,
}

impl Cache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    // ----- nodes -------------------------------------------------------------------------

    /// Adds a node (informer add). A node already in the cache is updated instead, and a ghost
    /// (deleted while pods remained) comes back with its pods.
    ///
    /// # Errors
    /// [`Error::NodeWithoutName`].
    pub fn add_node(&self, node: Arc<Node>) -> Result<(), Error> {
        let name = node_name(&node)?;
        self.inner.write().set_node(&name, node);
        Ok(())
    }

    /// Replaces a node (informer update); the cache compares it with its own copy. A node the
    /// cache does not have is added.
    ///
    /// # Errors
    /// [`Error::NodeWithoutName`].
    pub fn update_node(&self, node: Arc<Node>) -> Result<(), Error> {
        self.add_node(node)
    }

    /// Removes a node (informer delete). If pods remain on it, their delete events are still
    /// to come: the node stays as a ghost (not in snapshots) until they are gone.
    ///
    /// # Errors
    /// [`Error::NodeNotFound`] if the node is not in the cache.
    pub fn remove_node(&self, name: &str) -> Result<(), Error> {
        self.inner.write().remove_node(name)
    }

    // ----- pods ----------------------------------------------------------------------------

    /// Counts `pod` (with `spec.nodeName` set to the chosen node) on its node before it is
    /// bound, so that the next cycles see the node as used.
    ///
    /// # Errors
    /// [`Error::PodNotAssigned`], [`Error::PodAlreadyInCache`], [`Error::PodWithoutName`].
    pub fn assume_pod(&self, pod: Arc<Pod>) -> Result<(), Error> {
        self.assume_pod_info(PodInfo::new(pod))
    }

    /// [`Cache::assume_pod`] with the pod's [`PodInfo`] already built — the scheduling loop's
    /// [`PodInfo::with_node_name`] of the queued pod — so its requests and affinity terms are
    /// not parsed again.
    ///
    /// # Errors
    /// As [`Cache::assume_pod`].
    pub fn assume_pod_info(&self, info: PodInfo) -> Result<(), Error> {
        check_named(info.pod())?;
        let node = assigned_node(&info)?;
        let mut inner = self.inner.write();
        if inner.pods.contains_key(info.key()) {
            return Err(Error::PodAlreadyInCache {
                pod: info.key().to_owned(),
            });
        }
        inner.insert_pod(info, node, true);
        Ok(())
    }

    /// Records that the binding of an assumed pod finished. Nothing else changes: the pod
    /// stays assumed until the informer confirms it (see the type's documentation on expiry).
    /// A pod that is not (or no longer) assumed is left alone: the informer may well confirm a
    /// binding before the binder gets here.
    pub fn finish_binding(&self, pod: &Pod) {
        if let Some(state) = self.inner.write().pods.get_mut(&pod_key(pod))
            && state.assumed
        {
            state.binding_finished = true;
        }
    }

    /// Undoes [`Cache::assume_pod`] exactly, when binding failed. A pod no longer in the cache
    /// is fine (it was deleted meanwhile).
    ///
    /// # Errors
    /// [`Error::PodNodeMismatch`] if `pod` names another node than the one it was assumed on,
    /// [`Error::PodNotAssumed`] if the informer already confirmed it.
    pub fn forget_pod(&self, pod: &Pod) -> Result<(), Error> {
        let key = pod_key(pod);
        let mut inner = self.inner.write();
        let Some(state) = inner.pods.get(&key) else {
            return Ok(());
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        if state.node != node {
            return Err(Error::PodNodeMismatch {
                pod: key,
                assumed_node: state.node.clone(),
                node: node.to_owned(),
            });
        }
        if !state.assumed {
            return Err(Error::PodNotAssumed { pod: key });
        }
        inner.remove_pod_state(&key);
        Ok(())
    }

    /// Adds an assigned pod (informer add). For an assumed pod this is the confirmation: the
    /// pod is no longer assumed and its data is refreshed from the informer's copy, moving it
    /// if it was bound to another node than assumed.
    ///
    /// # Errors
    /// [`Error::PodAlreadyAdded`], [`Error::PodNotAssigned`], [`Error::PodWithoutName`].
    pub fn add_pod(&self, pod: Arc<Pod>) -> Result<(), Error> {
        let info = pod_info(pod)?;
        let node = assigned_node(&info)?;
        let mut inner = self.inner.write();
        match inner.pods.get(info.key()) {
            Some(state) if state.assumed => {
                if state.node != node {
                    tracing::info!(
                        pod = info.key(),
                        assumed_node = state.node,
                        node,
                        "Pod was added to a different node than it was assumed on"
                    );
                }
                let key = info.key().to_owned();
                inner.remove_pod_state(&key);
                inner.insert_pod(info, node, false);
                Ok(())
            }
            Some(_) => Err(Error::PodAlreadyAdded {
                pod: info.key().to_owned(),
            }),
            None => {
                inner.insert_pod(info, node, false);
                Ok(())
            }
        }
    }

    /// Replaces an added pod (informer update).
    ///
    /// # Errors
    /// [`Error::PodNotFound`], [`Error::AssumedPodUpdated`] (the informer's add must come
    /// first), [`Error::PodNotAssigned`], [`Error::PodWithoutName`], and
    /// [`Error::PodNodeChanged`] after applying the update, if the pod is on another node.
    pub fn update_pod(&self, pod: Arc<Pod>) -> Result<(), Error> {
        let info = pod_info(pod)?;
        let node = assigned_node(&info)?;
        let key = info.key().to_owned();
        let mut inner = self.inner.write();
        let Some(state) = inner.pods.get(&key) else {
            return Err(Error::PodNotFound { pod: key });
        };
        if state.assumed {
            return Err(Error::AssumedPodUpdated { pod: key });
        }
        let moved = (state.node != node).then(|| state.node.clone());
        inner.remove_pod_state(&key);
        inner.insert_pod(info, node.clone(), false);
        match moved {
            Some(from) => Err(Error::PodNodeChanged {
                pod: key,
                from,
                to: node,
            }),
            None => Ok(()),
        }
    }

    /// Removes a pod (informer delete), assumed or added. A pod with an empty `spec.nodeName`
    /// (the informer's last known state after a missed delete) is removed from where the cache
    /// has it.
    ///
    /// # Errors
    /// [`Error::PodNotFound`], and [`Error::PodNodeChanged`] after removing the pod, if `pod`
    /// names another node than the cache had.
    pub fn remove_pod(&self, pod: &Pod) -> Result<(), Error> {
        let key = pod_key(pod);
        let mut inner = self.inner.write();
        let Some(state) = inner.remove_pod_state(&key) else {
            return Err(Error::PodNotFound { pod: key });
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        if !node.is_empty() && node != state.node {
            return Err(Error::PodNodeChanged {
                pod: key,
                from: state.node,
                to: node.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the pod is assumed (counted on a node, not yet confirmed by the informer).
    #[must_use]
    pub fn is_assumed_pod(&self, pod: &Pod) -> bool {
        self.inner
            .read()
            .pods
            .get(&pod_key(pod))
            .is_some_and(|s| s.assumed)
    }

    /// The cache's copy of the pod, also when its node was deleted.
    #[must_use]
    pub fn get_pod(&self, pod: &Pod) -> Option<Arc<Pod>> {
        self.inner
            .read()
            .pods
            .get(&pod_key(pod))
            .map(|s| Arc::clone(s.info.pod()))
    }

    // ----- introspection -------------------------------------------------------------------

    /// Number of NodeInfos, ghosts included.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.inner.read().nodes.len()
    }

    /// Number of pods, assumed ones and those on ghosts included.
    #[must_use]
    pub fn pod_count(&self) -> usize {
        self.inner.read().pods.len()
    }

    /// A copy of the node's NodeInfo (ghosts too), for tests and debugging.
    #[must_use]
    pub fn node_info(&self, name: &str) -> Option<NodeInfo> {
        self.inner.read().nodes.get(name).map(|e| e.info.clone())
    }

    /// Every pod in the cache (assumed ones included), for tests and debugging.
    #[must_use]
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.inner
            .read()
            .pods
            .values()
            .map(|s| Arc::clone(s.info.pod()))
            .collect()
    }

    /// A copy of the whole state, for debugging (e.g. on a signal). Cheap copies, but of
    /// every node: not for the scheduling path.
    #[must_use]
    pub fn dump(&self) -> Dump {
        let inner = self.inner.read();
        Dump {
            nodes: inner
                .nodes
                .iter()
                .map(|(name, e)| (name.clone(), e.info.clone()))
                .collect(),
            pods: inner
                .pods
                .iter()
                .map(|(key, s)| {
                    let pod = DumpedPod {
                        node: s.node.clone(),
                        assumed: s.assumed,
                        binding_finished: s.binding_finished,
                    };
                    (key.clone(), pod)
                })
                .collect(),
            images: inner
                .images
                .iter()
                .map(|(name, e)| (name.clone(), (e.size, e.nodes.len())))
                .collect(),
        }
    }

    // ----- snapshots -----------------------------------------------------------------------

    /// Brings `snapshot` up to date: copies only the NodeInfos changed since the snapshot's
    /// generation (each copy shares the pod lists with the cache), rebuilds the node list (in
    /// zone-interleaved node-tree order) only when nodes were added or removed, and the
    /// affinity lists only when a node's membership changed. Otherwise the order stays as it
    /// was, so that it is stable from one cycle to the next.
    ///
    /// A snapshot should be updated by one cache only, starting from `Snapshot::default()`.
    ///
    /// # Errors
    /// [`Error::SnapshotInconsistent`] if the snapshot did not end up with one entry per node;
    /// it has then been rebuilt from scratch (upstream does the same), but the cycle that asked
    /// should be retried.
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) -> Result<(), Error> {
        let (result, retired) = self.inner.write().update_snapshot(snapshot);
        // The snapshot's previous copies of changed nodes go only now, outside the lock, and
        // in the background when there are many (see `Retired`).
        retired.dispose();
        result
    }
}

impl Inner {
    /// Applies `f` to the node's entry (creating a ghost entry if there is none) and keeps the
    /// recency index in step; drops the entry if it ends up a ghost without pods.
    fn with_node<R>(&mut self, name: &str, f: impl FnOnce(&mut NodeEntry) -> R) -> R {
        let entry = self.nodes.entry(name.to_owned()).or_default();
        let before = entry.info.generation();
        let result = f(entry);
        let after = entry.info.generation();
        let drop_entry = entry.info.node().is_none() && entry.info.pods().is_empty();
        if (before != after || drop_entry)
            && self.by_generation.get(&before).is_some_and(|n| n == name)
        {
            self.by_generation.remove(&before);
        }
        if drop_entry {
            self.nodes.remove(name);
        } else if before != after {
            self.by_generation.insert(after, name.to_owned());
        }
        result
    }

    fn insert_pod(&mut self, info: PodInfo, node: String, assumed: bool) {
        let info = Arc::new(info);
        self.with_node(&node, |e| e.info.add_pod(Arc::clone(&info)));
        let key = info.key().to_owned();
        self.pods.insert(
            key,
            PodState {
                info,
                node,
                assumed,
                binding_finished: false,
            },
        );
    }

    fn remove_pod_state(&mut self, key: &str) -> Option<PodState> {
        let state = self.pods.remove(key)?;
        if self.nodes.contains_key(&state.node) {
            self.with_node(&state.node.clone(), |e| e.info.remove_pod(key));
        }
        Some(state)
    }

    fn set_node(&mut self, name: &str, node: Arc<Node>) {
        let zone = zone_key(&node);
        let mut old_zone = None;
        let mut old_images = Vec::new();
        self.with_node(name, |e| {
            old_images = e.info.image_states().keys().cloned().collect();
            if e.zone.as_deref() != Some(zone.as_str()) {
                old_zone = e.zone.replace(zone.clone());
            }
            e.info.set_node(Arc::clone(&node));
        });
        if let Some(old) = old_zone {
            self.tree.remove(name, &old);
        }
        self.tree.add(name, &zone);
        let new_images = self.nodes[name].info.image_states();
        // Node status updates repeat the same images: only a change touches the counts.
        if new_images.len() == old_images.len()
            && old_images.iter().all(|i| new_images.contains_key(i))
        {
            return;
        }
        let images: Vec<(String, i64)> = new_images
            .iter()
            .map(|(image, state)| (image.clone(), state.size))
            .collect();
        self.images_generation += 1;
        self.remove_images(name, &old_images);
        for (image, size) in images {
            let entry = self.images.entry(image).or_insert_with(|| ImageEntry {
                size,
                nodes: HashSet::new(),
            });
            entry.nodes.insert(name.to_owned());
        }
    }

    fn remove_node(&mut self, name: &str) -> Result<(), Error> {
        let Some(entry) = self.nodes.get(name).filter(|e| e.info.node().is_some()) else {
            return Err(Error::NodeNotFound {
                node: name.to_owned(),
            });
        };
        let images: Vec<String> = entry.info.image_states().keys().cloned().collect();
        let zone = self.with_node(name, |e| {
            e.info.remove_node();
            e.image_summaries = None;
            e.zone.take()
        });
        if let Some(zone) = zone {
            self.tree.remove(name, &zone);
        }
        if !images.is_empty() {
            self.images_generation += 1;
        }
        self.remove_images(name, &images);
        Ok(())
    }

    fn remove_images(&mut self, node: &str, images: &[String]) {
        for image in images {
            if let Some(entry) = self.images.get_mut(image) {
                entry.nodes.remove(node);
                if entry.nodes.is_empty() {
                    self.images.remove(image);
                }
            }
        }
    }

    /// See [`Cache::update_snapshot`].
    fn update_snapshot(&mut self, snapshot: &mut Snapshot) -> (Result<(), Error>, Retired) {
        let mut retired = Retired::default();
        let since = snapshot.generation();
        let newest = self
            .by_generation
            .last_key_value()
            .map_or(since, |(g, _)| (*g).max(since));
        let changed: Vec<Arc<NodeInfo>> = self
            .by_generation
            .range((Bound::Excluded(since), Bound::Unbounded))
            .rev()
            .filter_map(|(_, name)| {
                snapshot_copy(&mut self.nodes, &self.images, self.images_generation, name)
            })
            .collect();

        let expected = self.tree.len();
        let changed = if snapshot.len() == expected {
            match snapshot.replace_nodes(changed, newest) {
                Ok(replaced) => {
                    retired.nodes = replaced;
                    return (Ok(()), retired);
                }
                // A changed node is new to the snapshot.
                Err(changed) => changed,
            }
        } else {
            changed
        };

        // Nodes were added or removed: list them in node-tree order, taking the fresh copies,
        // else the snapshot's (unchanged) ones.
        let mut fresh: HashMap<String, Arc<NodeInfo>> = changed
            .into_iter()
            .map(|n| (n.node_name().to_owned(), n))
            .collect();
        let names: Vec<String> = self.tree.list().into_iter().map(str::to_owned).collect();
        let list: Vec<Arc<NodeInfo>> = names
            .iter()
            .filter_map(|name| {
                fresh
                    .remove(name)
                    .or_else(|| snapshot.get(name).cloned())
                    .or_else(|| {
                        snapshot_copy(&mut self.nodes, &self.images, self.images_generation, name)
                    })
            })
            .collect();
        retired.lists.push(snapshot.set_nodes(list, newest));
        if snapshot.len() == expected {
            return (Ok(()), retired);
        }
        let listed = snapshot.len();
        tracing::error!(
            listed,
            expected,
            "Snapshot state is not consistent, rebuilding it"
        );
        let list = names
            .iter()
            .filter_map(|name| {
                snapshot_copy(&mut self.nodes, &self.images, self.images_generation, name)
            })
            .collect();
        retired.lists.push(snapshot.set_nodes(list, newest));
        (
            Err(Error::SnapshotInconsistent { listed, expected }),
            retired,
        )
    }
}

/// The node's NodeInfo as a snapshot holds it: shared pod lists, image summaries with
/// cluster-wide counts (cached per node until any node's images change). `None` for ghosts
/// and unknown names.
fn snapshot_copy(
    nodes: &mut HashMap<String, NodeEntry>,
    images: &HashMap<String, ImageEntry>,
    images_generation: u64,
    name: &str,
) -> Option<Arc<NodeInfo>> {
    let entry = nodes.get_mut(name)?;
    entry.info.node()?;
    let summaries = match &entry.image_summaries {
        Some((generation, summaries)) if *generation == images_generation => Arc::clone(summaries),
        _ => {
            let summaries: HashMap<String, ImageStateSummary> = entry
                .info
                .image_states()
                .keys()
                .filter_map(|image| {
                    let e = images.get(image)?;
                    Some((
                        image.clone(),
                        ImageStateSummary {
                            size: e.size,
                            num_nodes: e.nodes.len(),
                        },
                    ))
                })
                .collect();
            let summaries = Arc::new(summaries);
            entry.image_summaries = Some((images_generation, Arc::clone(&summaries)));
            summaries
        }
    };
    let mut copy = entry.info.clone();
    copy.set_image_states(summaries);
    Some(Arc::new(copy))
}

fn node_name(node: &Node) -> Result<String, Error> {
    node.metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(Error::NodeWithoutName)
}

fn pod_info(pod: Arc<Pod>) -> Result<PodInfo, Error> {
    check_named(&pod)?;
    Ok(PodInfo::new(pod))
}

fn check_named(pod: &Pod) -> Result<(), Error> {
    if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(Error::PodWithoutName {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

fn assigned_node(info: &PodInfo) -> Result<String, Error> {
    info.node_name()
        .map(str::to_owned)
        .ok_or_else(|| Error::PodNotAssigned {
            pod: info.key().to_owned(),
        })
}
