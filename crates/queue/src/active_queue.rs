//! activeQ: the pods ready to be scheduled, ordered by the profile's QueueSort.
//!
//! The default order is PrioritySort's — higher `spec.priority` first, then earlier queue
//! timestamp — and, whatever the QueueSort, pods it cannot tell apart leave in the order they
//! entered (a sequence number breaks the tie: a plain binary heap is not FIFO by itself).

use std::{fmt, sync::Arc};

use ksched_framework::QueuedPodInfo;

use crate::{
    heap::{Heap, Slotted},
    store::{Entry, PodStore, Slot},
};

/// A QueueSort `less`: whether the first pod should be scheduled before the second.
pub type LessFn = Arc<dyn Fn(&QueuedPodInfo, &QueuedPodInfo) -> bool + Send + Sync>;

/// How activeQ (and, within one backoff window, podBackoffQ) orders pods.
#[derive(Clone, Default)]
pub(crate) enum Order {
    /// PrioritySort, compared on the inline keys without touching the pods.
    #[default]
    PrioritySort,
    /// A QueueSort plugin's `less`, then FIFO.
    Custom(LessFn),
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::PrioritySort => "PrioritySort",
            Order::Custom(_) => "Custom",
        })
    }
}

/// What a heap item carries to be ordered: PrioritySort's key inline, the FIFO sequence and
/// the pod's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub(crate) priority: i32,
    pub(crate) slot: Slot,
    /// Queue timestamp, in nanoseconds on the queue's timeline.
    pub(crate) timestamp: u64,
    pub(crate) seq: u64,
}

impl SortKey {
    pub(crate) fn of(slot: Slot, entry: &Entry, timestamp: u64) -> Self {
        Self {
            priority: entry.priority,
            slot,
            timestamp,
            seq: entry.seq,
        }
    }
}

impl SortKey {
    /// PrioritySort's order on the inline keys: higher priority, then earlier timestamp, then
    /// FIFO. A plain function, so that the heap's sifting loops inline it.
    #[inline(always)]
    pub(crate) fn before(a: &Self, b: &Self) -> bool {
        a.priority > b.priority
            || (a.priority == b.priority && (a.timestamp, a.seq) < (b.timestamp, b.seq))
    }
}

impl Slotted for SortKey {
    fn slot(&self) -> u32 {
        self.slot
    }
}

impl Order {
    /// Whether `a` goes before `b`.
    #[inline(always)]
    pub(crate) fn less(&self, entries: &[Option<Entry>], a: &SortKey, b: &SortKey) -> bool {
        match self {
            Order::PrioritySort => SortKey::before(a, b),
            Order::Custom(less) => {
                let info =
                    |k: &SortKey| &entries[k.slot as usize].as_ref().expect("queued pod").info;
                let (ia, ib) = (info(a), info(b));
                less(ia, ib) || (!less(ib, ia) && a.seq < b.seq)
            }
        }
    }
}

/// activeQ.
#[derive(Debug, Default)]
pub(crate) struct ActiveQueue {
    heap: Heap<SortKey>,
}

impl ActiveQueue {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    // Each operation matches on the order once, so that the PrioritySort heap is compiled with
    // `SortKey::before` inlined into its sifting loops, as `BinaryHeap`'s `Ord` is.

    pub(crate) fn push(&mut self, store: &mut PodStore, order: &Order, key: SortKey) {
        let (entries, pos) = store.split();
        match order {
            Order::PrioritySort => self.heap.push(key, pos, SortKey::before),
            Order::Custom(_) => self.heap.push(key, pos, |a, b| order.less(entries, a, b)),
        }
    }

    pub(crate) fn pop(&mut self, store: &mut PodStore, order: &Order) -> Option<Slot> {
        let (entries, pos) = store.split();
        let key = match order {
            Order::PrioritySort => self.heap.pop(pos, SortKey::before),
            Order::Custom(_) => self.heap.pop(pos, |a, b| order.less(entries, a, b)),
        };
        key.map(|k| k.slot)
    }

    pub(crate) fn remove(&mut self, store: &mut PodStore, order: &Order, slot: Slot) {
        let (entries, pos) = store.split();
        let at = pos[slot as usize];
        match order {
            Order::PrioritySort => self.heap.remove_at(at, pos, SortKey::before),
            Order::Custom(_) => self
                .heap
                .remove_at(at, pos, |a, b| order.less(entries, a, b)),
        };
    }

    /// Re-sorts a pod whose key or pod changed (an update in place).
    pub(crate) fn update(&mut self, store: &mut PodStore, order: &Order, key: SortKey) {
        let (entries, pos) = store.split();
        let at = pos[key.slot as usize];
        match order {
            Order::PrioritySort => self.heap.replace_at(at, key, pos, SortKey::before),
            Order::Custom(_) => {
                self.heap
                    .replace_at(at, key, pos, |a, b| order.less(entries, a, b));
            }
        }
    }

    /// The pod the next pop takes (unless a better one arrives first).
    pub(crate) fn head(&self) -> Option<Slot> {
        self.heap.peek().map(|k| k.slot)
    }

    /// Slots in heap order (not sorted).
    pub(crate) fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.heap.iter().map(|k| k.slot)
    }
}
