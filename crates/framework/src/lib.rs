//! The ksched scheduling framework.
//!
//! Upstream kube-scheduler's framework, in Rust: the plugin traits of every extension point,
//! [`Status`], [`CycleState`], [`NodeInfo`] and the [`Snapshot`] plugins read, the runtime that
//! runs one profile, the plugin registry and `KubeSchedulerConfiguration` parsing.

pub mod events;
mod node_info;
mod pod_info;
mod queued_pod_info;
mod snapshot;
mod status;

pub use events::{ActionType, ClusterEvent, ClusterEventWithHint, ClusterObject, EventResource, QueueingHint};
pub use node_info::NodeInfo;
pub use pod_info::{PodInfo, pod_key, pod_priority};
pub use queued_pod_info::QueuedPodInfo;
pub use snapshot::Snapshot;
pub use status::{Code, Status, StatusError};
