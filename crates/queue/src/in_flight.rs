//! In-flight pods and the events seen while they are being scheduled (upstream
//! `inFlightPods` / `inFlightEvents`).
//!
//! A pod is in flight from `pop` until `done`. An event that arrives meanwhile cannot move it
//! (it is in no sub-queue) but may be exactly what the pod needs if this attempt fails, so
//! events are appended to one log shared by all in-flight pods, each pod marking where it
//! entered; when a pod comes back rejected, the events after its mark are replayed against its
//! rejector plugins. When the oldest in-flight pod is done, the events before the next pod's
//! mark concern nobody any more and are dropped, so the log only spans the in-flight window.

use std::{collections::VecDeque, sync::Arc};

use hashbrown::HashTable;
use ksched_framework::{ClusterEvent, ClusterObject, PodInfo};

/// An event as recorded for in-flight pods.
#[derive(Debug, Clone)]
pub(crate) struct RecordedEvent {
    pub(crate) event: ClusterEvent,
    pub(crate) old: Option<ClusterObject>,
    pub(crate) new: Option<ClusterObject>,
}

#[derive(Debug)]
enum Item {
    /// Where a pod entered the log; `done` leaves a tombstone that pruning removes.
    Pod { live: bool },
    /// Boxed: events are rare next to pods, and a small `Item` keeps the per-pod push and
    /// pop of the log cheap.
    Event(Box<RecordedEvent>),
}

/// An in-flight pod: its UID hash (taken when it was queued), the pod and its mark, the
/// absolute index of its `Item::Pod` in the log.
#[derive(Debug)]
struct Record {
    uid_hash: u64,
    pod: Arc<PodInfo>,
    mark: u64,
}

fn uid(pod: &PodInfo) -> &str {
    pod.uid()
}

/// In-flight pods by UID, and the event log.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    pods: HashTable<Record>,
    log: VecDeque<Item>,
    /// Absolute index of `log[0]`.
    base: u64,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.pods.len()
    }

    /// Events currently kept.
    pub(crate) fn events_len(&self) -> usize {
        self.log
            .iter()
            .filter(|i| matches!(i, Item::Event(_)))
            .count()
    }

    fn find(&self, uid_: &str, hash: u64) -> Option<&Record> {
        self.pods
            .find(hash, |r| r.uid_hash == hash && uid(&r.pod) == uid_)
    }

    /// Whether the pod with UID `uid` (hashed `hash`) is in flight.
    pub(crate) fn contains(&self, uid: &str, hash: u64) -> bool {
        self.find(uid, hash).is_some()
    }

    /// Marks `pod` (UID hashed `uid_hash`) in flight; `false` if it already is.
    pub(crate) fn start(&mut self, pod: Arc<PodInfo>, uid_hash: u64) -> bool {
        let mark = self.base + self.log.len() as u64;
        match self.pods.entry(
            uid_hash,
            // The full hash first: the UID of a pod just popped is not in cache.
            |r| r.uid_hash == uid_hash && uid(&r.pod) == uid(&pod),
            |r| r.uid_hash,
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Record {
                    uid_hash,
                    pod,
                    mark,
                });
                self.log.push_back(Item::Pod { live: true });
                true
            }
        }
    }

    /// Ends the flight of `uid` (no-op when not in flight) and drops the events nobody can
    /// need any more.
    pub(crate) fn done(&mut self, uid_: &str, hash: u64) {
        let Ok(found) = self
            .pods
            .find_entry(hash, |r| r.uid_hash == hash && uid(&r.pod) == uid_)
        else {
            return;
        };
        let (record, _) = found.remove();
        if let Some(Item::Pod { live }) = self.log.get_mut((record.mark - self.base) as usize) {
            *live = false;
        }
        while matches!(
            self.log.front(),
            Some(Item::Pod { live: false } | Item::Event(_))
        ) {
            self.log.pop_front();
            self.base += 1;
        }
    }

    /// Records `event` if any pod is in flight; `true` if recorded.
    pub(crate) fn record(
        &mut self,
        event: &ClusterEvent,
        old: Option<&ClusterObject>,
        new: Option<&ClusterObject>,
    ) -> bool {
        if self.pods.is_empty() {
            return false;
        }
        self.log.push_back(Item::Event(Box::new(RecordedEvent {
            event: event.clone(),
            old: old.cloned(),
            new: new.cloned(),
        })));
        true
    }

    /// The events recorded since `uid` was popped; `None` if it is not in flight.
    pub(crate) fn events_since(
        &self,
        uid: &str,
        hash: u64,
    ) -> Option<impl Iterator<Item = &RecordedEvent>> {
        let start = (self.find(uid, hash)?.mark - self.base) as usize + 1;
        Some(self.log.range(start..).filter_map(|i| match i {
            Item::Event(e) => Some(&**e),
            Item::Pod { .. } => None,
        }))
    }

    pub(crate) fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.iter().map(|r| &r.pod)
    }

    /// Ends every flight (the queue is closing).
    pub(crate) fn clear(&mut self) {
        self.pods.clear();
        self.base += self.log.len() as u64;
        self.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use ksched_framework::events::well_known;

    use super::*;

    fn pod(uid: &str) -> Arc<PodInfo> {
        let mut p = Pod::default();
        p.metadata.name = Some(uid.to_owned());
        p.metadata.uid = Some(uid.to_owned());
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn h(uid: &str) -> u64 {
        // Any hash will do; a poor one exercises the equality checks.
        uid.len() as u64
    }

    fn labels(f: &InFlight, uid: &str) -> Vec<String> {
        f.events_since(uid, h(uid))
            .map(|e| e.map(|e| e.event.label().into_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn events_after_a_pod_are_replayed_and_pruned_with_the_oldest() {
        let mut f = InFlight::default();
        assert!(
            !f.record(&well_known::NODE_ADD, None, None),
            "nobody in flight"
        );
        assert!(f.start(pod("a"), h("a")));
        assert!(!f.start(pod("a"), h("a")));
        f.record(&well_known::NODE_ADD, None, None);
        assert!(f.start(pod("b"), h("b")));
        f.record(&well_known::NODE_DELETE, None, None);
        assert_eq!(labels(&f, "a"), ["NodeAdd", "NodeDelete"]);
        assert_eq!(labels(&f, "b"), ["NodeDelete"]);

        // b finishing first prunes nothing: a still needs both events.
        f.done("b", h("b"));
        assert_eq!(f.events_len(), 2);
        assert_eq!(labels(&f, "a"), ["NodeAdd", "NodeDelete"]);
        f.done("a", h("a"));
        assert_eq!((f.len(), f.events_len(), f.log.len()), (0, 0, 0));
        f.done("a", h("a"));

        assert!(f.start(pod("c"), h("c")));
        assert_eq!(labels(&f, "c"), Vec::<String>::new());
        f.clear();
        assert!(f.events_since("c", h("c")).is_none());
    }
}
