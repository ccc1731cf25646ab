//! [`PriorityQueue`]: the scheduling queue (upstream `PriorityQueue` in
//! `pkg/scheduler/backend/queue/scheduling_queue.go`).
//!
//! One mutex guards the sub-queues, the in-flight log and the counters; every operation is a
//! short critical section (MoveAll over 5000 unschedulable pods included, see
//! `docs/benchmarks.md`), so there is no finer lock hierarchy as upstream has. The nominator
//! has its own lock because Filter reads it from many threads. `pop` waits on a
//! [`tokio::sync::Notify`] outside the mutex.

use std::{
    collections::HashMap,
    pin::pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterObject, EventResource, PodActivator, PodInfo, PodNominator,
    QueuedPodInfo, events::well_known, pod_hash,
};
use parking_lot::Mutex;
use tokio::{sync::Notify, task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{
    BACKOFF_ORDERING_WINDOW, Error, QueueConfig, QueueMetrics, Result,
    active_queue::{ActiveQueue, Order, SortKey},
    backoff_queue::{BackoffItem, BackoffPolicy, BackoffQueue, Timeline, Which, is_backing_off},
    clock::Clock,
    config::UNSCHEDULABLE_FLUSH_INTERVAL,
    error::QueueName,
    hints::{self, Profiles, Strategy, Triage},
    in_flight::InFlight,
    metrics::{Counters, Label, PendingPods},
    nominator::Nominator,
    pod_events::{is_pod_updated, pod_scheduling_properties_change},
    store::{self, Entry, Place, PodStore, Slot},
    unschedulable_pods::UnschedulablePods,
};

/// Name of the plugin whose rejections any assigned-pod change in the same namespace may
/// lift (upstream moves those pods on assigned-pod events whatever their affinity).
const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";

/// A filter `move_all_to_active_or_backoff_queue` applies to unschedulable pods before their
/// hints (upstream `PreEnqueueCheck`): `false` leaves the pod where it is.
pub type PreEnqueueCheck<'a> = &'a dyn Fn(&Pod) -> bool;

/// The scheduling queue: activeQ, backoffQ and unschedulablePods, with in-flight event
/// tracking and the nominator.
///
/// Pods flow as upstream's: [`PriorityQueue::add`] puts a new pod in activeQ (or holds it
/// gated), [`PriorityQueue::pop`] hands the best one to the scheduler, which ends the attempt
/// with [`PriorityQueue::done`] on success or
/// [`PriorityQueue::add_unschedulable_if_not_present`] on failure; cluster events
/// ([`PriorityQueue::move_all_to_active_or_backoff_queue`], [`PriorityQueue::assigned_pod_added`],
/// …) and the background flushes started by [`PriorityQueue::run`] bring rejected pods back.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use k8s_openapi::api::core::v1::Pod;
/// use ksched_framework::{ClusterEventWithHint, events::well_known};
/// use ksched_queue::{FakeClock, PriorityQueue, QueueConfig};
///
/// fn pod(name: &str) -> Arc<Pod> {
///     let mut p = Pod::default();
///     p.metadata.namespace = Some("default".into());
///     p.metadata.name = Some(name.into());
///     p.metadata.uid = Some(format!("uid-{name}"));
///     Arc::new(p)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = Arc::new(FakeClock::new());
/// // NodeResourcesFit wants to hear about new nodes.
/// let config = QueueConfig::default()
///     .with_clock(clock.clone())
///     .with_hints("default-scheduler", "NodeResourcesFit", [ClusterEventWithHint::new(well_known::NODE_ADD)]);
/// let queue = PriorityQueue::new(config)?;
///
/// queue.add(pod("web-0"))?;
/// let mut attempt = queue.pop().await.expect("a pod is ready");
/// assert_eq!(attempt.key(), "default/web-0");
///
/// // The attempt fails: no node has room.
/// attempt.unschedulable_plugins.insert("NodeResourcesFit".into());
/// queue.add_unschedulable_if_not_present(attempt)?;
/// assert_eq!(queue.metrics().pending.unschedulable, 1);
///
/// // A node joins; after its 1 s backoff the pod is back in activeQ.
/// queue.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
/// assert_eq!(queue.metrics().pending.backoff, 1);
/// clock.advance(Duration::from_secs(2));
/// queue.flush_backoff_q_completed();
/// assert_eq!(queue.pop().await.expect("requeued").attempts, 2);
/// # Ok::<_, ksched_queue::Error>(())
/// # }).unwrap();
/// ```
pub struct PriorityQueue {
    cx: Ctx,
    state: Mutex<State>,
    /// Wakes poppers waiting for a pod.
    wake: Notify,
    /// Poppers registered on `wake`; adders skip the notification when there are none.
    waiters: AtomicUsize,
    shutdown: CancellationToken,
}

/// What the queue is configured with; read-only, so it lives outside the mutex.
struct Ctx {
    clock: Arc<dyn Clock>,
    timeline: Timeline,
    order: Order,
    backoff: BackoffPolicy,
    max_in_unschedulable: Duration,
    profiles: Profiles,
    nominator: Nominator,
}

/// Everything the mutex guards.
#[derive(Default)]
struct State {
    store: PodStore,
    active: ActiveQueue,
    backoff: BackoffQueue,
    unschedulable: UnschedulablePods,
    in_flight: InFlight,
    counters: Counters,
    scheduling_cycle: u64,
    next_seq: u64,
    closed: bool,
}

/// A pod the queue can key: it needs a name and a UID. The same as [`validate`], from what
/// `PodInfo` precomputed (without reading the pod).
fn validate_info(info: &PodInfo) -> Result<()> {
    let reason = if info.key().ends_with('/') {
        "metadata.name is missing"
    } else if info.uid().is_empty() {
        "metadata.uid is missing"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPod {
        pod: info.key().to_owned(),
        reason,
    })
}

/// A pod the queue can key: it needs a name and a UID.
fn validate(pod: &Pod) -> Result<()> {
    let reason = if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
        "metadata.name is missing"
    } else if pod.metadata.uid.as_deref().is_none_or(str::is_empty) {
        "metadata.uid is missing"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPod {
        pod: ksched_framework::pod_key(pod),
        reason,
    })
}

fn queue_of(place: Place) -> QueueName {
    match place {
        Place::Active => QueueName::Active,
        Place::Backoff | Place::ErrorBackoff => QueueName::Backoff,
        Place::Unschedulable | Place::Detached => QueueName::Unschedulable,
    }
}

/// The time, read once per operation (a clock read costs as much as a heap operation).
#[derive(Debug, Clone, Copy)]
struct Now {
    at: std::time::Instant,
    /// `at` on the queue's timeline.
    ns: u64,
}

impl Ctx {
    fn now(&self) -> Now {
        self.now_at(self.clock.now())
    }

    fn now_at(&self, at: std::time::Instant) -> Now {
        Now {
            at,
            ns: self.timeline.nanos(at),
        }
    }

    /// The hash of a pod key or UID, as `PodInfo` precomputes it (the index and the in-flight
    /// table are keyed by these).
    fn hash(&self, s: &str) -> u64 {
        pod_hash(s)
    }

    /// Runs the PreEnqueue plugins of the pod's profile, the one that gated it last time
    /// first; the first refusal gates the pod and counts as a rejection by that plugin.
    /// Returns whether the pod's plugin sets changed.
    fn run_pre_enqueue(&self, profile: u16, info: &mut QueuedPodInfo) -> bool {
        let Some(plugins) = self
            .profiles
            .get(profile)
            .map(|p| &p.pre_enqueue)
            .filter(|p| !p.is_empty())
        else {
            return info.gating_plugin.take().is_some();
        };
        let previous = info.gating_plugin.take();
        let first = previous
            .as_deref()
            .and_then(|g| plugins.iter().find(|p| p.name() == g));
        let rest = plugins
            .iter()
            .filter(|p| Some(p.name()) != previous.as_deref());
        for plugin in first.into_iter().chain(rest) {
            let Some(pre_enqueue) = plugin.as_pre_enqueue() else {
                continue;
            };
            let status = pre_enqueue.pre_enqueue(info.pod());
            if !status.is_success() {
                tracing::debug!(pod = info.key(), plugin = plugin.name(), status = %status.message(), "pod gated");
                let inserted = info.unschedulable_plugins.insert(plugin.name().to_owned());
                info.gating_plugin = Some(plugin.name().to_owned());
                return inserted || previous.as_deref() != Some(plugin.name());
            }
        }
        previous.is_some()
    }
}

impl State {
    /// The store entry of `info`, from what its `PodInfo` precomputed: the pod itself is not
    /// read.
    fn new_entry(cx: &Ctx, info: QueuedPodInfo) -> Entry {
        let profile = cx.profiles.id_of(&info.pod_info);
        let rejectors = cx.profiles.rejectors(profile, &info);
        Entry::new(info, rejectors, profile)
    }

    fn sort_key(&self, cx: &Ctx, slot: Slot) -> SortKey {
        let entry = self.store.get(slot);
        SortKey::of(slot, entry, cx.timeline.nanos(entry.info.timestamp))
    }

    fn expiry(&mut self, cx: &Ctx, slot: Slot) -> Option<u64> {
        let entry = self.store.get_mut(slot);
        entry
            .backoff_expiry
            .get_or_compute(|| cx.backoff.expiry(&cx.timeline, &entry.info))
    }

    /// Takes a pod out of its sub-queue; it stays in the store.
    fn detach(&mut self, cx: &Ctx, slot: Slot) {
        match self.store.get(slot).place {
            Place::Detached => return,
            Place::Active => self.active.remove(&mut self.store, &cx.order, slot),
            Place::Backoff => self
                .backoff
                .remove(Which::Pods, &mut self.store, &cx.order, slot),
            Place::ErrorBackoff => {
                self.backoff
                    .remove(Which::Errors, &mut self.store, &cx.order, slot)
            }
            Place::Unschedulable => self.unschedulable.remove(&mut self.store, slot),
        }
        self.store.get_mut(slot).place = Place::Detached;
    }

    /// Puts a detached pod into `place`, counting it as incoming there because of `label`.
    fn attach(&mut self, cx: &Ctx, slot: Slot, place: Place, label: Label) {
        debug_assert_eq!(self.store.get(slot).place, Place::Detached);
        let entry = self.store.get_mut(slot);
        entry.place = place;
        entry.seq = self.next_seq;
        self.next_seq += 1;
        match place {
            Place::Detached => return,
            Place::Active => {
                let key = self.sort_key(cx, slot);
                self.active.push(&mut self.store, &cx.order, key);
            }
            Place::Backoff | Place::ErrorBackoff => {
                let item = BackoffItem {
                    expiry: self.expiry(cx, slot).unwrap_or(0),
                    key: self.sort_key(cx, slot),
                };
                let which = if place == Place::Backoff {
                    Which::Pods
                } else {
                    Which::Errors
                };
                self.backoff.push(which, &mut self.store, &cx.order, item);
            }
            Place::Unschedulable => self.unschedulable.push(&mut self.store, slot),
        }
        self.counters.incoming(queue_of(place), label);
    }

    /// Runs PreEnqueue on a stored pod and refreshes what the queue derives from its plugins.
    fn pre_enqueue(&mut self, cx: &Ctx, slot: Slot) -> bool {
        let entry = self.store.get_mut(slot);
        if cx.run_pre_enqueue(entry.profile, &mut entry.info) {
            entry.rejectors = cx.profiles.rejectors(entry.profile, &entry.info);
        }
        !entry.info.gated()
    }

    /// Upstream `moveToActiveQ`: to activeQ unless a PreEnqueue plugin gates the pod (skipped
    /// for pods coming from backoffQ: they passed PreEnqueue on the way in). A gated pod that
    /// is in no sub-queue goes to unschedulablePods; one that is somewhere stays there.
    fn move_to_active(
        &mut self,
        cx: &Ctx,
        slot: Slot,
        label: Label,
        from_backoff: bool,
        now: Now,
    ) -> bool {
        if !from_backoff && !self.pre_enqueue(cx, slot) {
            if self.store.get(slot).place == Place::Detached {
                self.attach(cx, slot, Place::Unschedulable, label);
            }
            return false;
        }
        let entry = self.store.get_mut(slot);
        if entry.info.initial_attempt_timestamp.is_none() {
            entry.info.initial_attempt_timestamp = Some(now.at);
        }
        self.detach(cx, slot);
        self.attach(cx, slot, Place::Active, label);
        if label.follows_nomination() {
            cx.nominator.follow(&self.store.get(slot).info.pod_info);
        }
        true
    }

    /// Upstream `moveToBackoffQ`: PreEnqueue runs here, so a gated pod never waits out a
    /// backoff only to be refused; errors go to the error heap.
    fn move_to_backoff(&mut self, cx: &Ctx, slot: Slot, label: Label) -> bool {
        if !self.pre_enqueue(cx, slot) {
            if self.store.get(slot).place == Place::Detached {
                self.attach(cx, slot, Place::Unschedulable, label);
            }
            return false;
        }
        let place = if self.store.get(slot).info.has_rejector_plugins() {
            Place::Backoff
        } else {
            Place::ErrorBackoff
        };
        self.detach(cx, slot);
        self.attach(cx, slot, place, label);
        true
    }

    /// Upstream `requeuePodWithQueueingStrategy`; returns where the pod ended up.
    fn requeue(
        &mut self,
        cx: &Ctx,
        slot: Slot,
        strategy: Strategy,
        label: Label,
        now: Now,
    ) -> QueueName {
        match strategy {
            Strategy::Skip => {
                if self.store.get(slot).place == Place::Detached {
                    self.attach(cx, slot, Place::Unschedulable, label);
                }
                QueueName::Unschedulable
            }
            Strategy::AfterBackoff if is_backing_off(self.expiry(cx, slot), now.ns) => {
                if self.move_to_backoff(cx, slot, label) {
                    QueueName::Backoff
                } else {
                    QueueName::Unschedulable
                }
            }
            Strategy::AfterBackoff | Strategy::Immediately => {
                if self.move_to_active(cx, slot, label, false, now) {
                    QueueName::Active
                } else {
                    QueueName::Unschedulable
                }
            }
        }
    }

    /// Upstream `Add` (also used by `Update` for pods the queue does not hold) of a pod
    /// stamped `info.timestamp`.
    fn add(&mut self, cx: &Ctx, mut info: QueuedPodInfo, label: Label) -> bool {
        let now = cx.now_at(info.timestamp);
        if let Some(slot) = self.store.lookup(info.key(), info.pod_info.key_hash()) {
            // The new object replaces the old only if it passes PreEnqueue; a gated re-add
            // leaves the queued pod as it is.
            cx.run_pre_enqueue(cx.profiles.id_of(&info.pod_info), &mut info);
            if info.gated() {
                return false;
            }
            self.detach(cx, slot);
            self.store.remove(slot);
            let slot = self.store.insert(State::new_entry(cx, info));
            return self.move_to_active(cx, slot, label, true, now);
        }
        let slot = self.store.insert(State::new_entry(cx, info));
        self.move_to_active(cx, slot, label, false, now)
    }

    /// Takes the next pod out: activeQ's head, or podBackoffQ's when activeQ is empty.
    fn pop(&mut self, cx: &Ctx) -> Option<QueuedPodInfo> {
        loop {
            let slot = match self.active.pop(&mut self.store, &cx.order) {
                Some(slot) => slot,
                None => {
                    let slot = self.backoff.pop_pod(&mut self.store, &cx.order)?;
                    self.counters
                        .incoming(QueueName::Active, Label::POP_FROM_BACKOFF_Q);
                    slot
                }
            };
            let Entry {
                mut info,
                flight_ref,
                ..
            } = self.store.remove_popped(slot);
            let uid_hash = flight_ref.uid_hash();
            if !self.in_flight.start(flight_ref, uid_hash) {
                // The same pod is already being scheduled (re-added while in flight): the
                // attempt in progress decides, this copy is dropped (upstream does the same).
                tracing::error!(
                    pod = info.key(),
                    "pod tracked in multiple places; discarding the popped copy"
                );
                continue;
            }
            info.attempts += 1;
            self.scheduling_cycle += 1;
            // Usually empty already (a pod added, or back after an error); clearing an empty
            // set still walks its (empty) iterator.
            if !info.unschedulable_plugins.is_empty() {
                info.unschedulable_plugins.clear();
            }
            if !info.pending_plugins.is_empty() {
                info.pending_plugins.clear();
            }
            info.gating_plugin = None;
            self.warm_next_pop(&info);
            return Some(info);
        }
    }

    /// Software pipelining of pops. With many pods pending, what a pop and its caller read
    /// of a pod was last touched when the pod was added, long ago: its store entry, then
    /// through it its index bucket and its `PodInfo`, then through that the key buffer holding
    /// its UID (the caller reads it for `done`): cache misses each waiting for the one before.
    /// The queue cannot prefetch (that takes `unsafe`), only read, and a read that misses holds
    /// the core up once its reorder buffer is full: what matters is that each pop's misses are
    /// independent of each other so that they overlap. When activeQ's next pops are known (a
    /// FIFO level's front, see `active_queue`), each pop reads one step of each of the next
    /// three pods' chains: the third's entry, the second's `PodInfo` (its entry was read by
    /// the previous pop) and the next one's UID and index bucket (its `PodInfo` was read by
    /// the previous pop), so the next pop and `done` find everything in cache. When only the
    /// next pop is known (the heap's top), its entry, index bucket and `PodInfo` are read as
    /// one chain. A wrong guess (a better pod arrives before the next pop) costs a few useless
    /// reads.
    fn warm_next_pop(&self, popped: &QueuedPodInfo) {
        store::warm_pod_info(&popped.pod_info, true);
        let [next, second, third] = self.active.upcoming();
        if let Some(next) = next {
            let ahead = second.is_some();
            if let Some(pod) = self.store.warm_entry(next) {
                store::warm_pod_info(pod, ahead);
            }
            self.store.warm_index(next);
        }
        if let Some(pod) = second.and_then(|s| self.store.warm_entry(s)) {
            store::warm_pod_info(pod, false);
        }
        if let Some(third) = third {
            self.store.warm_entry(third);
        }
    }

    /// Upstream `movePodsToActiveOrBackoffQueue` over `slots` (unschedulable pods).
    fn move_pods(
        &mut self,
        cx: &Ctx,
        slots: &[Slot],
        event: &ClusterEvent,
        old: Option<&ClusterObject>,
        new: Option<&ClusterObject>,
    ) -> bool {
        let label = self.counters.intern(event.label());
        let now = cx.now();
        let matched: Vec<_> = (0..cx.profiles.len())
            .filter_map(|i| cx.profiles.get(i as u16))
            .map(|p| p.matching(event))
            .collect();
        // Decide for every pod first, then move. Most pods are decided from their rejector
        // plugins alone; the pods whose hints must run are gathered first, in a loop short
        // enough that the memory reads of consecutive pods overlap instead of stalling one
        // after the other (with thousands of pods, each is a cache miss).
        let store = &self.store;
        let mut decisions: Vec<(Slot, Strategy)> = Vec::with_capacity(slots.len());
        let mut undecided: Vec<Slot> = Vec::new();
        for &slot in slots {
            let entry = store.get(slot);
            let m = matched.get(usize::from(entry.profile));
            if entry.info.gated() && !hints::gate_may_open(&entry.rejectors, m) {
                continue;
            }
            match hints::triage(&entry.rejectors, m, event, new) {
                Triage::Decided(Strategy::Skip) => {}
                Triage::Decided(strategy) => decisions.push((slot, strategy)),
                Triage::NeedsPod => undecided.push(slot),
            }
        }
        let pods: Vec<&Pod> = undecided
            .iter()
            .map(|&slot| store.get(slot).info.pod())
            .collect();
        for (&slot, pod) in undecided.iter().zip(pods) {
            let entry = store.get(slot);
            let m = matched.get(usize::from(entry.profile));
            let strategy = hints::run_hints(&entry.rejectors, m, event, pod, old, new);
            if strategy != Strategy::Skip {
                decisions.push((slot, strategy));
            }
        }
        let mut activated = false;
        for (slot, strategy) in decisions {
            let queue = self.requeue(cx, slot, strategy, label, now);
            activated |= matches!(queue, QueueName::Active | QueueName::Backoff);
        }
        // A pod being scheduled right now may be rejected for a reason this event removes.
        self.in_flight.record(event, old, new);
        activated
    }

    /// Upstream `AddUnschedulableIfNotPresent`, but for ending the flight.
    fn add_unschedulable(&mut self, cx: &Ctx, mut info: QueuedPodInfo) -> Result<bool> {
        if let Some(slot) = self.store.lookup(info.key(), info.pod_info.key_hash()) {
            return Err(Error::AlreadyPresent {
                pod: info.key().to_owned(),
                queue: queue_of(self.store.get(slot).place),
            });
        }
        if info.has_rejector_plugins() {
            info.unschedulable_count += 1;
            info.consecutive_errors_count = 0;
        } else {
            info.consecutive_errors_count += 1;
        }
        let now = cx.now();
        info.timestamp = now.at;
        let entry = State::new_entry(cx, info);
        let strategy = match self
            .in_flight
            .events_since(entry.info.uid(), entry.info.pod_info.uid_hash())
        {
            Some(events) => hints::replay(
                &entry.rejectors,
                cx.profiles.get(entry.profile),
                &entry.info.pod_info,
                events.map(|e| (&e.event, e.old.as_ref(), e.new.as_ref())),
            ),
            None => {
                tracing::warn!(
                    pod = entry.info.key(),
                    "pod returned to the queue without being in flight"
                );
                Strategy::AfterBackoff
            }
        };
        let slot = self.store.insert(entry);
        let queue = self.requeue(cx, slot, strategy, Label::SCHEDULE_ATTEMPT_FAILURE, now);
        tracing::debug!(pod = self.store.get(slot).info.key(), %queue, ?strategy, "pod requeued after a failed attempt");
        Ok(matches!(queue, QueueName::Active | QueueName::Backoff))
    }

    /// Upstream `Update` (for a pod not in flight and given its derived events).
    fn update(
        &mut self,
        cx: &Ctx,
        old: &Arc<Pod>,
        new: Arc<PodInfo>,
        events: &[ClusterEvent],
    ) -> bool {
        let Some(slot) = self.store.lookup(new.key(), new.key_hash()) else {
            let info = QueuedPodInfo::new(new, cx.clock.now());
            return self.add(cx, info, Label::UNSCHEDULED_POD_UPDATE);
        };
        self.store.set_pod_info(slot, Arc::clone(&new));
        cx.nominator.update(old, Arc::clone(&new));
        match self.store.get(slot).place {
            Place::Active => {
                let key = self.sort_key(cx, slot);
                self.active.update(&mut self.store, &cx.order, key);
                false
            }
            place @ (Place::Backoff | Place::ErrorBackoff) => {
                let key = self.sort_key(cx, slot);
                let which = if place == Place::Backoff {
                    Which::Pods
                } else {
                    Which::Errors
                };
                self.backoff.update(which, &mut self.store, &cx.order, key);
                false
            }
            Place::Unschedulable if is_pod_updated(old, new.pod()) => {
                let (old, new) = (
                    ClusterObject::Pod(Arc::clone(old)),
                    ClusterObject::Pod(Arc::clone(new.pod())),
                );
                let now = cx.now();
                for event in events {
                    let entry = self.store.get(slot);
                    let matched = cx.profiles.get(entry.profile).map(|p| p.matching(event));
                    let strategy = hints::worth_requeuing(
                        &entry.rejectors,
                        matched.as_ref(),
                        event,
                        &entry.info.pod_info,
                        Some(&old),
                        Some(&new),
                    );
                    if strategy == Strategy::Skip {
                        continue;
                    }
                    let label = self.counters.intern(event.label());
                    if matches!(
                        self.requeue(cx, slot, strategy, label, now),
                        QueueName::Active | QueueName::Backoff
                    ) {
                        return true;
                    }
                }
                false
            }
            Place::Unschedulable | Place::Detached => false,
        }
    }

    fn flush_backoff_completed(&mut self, cx: &Ctx) -> bool {
        let now = cx.now();
        let mut activated = false;
        for which in [Which::Pods, Which::Errors] {
            while let Some(slot) =
                self.backoff
                    .pop_completed(which, &mut self.store, &cx.order, now.ns)
            {
                self.store.get_mut(slot).place = Place::Detached;
                activated |= self.move_to_active(cx, slot, Label::BACKOFF_COMPLETE, true, now);
            }
        }
        activated
    }

    fn pending(&self) -> PendingPods {
        let gated = self
            .unschedulable
            .slots()
            .iter()
            .filter(|s| self.store.get(**s).info.gated())
            .count();
        PendingPods {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable.len() - gated,
            gated,
        }
    }

    fn pods_at(&self, slots: impl Iterator<Item = Slot>) -> Vec<Arc<Pod>> {
        slots
            .map(|s| Arc::clone(self.store.get(s).info.pod_info.pod()))
            .collect()
    }
}

/// Whether assigned pod `pod` may lift the rejection of unschedulable pod `entry`: one of its
/// required pod-affinity terms selects `pod`, or PodTopologySpread rejected it and `pod` is in
/// its namespace (upstream `getUnschedulablePodsWithCrossTopologyTerm`). Namespace selectors
/// are taken to match: the queue has no namespace labels, and a needless move is harmless
/// where a missed one strands the pod.
fn crosses_topology(entry: &Entry, pod: &Pod) -> bool {
    let pending = entry.info.pod();
    if entry
        .info
        .unschedulable_plugins
        .contains(POD_TOPOLOGY_SPREAD)
        && pending.metadata.namespace == pod.metadata.namespace
    {
        return true;
    }
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    entry
        .info
        .pod_info
        .required_affinity_terms()
        .iter()
        .any(|term| {
            let in_namespace = term.namespaces.contains(ns)
                || term.namespace_selector != ksched_framework::LabelSelector::Nothing;
            in_namespace && term.selector.matches(labels)
        })
}

impl PriorityQueue {
    /// A queue built from `config`.
    ///
    /// # Errors
    /// [`Error::NotPreEnqueue`] for a PreEnqueue entry that is not a PreEnqueue plugin,
    /// [`Error::TooManyPlugins`] for a profile whose plugins registering events exceed what
    /// the queue's plugin sets hold (64).
    pub fn new(config: QueueConfig) -> Result<Self> {
        let profiles = Profiles::new(config.pre_enqueue, config.queueing_hints)?;
        let epoch = config.clock.now();
        Ok(Self {
            cx: Ctx {
                clock: config.clock,
                timeline: Timeline::new(epoch),
                order: config.less.map_or(Order::PrioritySort, Order::Custom),
                backoff: BackoffPolicy {
                    initial: config.pod_initial_backoff,
                    max: config.pod_max_backoff,
                },
                max_in_unschedulable: config.pod_max_in_unschedulable_pods_duration,
                profiles,
                nominator: Nominator::default(),
            },
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            waiters: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
        })
    }

    fn wake_poppers(&self, activated: bool) {
        if activated && self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake.notify_waiters();
        }
    }

    /// Starts the background flushes on the current tokio runtime: backoff-completed pods to
    /// activeQ once per second (aligned to the backoff ordering windows), and pods stuck in
    /// unschedulablePods longer than the configured maximum every 30 s. They stop at
    /// [`PriorityQueue::close`] or when the queue is dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn run(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let first_window = self.cx.timeline.until_next_window(self.cx.clock.now());
        let backoff = spawn_every(self, first_window, BACKOFF_ORDERING_WINDOW, |q| {
            q.flush_backoff_q_completed()
        });
        let leftover = spawn_every(self, Duration::ZERO, UNSCHEDULABLE_FLUSH_INTERVAL, |q| {
            q.flush_unschedulable_pods_leftover()
        });
        vec![backoff, leftover]
    }

    /// Adds a new pod: to activeQ, or to unschedulablePods if a PreEnqueue plugin gates it.
    ///
    /// # Errors
    /// [`Error::InvalidPod`] for a pod without name or UID.
    pub fn add(&self, pod: Arc<Pod>) -> Result<()> {
        validate(&pod)?;
        self.add_pod_info(Arc::new(PodInfo::new(pod)))
    }

    /// [`PriorityQueue::add`] for a pod whose `PodInfo` the caller already built (and shares,
    /// e.g. with the cache).
    ///
    /// # Errors
    /// [`Error::InvalidPod`] for a pod without name or UID.
    pub fn add_pod_info(&self, pod_info: Arc<PodInfo>) -> Result<()> {
        validate_info(&pod_info)?;
        let info = QueuedPodInfo::new(pod_info, self.cx.clock.now());
        let activated = self
            .state
            .lock()
            .add(&self.cx, info, Label::UNSCHEDULED_POD_ADD);
        self.wake_poppers(activated);
        Ok(())
    }

    /// Waits for the next pod to schedule: activeQ's head, or when activeQ is empty the head
    /// of backoffQ (rejected pods, earliest backoff first — idle capacity beats waiting out a
    /// backoff). The pod is in flight until [`PriorityQueue::done`] or
    /// [`PriorityQueue::add_unschedulable_if_not_present`]. Returns `None` once the queue is
    /// closed. Cancel-safe: dropping the future loses no pod.
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            if let Some(popped) = self.try_pop_or_closed() {
                return popped;
            }
            let mut notified = pin!(self.wake.notified());
            notified.as_mut().enable();
            let _registered = Waiter::register(&self.waiters);
            // Check again now that a wake-up cannot be missed.
            if let Some(popped) = self.try_pop_or_closed() {
                return popped;
            }
            notified.await;
        }
    }

    /// [`PriorityQueue::pop`] without waiting: `None` when no pod is ready (or the queue is
    /// closed).
    pub fn try_pop(&self) -> Option<QueuedPodInfo> {
        self.try_pop_or_closed().flatten()
    }

    /// `Some(None)` when closed, `Some(Some(pod))` when a pod is ready, `None` when neither.
    fn try_pop_or_closed(&self) -> Option<Option<QueuedPodInfo>> {
        let mut st = self.state.lock();
        if st.closed {
            return Some(None);
        }
        st.pop(&self.cx).map(Some)
    }

    /// Ends the in-flight tracking of a popped pod, by UID (a no-op for pods not in flight).
    /// The scheduler calls it once the attempt succeeded (after Permit); a failed attempt
    /// ends with [`PriorityQueue::add_unschedulable_if_not_present`], which calls it itself.
    pub fn done(&self, uid: &str) {
        let hash = self.cx.hash(uid);
        self.state.lock().in_flight.done(uid, hash);
    }

    /// Takes back a pod whose attempt failed, with the plugins that rejected it in
    /// `unschedulable_plugins` / `pending_plugins` (none: it failed with an error). The events
    /// seen while it was in flight are replayed against those plugins' hints; then it goes to
    /// activeQ (a Pending plugin said Queue), backoffQ or activeQ (another rejector said
    /// Queue, or an error), or unschedulablePods. Its backoff counts grow and its timestamp is
    /// reset. Ends the pod's flight in every case.
    ///
    /// # Errors
    /// [`Error::AlreadyPresent`] when the queue already holds the pod (re-added while in
    /// flight); [`Error::InvalidPod`] for a pod without name or UID.
    pub fn add_unschedulable_if_not_present(&self, info: QueuedPodInfo) -> Result<()> {
        validate_info(&info.pod_info)?;
        let pod_info = Arc::clone(&info.pod_info);
        let mut guard = self.state.lock();
        let result = guard.add_unschedulable(&self.cx, info);
        guard.in_flight.done(pod_info.uid(), pod_info.uid_hash());
        drop(guard);
        self.wake_poppers(result?);
        Ok(())
    }

    /// Moves pods whose backoff has ended from backoffQ to activeQ (upstream
    /// `flushBackoffQCompleted`, run every second by [`PriorityQueue::run`]).
    pub fn flush_backoff_q_completed(&self) {
        let activated = self.state.lock().flush_backoff_completed(&self.cx);
        self.wake_poppers(activated);
    }

    /// Moves pods that have waited in unschedulablePods longer than the configured maximum
    /// to activeQ or backoffQ (upstream `flushUnschedulablePodsLeftover`, every 30 s).
    pub fn flush_unschedulable_pods_leftover(&self) {
        let now = self.cx.clock.now();
        let mut st = self.state.lock();
        let stale: Vec<Slot> = st
            .unschedulable
            .slots()
            .iter()
            .copied()
            .filter(|s| {
                now.saturating_duration_since(st.store.get(*s).info.timestamp)
                    > self.cx.max_in_unschedulable
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let activated = st.move_pods(
            &self.cx,
            &stale,
            &well_known::UNSCHEDULABLE_TIMEOUT,
            None,
            None,
        );
        drop(st);
        self.wake_poppers(activated);
    }

    /// A cluster event happened: moves the unschedulable pods it may help (per the hints of
    /// the plugins that rejected them, and `pre_check` if given) to activeQ or backoffQ, and
    /// records it for the pods in flight. `old` is `None` for additions, `new` for deletions.
    pub fn move_all_to_active_or_backoff_queue(
        &self,
        event: &ClusterEvent,
        old: Option<&ClusterObject>,
        new: Option<&ClusterObject>,
        pre_check: Option<PreEnqueueCheck<'_>>,
    ) {
        if !self.cx.profiles.is_event_of_interest(event) {
            return;
        }
        let mut st = self.state.lock();
        let slots: Vec<Slot> = match pre_check {
            None => st.unschedulable.slots().to_vec(),
            Some(check) => st
                .unschedulable
                .slots()
                .iter()
                .copied()
                .filter(|s| check(st.store.get(*s).info.pod()))
                .collect(),
        };
        let activated = st.move_pods(&self.cx, &slots, event, old, new);
        drop(st);
        self.wake_poppers(activated);
    }

    /// A pod was bound (it appeared with a node): moves the unschedulable pods whose
    /// required pod-affinity terms select it, or that PodTopologySpread rejected in its
    /// namespace, subject to their hints for `AssignedPod/Add`.
    pub fn assigned_pod_added(&self, pod: &Arc<Pod>) {
        self.move_crossing(pod, None, &well_known::ASSIGNED_POD_ADD);
    }

    /// A bound pod changed (`event` as [`pod_scheduling_properties_change`] derives it): a
    /// scale-down may free room for anyone, so it moves every unschedulable pod its hints
    /// allow; other changes move the pods [`PriorityQueue::assigned_pod_added`] would.
    pub fn assigned_pod_updated(&self, old: &Arc<Pod>, new: &Arc<Pod>, event: &ClusterEvent) {
        let scale_down = ClusterEvent::new(EventResource::Pod, ActionType::UPDATE_POD_SCALE_DOWN);
        if hints::event_matches(&scale_down, event) {
            let (old, new) = (
                ClusterObject::Pod(Arc::clone(old)),
                ClusterObject::Pod(Arc::clone(new)),
            );
            self.move_all_to_active_or_backoff_queue(event, Some(&old), Some(&new), None);
        } else {
            self.move_crossing(new, Some(old), event);
        }
    }

    fn move_crossing(&self, pod: &Arc<Pod>, old: Option<&Arc<Pod>>, event: &ClusterEvent) {
        if !self.cx.profiles.is_event_of_interest(event) {
            return;
        }
        let new = ClusterObject::Pod(Arc::clone(pod));
        let old = old.map(|o| ClusterObject::Pod(Arc::clone(o)));
        let mut st = self.state.lock();
        let slots: Vec<Slot> = st
            .unschedulable
            .slots()
            .iter()
            .copied()
            .filter(|s| crosses_topology(st.store.get(*s), pod))
            .collect();
        let activated = st.move_pods(&self.cx, &slots, event, old.as_ref(), Some(&new));
        drop(st);
        self.wake_poppers(activated);
    }

    /// An unscheduled pod changed. If it is in flight, the change is recorded for when its
    /// attempt ends; in activeQ or backoffQ it is updated in place; in unschedulablePods a
    /// change that matters (not just status or bookkeeping, see [`is_pod_updated`]) is run
    /// through the hints of its rejector plugins for the events the change raises (labels,
    /// tolerations, scale-down, scheduling gates removed, …) and may move it; a pod the
    /// queue does not hold is added.
    ///
    /// # Errors
    /// [`Error::InvalidPod`] for a new pod without name or UID.
    pub fn update(&self, old: &Arc<Pod>, new: Arc<Pod>) -> Result<()> {
        validate(&new)?;
        let events = pod_scheduling_properties_change(&new, old);
        let uid = new.metadata.uid.as_deref().unwrap_or_default();
        let uid_hash = self.cx.hash(uid);
        let mut st = self.state.lock();
        if st.in_flight.contains(uid, uid_hash) {
            let (old, new) = (ClusterObject::Pod(Arc::clone(old)), ClusterObject::Pod(new));
            for event in &events {
                st.in_flight.record(event, Some(&old), Some(&new));
            }
            return Ok(());
        }
        let activated = st.update(&self.cx, old, Arc::new(PodInfo::new(new)), &events);
        drop(st);
        self.wake_poppers(activated);
        Ok(())
    }

    /// A pod was deleted: forgets it wherever it waits, and its nomination. Returns whether
    /// the queue held it (a pod in flight is not held; the scheduler notices the deletion).
    pub fn delete(&self, pod: &Pod) -> bool {
        self.cx.nominator.delete(pod);
        let key = ksched_framework::pod_key(pod);
        let hash = self.cx.hash(&key);
        let mut st = self.state.lock();
        let Some(slot) = st.store.lookup(&key, hash) else {
            return false;
        };
        st.detach(&self.cx, slot);
        st.store.remove(slot);
        true
    }

    /// Moves the given pods (keyed `namespace/name`) from unschedulablePods or backoffQ to
    /// activeQ; for a pod in flight, records a ForceActivate event for it so that it comes
    /// back to activeQ if its attempt fails. Unknown pods are ignored.
    pub fn activate(&self, pods: &HashMap<String, Arc<Pod>>) {
        let now = self.cx.now();
        let mut st = self.state.lock();
        let mut activated = false;
        for pod in pods.values() {
            let key = ksched_framework::pod_key(pod);
            match st
                .store
                .lookup(&key, self.cx.hash(&key))
                .map(|s| (s, st.store.get(s).place))
            {
                Some((slot, Place::Unschedulable)) => {
                    activated |=
                        st.move_to_active(&self.cx, slot, Label::FORCE_ACTIVATE, false, now);
                }
                Some((slot, Place::Backoff | Place::ErrorBackoff)) => {
                    st.detach(&self.cx, slot);
                    activated |=
                        st.move_to_active(&self.cx, slot, Label::FORCE_ACTIVATE, true, now);
                }
                Some((_, Place::Active | Place::Detached)) => {}
                None => {
                    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                    if st.in_flight.contains(uid, self.cx.hash(uid)) {
                        let target = ClusterObject::Pod(Arc::clone(pod));
                        st.in_flight
                            .record(&well_known::FORCE_ACTIVATE, None, Some(&target));
                    }
                }
            }
        }
        drop(st);
        self.wake_poppers(activated);
    }

    /// Closes the queue: waiting and future pops return `None`, the background flushes stop,
    /// in-flight tracking ends. Pods still queued are dropped with the queue.
    pub fn close(&self) {
        {
            let mut st = self.state.lock();
            st.closed = true;
            st.in_flight.clear();
        }
        self.shutdown.cancel();
        self.wake.notify_waiters();
    }

    /// Whether [`PriorityQueue::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Scheduling cycles so far (incremented by every pop).
    #[must_use]
    pub fn scheduling_cycle(&self) -> u64 {
        self.state.lock().scheduling_cycle
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn metrics(&self) -> QueueMetrics {
        let st = self.state.lock();
        QueueMetrics {
            pending: st.pending(),
            incoming: st.counters.snapshot(),
            in_flight_pods: st.in_flight.len(),
            in_flight_events: st.in_flight.events_len(),
            nominated_pods: self.cx.nominator.len(),
            scheduling_cycle: st.scheduling_cycle,
        }
    }

    /// The queued pod `namespace/name`, wherever it waits (a copy).
    #[must_use]
    pub fn get_pod(&self, namespace: &str, name: &str) -> Option<QueuedPodInfo> {
        let key = format!("{namespace}/{name}");
        let hash = self.cx.hash(&key);
        let st = self.state.lock();
        st.store
            .lookup(&key, hash)
            .map(|s| st.store.get(s).info.clone())
    }

    /// Pods in activeQ, in no particular order.
    #[must_use]
    pub fn pods_in_active_q(&self) -> Vec<Arc<Pod>> {
        let st = self.state.lock();
        st.pods_at(st.active.slots())
    }

    /// Pods in backoffQ, in no particular order.
    #[must_use]
    pub fn pods_in_backoff_q(&self) -> Vec<Arc<Pod>> {
        let st = self.state.lock();
        st.pods_at(st.backoff.slots())
    }

    /// Pods in unschedulablePods (gated ones included).
    #[must_use]
    pub fn unschedulable_pods(&self) -> Vec<Arc<Pod>> {
        let st = self.state.lock();
        st.pods_at(st.unschedulable.slots().iter().copied())
    }

    /// Pods popped and not yet done.
    #[must_use]
    pub fn in_flight_pods(&self) -> Vec<Arc<Pod>> {
        self.state
            .lock()
            .in_flight
            .pods()
            .map(|p| Arc::clone(p.pod()))
            .collect()
    }

    /// Every queued pod, with upstream's summary `activeQ:N; backoffQ:N; unschedulablePods:N`.
    #[must_use]
    pub fn pending_pods(&self) -> (Vec<Arc<Pod>>, String) {
        let st = self.state.lock();
        let pods = st.pods_at(
            st.active
                .slots()
                .chain(st.backoff.slots())
                .chain(st.unschedulable.slots().iter().copied()),
        );
        let summary = format!(
            "activeQ:{}; backoffQ:{}; unschedulablePods:{}",
            st.active.len(),
            st.backoff.len(),
            st.unschedulable.len()
        );
        (pods, summary)
    }
}

/// Registers a popper on the wake-up counter for as long as it waits (also when its future is
/// dropped mid-wait).
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn register(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` on the queue after `first` and then every `period` until the queue closes or is
/// dropped.
fn spawn_every(
    queue: &Arc<PriorityQueue>,
    first: Duration,
    period: Duration,
    f: impl Fn(&PriorityQueue) + Send + 'static,
) -> JoinHandle<()> {
    let weak: Weak<PriorityQueue> = Arc::downgrade(queue);
    let stop = queue.shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(queue) = weak.upgrade() else { return };
            f(&queue);
        }
    })
}

impl PodNominator for PriorityQueue {
    fn add_nominated_pod(&self, pod: Arc<PodInfo>, node_name: Option<String>) {
        self.cx.nominator.add(pod, node_name);
    }

    fn delete_nominated_pod_if_exists(&self, pod: &Pod) {
        self.cx.nominator.delete(pod);
    }

    fn nominated_pods_for_node(&self, node_name: &str) -> Vec<Arc<PodInfo>> {
        self.cx.nominator.pods_for_node(node_name)
    }
}

impl PodActivator for PriorityQueue {
    fn activate(&self, pods: HashMap<String, Arc<Pod>>) {
        PriorityQueue::activate(self, &pods);
    }
}

impl std::fmt::Debug for PriorityQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("PriorityQueue")
            .field("pending", &st.pending())
            .field("in_flight", &st.in_flight.len())
            .field("closed", &st.closed)
            .field("order", &self.cx.order)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
