//! Nominated pods: pods preemption made room for, by the node they wait for.
//!
//! Filter counts pods nominated to a node (of equal or higher priority) as if they already ran
//! there, so that the room preemption made is not taken by someone else. This is read once
//! per node per scheduling cycle, from the Filter threads: it has its own read-write lock and
//! never waits for the queue's lock.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::PodInfo;
use parking_lot::RwLock;

/// Pods nominated to nodes (upstream `nominator`).
#[derive(Debug, Default)]
pub(crate) struct Nominator {
    inner: RwLock<Inner>,
    /// Nominated pods, readable without the lock: most pods are never nominated, and adding
    /// them must not take the write lock just to learn there is nothing to forget.
    count: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    node_of: HashMap<String, String>,
}

/// The identity the nominator tracks a pod by: its UID (a pod recreated under the same name
/// is another pod), or `namespace/name` for a pod without one.
fn id(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => ksched_framework::pod_key(pod),
    }
}

fn has_id(pod: &Pod, id: &str) -> bool {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid == id,
        _ => ksched_framework::pod_key(pod) == id,
    }
}

fn nominated_node_name(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Inner {
    fn delete(&mut self, id: &str) -> bool {
        let Some(node) = self.node_of.remove(id) else {
            return false;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|p| !has_id(p.pod(), id));
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
        true
    }

    fn add(&mut self, pod: Arc<PodInfo>, node: Option<String>) {
        let pid = id(pod.pod());
        self.delete(&pid);
        let node = node.or_else(|| nominated_node_name(pod.pod()).map(str::to_owned));
        let Some(node) = node.filter(|n| !n.is_empty()) else {
            return;
        };
        // A pod bound meanwhile no longer waits for room (upstream asks the pod lister).
        if pod
            .pod()
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
        {
            return;
        }
        self.node_of.insert(pid, node.clone());
        self.by_node.entry(node).or_default().push(pod);
    }
}

impl Nominator {
    pub(crate) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Nominates `pod` to `node`, or to its `status.nominatedNodeName` when `node` is `None`;
    /// an empty name clears the nomination.
    pub(crate) fn add(&self, pod: Arc<PodInfo>, node: Option<String>) {
        let mut inner = self.inner.write();
        inner.add(pod, node);
        self.count.store(inner.node_of.len(), Ordering::Release);
    }

    /// [`Nominator::add`] with the pod's own `status.nominatedNodeName`, as for every pod
    /// added or updated: nothing to do, and no reference taken, in the usual case where the
    /// pod names no node and nothing is nominated.
    pub(crate) fn follow(&self, pod: &Arc<PodInfo>) {
        if !pod.has_nominated_node_name() && self.is_empty() {
            return;
        }
        self.add(Arc::clone(pod), None);
    }

    /// Swaps in a newer version of a pod, keeping an in-memory nomination that neither
    /// version carries in its status (preemption nominated it and the API has not caught up).
    pub(crate) fn update(&self, old: &Pod, new: Arc<PodInfo>) {
        if self.is_empty() && nominated_node_name(new.pod()).is_none() {
            return;
        }
        let mut inner = self.inner.write();
        let keep = if nominated_node_name(old).is_none() && nominated_node_name(new.pod()).is_none()
        {
            inner.node_of.get(&id(old)).cloned()
        } else {
            None
        };
        inner.delete(&id(old));
        inner.add(new, keep);
        self.count.store(inner.node_of.len(), Ordering::Release);
    }

    pub(crate) fn delete(&self, pod: &Pod) {
        if self.is_empty() {
            return;
        }
        let mut inner = self.inner.write();
        inner.delete(&id(pod));
        self.count.store(inner.node_of.len(), Ordering::Release);
    }

    pub(crate) fn pods_for_node(&self, node: &str) -> Vec<Arc<PodInfo>> {
        if self.is_empty() {
            return Vec::new();
        }
        self.inner
            .read()
            .by_node
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;

    use super::*;

    fn pod(uid: &str, nominated: Option<&str>) -> Arc<PodInfo> {
        let mut p = Pod::default();
        p.metadata.namespace = Some("ns".into());
        p.metadata.name = Some(uid.into());
        p.metadata.uid = Some(uid.into());
        p.status = nominated.map(|n| PodStatus {
            nominated_node_name: Some(n.into()),
            ..Default::default()
        });
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn names(n: &Nominator, node: &str) -> Vec<String> {
        n.pods_for_node(node)
            .iter()
            .map(|p| p.key().to_owned())
            .collect()
    }

    #[test]
    fn nominations_follow_status_overrides_and_updates() {
        let n = Nominator::default();
        n.add(pod("a", None), None);
        assert!(n.is_empty());
        n.add(pod("a", Some("n1")), None);
        n.add(pod("b", None), Some("n1".into()));
        assert_eq!(names(&n, "n1"), ["ns/a", "ns/b"]);

        // Moving a pod to another node removes it from the first.
        n.add(pod("b", None), Some("n2".into()));
        assert_eq!(names(&n, "n1"), ["ns/a"]);
        assert_eq!(names(&n, "n2"), ["ns/b"]);

        // An update without nominatedNodeName on either side keeps the in-memory nomination.
        let old = pod("b", None);
        n.update(old.pod(), pod("b", None));
        assert_eq!(names(&n, "n2"), ["ns/b"]);
        // One that sets it follows the status.
        n.update(old.pod(), pod("b", Some("n3")));
        assert_eq!(names(&n, "n3"), ["ns/b"]);
        assert!(names(&n, "n2").is_empty());

        n.delete(pod("a", None).pod());
        n.delete(pod("b", None).pod());
        assert!(n.is_empty());
        assert_eq!(n.len(), 0);
    }
}
