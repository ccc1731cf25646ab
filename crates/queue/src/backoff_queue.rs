//! backoffQ: pods waiting out their backoff before they may be retried.
//!
//! Two heaps, as upstream: podBackoffQ for pods some plugin rejected, podErrorBackoffQ for
//! pods that failed with an error (no rejector plugin), so errors do not lengthen the backoff
//! of rejections and the other way round. Both are ordered by backoff expiry.
//!
//! Expiry is aligned to 1-second ordering windows (upstream `SchedulerPopFromBackoffQ`, on by
//! default since 1.33): a pod is still backing off while its expiry lies in the current
//! window, the flush runs once per window and moves whole windows, and within a window
//! podBackoffQ keeps the activeQ order, so that a pod popped straight from backoffQ (when
//! activeQ is empty) is the one activeQ would have chosen.

use std::time::{Duration, Instant};

use ksched_framework::QueuedPodInfo;

use crate::{
    active_queue::{Order, SortKey},
    heap::{Heap, Slotted},
    store::{Entry, PodStore, Slot},
};

/// Backoff after the first failed attempt (upstream `DefaultPodInitialBackoffDuration`).
pub const DEFAULT_POD_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff (upstream `DefaultPodMaxBackoffDuration`).
pub const DEFAULT_POD_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Length of a backoff ordering window, and the period of the backoff flush.
pub const BACKOFF_ORDERING_WINDOW: Duration = Duration::from_secs(1);

const WINDOW_NANOS: u64 = BACKOFF_ORDERING_WINDOW.as_nanos() as u64;

/// The backoff after `count` failures: `initial · 2^(count−1)`, capped at `max`; none for
/// `count == 0` or a zero `initial` or `max`.
///
/// ```
/// use std::time::Duration;
/// use ksched_queue::{DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF, backoff_duration};
///
/// let secs: Vec<u64> = (1..=6)
///     .map(|n| backoff_duration(n, DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF).as_secs())
///     .collect();
/// assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
/// ```
#[must_use]
pub fn backoff_duration(count: u32, initial: Duration, max: Duration) -> Duration {
    if count == 0 || initial.is_zero() || max.is_zero() {
        return Duration::ZERO;
    }
    let mut duration = initial.min(max);
    for _ in 1..count {
        // Compare before doubling so that neither the loop nor a huge count can overflow.
        if duration > max.saturating_sub(duration) {
            return max;
        }
        duration += duration;
    }
    duration
}

/// The failure count the backoff of `info` grows with: consecutive errors while the pod keeps
/// failing with errors, its rejections otherwise.
pub(crate) fn backoff_count(info: &QueuedPodInfo) -> u32 {
    if info.consecutive_errors_count > 0 {
        info.consecutive_errors_count
    } else {
        info.unschedulable_count
    }
}

/// The queue's time axis: nanoseconds since the queue was built, so ordering keys are plain
/// integers and ordering windows have a fixed origin. Instants before the origin count as 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    epoch: Instant,
}

impl Timeline {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self { epoch }
    }

    pub(crate) fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Start of the ordering window holding `nanos`.
    pub(crate) fn window(nanos: u64) -> u64 {
        nanos - nanos % WINDOW_NANOS
    }

    /// Time from `now` to the start of the next window.
    pub(crate) fn until_next_window(&self, now: Instant) -> Duration {
        let ns = self.nanos(now);
        Duration::from_nanos(Self::window(ns) + WINDOW_NANOS - ns)
    }
}

/// How long pods back off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackoffPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl BackoffPolicy {
    /// Window-aligned end of `info`'s backoff, `None` when it has none.
    pub(crate) fn expiry(&self, timeline: &Timeline, info: &QueuedPodInfo) -> Option<u64> {
        let d = backoff_duration(backoff_count(info), self.initial, self.max);
        if d.is_zero() {
            return None;
        }
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Some(Timeline::window(
            timeline.nanos(info.timestamp).saturating_add(d),
        ))
    }
}

/// Whether a pod whose backoff ends at `expiry` is still backing off at `now` (nanoseconds):
/// until the window after the one its expiry falls in.
pub(crate) fn is_backing_off(expiry: Option<u64>, now: u64) -> bool {
    expiry.is_some_and(|e| e >= Timeline::window(now))
}

/// A backoffQ item: expiry window first, then the activeQ key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffItem {
    pub(crate) expiry: u64,
    pub(crate) key: SortKey,
}

impl Slotted for BackoffItem {
    fn slot(&self) -> u32 {
        self.key.slot
    }
}

/// Which backoff heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// podBackoffQ.
    Pods,
    /// podErrorBackoffQ.
    Errors,
}

/// podBackoffQ and podErrorBackoffQ.
#[derive(Debug, Default)]
pub(crate) struct BackoffQueue {
    pods: Heap<BackoffItem>,
    errors: Heap<BackoffItem>,
}

fn less(
    which: Which,
    order: &Order,
    entries: &[Option<Entry>],
    a: &BackoffItem,
    b: &BackoffItem,
) -> bool {
    if a.expiry != b.expiry {
        return a.expiry < b.expiry;
    }
    match which {
        Which::Pods => order.less(entries, &a.key, &b.key),
        Which::Errors => a.key.seq < b.key.seq,
    }
}

impl BackoffQueue {
    fn heap(&mut self, which: Which) -> &mut Heap<BackoffItem> {
        match which {
            Which::Pods => &mut self.pods,
            Which::Errors => &mut self.errors,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pods.len() + self.errors.len()
    }

    pub(crate) fn push(
        &mut self,
        which: Which,
        store: &mut PodStore,
        order: &Order,
        item: BackoffItem,
    ) {
        let (entries, pos) = store.split();
        self.heap(which)
            .push(item, pos, |a, b| less(which, order, entries, a, b));
    }

    pub(crate) fn remove(&mut self, which: Which, store: &mut PodStore, order: &Order, slot: Slot) {
        let (entries, pos) = store.split();
        let at = pos[slot as usize];
        self.heap(which)
            .remove_at(at, pos, |a, b| less(which, order, entries, a, b));
    }

    /// Re-sorts a pod updated in place.
    pub(crate) fn update(
        &mut self,
        which: Which,
        store: &mut PodStore,
        order: &Order,
        key: SortKey,
    ) {
        let (entries, pos) = store.split();
        let at = pos[key.slot as usize];
        let heap = self.heap(which);
        let Some(&old) = heap.get(at) else { return };
        heap.replace_at(at, BackoffItem { key, ..old }, pos, |a, b| {
            less(which, order, entries, a, b)
        });
    }

    /// Pops the first pod of `which` whose backoff window ended before the window of `now`.
    pub(crate) fn pop_completed(
        &mut self,
        which: Which,
        store: &mut PodStore,
        order: &Order,
        now: u64,
    ) -> Option<Slot> {
        let heap = self.heap(which);
        if heap
            .peek()
            .is_none_or(|top| is_backing_off(Some(top.expiry), now))
        {
            return None;
        }
        let (entries, pos) = store.split();
        heap.pop(pos, |a, b| less(which, order, entries, a, b))
            .map(|i| i.key.slot)
    }

    /// Pops the head of podBackoffQ, backing off or not.
    pub(crate) fn pop_pod(&mut self, store: &mut PodStore, order: &Order) -> Option<Slot> {
        let (entries, pos) = store.split();
        self.pods
            .pop(pos, |a, b| less(Which::Pods, order, entries, a, b))
            .map(|i| i.key.slot)
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.pods
            .iter()
            .chain(self.errors.iter())
            .map(|i| i.key.slot)
    }

    /// Slots of one heap, in heap order (position `i` at index `i`).
    #[cfg(test)]
    pub(crate) fn slots_of(&self, which: Which) -> impl Iterator<Item = Slot> + '_ {
        match which {
            Which::Pods => &self.pods,
            Which::Errors => &self.errors,
        }
        .iter()
        .map(|i| i.key.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let secs: Vec<u64> = (0..=8)
            .map(|n| {
                backoff_duration(n, DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF).as_secs()
            })
            .collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 10, 10, 10, 10]);
        assert_eq!(
            backoff_duration(u32::MAX, Duration::from_secs(1), Duration::MAX),
            Duration::MAX
        );
        assert_eq!(
            backoff_duration(3, Duration::from_secs(1), Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            backoff_duration(u32::MAX, Duration::ZERO, Duration::MAX),
            Duration::ZERO
        );
        assert_eq!(
            backoff_duration(1, Duration::from_secs(30), Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_pod_backs_off_until_the_window_after_its_expiry() {
        let window = WINDOW_NANOS;
        let expiry = Some(Timeline::window(window + window / 3));
        assert!(is_backing_off(expiry, window));
        assert!(is_backing_off(expiry, 2 * window - 1));
        assert!(!is_backing_off(expiry, 2 * window));
        assert!(!is_backing_off(None, 0));
    }
}
