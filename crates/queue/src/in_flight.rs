//! In-flight pods and the events seen while they are being scheduled (upstream
//! `inFlightPods` / `inFlightEvents`).
//!
//! A pod is in flight from `pop` until `done`. An event that arrives meanwhile cannot move it
//! (it is in no sub-queue) but may be exactly what the pod needs if this attempt fails, so
//! events are appended to one log shared by all in-flight pods, each pod marking where it
//! entered; when a pod comes back rejected, the events after its mark are replayed against its
//! rejector plugins. When the oldest in-flight pod is done, the events before the next pod's
//! mark concern nobody any more and are dropped, so the log only spans the in-flight window.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    sync::Arc,
};

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
    Pod {
        live: bool,
    },
    Event(RecordedEvent),
}

/// The index key: the pod's UID, borrowed from its `PodInfo`.
#[derive(Debug, Clone)]
struct UidRef(Arc<PodInfo>);

impl UidRef {
    fn uid(&self) -> &str {
        self.0.pod().metadata.uid.as_deref().unwrap_or_default()
    }
}

impl Hash for UidRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uid().hash(state);
    }
}

impl PartialEq for UidRef {
    fn eq(&self, other: &Self) -> bool {
        self.uid() == other.uid()
    }
}

impl Eq for UidRef {}

impl Borrow<str> for UidRef {
    fn borrow(&self) -> &str {
        self.uid()
    }
}

/// In-flight pods by UID, and the event log.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Each pod's mark: the absolute index of its `Item::Pod` in the log.
    pods: HashMap<UidRef, u64>,
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

    pub(crate) fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Marks `pod` in flight; `false` if it already is.
    pub(crate) fn start(&mut self, pod: Arc<PodInfo>) -> bool {
        let mark = self.base + self.log.len() as u64;
        match self.pods.entry(UidRef(pod)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(mark);
                self.log.push_back(Item::Pod { live: true });
                true
            }
        }
    }

    /// Ends the flight of `uid` (no-op when not in flight) and drops the events nobody can
    /// need any more.
    pub(crate) fn done(&mut self, uid: &str) {
        let Some(mark) = self.pods.remove(uid) else {
            return;
        };
        if let Some(Item::Pod { live }) = self.log.get_mut((mark - self.base) as usize) {
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
        self.log.push_back(Item::Event(RecordedEvent {
            event: event.clone(),
            old: old.cloned(),
            new: new.cloned(),
        }));
        true
    }

    /// The events recorded since `uid` was popped; `None` if it is not in flight.
    pub(crate) fn events_since(&self, uid: &str) -> Option<impl Iterator<Item = &RecordedEvent>> {
        let mark = *self.pods.get(uid)?;
        let start = (mark - self.base) as usize + 1;
        Some(self.log.range(start..).filter_map(|i| match i {
            Item::Event(e) => Some(e),
            Item::Pod { .. } => None,
        }))
    }

    pub(crate) fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.keys().map(|k| &k.0)
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

    fn labels(f: &InFlight, uid: &str) -> Vec<String> {
        f.events_since(uid)
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
        assert!(f.start(pod("a")));
        assert!(!f.start(pod("a")));
        f.record(&well_known::NODE_ADD, None, None);
        assert!(f.start(pod("b")));
        f.record(&well_known::NODE_DELETE, None, None);
        assert_eq!(labels(&f, "a"), ["NodeAdd", "NodeDelete"]);
        assert_eq!(labels(&f, "b"), ["NodeDelete"]);

        // b finishing first prunes nothing: a still needs both events.
        f.done("b");
        assert_eq!(f.events_len(), 2);
        assert_eq!(labels(&f, "a"), ["NodeAdd", "NodeDelete"]);
        f.done("a");
        assert_eq!((f.len(), f.events_len(), f.log.len()), (0, 0, 0));
        f.done("a");

        assert!(f.start(pod("c")));
        assert_eq!(labels(&f, "c"), Vec::<String>::new());
        f.clear();
        assert!(f.events_since("c").is_none());
    }
}
