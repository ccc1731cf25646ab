//! The pods the queue holds, each in exactly one place.
//!
//! Every pending pod has one slot in a slab and one entry in a `namespace/name` index; its
//! [`Place`] says which sub-queue (activeQ, one of the two backoff heaps, unschedulablePods)
//! holds it, and `pos[slot]` its position there. Moving a pod between sub-queues changes its
//! place and position, never its slot, so a move costs no hashing, and a pod cannot be in two
//! sub-queues at once by construction.
//!
//! The index stores slots under the key hashes `PodInfo` computed once, with the high half
//! of the hash next to the slot, and each entry records its bucket in the index: looking up a
//! key the queue does not hold reads no other pod, and forgetting a pod popped long after it
//! was added reads neither its name nor a probe sequence, only its bucket. With 100k pods
//! pending each of those reads would be a cache miss on every add or pop.

use hashbrown::HashTable;
use ksched_framework::{PodInfo, QueuedPodInfo};
use std::sync::Arc;

use crate::hints::{ProfileId, Rejectors};

/// Loads `value` and does nothing with it: reading a few fields of a pod that is about to be
/// needed starts its cache misses now, side by side, instead of one after the other later
/// (a prefetch, without the `unsafe` of the prefetch intrinsics).
#[inline(always)]
pub(crate) fn touch<T>(value: T) {
    std::hint::black_box(value);
}

/// Reads what the queue and the caller read first of a popped pod's `PodInfo`: the fields next
/// to the reference counts and, with `with_key`, the UID in the key buffer (only worth it when
/// the `PodInfo` is in cache already, or the second miss waits for the first).
#[inline(always)]
pub(crate) fn warm_pod_info(pod: &Arc<PodInfo>, with_key: bool) {
    touch((Arc::strong_count(pod), pod.key_hash(), pod.priority()));
    if with_key {
        let uid = pod.uid().as_bytes();
        touch((uid.first().copied(), uid.last().copied()));
    }
}

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
///
/// Aligned to cache lines and kept to three of them (checked by a test): a pop reads all of
/// it, and with many pods pending it is not in cache.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Entry {
    pub(crate) info: QueuedPodInfo,
    /// A second reference to `info.pod_info`, taken when the pod is stored (its `PodInfo` is
    /// in cache then) and handed to the in-flight record when the pod is popped. Taking it on
    /// pop instead means an atomic increment on a `PodInfo` last touched when the pod was
    /// added: with 100k pods pending a cache miss that, being a locked instruction, overlaps
    /// with nothing.
    pub(crate) flight_ref: Arc<PodInfo>,
    /// Insertion sequence of the pod in its current sub-queue: FIFO among equals.
    pub(crate) seq: u64,
    /// Window-aligned backoff expiry, computed on first use like upstream's
    /// `BackoffExpiration` cache.
    pub(crate) backoff_expiry: CachedExpiry,
    /// The rejector and gating plugins as plugin ids of the profile, refreshed whenever the
    /// plugin sets of `info` change while it is queued.
    pub(crate) rejectors: Rejectors,
    /// Where the index keeps the pod (a bucket of `PodStore::index`), so that forgetting it
    /// reads that bucket directly instead of probing from the key's hash. Set by
    /// `PodStore::insert`.
    pub(crate) bucket: u32,
    /// `spec.priority`, kept at hand for the sort keys.
    pub(crate) priority: i32,
    pub(crate) profile: ProfileId,
    pub(crate) place: Place,
}

impl Entry {
    /// A pod not stored yet, in no sub-queue.
    pub(crate) fn new(info: QueuedPodInfo, rejectors: Rejectors, profile: ProfileId) -> Self {
        Self {
            flight_ref: Arc::clone(&info.pod_info),
            seq: 0,
            backoff_expiry: CachedExpiry::UNKNOWN,
            rejectors,
            bucket: u32::MAX,
            priority: info.pod_info.priority(),
            profile,
            place: Place::Detached,
            info,
        }
    }
}

/// A backoff expiry (nanoseconds on the queue's timeline) computed once, or not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachedExpiry(u64);

impl CachedExpiry {
    pub(crate) const UNKNOWN: Self = Self(u64::MAX);
    /// Computed: the pod has no backoff. Real expiries are window-aligned, far below.
    const NONE: u64 = u64::MAX - 1;

    /// The expiry, computed by `compute` the first time (`None`: no backoff at all).
    pub(crate) fn get_or_compute(&mut self, compute: impl FnOnce() -> Option<u64>) -> Option<u64> {
        if *self == Self::UNKNOWN {
            self.0 = compute().map_or(Self::NONE, |e| e.min(Self::NONE - 1));
        }
        (self.0 != Self::NONE).then_some(self.0)
    }
}

/// Slab of entries, key index and the positions the sub-queues keep.
#[derive(Debug, Default)]
pub(crate) struct PodStore {
    entries: Vec<Option<Entry>>,
    /// Position of each slot in the sub-queue of its place.
    pub(crate) pos: Vec<u32>,
    free: Vec<Slot>,
    index: HashTable<IndexItem>,
}

/// An index item: the slot in the low half, the high half of the key's hash in the high half.
/// Comparing hashes first means a probe for a key the queue does not hold (every add of a new
/// pod) reads no pod: a 7-bit tag match alone would read another pod's entry, `PodInfo` and
/// key buffer, three cache misses, about once in ten probes at 100k pods.
type IndexItem = u64;

const HASH_HIGH: u64 = 0xffff_ffff_0000_0000;

fn index_item(slot: Slot, hash: u64) -> IndexItem {
    u64::from(slot) | (hash & HASH_HIGH)
}

fn slot_of(item: IndexItem) -> Slot {
    item as Slot
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
            .find(hash, |&item| {
                (item ^ hash) & HASH_HIGH == 0
                    && entries[slot_of(item) as usize]
                        .as_ref()
                        .is_some_and(|e| e.info.key() == key)
            })
            .map(|&item| slot_of(item))
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

    /// Reads every field of the entry at `slot` (if any), so that its cache lines are on their
    /// way in; returns its `PodInfo`.
    pub(crate) fn warm_entry(&self, slot: Slot) -> Option<&Arc<PodInfo>> {
        let e = self.entries.get(slot as usize)?.as_ref()?;
        let i = &e.info;
        touch((
            Arc::as_ptr(&i.pod_info),
            i.timestamp,
            i.attempts,
            i.unschedulable_count,
            i.consecutive_errors_count,
            i.initial_attempt_timestamp,
            i.unschedulable_plugins.len(),
            i.pending_plugins.len(),
            i.gating_plugin.is_some(),
        ));
        touch((
            Arc::as_ptr(&e.flight_ref),
            e.seq,
            e.backoff_expiry,
            e.rejectors,
            e.bucket,
            e.priority,
            e.profile,
            e.place,
        ));
        Some(&i.pod_info)
    }

    /// Reads the index bucket of the pod at `slot` ahead of [`PodStore::remove`].
    pub(crate) fn warm_index(&self, slot: Slot) {
        if let Some(e) = self.entries.get(slot as usize).and_then(Option::as_ref) {
            touch(self.index.get_bucket(e.bucket as usize).copied());
        }
    }

    /// The slab, for comparators that read the pods while positions are being written.
    pub(crate) fn split(&mut self) -> (&[Option<Entry>], &mut [u32]) {
        (&self.entries, &mut self.pos)
    }

    /// Stores a pod whose key is not stored yet.
    pub(crate) fn insert(&mut self, entry: Entry) -> Slot {
        let hash = entry.info.pod_info.key_hash();
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
        // Rare (the table doubles or drops its tombstones): reading the pods' `PodInfo`s then
        // is cheaper than keeping every key hash in the entries.
        let rehash = |&item: &IndexItem| {
            entries[slot_of(item) as usize]
                .as_ref()
                .map_or(0, |e| e.info.pod_info.key_hash())
        };
        // Buckets stay put until the table grows or rehashes, which only happens when it has
        // no room left: make the room here, so that the insertion itself moves nothing, and
        // record everyone's new bucket after it.
        let moved = self.index.len() == self.index.capacity();
        if moved {
            self.index.reserve(1, rehash);
        }
        let bucket = self
            .index
            .insert_unique(hash, index_item(slot, hash), rehash)
            .bucket_index();
        if moved {
            for at in self.index.iter_buckets() {
                if let (Some(&item), Ok(at)) = (self.index.get_bucket(at), u32::try_from(at))
                    && let Some(e) = self.entries[slot_of(item) as usize].as_mut()
                {
                    e.bucket = at;
                }
            }
        } else if let Some(e) = self.entries[slot as usize].as_mut() {
            e.bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
        }
        slot
    }

    /// Forgets a pod; the caller has taken it out of its sub-queue.
    pub(crate) fn remove(&mut self, slot: Slot) -> Entry {
        let entry = self.entries[slot as usize]
            .take()
            .expect("slot of a queued pod");
        debug_assert_eq!(entry.place, Place::Detached);
        let at = entry.bucket as usize;
        if self
            .index
            .get_bucket(at)
            .is_some_and(|&i| slot_of(i) == slot)
        {
            if let Ok(found) = self.index.get_bucket_entry(at) {
                found.remove();
            }
        } else {
            debug_assert!(false, "pod {slot} not at its index bucket {at}");
            let hash = entry.info.pod_info.key_hash();
            if let Ok(found) = self.index.find_entry(hash, |&i| slot_of(i) == slot) {
                found.remove();
            }
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
        entry.flight_ref = Arc::clone(&pod_info);
        entry.info.pod_info = pod_info;
    }

    /// The index agrees with the slab: one item per stored pod, in the bucket its entry
    /// records, carrying its slot and hash.
    #[cfg(test)]
    pub(crate) fn check_index(&self) {
        assert_eq!(self.index.len(), self.entries.iter().flatten().count());
        for (slot, entry) in self.entries.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let slot = slot as Slot;
            let hash = entry.info.pod_info.key_hash();
            assert_eq!(
                self.index.get_bucket(entry.bucket as usize),
                Some(&index_item(slot, hash)),
                "index bucket of slot {slot}"
            );
            assert_eq!(self.lookup(entry.info.key(), hash), Some(slot));
        }
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use k8s_openapi::api::core::v1::Pod;
    use ksched_framework::{PodInfo, QueuedPodInfo};

    use super::{Entry, Place, PodStore, Slot};

    #[test]
    fn an_entry_is_three_cache_lines() {
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 192);
    }

    fn entry(i: usize) -> Entry {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.name = Some(format!("p{i}"));
        pod.metadata.uid = Some(format!("u{i}"));
        let info = QueuedPodInfo::new(Arc::new(PodInfo::new(Arc::new(pod))), Instant::now());
        Entry::new(info, Default::default(), 0)
    }

    /// Buckets recorded in the entries follow the index as it grows (rehashing in place, which
    /// hashbrown does instead when enough buckets are tombstones, takes the same path), and
    /// removals by bucket leave the index agreeing with the slab.
    #[test]
    fn index_buckets_follow_growth() {
        let mut store = PodStore::default();
        let mut live: Vec<(usize, Slot)> = Vec::new();
        let mut next = 0;
        for round in 0..12 {
            // Up to the table's capacity and one more, so that it grows; then forget many
            // pods, oldest first (in a full table some removals leave tombstones).
            while store.index.len() <= store.index.capacity() && next < 20_000 {
                live.push((next, store.insert(entry(next))));
                next += 1;
                if store.index.len() == store.index.capacity() {
                    live.push((next, store.insert(entry(next))));
                    next += 1;
                    break;
                }
            }
            let forget = if round % 2 == 0 {
                live.len() * 3 / 5
            } else {
                live.len() / 5
            };
            for (i, slot) in live.drain(..forget) {
                store.get_mut(slot).place = Place::Detached;
                assert_eq!(store.remove(slot).info.key(), format!("ns/p{i}"));
            }
            store.check_index();
            for &(i, slot) in &live {
                let key = format!("ns/p{i}");
                let hash = ksched_framework::pod_hash(&key);
                assert_eq!(store.lookup(&key, hash), Some(slot));
            }
        }
        assert!(store.index.num_buckets() >= 1024, "the index grew");
    }
}
