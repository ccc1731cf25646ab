//! Model-based test: random operation sequences, with the queue's internal invariants and
//! the exactly-once accounting of pods checked after every step.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Pod, PodSchedulingGate};
use ksched_framework::{
    ClusterEvent, ClusterEventWithHint, ClusterObject, Plugin, PreEnqueuePlugin, QueuedPodInfo,
    QueueingHint, Status, events::well_known, pod_priority,
};
use proptest::prelude::{
    Just, ProptestConfig, Strategy, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest,
};

use super::{HashMap, Place, PriorityQueue, QueueConfig, Slot};
use crate::{FakeClock, backoff_queue::Which};

const PROFILE: &str = "default-scheduler";
const PLUGINS: [&str; 3] = ["Queues", "Skips", "Deaf"];

struct Gates;

impl Plugin for Gates {
    fn name(&self) -> &str {
        "SchedulingGates"
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for Gates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if gated {
            Status::unresolvable("gated")
        } else {
            Status::success()
        }
    }
}

/// The queue's structure agrees with itself: every stored pod sits in the sub-queue its place
/// names, at the position the store records, and nothing else is in any sub-queue.
fn check_invariants(q: &PriorityQueue) {
    let st = q.state.lock();
    let mut seen = BTreeSet::new();
    // activeQ's FIFO levels keep positions of their own; `check` verifies them.
    st.active.check(&st.store.pos);
    for slot in st.active.slots() {
        assert_eq!(st.store.get(slot).place, Place::Active);
        assert!(seen.insert(slot), "slot {slot} in two sub-queues");
    }
    let mut check = |slots: Vec<Slot>, place: Place| {
        for (i, slot) in slots.into_iter().enumerate() {
            assert_eq!(st.store.get(slot).place, place);
            assert_eq!(
                st.store.pos[slot as usize] as usize, i,
                "position of slot {slot} in {place:?}"
            );
            assert!(seen.insert(slot), "slot {slot} in two sub-queues");
        }
    };
    check(st.backoff.slots_of(Which::Pods).collect(), Place::Backoff);
    check(
        st.backoff.slots_of(Which::Errors).collect(),
        Place::ErrorBackoff,
    );
    check(st.unschedulable.slots().to_vec(), Place::Unschedulable);
    assert_eq!(seen.len(), st.store.len());
    assert_eq!(st.store.iter().count(), st.store.len());
    st.store.check_index();
    for entry in st.store.iter() {
        assert!(
            entry.place == Place::Unschedulable || !entry.info.gated(),
            "only unschedulablePods holds gated pods"
        );
        assert_eq!(
            entry.rejectors,
            q.cx.profiles.rejectors(entry.profile, &entry.info),
            "stale rejectors"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add { pod: u8, priority: i8, gated: bool },
    Pop,
    Succeed(prop::sample::Index),
    Fail(prop::sample::Index, u8),
    Event(u8),
    Relabel(u8),
    Ungate(u8),
    Delete(u8),
    Activate(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..16u8, -2..3i8, prop::bool::weighted(0.2)).prop_map(|(pod, priority, gated)| Op::Add { pod, priority, gated }),
        4 => Just(Op::Pop),
        2 => any::<prop::sample::Index>().prop_map(Op::Succeed),
        3 => (any::<prop::sample::Index>(), 0..8u8).prop_map(|(i, m)| Op::Fail(i, m)),
        2 => (0..4u8).prop_map(Op::Event),
        1 => (0..16u8).prop_map(Op::Relabel),
        1 => (0..16u8).prop_map(Op::Ungate),
        1 => (0..16u8).prop_map(Op::Delete),
        1 => (0..16u8).prop_map(Op::Activate),
        2 => (0..20_000u16).prop_map(Op::Advance),
    ]
}

/// What the scheduler knows: the current version of each pod it has not scheduled or
/// deleted, and the attempts in progress.
#[derive(Default)]
struct Model {
    alive: BTreeMap<u8, Arc<Pod>>,
    in_flight: Vec<QueuedPodInfo>,
    generation: u32,
}

fn name(i: u8) -> String {
    format!("p{i}")
}

fn index_of(info: &QueuedPodInfo) -> u8 {
    info.pod()
        .metadata
        .name
        .as_deref()
        .and_then(|n| n[1..].parse().ok())
        .expect("test pod name")
}

impl Model {
    fn make_pod(&mut self, i: u8, priority: i8, gated: bool) -> Arc<Pod> {
        self.generation += 1;
        let mut p = Pod::default();
        p.metadata.namespace = Some("ns".into());
        p.metadata.name = Some(name(i));
        p.metadata.uid = Some(format!("uid-{i}-{}", self.generation));
        let spec = p.spec.get_or_insert_default();
        spec.priority = Some(i32::from(priority));
        if gated {
            spec.scheduling_gates = Some(vec![PodSchedulingGate { name: "g".into() }]);
        }
        Arc::new(p)
    }

    fn apply(&mut self, q: &PriorityQueue, clock: &FakeClock, op: Op) {
        match op {
            Op::Add {
                pod,
                priority,
                gated,
            } => {
                if self.alive.contains_key(&pod) {
                    return;
                }
                let p = self.make_pod(pod, priority, gated);
                q.add(Arc::clone(&p)).unwrap();
                self.alive.insert(pod, p);
            }
            Op::Pop => {
                let best_active = {
                    let st = q.state.lock();
                    st.active
                        .slots()
                        .map(|s| pod_priority(st.store.get(s).info.pod()))
                        .max()
                };
                if let Some(info) = q.try_pop() {
                    let i = index_of(&info);
                    assert!(self.alive.contains_key(&i), "popped a pod that is gone");
                    assert!(
                        !info.gated()
                            && info.pod().spec.as_ref().unwrap().scheduling_gates.is_none()
                    );
                    if let Some(best) = best_active {
                        assert_eq!(
                            pod_priority(info.pod()),
                            best,
                            "activeQ pops the highest priority"
                        );
                    }
                    assert!(
                        self.in_flight.iter().all(|f| f.uid() != info.uid()),
                        "popped twice"
                    );
                    self.in_flight.push(info);
                }
            }
            Op::Succeed(idx) => {
                if self.in_flight.is_empty() {
                    return;
                }
                let info = self.in_flight.swap_remove(idx.index(self.in_flight.len()));
                q.done(info.uid());
                let i = index_of(&info);
                if self
                    .alive
                    .get(&i)
                    .is_some_and(|p| p.metadata.uid.as_deref() == Some(info.uid()))
                {
                    self.alive.remove(&i);
                }
            }
            Op::Fail(idx, mask) => {
                if self.in_flight.is_empty() {
                    return;
                }
                let mut info = self.in_flight.swap_remove(idx.index(self.in_flight.len()));
                let i = index_of(&info);
                match self.alive.get(&i) {
                    // Deleted meanwhile (or replaced): the scheduler drops the attempt.
                    Some(p) if p.metadata.uid.as_deref() == Some(info.uid()) => {
                        // The scheduler requeues the latest version it knows.
                        info.pod_info = Arc::new(ksched_framework::PodInfo::new(Arc::clone(p)));
                        for (bit, plugin) in PLUGINS.iter().enumerate() {
                            if mask & (1 << bit) != 0 {
                                info.unschedulable_plugins.insert((*plugin).to_owned());
                            }
                        }
                        q.add_unschedulable_if_not_present(info).unwrap();
                    }
                    _ => q.done(info.uid()),
                }
            }
            Op::Event(e) => {
                let event = [
                    well_known::NODE_ADD,
                    well_known::NODE_DELETE,
                    well_known::ASSIGNED_POD_ADD,
                    ClusterEvent::wildcard(),
                ][usize::from(e)]
                .clone();
                if e == 2 {
                    q.assigned_pod_added(&self.make_pod(99, 0, false));
                } else {
                    q.move_all_to_active_or_backoff_queue(&event, None, None, None);
                }
            }
            Op::Relabel(i) | Op::Ungate(i) => {
                let Some(old) = self.alive.get(&i).cloned() else {
                    return;
                };
                let mut new = (*old).clone();
                if matches!(op, Op::Relabel(_)) {
                    new.metadata
                        .labels
                        .get_or_insert_default()
                        .insert("gen".into(), self.generation.to_string());
                    self.generation += 1;
                } else {
                    new.spec.as_mut().unwrap().scheduling_gates = None;
                }
                let new = Arc::new(new);
                q.update(&old, Arc::clone(&new)).unwrap();
                self.alive.insert(i, new);
            }
            Op::Delete(i) => {
                if let Some(p) = self.alive.remove(&i) {
                    q.delete(&p);
                }
            }
            Op::Activate(i) => {
                if let Some(p) = self.alive.get(&i) {
                    q.activate(&HashMap::from([(
                        ksched_framework::pod_key(p),
                        Arc::clone(p),
                    )]));
                }
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms) * 20));
                q.flush_backoff_q_completed();
                q.flush_unschedulable_pods_leftover();
            }
        }
    }

    /// Every pod the scheduler still expects to place is queued or in flight, exactly once
    /// as far as the queue is concerned; nothing else is.
    fn check(&self, q: &PriorityQueue) {
        let (queued, _) = q.pending_pods();
        let queued: Vec<String> = queued
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap())
            .collect();
        let queued_set: BTreeSet<&String> = queued.iter().collect();
        assert_eq!(queued.len(), queued_set.len(), "a pod queued twice");
        let flying: BTreeSet<String> = self.in_flight.iter().map(|i| i.uid().to_owned()).collect();
        let queue_flying: BTreeSet<String> = q
            .in_flight_pods()
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap())
            .collect();
        assert_eq!(flying, queue_flying, "in-flight pods");
        for uid in &queued {
            assert!(!flying.contains(uid), "{uid} both queued and in flight");
        }
        let alive: BTreeSet<String> = self
            .alive
            .values()
            .map(|p| p.metadata.uid.clone().unwrap())
            .collect();
        let held: BTreeSet<String> = queued
            .iter()
            .cloned()
            .chain(flying.iter().cloned())
            .collect();
        // In flight after deletion is allowed (the attempt ends on its own).
        assert!(
            alive.is_subset(&held),
            "lost: {:?}",
            alive.difference(&held).collect::<Vec<_>>()
        );
        let stray: Vec<_> = held
            .difference(&alive)
            .filter(|u| !flying.contains(*u))
            .collect();
        assert!(stray.is_empty(), "queued but gone: {stray:?}");
        let m = q.metrics();
        assert_eq!(m.pending.total(), queued_set.len());
    }
}

fn config(clock: Arc<FakeClock>) -> QueueConfig {
    let queue =
        |_: &Pod, _: Option<&ClusterObject>, _: Option<&ClusterObject>| Ok(QueueingHint::Queue);
    let skip =
        |_: &Pod, _: Option<&ClusterObject>, _: Option<&ClusterObject>| Ok(QueueingHint::QueueSkip);
    let pod_event = ClusterEvent::new(
        ksched_framework::EventResource::Pod,
        ksched_framework::ActionType::ALL,
    );
    QueueConfig::default()
        .with_clock(clock)
        .with_pre_enqueue(PROFILE, vec![Arc::new(Gates)])
        .with_hints(
            PROFILE,
            "SchedulingGates",
            [ClusterEventWithHint::new(pod_event.clone())],
        )
        .with_hints(
            PROFILE,
            PLUGINS[0],
            [
                ClusterEventWithHint::with_hint(well_known::NODE_ADD, queue),
                ClusterEventWithHint::new(pod_event),
            ],
        )
        .with_hints(
            PROFILE,
            PLUGINS[1],
            [ClusterEventWithHint::with_hint(well_known::NODE_ADD, skip)],
        )
        .with_hints(PROFILE, PLUGINS[2], [])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_pod_accounted_for(ops in prop::collection::vec(op(), 1..120), custom_sort in any::<bool>()) {
        let clock = Arc::new(FakeClock::new());
        let mut config = config(clock.clone());
        if custom_sort {
            // PrioritySort written as a plugin: exercises the comparator path.
            config = config.with_less(Arc::new(|a: &QueuedPodInfo, b: &QueuedPodInfo| {
                let (pa, pb) = (pod_priority(a.pod()), pod_priority(b.pod()));
                pa > pb || (pa == pb && a.timestamp < b.timestamp)
            }));
        }
        let q = PriorityQueue::new(config).unwrap();
        let mut model = Model::default();
        for op in ops {
            model.apply(&q, &clock, op);
            check_invariants(&q);
            model.check(&q);
        }
        // Drain: with events and time, every live pod is eventually popped.
        for _ in 0..200 {
            model.apply(&q, &clock, Op::Event(3));
            for i in 0..16 {
                model.apply(&q, &clock, Op::Ungate(i));
            }
            model.apply(&q, &clock, Op::Advance(20_000));
            while let Some(info) = q.try_pop() {
                model.in_flight.push(info);
            }
            for info in std::mem::take(&mut model.in_flight) {
                q.done(info.uid());
                let i = index_of(&info);
                if model.alive.get(&i).is_some_and(|p| p.metadata.uid.as_deref() == Some(info.uid())) {
                    model.alive.remove(&i);
                }
            }
            check_invariants(&q);
            model.check(&q);
            if model.alive.is_empty() {
                break;
            }
        }
        prop_assert!(model.alive.is_empty(), "never scheduled: {:?}", model.alive.keys().collect::<Vec<_>>());
        prop_assert_eq!(q.metrics().pending.total(), 0);
        prop_assert_eq!(q.metrics().in_flight_events, 0);
    }
}
