//! [`NodeInfo`]: one node and what is placed on it, as a scheduling cycle sees it.

mod host_ports;
mod image_state;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use k8s_openapi::api::core::v1::Node;

pub use self::{
    host_ports::{
        DEFAULT_BIND_ALL_HOST_IP, DEFAULT_PROTOCOL, HostPortInfo, ProtocolPort, pod_host_ports,
    },
    image_state::{ImageStateSummary, node_image_states},
};
use crate::{
    PodInfo,
    resource::{Resource, ResourceError},
};

/// The last generation handed out. One counter for every NodeInfo, as upstream: a node deleted
/// and added again under the same name gets a generation no snapshot has seen.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

/// A node with its pods (bound and assumed) and aggregates derived from them.
///
/// Cloning is cheap: the pod lists, ports and image states are shared behind
/// `Arc`s and copied only when a clone is changed (a snapshot and the cache share them until
/// the cache's next change to that node; a preemption dry run copies what it touches).
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    node: Option<Arc<Node>>,
    pods: Arc<Vec<Arc<PodInfo>>>,
    pods_with_affinity: Arc<Vec<Arc<PodInfo>>>,
    pods_with_required_anti_affinity: Arc<Vec<Arc<PodInfo>>>,
    used_ports: Arc<HostPortInfo>,
    requested: Resource,
    non_zero_requested: Resource,
    /// Inline rather than behind an `Arc`: every Filter and Score of the default profile reads
    /// it, and a pointer to chase is a cache miss per node (its scalar map is usually empty,
    /// so a clone copies four integers).
    allocatable: Resource,
    allocatable_errors: Arc<[ResourceError]>,
    image_states: Arc<HashMap<String, ImageStateSummary>>,
    generation: u64,
    /// What Filter and Score read of the node and its pod list on every cycle, kept next to
    /// the aggregates above so that evaluating a node touches this struct only, not the
    /// `Node` object, the pod list or the image map (each a scattered cache miss per node
    /// and plugin, with the start index rotating over thousands of nodes).
    hot: Hot,
}

/// Per-node facts derived from the `Node` and the pod list when they change, see
/// [`NodeInfo::node_name`], [`NodeInfo::num_pods`], [`NodeInfo::unschedulable`],
/// [`NodeInfo::has_taints`], [`NodeInfo::has_images`].
#[derive(Debug, Clone, Default)]
struct Hot {
    /// The node's name ("" for a ghost): the `&str` is built from this pointer and length
    /// without reading the `Node`.
    name: Arc<str>,
    num_pods: usize,
    unschedulable: bool,
    has_taints: bool,
    has_images: bool,
}

impl NodeInfo {
    /// A NodeInfo for `node` with no pods.
    #[must_use]
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = Self::default();
        info.set_node(node);
        info
    }

    /// The node; `None` for a ghost entry whose node was deleted while pods remain (or whose
    /// pods arrived before the node).
    #[must_use]
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The node's name ("" for a ghost).
    #[must_use]
    pub fn node_name(&self) -> &str {
        &self.hot.name
    }

    /// Number of pods on the node ([`NodeInfo::pods`]`().len()` without reading the list).
    #[must_use]
    pub fn num_pods(&self) -> usize {
        self.hot.num_pods
    }

    /// The node's `spec.unschedulable` (false for a ghost).
    #[must_use]
    pub fn unschedulable(&self) -> bool {
        self.hot.unschedulable
    }

    /// Whether the node's `spec.taints` is non-empty (false for a ghost): plugins skip
    /// reading the `Node` for the usual untainted node.
    #[must_use]
    pub fn has_taints(&self) -> bool {
        self.hot.has_taints
    }

    /// Whether [`NodeInfo::image_states`] is non-empty.
    #[must_use]
    pub fn has_images(&self) -> bool {
        self.hot.has_images
    }

    /// Sets or replaces the node: allocatable (with an error for each malformed quantity,
    /// counted as absent) and image states (counting only this node until the cache fills in
    /// cluster-wide counts).
    pub fn set_node(&mut self, node: Arc<Node>) {
        let (allocatable, errors) = match node.status.as_ref().and_then(|s| s.allocatable.as_ref())
        {
            Some(list) => Resource::from_resource_list(list, "status.allocatable"),
            None => (Resource::default(), Vec::new()),
        };
        self.allocatable = allocatable;
        self.allocatable_errors = errors.into();
        self.image_states = Arc::new(node_image_states(&node));
        let spec = node.spec.as_ref();
        self.hot = Hot {
            name: node.metadata.name.as_deref().unwrap_or_default().into(),
            num_pods: self.pods.len(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            has_taints: spec
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| !t.is_empty()),
            has_images: !self.image_states.is_empty(),
        };
        self.node = Some(node);
        self.generation = next_generation();
    }

    /// Drops the node object, keeping the pods (the node becomes a ghost).
    pub fn remove_node(&mut self) {
        self.node = None;
        self.allocatable = Resource::default();
        self.allocatable_errors = Arc::new([]);
        self.image_states = Arc::default();
        self.hot = Hot {
            num_pods: self.pods.len(),
            ..Hot::default()
        };
        self.generation = next_generation();
    }

    /// Pods on the node.
    #[must_use]
    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    /// The pod with key `namespace/name`, if it is on the node.
    #[must_use]
    pub fn pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.iter().find(|p| p.key() == key)
    }

    /// Pods with pod affinity or anti-affinity.
    #[must_use]
    pub fn pods_with_affinity(&self) -> &[Arc<PodInfo>] {
        &self.pods_with_affinity
    }

    /// Pods with required pod anti-affinity.
    #[must_use]
    pub fn pods_with_required_anti_affinity(&self) -> &[Arc<PodInfo>] {
        &self.pods_with_required_anti_affinity
    }

    /// Host ports used by the pods.
    #[must_use]
    pub fn used_ports(&self) -> &HostPortInfo {
        &self.used_ports
    }

    /// Sum of the pods' requests (bound and assumed pods).
    #[must_use]
    pub fn requested(&self) -> &Resource {
        &self.requested
    }

    /// Sum of the pods' CPU and memory with defaults for containers that request none (only
    /// `milli_cpu` and `memory` are set, as upstream). Spreading scores use it so that many
    /// request-less pods do not pile onto one node.
    #[must_use]
    pub fn non_zero_requested(&self) -> &Resource {
        &self.non_zero_requested
    }

    /// The node's `status.allocatable` (zero for a ghost).
    #[must_use]
    pub fn allocatable(&self) -> &Resource {
        &self.allocatable
    }

    /// Malformed quantities in the node's `status.allocatable` (they count as absent).
    #[must_use]
    pub fn allocatable_errors(&self) -> &[ResourceError] {
        &self.allocatable_errors
    }

    /// Images on the node, by each of their names.
    #[must_use]
    pub fn image_states(&self) -> &HashMap<String, ImageStateSummary> {
        &self.image_states
    }

    /// Replaces the image summaries; the cache calls it to fill in how many nodes have each
    /// image. It does not change the generation: the summaries derive from the node.
    pub fn set_image_states(&mut self, states: Arc<HashMap<String, ImageStateSummary>>) {
        self.hot.has_images = !states.is_empty();
        self.image_states = states;
    }

    /// Changes on every mutation; the snapshot copies only NodeInfos whose generation moved.
    /// Generations come from one counter shared by all NodeInfos, so they also order changes
    /// across nodes.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds a pod to the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.account(&pod, true);
        if pod.has_affinity() {
            Arc::make_mut(&mut self.pods_with_affinity).push(Arc::clone(&pod));
        }
        if pod.has_required_anti_affinity() {
            Arc::make_mut(&mut self.pods_with_required_anti_affinity).push(Arc::clone(&pod));
        }
        Arc::make_mut(&mut self.pods).push(pod);
        self.hot.num_pods = self.pods.len();
    }

    /// Removes a pod by key, undoing exactly what [`NodeInfo::add_pod`] did; false when it was
    /// not there.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.take_pod(key).is_some()
    }

    /// Removes a pod by key and returns it.
    pub fn take_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let index = self.pods.iter().position(|p| p.key() == key)?;
        // Order is not significant (upstream swaps with the last pod too).
        let pod = Arc::make_mut(&mut self.pods).swap_remove(index);
        self.hot.num_pods = self.pods.len();
        if pod.has_affinity() {
            remove_by_key(&mut self.pods_with_affinity, key);
        }
        if pod.has_required_anti_affinity() {
            remove_by_key(&mut self.pods_with_required_anti_affinity, key);
        }
        self.account(&pod, false);
        Some(pod)
    }

    /// Adds (or subtracts) the pod's requests and host ports, and bumps the generation. The
    /// arithmetic wraps so that subtracting always undoes adding exactly (pod values are capped
    /// far below overflow, see `MAX_POD_RESOURCE_VALUE`).
    fn account(&mut self, pod: &PodInfo, add: bool) {
        let resource = pod.resource();
        let op = if add {
            i64::wrapping_add
        } else {
            i64::wrapping_sub
        };
        if add {
            self.requested.add(&resource.requests);
        } else {
            self.requested.sub(&resource.requests);
        }
        let non_zero = &mut self.non_zero_requested;
        non_zero.milli_cpu = op(non_zero.milli_cpu, resource.non_zero_milli_cpu);
        non_zero.memory = op(non_zero.memory, resource.non_zero_memory);
        // Most pods use no host port: leave the (shared) port map alone for them.
        if pod_host_ports(pod.pod()).next().is_some() {
            Arc::make_mut(&mut self.used_ports).update_pod(pod.pod(), add);
        }
        self.generation = next_generation();
    }
}

fn remove_by_key(list: &mut Arc<Vec<Arc<PodInfo>>>, key: &str) {
    if let Some(i) = list.iter().position(|p| p.key() == key) {
        Arc::make_mut(list).swap_remove(i);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{
            Affinity, Container, ContainerImage, ContainerPort, NodeStatus, Pod, PodAffinity,
            PodSpec, ResourceRequirements,
        },
        apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
    };

    use super::*;
    use crate::resource::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST};

    fn node(name: &str, allocatable: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(
                    allocatable
                        .iter()
                        .map(|(k, v)| ((*k).into(), Quantity((*v).into())))
                        .collect(),
                ),
                images: Some(vec![
                    ContainerImage {
                        names: Some(vec!["nginx:1".into(), "nginx@sha256:1".into()]),
                        size_bytes: Some(500),
                    },
                    ContainerImage {
                        names: Some(vec!["busybox".into()]),
                        size_bytes: None,
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(name: &str, cpu: Option<&str>, host_port: Option<i32>, affinity: bool) -> Arc<PodInfo> {
        let container = Container {
            name: "c".into(),
            resources: cpu.map(|c| ResourceRequirements {
                requests: Some([("cpu".to_owned(), Quantity(c.into()))].into()),
                ..Default::default()
            }),
            ports: host_port.map(|p| {
                vec![ContainerPort {
                    container_port: 80,
                    host_port: Some(p),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        Arc::new(PodInfo::new(Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                affinity: affinity.then(|| Affinity {
                    pod_affinity: Some(PodAffinity::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    #[test]
    fn allocatable_and_images_from_the_node() {
        let info = NodeInfo::new(node(
            "n1",
            &[
                ("cpu", "4"),
                ("memory", "8Gi"),
                ("pods", "110"),
                ("x.io/y", "bad!"),
            ],
        ));
        assert_eq!(info.node_name(), "n1");
        assert_eq!(info.allocatable().milli_cpu, 4000);
        assert_eq!(info.allocatable().memory, 8 << 30);
        assert_eq!(info.allocatable().allowed_pod_number, 110);
        assert_eq!(info.allocatable_errors().len(), 1);
        assert_eq!(
            info.allocatable_errors()[0].field,
            "status.allocatable[x.io/y]"
        );
        assert_eq!(info.image_states().len(), 3);
        assert_eq!(
            info.image_states()["nginx@sha256:1"],
            ImageStateSummary {
                size: 500,
                num_nodes: 1
            }
        );
        assert_eq!(info.image_states()["busybox"].size, 0);
    }

    #[test]
    fn add_and_remove_pods_undo_exactly() {
        let mut info = NodeInfo::new(node("n1", &[("cpu", "4")]));
        let empty = info.clone();
        let g0 = info.generation();
        info.add_pod(pod("a", Some("500m"), Some(8080), true));
        assert!(info.generation() > g0);
        info.add_pod(pod("b", None, None, false));
        assert_eq!(info.pods().len(), 2);
        assert_eq!(info.requested().milli_cpu, 500);
        assert_eq!(
            info.non_zero_requested().milli_cpu,
            500 + DEFAULT_MILLI_CPU_REQUEST
        );
        assert_eq!(info.non_zero_requested().memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(info.used_ports().check_conflict("", "TCP", 8080));
        assert_eq!(info.pods_with_affinity().len(), 1);
        // The clone taken before is untouched (copy on write).
        assert!(empty.pods().is_empty());

        assert!(info.remove_pod("ns/a"));
        assert!(!info.remove_pod("ns/a"));
        assert!(info.remove_pod("ns/b"));
        assert_eq!(info.requested(), empty.requested());
        assert_eq!(info.non_zero_requested(), empty.non_zero_requested());
        assert_eq!(info.used_ports(), empty.used_ports());
        assert!(info.pods_with_affinity().is_empty());
        assert!(info.pods().is_empty());
    }

    #[test]
    fn ghost_keeps_pods() {
        let mut info = NodeInfo::new(node("n1", &[("cpu", "4")]));
        info.add_pod(pod("a", Some("1"), None, false));
        info.remove_node();
        assert!(info.node().is_none());
        assert_eq!(info.node_name(), "");
        assert_eq!(info.pods().len(), 1);
        assert_eq!(info.requested().milli_cpu, 1000);
        assert_eq!(info.allocatable(), &Resource::default());
    }
}
