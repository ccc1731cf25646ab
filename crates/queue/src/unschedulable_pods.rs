//! unschedulablePods: pods that were tried and rejected, and pods a PreEnqueue plugin gates.
//!
//! They wait for a cluster event one of their rejector plugins says may help, for their own
//! update, or for the leftover flush (5 minutes by default). Only membership and iteration are
//! needed — which pods an event moves is decided pod by pod — so this is a dense list with
//! O(1) removal through the store's position array.

use crate::store::{PodStore, Slot};

/// unschedulablePods (gated pods included).
#[derive(Debug, Default)]
pub(crate) struct UnschedulablePods {
    slots: Vec<Slot>,
}

impl UnschedulablePods {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn push(&mut self, store: &mut PodStore, slot: Slot) {
        store.pos[slot as usize] = self.slots.len() as u32;
        self.slots.push(slot);
    }

    pub(crate) fn remove(&mut self, store: &mut PodStore, slot: Slot) {
        let at = store.pos[slot as usize] as usize;
        self.slots.swap_remove(at);
        if let Some(&moved) = self.slots.get(at) {
            store.pos[moved as usize] = at as u32;
        }
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }
}
