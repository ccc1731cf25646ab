//! [`QueuedPodInfo`]: a pod as the scheduling queue tracks it.

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use crate::PodInfo;

/// A pod in the scheduling queue, with its attempt history. QueueSort plugins compare two of
/// these.
///
/// The queue hands one out from `pop` and takes it back in `add_unschedulable_if_not_present`:
/// between the two the scheduler owns it and records in [`QueuedPodInfo::unschedulable_plugins`]
/// or [`QueuedPodInfo::pending_plugins`] which plugins turned the pod down, because those decide
/// which cluster events can bring it back.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod.
    pub pod_info: Arc<PodInfo>,
    /// When the pod was last added to the queue (activeQ ordering among equal priorities, and
    /// the start of its backoff).
    pub timestamp: Instant,
    /// Scheduling attempts so far (incremented by every pop).
    pub attempts: u32,
    /// Attempts that ended with rejector plugins (drives the backoff).
    pub unschedulable_count: u32,
    /// Consecutive attempts that ended with an error and no rejector plugin (drives the error
    /// backoff); reset by the next rejection.
    pub consecutive_errors_count: u32,
    /// When the pod first entered activeQ; `None` until then (the scheduling SLI starts here).
    pub initial_attempt_timestamp: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt (which events can requeue it). The
    /// queue clears the set when it pops the pod.
    pub unschedulable_plugins: BTreeSet<String>,
    /// Plugins that returned Pending in its last attempt (a Queue hint from one of them skips
    /// the backoff). Cleared on pop.
    pub pending_plugins: BTreeSet<String>,
    /// The PreEnqueue plugin holding the pod back, if it is gated.
    pub gating_plugin: Option<String>,
}

impl QueuedPodInfo {
    /// A fresh entry for a pod first seen at `now`.
    #[must_use]
    pub fn new(pod_info: Arc<PodInfo>, now: Instant) -> Self {
        Self {
            pod_info,
            timestamp: now,
            attempts: 0,
            unschedulable_count: 0,
            consecutive_errors_count: 0,
            initial_attempt_timestamp: None,
            unschedulable_plugins: BTreeSet::new(),
            pending_plugins: BTreeSet::new(),
            gating_plugin: None,
        }
    }

    /// The pod.
    #[must_use]
    #[inline]
    pub fn pod(&self) -> &k8s_openapi::api::core::v1::Pod {
        self.pod_info.pod()
    }

    /// `namespace/name`.
    #[must_use]
    #[inline]
    pub fn key(&self) -> &str {
        self.pod_info.key()
    }

    /// The pod's UID (empty when the pod has none).
    #[must_use]
    #[inline]
    pub fn uid(&self) -> &str {
        self.pod_info.uid()
    }

    /// Whether a PreEnqueue plugin holds the pod back.
    #[must_use]
    pub fn gated(&self) -> bool {
        self.gating_plugin.is_some()
    }

    /// Whether some plugin rejected or parked the pod in its last attempt. A pod that came
    /// back without one failed with an error (it gets the error backoff and moves on any event).
    #[must_use]
    pub fn has_rejector_plugins(&self) -> bool {
        !self.unschedulable_plugins.is_empty() || !self.pending_plugins.is_empty()
    }
}
