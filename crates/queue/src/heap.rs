//! An indexed binary heap ordered by a comparator given at each call.
//!
//! `std::collections::BinaryHeap` needs `Ord` on its items, but a QueueSort plugin's `less`
//! reads the queued pods, which live in the store next to the heap: the comparator has to be a
//! closure over the store. Items are small `Copy` records (an inline sort key plus the pod's
//! store slot), so sifting moves a few words and, for the default PrioritySort, compares
//! without touching the pods at all.
//!
//! Like upstream's `heap.Heap` (a heap plus a key → index map) every item's position is kept
//! up to date, here in a dense `slot → position` array shared by all heaps of the queue (a pod
//! is in at most one), so a pod can be removed or re-sorted in O(log n) when it is deleted,
//! updated or activated.

/// A heap item: a sort key and the store slot of its pod.
pub(crate) trait Slotted: Copy {
    fn slot(&self) -> u32;
}

/// A min-heap by `less`: `pop` returns the item no other item is `less` than.
#[derive(Debug, Clone)]
pub(crate) struct Heap<T> {
    items: Vec<T>,
}

impl<T: Slotted> Default for Heap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Slotted> Heap<T> {
    pub(crate) const fn new() -> Self {
        Self { items: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn peek(&self) -> Option<&T> {
        self.items.first()
    }

    pub(crate) fn get(&self, pos: u32) -> Option<&T> {
        self.items.get(pos as usize)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub(crate) fn push(&mut self, item: T, pos: &mut [u32], less: impl Fn(&T, &T) -> bool) {
        self.items.push(item);
        self.sift_up(self.items.len() - 1, pos, &less);
    }

    pub(crate) fn pop(&mut self, pos: &mut [u32], less: impl Fn(&T, &T) -> bool) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        Some(self.remove_at(0, pos, less))
    }

    /// Removes the item at `at` (which must be `< len`).
    pub(crate) fn remove_at(
        &mut self,
        at: u32,
        pos: &mut [u32],
        less: impl Fn(&T, &T) -> bool,
    ) -> T {
        let at = at as usize;
        let last = self.items.pop().expect("remove_at on an empty heap");
        if at == self.items.len() {
            return last;
        }
        let removed = std::mem::replace(&mut self.items[at], last);
        if at == 0 {
            // Like std's BinaryHeap::pop: sink the hole to the bottom along the smaller
            // children, then let the moved item rise; about half the comparisons of a classic
            // sift-down, since the last item usually belongs near the bottom anyway.
            let end = self.items.len();
            let mut hole = 0;
            let mut child = 1;
            while child + 1 < end {
                if less(&self.items[child + 1], &self.items[child]) {
                    child += 1;
                }
                self.place(hole, self.items[child], pos);
                hole = child;
                child = 2 * hole + 1;
            }
            if child + 1 == end {
                self.place(hole, self.items[child], pos);
                hole = child;
            }
            self.place(hole, last, pos);
            self.sift_up(hole, pos, &less);
        } else {
            self.fix(at as u32, pos, less);
        }
        removed
    }

    /// Replaces the item at `at` (same slot, new key) and restores the order.
    pub(crate) fn replace_at(
        &mut self,
        at: u32,
        item: T,
        pos: &mut [u32],
        less: impl Fn(&T, &T) -> bool,
    ) {
        self.items[at as usize] = item;
        self.fix(at, pos, less);
    }

    /// Restores the order after the key at `at` changed.
    pub(crate) fn fix(&mut self, at: u32, pos: &mut [u32], less: impl Fn(&T, &T) -> bool) {
        let at = at as usize;
        if at > 0 && less(&self.items[at], &self.items[(at - 1) / 2]) {
            self.sift_up(at, pos, &less);
        } else {
            self.sift_down(at, pos, &less);
        }
    }

    fn place(&mut self, at: usize, item: T, pos: &mut [u32]) {
        pos[item.slot() as usize] = at as u32;
        self.items[at] = item;
    }

    fn sift_up(&mut self, mut at: usize, pos: &mut [u32], less: &impl Fn(&T, &T) -> bool) {
        let item = self.items[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if !less(&item, &self.items[parent]) {
                break;
            }
            self.place(at, self.items[parent], pos);
            at = parent;
        }
        self.place(at, item, pos);
    }

    fn sift_down(&mut self, mut at: usize, pos: &mut [u32], less: &impl Fn(&T, &T) -> bool) {
        let item = self.items[at];
        let end = self.items.len();
        loop {
            let mut child = 2 * at + 1;
            if child >= end {
                break;
            }
            if child + 1 < end && less(&self.items[child + 1], &self.items[child]) {
                child += 1;
            }
            if !less(&self.items[child], &item) {
                break;
            }
            self.place(at, self.items[child], pos);
            at = child;
        }
        self.place(at, item, pos);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Item {
        key: i16,
        slot: u32,
    }

    impl Slotted for Item {
        fn slot(&self) -> u32 {
            self.slot
        }
    }

    fn less(a: &Item, b: &Item) -> bool {
        (a.key, a.slot) < (b.key, b.slot)
    }

    fn check_positions(heap: &Heap<Item>, pos: &[u32]) {
        for (i, item) in heap.iter().enumerate() {
            assert_eq!(pos[item.slot as usize] as usize, i);
        }
    }

    proptest! {
        #[test]
        fn pops_in_order_after_removals_and_changes(
            keys in prop::collection::vec(any::<i16>(), 0..300),
            remove in prop::collection::vec(any::<prop::sample::Index>(), 0..50),
            change in prop::collection::vec((any::<prop::sample::Index>(), any::<i16>()), 0..50),
        ) {
            let mut heap = Heap::new();
            let mut pos = vec![u32::MAX; keys.len()];
            let mut live: Vec<Item> = Vec::new();
            for (slot, key) in keys.iter().enumerate() {
                let item = Item { key: *key, slot: slot as u32 };
                heap.push(item, &mut pos, less);
                live.push(item);
            }
            check_positions(&heap, &pos);
            for idx in remove {
                if live.is_empty() { break; }
                let victim = live.swap_remove(idx.index(live.len()));
                let removed = heap.remove_at(pos[victim.slot as usize], &mut pos, less);
                prop_assert_eq!(removed, victim);
                check_positions(&heap, &pos);
            }
            for (idx, key) in change {
                if live.is_empty() { break; }
                let i = idx.index(live.len());
                live[i].key = key;
                heap.replace_at(pos[live[i].slot as usize], live[i], &mut pos, less);
                check_positions(&heap, &pos);
            }
            live.sort_by_key(|i| (i.key, i.slot));
            let mut got = Vec::new();
            while let Some(v) = heap.pop(&mut pos, less) {
                got.push(v);
                check_positions(&heap, &pos);
            }
            prop_assert_eq!(got, live);
        }
    }
}
