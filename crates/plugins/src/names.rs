//! Plugin names, as upstream spells them (`pkg/scheduler/framework/plugins/names`).

/// Orders activeQ by priority, then queue time.
pub const PRIORITY_SORT: &str = "PrioritySort";
/// Holds pods with `spec.schedulingGates` out of the queue.
pub const SCHEDULING_GATES: &str = "SchedulingGates";
/// Binds through the `pods/binding` subresource.
pub const DEFAULT_BINDER: &str = "DefaultBinder";
/// Rejects nodes with `spec.unschedulable` unless the pod tolerates it.
pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
/// Rejects nodes other than the pod's `spec.nodeName`.
pub const NODE_NAME: &str = "NodeName";
/// Taints and tolerations: filters NoSchedule/NoExecute, scores PreferNoSchedule.
pub const TAINT_TOLERATION: &str = "TaintToleration";
/// `nodeSelector` and node affinity (required and preferred).
pub const NODE_AFFINITY: &str = "NodeAffinity";
/// Host port conflicts.
pub const NODE_PORTS: &str = "NodePorts";
/// Requests against allocatable, and the resource scoring strategies.
pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
/// Prefers nodes whose resource usage stays balanced.
pub const NODE_RESOURCES_BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
/// Prefers nodes that already have the pod's images.
pub const IMAGE_LOCALITY: &str = "ImageLocality";
/// `topologySpreadConstraints` and the cluster-level default spreading.
pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
/// Pod affinity and anti-affinity.
pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
/// Preemption (PostFilter).
pub const DEFAULT_PREEMPTION: &str = "DefaultPreemption";
/// PersistentVolumeClaim binding (not supported yet: pods with claims are rejected).
pub const VOLUME_BINDING: &str = "VolumeBinding";
/// Volume access-mode conflicts (placeholder, see the configuration reference).
pub const VOLUME_RESTRICTIONS: &str = "VolumeRestrictions";
/// Per-node CSI volume limits (placeholder, see the configuration reference).
pub const NODE_VOLUME_LIMITS: &str = "NodeVolumeLimits";
/// Zone labels of bound PersistentVolumes (placeholder, see the configuration reference).
pub const VOLUME_ZONE: &str = "VolumeZone";
/// Dynamic resource allocation (not supported yet: pods with resource claims are rejected).
pub const DYNAMIC_RESOURCES: &str = "DynamicResources";
