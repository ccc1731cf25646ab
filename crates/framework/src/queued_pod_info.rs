//! [`QueuedPodInfo`]: a pod as the scheduling queue tracks it.

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use crate::PodInfo;

/// A pod in the scheduling queue, with its attempt history. QueueSort plugins compare two of
/// these.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod.
    pub pod_info: Arc<PodInfo>,
    /// When the pod was last added to the queue (activeQ ordering among equal priorities).
    pub timestamp: Instant,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// Attempts that ended Unschedulable (drives the backoff).
    pub unschedulable_count: u32,
    /// Consecutive attempts that ended with Error (drives the error backoff).
    pub consecutive_errors_count: u32,
    /// When the pod was first popped; `None` until then (the scheduling SLI starts here).
    pub initial_attempt_timestamp: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt (which events can requeue it).
    pub unschedulable_plugins: BTreeSet<String>,
    /// Plugins that returned Pending in its last attempt.
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
    pub fn pod(&self) -> &k8s_openapi::api::core::v1::Pod {
        self.pod_info.pod()
    }

    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> &str {
        self.pod_info.key()
    }
}
