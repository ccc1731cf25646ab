//! Pods that a Permit plugin told to wait, and how plugins allow or reject them.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::Status;

/// A pod waiting at Permit. Each waiting plugin has a timer; when it fires the pod is rejected
/// ("rejected due to timeout after waiting …"). When every plugin has allowed it, the pod goes
/// on to binding.
pub struct WaitingPod {
    pod: Arc<Pod>,
    uid: String,
    inner: Mutex<Inner>,
    result: watch::Sender<Option<Status>>,
}

struct Inner {
    pending: HashMap<String, tokio::task::AbortHandle>,
}

impl WaitingPod {
    /// Creates a waiting pod with one timer per plugin in `pending` (name → timeout). Must be
    /// called inside a tokio runtime (the timers are tasks).
    #[must_use]
    pub fn new(pod: Arc<Pod>, pending: HashMap<String, Duration>) -> Arc<Self> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (result, _) = watch::channel(None);
        let wp = Arc::new(Self {
            pod,
            uid,
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
            }),
            result,
        });
        let mut inner = wp.inner.lock();
        for (plugin, timeout) in pending {
            let weak = Arc::downgrade(&wp);
            let name = plugin.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(wp) = weak.upgrade() {
                    wp.reject(
                        &name,
                        &format!(
                            "rejected due to timeout after waiting {timeout:?} at plugin {name}"
                        ),
                    );
                }
            });
            inner.pending.insert(plugin, timer.abort_handle());
        }
        drop(inner);
        wp
    }

    /// The pod.
    #[must_use]
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// Plugins that have not allowed the pod yet.
    #[must_use]
    pub fn pending_plugins(&self) -> BTreeSet<String> {
        self.inner.lock().pending.keys().cloned().collect()
    }

    /// `plugin` allows the pod; once all have, the pod proceeds.
    pub fn allow(&self, plugin: &str) {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.pending.remove(plugin) {
            t.abort();
        }
        if inner.pending.is_empty() {
            self.result.send_if_modified(|r| {
                if r.is_none() {
                    *r = Some(Status::success());
                    true
                } else {
                    false
                }
            });
        }
    }

    /// `plugin` rejects the pod with `message`: it goes back to the queue as Unschedulable.
    /// Returns false when the pod already had a verdict.
    pub fn reject(&self, plugin: &str, message: &str) -> bool {
        let mut inner = self.inner.lock();
        for (_, t) in inner.pending.drain() {
            t.abort();
        }
        self.result.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(Status::unschedulable(message).with_plugin(plugin));
                true
            } else {
                false
            }
        })
    }

    /// Waits for the verdict.
    pub async fn wait(&self) -> Status {
        let mut rx = self.result.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(Status::success),
            // The sender lives in `self`, so it cannot be dropped while we borrow it.
            Err(_) => Status::error("waiting pod dropped"),
        }
    }
}

impl std::fmt::Debug for WaitingPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingPod")
            .field("pod", &self.pod.metadata.name)
            .field("pending", &self.pending_plugins())
            .finish()
    }
}

/// The waiting pods of one profile, by pod UID.
#[derive(Debug, Default)]
pub struct WaitingPods {
    pods: Mutex<HashMap<String, Arc<WaitingPod>>>,
}

impl WaitingPods {
    /// Registers a waiting pod.
    pub fn add(&self, wp: Arc<WaitingPod>) {
        self.pods.lock().insert(wp.uid.clone(), wp);
    }

    /// Unregisters the pod with `uid`.
    pub fn remove(&self, uid: &str) -> Option<Arc<WaitingPod>> {
        self.pods.lock().remove(uid)
    }

    /// The waiting pod with `uid`.
    #[must_use]
    pub fn get(&self, uid: &str) -> Option<Arc<WaitingPod>> {
        self.pods.lock().get(uid).cloned()
    }

    /// Calls `f` for every waiting pod (on a copy of the list, so `f` may allow or reject).
    pub fn iterate(&self, mut f: impl FnMut(&Arc<WaitingPod>)) {
        let pods: Vec<_> = self.pods.lock().values().cloned().collect();
        for p in &pods {
            f(p);
        }
    }

    /// Rejects the waiting pod with `uid`; false when there is none.
    pub fn reject(&self, uid: &str, plugin: &str, message: &str) -> bool {
        self.get(uid).is_some_and(|wp| wp.reject(plugin, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.uid = Some("u1".into());
        Arc::new(p)
    }

    #[tokio::test(start_paused = true)]
    async fn allowed_by_all_plugins() {
        let wp = WaitingPod::new(
            pod(),
            [
                ("A".to_owned(), Duration::from_secs(10)),
                ("B".to_owned(), Duration::from_secs(10)),
            ]
            .into(),
        );
        wp.allow("A");
        assert_eq!(wp.pending_plugins(), BTreeSet::from(["B".to_owned()]));
        wp.allow("B");
        assert!(wp.wait().await.is_success());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out() {
        let wp = WaitingPod::new(pod(), [("A".to_owned(), Duration::from_secs(3))].into());
        let s = wp.wait().await;
        assert_eq!(s.code(), crate::Code::Unschedulable);
        assert!(
            s.message()
                .contains("rejected due to timeout after waiting 3s at plugin A"),
            "{s}"
        );
        assert_eq!(s.plugin(), Some("A"));
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_through_map() {
        let pods = WaitingPods::default();
        let wp = WaitingPod::new(pod(), [("A".to_owned(), Duration::from_secs(60))].into());
        pods.add(wp.clone());
        assert!(pods.reject("u1", "Gang", "gang failed"));
        assert!(!pods.reject("u1", "Gang", "again"));
        let s = wp.wait().await;
        assert_eq!(s.plugin(), Some("Gang"));
        assert!(pods.remove("u1").is_some());
    }
}
