//! [`Handle`]: what a plugin can reach besides its arguments.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, OnceLock, Weak},
};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;

use crate::{PodInfo, Snapshot, runtime::Framework, waiting_pods::WaitingPods};

/// Nominated pods: pods that preemption made room for and that wait to be scheduled on that
/// node. The scheduling queue implements it; Filter counts nominated pods of equal or higher
/// priority as if they were already on the node.
pub trait PodNominator: Send + Sync {
    /// Records `pod` as nominated to `node_name` (`None`: use the pod's
    /// `status.nominatedNodeName`).
    fn add_nominated_pod(&self, pod: Arc<PodInfo>, node_name: Option<String>);
    /// Forgets the nomination of `pod`, if any.
    fn delete_nominated_pod_if_exists(&self, pod: &Pod);
    /// Pods nominated to `node_name`.
    fn nominated_pods_for_node(&self, node_name: &str) -> Vec<Arc<PodInfo>>;
}

/// Moves pods straight to activeQ (upstream `PodActivator`, used through `PodsToActivate`).
pub trait PodActivator: Send + Sync {
    /// Activates the given pods (keyed `namespace/name`) if they wait in the queue.
    fn activate(&self, pods: HashMap<String, Arc<Pod>>);
}

/// Kind of a Kubernetes event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// Emits Kubernetes events about pods (the scheduler wires it to the events API).
pub trait EventRecorder: Send + Sync {
    /// Records an event regarding `pod`: `reason` such as `Scheduled` / `FailedScheduling`,
    /// `action` such as `Binding` / `Scheduling`, and a human-readable `note`.
    fn record(&self, pod: &Pod, event_type: EventType, reason: &str, action: &str, note: &str);
}

/// An [`EventRecorder`] that drops everything (tests, simulators).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopRecorder;

impl EventRecorder for NoopRecorder {
    fn record(&self, _: &Pod, _: EventType, _: &str, _: &str, _: &str) {}
}

/// Everything a plugin may use besides its arguments: the cycle's snapshot, nominated and
/// waiting pods, the kube client, the event recorder and the profile name. One per profile;
/// plugins receive an `Arc<Handle>` in their factory.
pub struct Handle {
    profile_name: String,
    client: Option<kube::Client>,
    event_recorder: Arc<dyn EventRecorder>,
    snapshot: ArcSwap<Snapshot>,
    nominator: OnceLock<Arc<dyn PodNominator>>,
    activator: OnceLock<Arc<dyn PodActivator>>,
    waiting_pods: WaitingPods,
    framework: OnceLock<Weak<Framework>>,
}

impl Handle {
    /// A handle for profile `profile_name`.
    #[must_use]
    pub fn new(
        profile_name: impl Into<String>,
        client: Option<kube::Client>,
        recorder: Arc<dyn EventRecorder>,
    ) -> Self {
        Self {
            profile_name: profile_name.into(),
            client,
            event_recorder: recorder,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            nominator: OnceLock::new(),
            activator: OnceLock::new(),
            waiting_pods: WaitingPods::default(),
            framework: OnceLock::new(),
        }
    }

    /// A handle with no client and no events (unit tests, simulators).
    #[must_use]
    pub fn for_tests(profile_name: impl Into<String>) -> Self {
        Self::new(profile_name, None, Arc::new(NoopRecorder))
    }

    /// The profile's `schedulerName`.
    #[must_use]
    pub fn profile_name(&self) -> &str {
        &self.profile_name
    }

    /// The kube client (`None` when running without a cluster, e.g. in the simulator).
    #[must_use]
    pub fn client(&self) -> Option<&kube::Client> {
        self.client.as_ref()
    }

    /// The event recorder.
    #[must_use]
    pub fn event_recorder(&self) -> &Arc<dyn EventRecorder> {
        &self.event_recorder
    }

    /// The snapshot of the current scheduling cycle. Valid within the scheduling cycle only —
    /// binding-cycle code, queueing hints and PreEnqueue must not rely on it.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Installs the snapshot for the next cycle (the scheduler calls this).
    pub fn set_snapshot(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }

    /// Nominated pods, once the scheduler has connected the queue.
    #[must_use]
    pub fn nominator(&self) -> Option<&Arc<dyn PodNominator>> {
        self.nominator.get()
    }

    /// Connects the nominator (once; later calls are ignored).
    pub fn set_nominator(&self, nominator: Arc<dyn PodNominator>) {
        let _ = self.nominator.set(nominator);
    }

    /// Pods nominated to `node_name` (empty without a nominator).
    #[must_use]
    pub fn nominated_pods_for_node(&self, node_name: &str) -> Vec<Arc<PodInfo>> {
        self.nominator
            .get()
            .map(|n| n.nominated_pods_for_node(node_name))
            .unwrap_or_default()
    }

    /// The pod activator, once the scheduler has connected the queue.
    #[must_use]
    pub fn activator(&self) -> Option<&Arc<dyn PodActivator>> {
        self.activator.get()
    }

    /// Connects the activator (once).
    pub fn set_activator(&self, activator: Arc<dyn PodActivator>) {
        let _ = self.activator.set(activator);
    }

    /// Pods waiting at Permit: allow or reject them here.
    #[must_use]
    pub fn waiting_pods(&self) -> &WaitingPods {
        &self.waiting_pods
    }

    /// The profile's framework, to run other plugins (preemption's dry runs). `None` while the
    /// framework is being built or after it was dropped.
    #[must_use]
    pub fn framework(&self) -> Option<Arc<Framework>> {
        self.framework.get().and_then(Weak::upgrade)
    }

    pub(crate) fn set_framework(&self, fw: Weak<Framework>) {
        let _ = self.framework.set(fw);
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("profile_name", &self.profile_name)
            .finish_non_exhaustive()
    }
}
