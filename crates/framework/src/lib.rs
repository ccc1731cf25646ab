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
mod node_info;
mod plugin;
mod pod_info;
pub mod quantity;
mod queued_pod_info;
mod registry;
pub mod resource;
pub mod runtime;
mod snapshot;
mod status;
mod types;
mod waiting_pods;

pub use cycle_state::{CycleState, StateData, StateError};
pub use events::{
    ActionType, ClusterEvent, ClusterEventWithHint, ClusterObject, EventResource, QueueingHint,
};
pub use handle::{EventRecorder, EventType, Handle, NoopRecorder, PodActivator, PodNominator};
pub use node_info::{
    DEFAULT_BIND_ALL_HOST_IP, DEFAULT_PROTOCOL, HostPortInfo, ImageStateSummary, NodeInfo,
    ProtocolPort, node_image_states, pod_host_ports,
};
pub use plugin::*;
pub use pod_info::{
    AffinityTerm, LabelOperator, LabelRequirement, LabelSelector, PodInfo, PodInfoError,
    SelectorError, WeightedAffinityTerm, pod_hash, pod_key, pod_priority,
};
pub use quantity::{ParsedQuantity, QuantityError, parse_quantity};
pub use queued_pod_info::QueuedPodInfo;
pub use registry::{DuplicatePlugin, PluginArgs, PluginError, PluginFactory, Registry};
pub use resource::{PodResource, Resource, ResourceError};
pub use runtime::Framework;
pub use snapshot::Snapshot;
pub use status::{Code, Status, StatusError};
pub use types::*;
pub use waiting_pods::{WaitingPod, WaitingPods};
