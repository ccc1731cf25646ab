//! activeQ: the pods ready to be scheduled, ordered by the profile's QueueSort.
//!
//! The default order is PrioritySort's — higher `spec.priority` first, then earlier queue
//! timestamp — and, whatever the QueueSort, pods it cannot tell apart leave in the order they
//! entered (a sequence number breaks the tie: a plain binary heap is not FIFO by itself).
//!
//! For PrioritySort, activeQ is an indexed heap plus one FIFO per priority level (session 4):
//! a pod whose key sorts after every pod of its level — a newly added or updated pod, stamped
//! now — is appended to that level's FIFO, which is therefore already sorted; other pods (back
//! from backoff or unschedulablePods with an older timestamp) go to the heap, and pop takes the
//! better of the heap's top and the best level's front. The pop order is exactly the heap-only
//! order (a proptest below checks it against a sort). The FIFO avoids the heap's sifting over
//! random cache lines and, more usefully, tells the next few pops in advance, which is what
//! lets a pop read ahead the next pods' entries, `PodInfo`s and UIDs in independent steps (see
//! `State::warm_next_pop`). A custom QueueSort uses the heap alone.

use std::{collections::VecDeque, fmt, sync::Arc};

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
///
/// For PrioritySort, pods sit in one of two structures. A pod whose key sorts after every pod
/// of its priority level (the usual case: a pod added or updated now carries the latest
/// timestamp) is appended to that level's FIFO, a `VecDeque` already in PrioritySort order;
/// any other (a pod back from backoffQ or unschedulablePods with its older timestamp, an
/// update that changed its priority) goes to the indexed heap. Pop takes the better of the
/// heap's top and the front of the highest non-empty level, so the order is exactly the
/// heap-only order. With 100k pods pending a heap push and pop sift through ~17 random cache
/// lines each; the FIFO appends and takes its front, in memory the hardware prefetcher
/// streams. A custom QueueSort uses the heap only.
///
/// Positions: `pos[slot]` is the heap index for heap items, or `IN_LEVEL` plus the item's
/// absolute index in its level (modulo 2^31) for FIFO items. Removing a FIFO item from the
/// middle (delete, update, activation of a queued pod) leaves a tombstone that pops skip; the
/// front and back of every level are always live, and a level with more tombstones than live
/// items is compacted, so tombstones cost O(1) amortized.
#[derive(Debug, Default)]
pub(crate) struct ActiveQueue {
    heap: Heap<SortKey>,
    /// PrioritySort's FIFO levels, highest priority first.
    levels: Vec<Level>,
    len: usize,
}

/// Marks a FIFO position in `pos` (heap positions stay below it).
const IN_LEVEL: u32 = 1 << 31;
const INDEX: u32 = IN_LEVEL - 1;
/// The slot of a tombstone.
const DEAD: Slot = Slot::MAX;
/// Levels kept before empty ones are dropped; beyond `MAX_LEVELS` non-empty levels, pods of a
/// new priority go to the heap (the FIFOs are an optimisation, the heap takes anything).
const GC_LEVELS: usize = 16;
const MAX_LEVELS: usize = 64;

/// The FIFO of one priority level, sorted by (timestamp, seq).
#[derive(Debug)]
struct Level {
    priority: i32,
    items: VecDeque<SortKey>,
    /// Absolute index of `items[0]`, modulo 2^31.
    base: u32,
    dead: usize,
}

impl Level {
    fn new(priority: i32) -> Self {
        Self {
            priority,
            items: VecDeque::new(),
            base: 0,
            dead: 0,
        }
    }

    /// Index in `items` of the item at absolute position `at`, if it holds `slot`.
    fn find(&self, at: u32, slot: Slot) -> Option<usize> {
        let i = (at.wrapping_sub(self.base) & INDEX) as usize;
        (self.items.get(i)?.slot == slot).then_some(i)
    }

    fn push(&mut self, key: SortKey, pos: &mut [u32]) {
        pos[key.slot as usize] =
            IN_LEVEL | (self.base.wrapping_add(self.items.len() as u32) & INDEX);
        self.items.push_back(key);
    }

    fn pop_front(&mut self) -> Option<SortKey> {
        let key = self.items.pop_front()?;
        self.base = self.base.wrapping_add(1) & INDEX;
        while self.items.front().is_some_and(|k| k.slot == DEAD) {
            self.items.pop_front();
            self.base = self.base.wrapping_add(1) & INDEX;
            self.dead -= 1;
        }
        Some(key)
    }

    fn remove(&mut self, i: usize, pos: &mut [u32]) {
        if i == 0 {
            self.pop_front();
        } else if i + 1 == self.items.len() {
            self.items.pop_back();
            while self.items.back().is_some_and(|k| k.slot == DEAD) {
                self.items.pop_back();
                self.dead -= 1;
            }
        } else {
            self.items[i].slot = DEAD;
            self.dead += 1;
            if self.dead > 16 && self.dead > self.items.len() / 2 {
                self.compact(pos);
            }
        }
    }

    fn compact(&mut self, pos: &mut [u32]) {
        self.items.retain(|k| k.slot != DEAD);
        self.dead = 0;
        self.base = 0;
        for (i, k) in self.items.iter().enumerate() {
            pos[k.slot as usize] = IN_LEVEL | i as u32;
        }
    }

    fn live(&self) -> impl Iterator<Item = &SortKey> {
        self.items.iter().filter(|k| k.slot != DEAD)
    }
}

impl ActiveQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    // Each operation matches on the order once, so that the PrioritySort heap is compiled with
    // `SortKey::before` inlined into its sifting loops, as `BinaryHeap`'s `Ord` is.

    pub(crate) fn push(&mut self, store: &mut PodStore, order: &Order, key: SortKey) {
        self.len += 1;
        let (entries, pos) = store.split();
        match order {
            Order::PrioritySort => match self.level_for(&key) {
                Some(level) => level.push(key, pos),
                None => self.heap.push(key, pos, SortKey::before),
            },
            Order::Custom(_) => self.heap.push(key, pos, |a, b| order.less(entries, a, b)),
        }
    }

    /// The level `key` can be appended to, created if need be; `None`: to the heap.
    fn level_for(&mut self, key: &SortKey) -> Option<&mut Level> {
        let found = self.levels.iter().position(|l| l.priority == key.priority);
        let at = match found {
            Some(at) => at,
            None => {
                if self.levels.len() >= GC_LEVELS {
                    self.levels.retain(|l| !l.items.is_empty());
                }
                if self.levels.len() >= MAX_LEVELS {
                    return None;
                }
                let at = self
                    .levels
                    .iter()
                    .position(|l| l.priority < key.priority)
                    .unwrap_or(self.levels.len());
                self.levels.insert(at, Level::new(key.priority));
                at
            }
        };
        let level = &mut self.levels[at];
        let in_order = level
            .items
            .back()
            .is_none_or(|back| SortKey::before(back, key));
        in_order.then_some(level)
    }

    /// The first non-empty level (its front is live).
    fn best_level(&self) -> Option<usize> {
        self.levels.iter().position(|l| !l.items.is_empty())
    }

    /// Whether the heap's top goes before the best level's front (`None`: both empty).
    fn heap_first(&self) -> Option<(bool, Option<usize>)> {
        let level = self.best_level();
        let front = level.and_then(|l| self.levels[l].items.front());
        match (self.heap.peek(), front) {
            (None, None) => None,
            (Some(_), None) => Some((true, level)),
            (None, Some(_)) => Some((false, level)),
            (Some(top), Some(front)) => Some((SortKey::before(top, front), level)),
        }
    }

    pub(crate) fn pop(&mut self, store: &mut PodStore, order: &Order) -> Option<Slot> {
        let (entries, pos) = store.split();
        let key = match order {
            Order::PrioritySort => match self.heap_first()? {
                (false, Some(level)) => self.levels[level].pop_front(),
                _ => self.heap.pop(pos, SortKey::before),
            },
            Order::Custom(_) => self.heap.pop(pos, |a, b| order.less(entries, a, b)),
        };
        self.len -= usize::from(key.is_some());
        key.map(|k| k.slot)
    }

    pub(crate) fn remove(&mut self, store: &mut PodStore, order: &Order, slot: Slot) {
        let (entries, pos) = store.split();
        let at = pos[slot as usize];
        self.len -= 1;
        if at & IN_LEVEL != 0 {
            for level in &mut self.levels {
                if let Some(i) = level.find(at & INDEX, slot) {
                    level.remove(i, pos);
                    return;
                }
            }
            debug_assert!(false, "slot {slot} not in its level");
            return;
        }
        match order {
            Order::PrioritySort => self.heap.remove_at(at, pos, SortKey::before),
            Order::Custom(_) => self
                .heap
                .remove_at(at, pos, |a, b| order.less(entries, a, b)),
        };
    }

    /// Re-sorts a pod whose key or pod changed (an update in place): out and back in with the
    /// same sequence number, which is the order a re-sort in place gives.
    pub(crate) fn update(&mut self, store: &mut PodStore, order: &Order, key: SortKey) {
        self.remove(store, order, key.slot);
        self.push(store, order, key);
    }

    /// The pod the next pop takes (unless a better one arrives first).
    #[cfg(test)]
    pub(crate) fn head(&self) -> Option<Slot> {
        match self.heap_first()? {
            (false, Some(level)) => self.levels[level].items.front().map(|k| k.slot),
            _ => self.heap.peek().map(|k| k.slot),
        }
    }

    /// The next three pops as far as known now (unless better pods arrive first): a level's
    /// front and the two items behind it, or the heap's top alone (the heap does not tell
    /// what follows its top without sifting).
    pub(crate) fn upcoming(&self) -> [Option<Slot>; 3] {
        match self.heap_first() {
            Some((false, Some(level))) => {
                let mut live = self.levels[level].live().map(|k| k.slot);
                [live.next(), live.next(), live.next()]
            }
            Some(_) => [self.heap.peek().map(|k| k.slot), None, None],
            None => [None; 3],
        }
    }

    /// Slots in no particular order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.heap
            .iter()
            .chain(self.levels.iter().flat_map(Level::live))
            .map(|k| k.slot)
    }

    /// Every pod is where `pos` says, the levels are sorted with live ends, and `len` counts
    /// them all.
    #[cfg(test)]
    pub(crate) fn check(&self, pos: &[u32]) {
        for (i, k) in self.heap.iter().enumerate() {
            assert_eq!(
                pos[k.slot as usize] as usize, i,
                "heap position of {}",
                k.slot
            );
        }
        let mut n = self.heap.len();
        for w in self.levels.windows(2) {
            assert!(w[0].priority > w[1].priority, "levels sorted");
        }
        for level in &self.levels {
            assert!(level.items.front().is_none_or(|k| k.slot != DEAD));
            assert!(level.items.back().is_none_or(|k| k.slot != DEAD));
            let dead = level.items.iter().filter(|k| k.slot == DEAD).count();
            assert_eq!(dead, level.dead);
            n += level.items.len() - dead;
            for w in level.items.iter().collect::<Vec<_>>().windows(2) {
                assert!(SortKey::before(w[0], w[1]), "level in order");
            }
            for (i, k) in level.items.iter().enumerate() {
                assert_eq!(k.priority, level.priority);
                if k.slot != DEAD {
                    let at = IN_LEVEL | (level.base.wrapping_add(i as u32) & INDEX);
                    assert_eq!(pos[k.slot as usize], at, "level position of {}", k.slot);
                }
            }
        }
        assert_eq!(n, self.len);
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use k8s_openapi::api::core::v1::Pod;
    use ksched_framework::{PodInfo, QueuedPodInfo};
    use proptest::prelude::*;

    use super::*;

    fn store_of(n: usize) -> PodStore {
        let mut store = PodStore::default();
        for i in 0..n {
            let mut pod = Pod::default();
            pod.metadata.namespace = Some("ns".into());
            pod.metadata.name = Some(format!("p{i}"));
            pod.metadata.uid = Some(format!("u{i}"));
            let info = QueuedPodInfo::new(Arc::new(PodInfo::new(Arc::new(pod))), Instant::now());
            assert_eq!(
                store.insert(Entry::new(info, Default::default(), 0)),
                i as Slot
            );
        }
        store
    }

    /// The reference order: PrioritySort on the keys.
    fn rank(k: &SortKey) -> (i32, u64, u64) {
        (-k.priority, k.timestamp, k.seq)
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Queue a pod not queued: priority class, and either a fresh timestamp (`None`) or
        /// one that many cycles ago.
        Push(u8, Option<u8>),
        Pop,
        Remove(prop::sample::Index),
        /// Re-key a queued pod: new priority class.
        Update(prop::sample::Index, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4u8, prop::option::weighted(0.2, any::<u8>())).prop_map(|(p, o)| Op::Push(p, o)),
            2 => Just(Op::Pop),
            1 => any::<prop::sample::Index>().prop_map(Op::Remove),
            1 => (any::<prop::sample::Index>(), 0..4u8).prop_map(|(i, p)| Op::Update(i, p)),
        ]
    }

    proptest! {
        /// FIFO levels and heap together pop in exactly PrioritySort's order, whatever mix of
        /// fresh and old timestamps, removals and re-keyings they went through.
        #[test]
        fn levels_and_heap_pop_in_priority_sort_order(ops in prop::collection::vec(op(), 0..400)) {
            const PODS: usize = 64;
            let mut store = store_of(PODS);
            let order = Order::PrioritySort;
            let mut q = ActiveQueue::default();
            let mut queued: Vec<SortKey> = Vec::new();
            let mut free: Vec<Slot> = (0..PODS as Slot).rev().collect();
            let (mut now, mut seq) = (1_000u64, 0u64);
            for op in ops {
                match op {
                    Op::Push(class, age) => {
                        let Some(slot) = free.pop() else { continue };
                        now += 1;
                        seq += 1;
                        let key = SortKey {
                            priority: i32::from(class) * 100 - 100,
                            slot,
                            timestamp: age.map_or(now, |a| now - u64::from(a)),
                            seq,
                        };
                        q.push(&mut store, &order, key);
                        queued.push(key);
                    }
                    Op::Pop => {
                        let best = queued.iter().copied().min_by_key(rank);
                        prop_assert_eq!(q.head(), best.map(|k| k.slot));
                        prop_assert_eq!(q.pop(&mut store, &order), best.map(|k| k.slot));
                        if let Some(best) = best {
                            queued.retain(|k| k.slot != best.slot);
                            free.push(best.slot);
                        }
                    }
                    Op::Remove(i) if !queued.is_empty() => {
                        let key = queued.swap_remove(i.index(queued.len()));
                        q.remove(&mut store, &order, key.slot);
                        free.push(key.slot);
                    }
                    Op::Update(i, class) if !queued.is_empty() => {
                        let i = i.index(queued.len());
                        queued[i].priority = i32::from(class) * 100 - 100;
                        q.update(&mut store, &order, queued[i]);
                    }
                    Op::Remove(_) | Op::Update(..) => {}
                }
                q.check(&store.pos);
                prop_assert_eq!(q.len(), queued.len());
            }
            queued.sort_by_key(rank);
            let mut got = Vec::new();
            while let Some(slot) = q.pop(&mut store, &order) {
                got.push(slot);
                q.check(&store.pos);
            }
            prop_assert_eq!(got, queued.iter().map(|k| k.slot).collect::<Vec<_>>());
        }
    }

    /// Removing most of a long level from the middle compacts it and keeps positions right.
    #[test]
    fn tombstones_are_compacted() {
        const PODS: usize = 200;
        let mut store = store_of(PODS);
        let order = Order::PrioritySort;
        let mut q = ActiveQueue::default();
        for slot in 0..PODS as Slot {
            let key = SortKey {
                priority: 0,
                slot,
                timestamp: u64::from(slot),
                seq: u64::from(slot),
            };
            q.push(&mut store, &order, key);
        }
        for slot in (1..PODS as Slot - 1).filter(|s| s % 4 != 0) {
            q.remove(&mut store, &order, slot);
            q.check(&store.pos);
        }
        assert!(q.levels[0].items.len() < PODS / 2, "compacted");
        let got: Vec<Slot> = std::iter::from_fn(|| q.pop(&mut store, &order)).collect();
        let want: Vec<Slot> = (0..PODS as Slot)
            .filter(|s| s % 4 == 0 || *s == PODS as Slot - 1)
            .collect();
        assert_eq!(got, want);
    }
}
