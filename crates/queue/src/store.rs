//! The pods the queue holds, each in exactly one place.
//!
//! Every pending pod has one slot in a slab and one entry in a `namespace/name` index; its
//! [`Place`] says which sub-queue (activeQ, one of the two backoff heaps, unschedulablePods)
//! holds it, and `pos[slot]` its position there. Moving a pod between sub-queues changes its
//! place and position, never its slot, so a move costs no hashing, and a pod cannot be in two
//! sub-queues at once by construction.
//!
//! The index stores slots under hashes computed once, when the pod is added and its data is
//! in cache: removing a pod popped long after it was added does not read its name again, which
//! with 100k pending pods would mean cache misses on every pop.

use hashbrown::HashTable;
use ksched_framework::{PodInfo, QueuedPodInfo};
use std::sync::Arc;

use crate::hints::{ProfileId, Rejectors};

/// Index of a pod in the slab; stable while the pod is queued.
pub(crate) type Slot = u32;

/// Which sub-queue holds a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In the store but in no sub-queue (only between two steps of a move).
    Detached,
    /// activeQ.
    Active,
    /// podBackoffQ: rejected by plugins, waiting out the backoff.
    Backoff,
    /// podErrorBackoffQ: failed with an error, waiting out the error backoff.
    ErrorBackoff,
    /// unschedulablePods (gated pods included).
    Unschedulable,
}

/// A queued pod and what the queue derives from it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) info: QueuedPodInfo,
    /// Hash of `namespace/name` (the index key) and of the UID (the in-flight key).
    pub(crate) key_hash: u64,
    pub(crate) uid_hash: u64,
    /// Insertion sequence of the pod in its current sub-queue: FIFO among equals.
    pub(crate) seq: u64,
    /// Window-aligned backoff expiry (nanoseconds on the queue's timeline), computed on first
    /// use like upstream's `BackoffExpiration` cache. `Some(None)` means no backoff at all.
    pub(crate) backoff_expiry: Option<Option<u64>>,
    /// The rejector and gating plugins as plugin ids of the profile, refreshed whenever the
    /// plugin sets of `info` change while it is queued.
    pub(crate) rejectors: Rejectors,
    /// `spec.priority`, kept at hand for the sort keys.
    pub(crate) priority: i32,
    pub(crate) profile: ProfileId,
    pub(crate) place: Place,
}

/// Slab of entries, key index and the positions the sub-queues keep.
#[derive(Debug, Default)]
pub(crate) struct PodStore {
    entries: Vec<Option<Entry>>,
    /// Position of each slot in the sub-queue of its place.
    pub(crate) pos: Vec<u32>,
    free: Vec<Slot>,
    index: HashTable<Slot>,
}

impl PodStore {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of the pod `key`, whose hash is `hash`.
    pub(crate) fn lookup(&self, key: &str, hash: u64) -> Option<Slot> {
        let entries = &self.entries;
        self.index
            .find(hash, |s| {
                entries[*s as usize]
                    .as_ref()
                    .is_some_and(|e| e.info.key() == key)
            })
            .copied()
    }

    pub(crate) fn get(&self, slot: Slot) -> &Entry {
        self.entries[slot as usize]
            .as_ref()
            .expect("slot of a queued pod")
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> &mut Entry {
        self.entries[slot as usize]
            .as_mut()
            .expect("slot of a queued pod")
    }

    /// The slab, for comparators that read the pods while positions are being written.
    pub(crate) fn split(&mut self) -> (&[Option<Entry>], &mut [u32]) {
        (&self.entries, &mut self.pos)
    }

    /// Stores a pod whose key is not stored yet.
    pub(crate) fn insert(&mut self, entry: Entry) -> Slot {
        let hash = entry.key_hash;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.entries.push(Some(entry));
                self.pos.push(u32::MAX);
                (self.entries.len() - 1) as Slot
            }
        };
        let entries = &self.entries;
        self.index.insert_unique(hash, slot, |s| {
            entries[*s as usize].as_ref().map_or(0, |e| e.key_hash)
        });
        slot
    }

    /// Forgets a pod; the caller has taken it out of its sub-queue.
    pub(crate) fn remove(&mut self, slot: Slot) -> Entry {
        let entry = self.entries[slot as usize]
            .take()
            .expect("slot of a queued pod");
        debug_assert_eq!(entry.place, Place::Detached);
        if let Ok(found) = self.index.find_entry(entry.key_hash, |s| *s == slot) {
            found.remove();
        }
        self.free.push(slot);
        entry
    }

    /// Forgets a pod just popped from its heap (its place not yet reset: this does it).
    pub(crate) fn remove_popped(&mut self, slot: Slot) -> Entry {
        if let Some(entry) = self.entries[slot as usize].as_mut() {
            entry.place = Place::Detached;
        }
        self.remove(slot)
    }

    /// Swaps in a newer version of the pod (same key).
    pub(crate) fn set_pod_info(&mut self, slot: Slot, pod_info: Arc<PodInfo>) {
        let entry = self.get_mut(slot);
        entry.priority = pod_info.priority();
        entry.info.pod_info = pod_info;
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }
}
