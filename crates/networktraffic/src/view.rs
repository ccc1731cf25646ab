//! [`Shared`]: the data and reservations Score reads, replaced as a whole by the refresher and
//! by Reserve/Unreserve, read by Score without a lock.
//!
//! Writers swap in a changed copy of one immutable [`View`] (`ArcSwap::rcu`), so a cycle never
//! sees a snapshot from one refresh with reservations pruned by another.
//!
//! Readers on the Score path go through [`Shared::with_view`], a per-thread copy of the `Arc`
//! checked against a generation counter: Score runs once per node per pod (5000 times per pod
//! on a large cluster), and `ArcSwap::load`'s two atomic read-modify-writes per call were a
//! third of its cost. The generation is bumped after each swap, so a thread sees a new view at
//! its next call after the bump — never an older view than it would through `ArcSwap`.

use std::{
    cell::RefCell,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;

use crate::{compensation::Reservations, snapshot::TrafficSnapshot};

/// What Score reads.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) traffic: Arc<TrafficSnapshot>,
    pub(crate) reservations: Arc<Reservations>,
}

/// Distinguishes plugin instances in the per-thread caches (an address could be reused by a
/// later instance; an id is never).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How many instances a thread keeps a view of (profiles × tests); the oldest goes first.
const CACHED_INSTANCES: usize = 8;

thread_local! {
    /// `(instance id, generation, view)` for the instances this thread scored for lately.
    static VIEWS: RefCell<Vec<(u64, u64, Arc<View>)>> = const { RefCell::new(Vec::new()) };
}

/// The current [`View`] of one plugin instance.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    generation: AtomicU64,
    view: ArcSwap<View>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            view: ArcSwap::default(),
        }
    }
}

impl Shared {
    /// The current view (a cheap guard; do not hold it across an `.await`).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    /// Runs `f` on the current view through this thread's cached copy (the Score path).
    pub(crate) fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        VIEWS.with(|cell| {
            if let Ok(cache) = cell.try_borrow()
                && let Some((_, _, v)) = cache
                    .iter()
                    .find(|(id, g, _)| *id == self.id && *g == generation)
            {
                return f(v);
            }
            // Loaded after reading the generation, so at least as new as what it names.
            let fresh = self.view.load_full();
            let out = f(&fresh);
            if let Ok(mut cache) = cell.try_borrow_mut() {
                cache.retain(|(id, _, _)| *id != self.id);
                if cache.len() >= CACHED_INSTANCES {
                    cache.remove(0);
                }
                cache.push((self.id, generation, fresh));
            }
            out
        })
    }

    fn replace(&self, f: impl Fn(&Arc<View>) -> Arc<View>) {
        self.view.rcu(|v| f(v));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Installs new data and prunes the reservations it covers.
    pub(crate) fn set_traffic(&self, traffic: Arc<TrafficSnapshot>, window_secs: f64) {
        #[allow(clippy::cast_precision_loss)]
        let evaluated_at = traffic.evaluated_at() as f64;
        self.replace(|v| {
            Arc::new(View {
                traffic: traffic.clone(),
                reservations: v
                    .reservations
                    .pruned(evaluated_at, window_secs)
                    .map_or_else(|| v.reservations.clone(), Arc::new),
            })
        });
    }

    /// Replaces the reservations with `f(current)` unless it returns `None`.
    pub(crate) fn update_reservations(&self, f: impl Fn(&Reservations) -> Option<Reservations>) {
        self.replace(|v| match f(&v.reservations) {
            Some(r) => Arc::new(View {
                traffic: v.traffic.clone(),
                reservations: Arc::new(r),
            }),
            None => Arc::clone(v),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_sees_each_replacement() {
        let s = Shared::default();
        assert!(s.with_view(|v| v.traffic.is_empty()));
        s.set_traffic(
            Arc::new(TrafficSnapshot::from_rates([("a", 1.0)], 10)),
            60.0,
        );
        assert_eq!(s.with_view(|v| v.traffic.evaluated_at()), 10);
        s.update_reservations(|r| Some(r.with_added("a", "ns/p", 5.0, 10.0)));
        assert_eq!(s.with_view(|v| v.reservations.len()), 1);
        // Another instance on the same thread has its own view.
        let other = Shared::default();
        assert_eq!(other.with_view(|v| v.reservations.len()), 0);
        assert_eq!(s.with_view(|v| v.reservations.len()), 1);
        // Other threads see it too.
        std::thread::scope(|t| {
            t.spawn(|| assert_eq!(s.with_view(|v| v.traffic.evaluated_at()), 10));
        });
    }
}
