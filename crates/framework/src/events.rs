//! Cluster events and queueing hints: how the queue learns which rejected pods an event can
//! help.
//!
//! A plugin that can reject a pod (PreEnqueue, PreFilter, Filter, Reserve, Permit) registers the
//! events that may make it change its mind, each with an optional [`QueueingHintFn`]. When such
//! an event happens, the queue moves a pod rejected by that plugin only if the hint says
//! [`QueueingHint::Queue`] (no hint, or a hint that fails, means Queue).

use std::{any::Any, borrow::Cow, fmt, sync::Arc};

use bitflags::bitflags;
use k8s_openapi::api::core::v1::{Node, Pod};

bitflags! {
    /// What happened to an object; a set of flags, as upstream's `ActionType`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct ActionType: u32 {
        /// The object was created.
        const ADD = 1 << 0;
        /// The object was deleted.
        const DELETE = 1 << 1;
        /// A node's allocatable changed.
        const UPDATE_NODE_ALLOCATABLE = 1 << 2;
        /// A node's labels changed.
        const UPDATE_NODE_LABEL = 1 << 3;
        /// A node's taints or `spec.unschedulable` changed.
        const UPDATE_NODE_TAINT = 1 << 4;
        /// A node's conditions changed.
        const UPDATE_NODE_CONDITION = 1 << 5;
        /// A node's annotations changed.
        const UPDATE_NODE_ANNOTATION = 1 << 6;
        /// A pod's labels changed.
        const UPDATE_POD_LABEL = 1 << 7;
        /// A pod's resource requests went down (in-place resize).
        const UPDATE_POD_SCALE_DOWN = 1 << 8;
        /// A pod's tolerations changed.
        const UPDATE_POD_TOLERATION = 1 << 9;
        /// A pod's last scheduling gate was removed.
        const UPDATE_POD_SCHEDULING_GATES_ELIMINATED = 1 << 10;
        /// A pod's generated resource claim status changed.
        const UPDATE_POD_GENERATED_RESOURCE_CLAIM = 1 << 11;
        /// Any update.
        const UPDATE = Self::UPDATE_NODE_ALLOCATABLE.bits()
            | Self::UPDATE_NODE_LABEL.bits()
            | Self::UPDATE_NODE_TAINT.bits()
            | Self::UPDATE_NODE_CONDITION.bits()
            | Self::UPDATE_NODE_ANNOTATION.bits()
            | Self::UPDATE_POD_LABEL.bits()
            | Self::UPDATE_POD_SCALE_DOWN.bits()
            | Self::UPDATE_POD_TOLERATION.bits()
            | Self::UPDATE_POD_SCHEDULING_GATES_ELIMINATED.bits()
            | Self::UPDATE_POD_GENERATED_RESOURCE_CLAIM.bits();
        /// Everything.
        const ALL = (1 << 12) - 1;
    }
}

impl fmt::Display for ActionType {
    /// Upstream's spelling: `Add`, `UpdateNodeLabel`, `Add|Delete`, `All`, `Update`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == ActionType::ALL {
            return f.write_str("All");
        }
        if *self == ActionType::UPDATE {
            return f.write_str("Update");
        }
        if self.is_empty() {
            return f.write_str("None");
        }
        const NAMES: [(ActionType, &str); 12] = [
            (ActionType::ADD, "Add"),
            (ActionType::DELETE, "Delete"),
            (ActionType::UPDATE_NODE_ALLOCATABLE, "UpdateNodeAllocatable"),
            (ActionType::UPDATE_NODE_LABEL, "UpdateNodeLabel"),
            (ActionType::UPDATE_NODE_TAINT, "UpdateNodeTaint"),
            (ActionType::UPDATE_NODE_CONDITION, "UpdateNodeCondition"),
            (ActionType::UPDATE_NODE_ANNOTATION, "UpdateNodeAnnotation"),
            (ActionType::UPDATE_POD_LABEL, "UpdatePodLabel"),
            (ActionType::UPDATE_POD_SCALE_DOWN, "UpdatePodScaleDown"),
            (ActionType::UPDATE_POD_TOLERATION, "UpdatePodToleration"),
            (
                ActionType::UPDATE_POD_SCHEDULING_GATES_ELIMINATED,
                "UpdatePodSchedulingGatesEliminated",
            ),
            (
                ActionType::UPDATE_POD_GENERATED_RESOURCE_CLAIM,
                "UpdatePodGeneratedResourceClaim",
            ),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The kind of object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventResource {
    /// Pods; a registration for `Pod` also matches [`EventResource::AssignedPod`] and
    /// [`EventResource::UnschedulablePod`] events.
    Pod,
    /// Internal: a pod bound to a node.
    AssignedPod,
    /// Internal: a pod waiting in the queue.
    UnschedulablePod,
    /// Nodes.
    Node,
    /// PersistentVolumes.
    PersistentVolume,
    /// PersistentVolumeClaims.
    PersistentVolumeClaim,
    /// storage.k8s.io CSINodes.
    CsiNode,
    /// storage.k8s.io CSIDrivers.
    CsiDriver,
    /// storage.k8s.io VolumeAttachments.
    VolumeAttachment,
    /// storage.k8s.io CSIStorageCapacities.
    CsiStorageCapacity,
    /// storage.k8s.io StorageClasses.
    StorageClass,
    /// resource.k8s.io ResourceClaims.
    ResourceClaim,
    /// resource.k8s.io ResourceSlices.
    ResourceSlice,
    /// resource.k8s.io DeviceClasses.
    DeviceClass,
    /// Any other resource, as `<plural>.<version>.<group>` (e.g. PodDisruptionBudgets).
    Custom(Cow<'static, str>),
    /// Every resource.
    WildCard,
}

impl EventResource {
    /// Upstream's name of the resource.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            EventResource::Pod => "Pod",
            EventResource::AssignedPod => "AssignedPod",
            EventResource::UnschedulablePod => "UnschedulablePod",
            EventResource::Node => "Node",
            EventResource::PersistentVolume => "PersistentVolume",
            EventResource::PersistentVolumeClaim => "PersistentVolumeClaim",
            EventResource::CsiNode => "storage.k8s.io/CSINode",
            EventResource::CsiDriver => "storage.k8s.io/CSIDriver",
            EventResource::VolumeAttachment => "storage.k8s.io/VolumeAttachment",
            EventResource::CsiStorageCapacity => "storage.k8s.io/CSIStorageCapacity",
            EventResource::StorageClass => "storage.k8s.io/StorageClass",
            EventResource::ResourceClaim => "resource.k8s.io/ResourceClaim",
            EventResource::ResourceSlice => "resource.k8s.io/ResourceSlice",
            EventResource::DeviceClass => "resource.k8s.io/DeviceClass",
            EventResource::Custom(s) => s,
            EventResource::WildCard => "*",
        }
    }

    /// Does a registration for `self` cover an incoming event about `incoming`?
    #[must_use]
    pub fn matches(&self, incoming: &EventResource) -> bool {
        self == &EventResource::WildCard
            || self == incoming
            || (self == &EventResource::Pod
                && matches!(
                    incoming,
                    EventResource::AssignedPod | EventResource::UnschedulablePod
                ))
    }
}

impl fmt::Display for EventResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change in the cluster: which resource, what happened, and an optional custom label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    /// The resource.
    pub resource: EventResource,
    /// What happened to it.
    pub action: ActionType,
    /// A label replacing the `<Resource><Action>` default (used by the queue's own events).
    pub custom_label: Option<&'static str>,
}

impl ClusterEvent {
    /// An event about `resource`.
    #[must_use]
    pub const fn new(resource: EventResource, action: ActionType) -> Self {
        Self {
            resource,
            action,
            custom_label: None,
        }
    }

    /// An event with a custom label.
    #[must_use]
    pub const fn labeled(resource: EventResource, action: ActionType, label: &'static str) -> Self {
        Self {
            resource,
            action,
            custom_label: Some(label),
        }
    }

    /// The `*`/All event.
    #[must_use]
    pub const fn wildcard() -> Self {
        Self::new(EventResource::WildCard, ActionType::ALL)
    }

    /// The label used in metrics (`scheduler_queue_incoming_pods_total{event=…}`) and logs:
    /// the custom label, else `<Resource><Action>` as upstream (`NodeAdd`, `AssignedPodDelete`).
    #[must_use]
    pub fn label(&self) -> Cow<'static, str> {
        match self.custom_label {
            Some(l) => Cow::Borrowed(l),
            None => Cow::Owned(format!("{}{}", self.resource, self.action)),
        }
    }

    /// `*` resource with All actions.
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.resource == EventResource::WildCard && self.action == ActionType::ALL
    }

    /// Does this registered event cover `incoming`? Wildcard registrations match everything;
    /// otherwise the resources must match and the action sets overlap (upstream `Match`).
    #[must_use]
    pub fn matches(&self, incoming: &ClusterEvent) -> bool {
        self.is_wildcard()
            || (self.resource.matches(&incoming.resource)
                && self.action.intersects(incoming.action))
    }
}

impl fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The queue's own events and the ones the scheduler's informers raise.
pub mod well_known {
    use super::{ActionType, ClusterEvent, EventResource};

    /// A pod sat in unschedulablePods longer than the configured maximum.
    pub const UNSCHEDULABLE_TIMEOUT: ClusterEvent = ClusterEvent::labeled(
        EventResource::WildCard,
        ActionType::ALL,
        "UnschedulableTimeout",
    );
    /// A plugin asked to activate pods (`PodsToActivate`).
    pub const FORCE_ACTIVATE: ClusterEvent =
        ClusterEvent::labeled(EventResource::WildCard, ActionType::ALL, "ForceActivate");
    /// A pod entered the queue after a failed attempt.
    pub const SCHEDULE_ATTEMPT_FAILURE: &str = "ScheduleAttemptFailure";
    /// A pod's backoff expired and it moved to activeQ.
    pub const BACKOFF_COMPLETE: &str = "BackoffComplete";
    /// A pod was popped straight from backoffQ because activeQ was empty.
    pub const POP_FROM_BACKOFF_Q: &str = "PopFromBackoffQ";
    /// A pod bound to a node appeared.
    pub const ASSIGNED_POD_ADD: ClusterEvent =
        ClusterEvent::new(EventResource::AssignedPod, ActionType::ADD);
    /// A pod bound to a node changed.
    pub const ASSIGNED_POD_UPDATE: ClusterEvent =
        ClusterEvent::new(EventResource::AssignedPod, ActionType::UPDATE);
    /// A pod bound to a node went away.
    pub const ASSIGNED_POD_DELETE: ClusterEvent =
        ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE);
    /// An unscheduled pod appeared.
    pub const UNSCHEDULED_POD_ADD: ClusterEvent =
        ClusterEvent::new(EventResource::UnschedulablePod, ActionType::ADD);
    /// An unscheduled pod changed.
    pub const UNSCHEDULED_POD_UPDATE: ClusterEvent =
        ClusterEvent::new(EventResource::UnschedulablePod, ActionType::UPDATE);
    /// An unscheduled pod went away.
    pub const UNSCHEDULED_POD_DELETE: ClusterEvent =
        ClusterEvent::new(EventResource::UnschedulablePod, ActionType::DELETE);
    /// A node appeared.
    pub const NODE_ADD: ClusterEvent = ClusterEvent::new(EventResource::Node, ActionType::ADD);
    /// A node went away.
    pub const NODE_DELETE: ClusterEvent =
        ClusterEvent::new(EventResource::Node, ActionType::DELETE);
}

/// The object an event carries, given to queueing hints (old and new state).
#[derive(Clone)]
pub enum ClusterObject {
    /// A pod.
    Pod(Arc<Pod>),
    /// A node.
    Node(Arc<Node>),
    /// Any other object (downcast with [`ClusterObject::downcast`]).
    Other(Arc<dyn Any + Send + Sync>),
}

impl ClusterObject {
    /// The pod, when the object is one.
    #[must_use]
    pub fn as_pod(&self) -> Option<&Pod> {
        match self {
            ClusterObject::Pod(p) => Some(p),
            _ => None,
        }
    }

    /// The node, when the object is one.
    #[must_use]
    pub fn as_node(&self) -> Option<&Node> {
        match self {
            ClusterObject::Node(n) => Some(n),
            _ => None,
        }
    }

    /// Any other object, downcast to `T`.
    #[must_use]
    pub fn downcast<T: Any>(&self) -> Option<&T> {
        match self {
            ClusterObject::Other(o) => o.downcast_ref::<T>(),
            _ => None,
        }
    }
}

impl fmt::Debug for ClusterObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterObject::Pod(p) => write!(f, "Pod({:?})", p.metadata.name),
            ClusterObject::Node(n) => write!(f, "Node({:?})", n.metadata.name),
            ClusterObject::Other(_) => f.write_str("Other(..)"),
        }
    }
}

/// A hint's verdict on one pod for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueingHint {
    /// The event cannot make the pod schedulable: leave it where it is.
    QueueSkip,
    /// The event may make the pod schedulable: move it to activeQ or backoffQ.
    Queue,
}

/// Error type a hint may return; the queue treats an error as [`QueueingHint::Queue`].
pub type HintError = Box<dyn std::error::Error + Send + Sync>;

/// `hint(pod, old, new)`: `old` is `None` for adds, `new` is `None` for deletes. Must be cheap
/// and must not block: it runs inside the queue's critical section for every rejected pod.
pub type QueueingHintFn = Arc<
    dyn Fn(&Pod, Option<&ClusterObject>, Option<&ClusterObject>) -> Result<QueueingHint, HintError>
        + Send
        + Sync,
>;

/// A registered event, with an optional hint (none = always Queue).
#[derive(Clone)]
pub struct ClusterEventWithHint {
    /// The event.
    pub event: ClusterEvent,
    /// The hint; `None` means always Queue.
    pub hint: Option<QueueingHintFn>,
}

impl ClusterEventWithHint {
    /// An event without a hint: every matching event requeues.
    #[must_use]
    pub fn new(event: ClusterEvent) -> Self {
        Self { event, hint: None }
    }

    /// An event with a hint.
    #[must_use]
    pub fn with_hint<F>(event: ClusterEvent, hint: F) -> Self
    where
        F: Fn(
                &Pod,
                Option<&ClusterObject>,
                Option<&ClusterObject>,
            ) -> Result<QueueingHint, HintError>
            + Send
            + Sync
            + 'static,
    {
        Self {
            event,
            hint: Some(Arc::new(hint)),
        }
    }

    /// Runs the hint; no hint or an error both mean Queue.
    #[must_use]
    pub fn evaluate(
        &self,
        pod: &Pod,
        old: Option<&ClusterObject>,
        new: Option<&ClusterObject>,
    ) -> QueueingHint {
        match &self.hint {
            None => QueueingHint::Queue,
            Some(h) => h(pod, old, new).unwrap_or(QueueingHint::Queue),
        }
    }
}

impl fmt::Debug for ClusterEventWithHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterEventWithHint")
            .field("event", &self.event)
            .field("hint", &self.hint.is_some())
            .finish()
    }
}

/// What a plugin that does not implement `EnqueueExtensions` is given: every event of every
/// resource, no hint — the safe default that requeues on anything.
#[must_use]
pub fn unroll_wildcard_resource() -> Vec<ClusterEventWithHint> {
    [
        EventResource::Pod,
        EventResource::Node,
        EventResource::PersistentVolume,
        EventResource::PersistentVolumeClaim,
        EventResource::CsiNode,
        EventResource::CsiDriver,
        EventResource::CsiStorageCapacity,
        EventResource::StorageClass,
        EventResource::ResourceClaim,
        EventResource::DeviceClass,
    ]
    .into_iter()
    .map(|r| ClusterEventWithHint::new(ClusterEvent::new(r, ActionType::ALL)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_upstream() {
        assert_eq!(well_known::NODE_ADD.label(), "NodeAdd");
        assert_eq!(well_known::ASSIGNED_POD_DELETE.label(), "AssignedPodDelete");
        assert_eq!(
            ClusterEvent::new(
                EventResource::Node,
                ActionType::UPDATE_NODE_LABEL | ActionType::UPDATE_NODE_TAINT
            )
            .label(),
            "NodeUpdateNodeLabel|UpdateNodeTaint"
        );
        assert_eq!(
            well_known::UNSCHEDULABLE_TIMEOUT.label(),
            "UnschedulableTimeout"
        );
        assert_eq!(
            ClusterEvent::new(EventResource::Pod, ActionType::ALL).label(),
            "PodAll"
        );
    }

    #[test]
    fn matching() {
        let pod_all = ClusterEvent::new(EventResource::Pod, ActionType::ALL);
        assert!(pod_all.matches(&well_known::ASSIGNED_POD_ADD));
        assert!(pod_all.matches(&well_known::UNSCHEDULED_POD_UPDATE));
        assert!(!pod_all.matches(&well_known::NODE_ADD));
        let node_taint = ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
        );
        assert!(node_taint.matches(&well_known::NODE_ADD));
        assert!(!node_taint.matches(&ClusterEvent::new(
            EventResource::Node,
            ActionType::UPDATE_NODE_LABEL
        )));
        assert!(ClusterEvent::wildcard().matches(&well_known::NODE_DELETE));
        // An incoming wildcard event matches only a wildcard registration.
        assert!(!node_taint.matches(&well_known::UNSCHEDULABLE_TIMEOUT));
    }

    #[test]
    fn hint_errors_mean_queue() {
        let pod = Pod::default();
        let h = ClusterEventWithHint::with_hint(well_known::NODE_ADD, |_, _, _| Err("boom".into()));
        assert_eq!(h.evaluate(&pod, None, None), QueueingHint::Queue);
        let h = ClusterEventWithHint::with_hint(well_known::NODE_ADD, |_, _, _| {
            Ok(QueueingHint::QueueSkip)
        });
        assert_eq!(h.evaluate(&pod, None, None), QueueingHint::QueueSkip);
        assert_eq!(
            ClusterEventWithHint::new(well_known::NODE_ADD).evaluate(&pod, None, None),
            QueueingHint::Queue
        );
    }
}
