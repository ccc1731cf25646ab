//! The ksched scheduling framework.
//!
//! Upstream kube-scheduler's framework, in Rust: the plugin traits of every extension point,
//! [`Status`], [`CycleState`], [`NodeInfo`] and the [`Snapshot`] plugins read, the runtime that
//! runs one profile, the plugin registry and `KubeSchedulerConfiguration` parsing.

pub mod config;
mod cycle_state;
pub mod events;
mod handle;
pub mod metrics;
mod plugin;
mod registry;
pub mod runtime;
mod types;
mod waiting_pods;
mod node_info;
mod pod_info;
mod queued_pod_info;
mod snapshot;
mod status;

pub use cycle_state::{CycleState, StateData, StateError};
pub use events::{ActionType, ClusterEvent, ClusterEventWithHint, ClusterObject, EventResource, QueueingHint};
pub use node_info::NodeInfo;
pub use pod_info::{PodInfo, pod_key, pod_priority};
pub use queued_pod_info::QueuedPodInfo;
pub use snapshot::Snapshot;
pub use status::{Code, Status, StatusError};
pub use handle::{EventRecorder, EventType, Handle, NoopRecorder, PodActivator, PodNominator};
pub use plugin::*;
pub use registry::{DuplicatePlugin, PluginArgs, PluginError, PluginFactory, Registry};
pub use runtime::Framework;
pub use types::*;
pub use waiting_pods::{WaitingPod, WaitingPods};
