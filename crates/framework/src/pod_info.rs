//! [`PodInfo`]: a pod plus what plugins would otherwise recompute on every node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// A pod shared by the queue, the cache and plugins, with data derived from its spec once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pod: Arc<Pod>,
    key: String,
}

impl PodInfo {
    /// Wraps a pod.
    #[must_use]
    pub fn new(pod: Arc<Pod>) -> Self {
        let key = pod_key(&pod);
        Self { pod, key }
    }

    /// The pod.
    #[must_use]
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// `namespace/name`, the key the queue and cache use.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// `namespace/name` of a pod (upstream's `MetaNamespaceKeyFunc`).
#[must_use]
pub fn pod_key(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut key = String::with_capacity(ns.len() + name.len() + 1);
    key.push_str(ns);
    key.push('/');
    key.push_str(name);
    key
}

/// The pod's priority (`spec.priority`, 0 when unset), as PrioritySort and preemption read it.
#[must_use]
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}
