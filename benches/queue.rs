//! Scheduling queue benchmarks (figures in docs/benchmarks.md, "Queue").
//!
//! - `queue_add_pop_done/{queue,binary_heap}/N`: steady state with N pods pending — each
//!   iteration adds one pod, pops the best one and ends its flight — against a bare
//!   `std::collections::BinaryHeap` push + pop of the same ordering key at the same size, the
//!   floor any pod queue pays. Reported as pods/s.
//! - `queue_add_pod/100000`: the same cycle through `add(Arc<Pod>)`, which builds the pod's
//!   `PodInfo` (requests, affinity terms) inside the call.
//! - `move_all/{baseline,worst,random}/N`: upstream `BenchmarkMoveAllToActiveOrBackoffQueue`'s
//!   shape: N unschedulable pods, 20 plugins registered over 18 events, one MoveAll timed.
//!
//! Run with `cargo bench -p ksched-benches --bench queue`.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, EventResource, PodInfo, QueueingHint,
    events::well_known,
};
use ksched_queue::{FakeClock, PriorityQueue, QueueConfig};

/// Three priority classes, as a cluster with system, production and batch pods.
fn priority(i: usize) -> i32 {
    [0, 100, 1000][i % 3]
}

#[path = "../crates/queue/tests/common/pending_pod.rs"]
mod fixture;

/// Pod `i` of the benchmarks, in one of three priority classes.
fn pending_pod(i: usize) -> Arc<Pod> {
    fixture::pending_pod(i, priority(i))
}

/// The bare heap's item: PrioritySort's key (priority, then timestamp, then arrival) and a
/// payload index, the same 24 bytes the queue's activeQ sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    priority: i32,
    payload: u32,
    timestamp: u64,
    seq: u64,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        // A max-heap: higher priority, then earlier timestamp and arrival, is greater.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn add_pop_done(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_add_pop_done");
    group.throughput(Throughput::Elements(1));
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        if n == 1_000_000 {
            group.sample_size(10);
        }
        // Built on first use only, so that filtering benchmarks skips the setup.
        let mut setup: Option<(PriorityQueue, Arc<PodInfo>)> = None;
        group.bench_with_input(BenchmarkId::new("queue", n), &n, |b, &n| {
            let (queue, spare) = setup.get_or_insert_with(|| {
                let queue = PriorityQueue::new(QueueConfig::default()).expect("default config");
                for i in 0..n {
                    queue
                        .add_pod_info(Arc::new(PodInfo::new(pending_pod(i))))
                        .expect("valid pod");
                }
                // The pod out of the queue is added next; the one popped takes its place.
                (queue, Arc::new(PodInfo::new(pending_pod(n))))
            });
            b.iter(|| {
                queue.add_pod_info(Arc::clone(spare)).expect("valid pod");
                let popped = queue.try_pop().expect("pods are pending");
                queue.done(popped.uid());
                *spare = popped.pod_info;
            });
        });
        drop(setup);

        let mut setup: Option<(BinaryHeap<Key>, u64, u32)> = None;
        group.bench_with_input(BenchmarkId::new("binary_heap", n), &n, |b, &n| {
            let (heap, seq, spare) = setup.get_or_insert_with(|| {
                let heap = (0..n)
                    .map(|i| Key {
                        priority: priority(i),
                        payload: i as u32,
                        timestamp: i as u64,
                        seq: i as u64,
                    })
                    .collect();
                (heap, n as u64, n as u32)
            });
            b.iter(|| {
                *seq += 1;
                // Arrival order stands in for the timestamp: the same order, no clock read.
                heap.push(Key {
                    priority: priority(*spare as usize),
                    payload: *spare,
                    timestamp: *seq,
                    seq: *seq,
                });
                *spare = black_box(heap.pop().expect("items are pending")).payload;
            });
        });
    }
    group.finish();

    // The same at 100k through `add(Arc<Pod>)`, PodInfo construction included.
    let mut group = c.benchmark_group("queue_add_pod");
    group.throughput(Throughput::Elements(1));
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let n = 100_000;
    let mut setup: Option<(PriorityQueue, Arc<Pod>)> = None;
    group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
        let (queue, spare) = setup.get_or_insert_with(|| {
            let queue = PriorityQueue::new(QueueConfig::default()).expect("default config");
            for i in 0..n {
                queue.add(pending_pod(i)).expect("valid pod");
            }
            (queue, pending_pod(n))
        });
        b.iter(|| {
            queue.add(Arc::clone(spare)).expect("valid pod");
            let popped = queue.try_pop().expect("pods are pending");
            queue.done(popped.uid());
            *spare = Arc::clone(popped.pod_info.pod());
        });
    });
    group.finish();
}

/// Upstream's event mix: node and storage events.
fn events() -> Vec<ClusterEvent> {
    use EventResource::{
        CsiDriver, CsiNode, CsiStorageCapacity, Node, PersistentVolume, PersistentVolumeClaim,
        StorageClass,
    };
    let mut events = vec![
        ClusterEvent::new(Node, ActionType::ADD),
        ClusterEvent::new(Node, ActionType::UPDATE_NODE_TAINT),
        ClusterEvent::new(Node, ActionType::UPDATE_NODE_ALLOCATABLE),
        ClusterEvent::new(Node, ActionType::UPDATE_NODE_CONDITION),
        ClusterEvent::new(Node, ActionType::UPDATE_NODE_LABEL),
        ClusterEvent::new(Node, ActionType::UPDATE_NODE_ANNOTATION),
    ];
    for resource in [
        PersistentVolumeClaim,
        PersistentVolume,
        StorageClass,
        CsiNode,
        CsiDriver,
        CsiStorageCapacity,
    ] {
        events.push(ClusterEvent::new(resource.clone(), ActionType::ADD));
        events.push(ClusterEvent::new(resource, ActionType::UPDATE));
    }
    events
}

const PLUGINS: usize = 20;

#[derive(Debug, Clone, Copy)]
enum Case {
    /// UnschedulableTimeout (a wildcard): every pod moves, no hint runs.
    Baseline,
    /// NodeAdd, every pod rejected by all 20 plugins, all of which registered NodeAdd.
    Worst,
    /// Each pod rejected by one plugin, a different event each time.
    Random,
}

/// A queue with `n` unschedulable pods, 20 plugins registered as upstream's benchmark does
/// (plugin k for event j when `(k+1) % (j+1) == 0`, so all for NodeAdd, half for the next…),
/// every hint answering Queue.
fn move_all_queue(n: usize, case: Case) -> (PriorityQueue, Vec<String>) {
    let plugins: Vec<String> = (0..PLUGINS).map(|k| format!("fake-plugin-{k}")).collect();
    let events = events();
    let mut config = QueueConfig::default().with_clock(Arc::new(FakeClock::new()));
    for (k, plugin) in plugins.iter().enumerate() {
        let registered = events
            .iter()
            .enumerate()
            .filter(|(j, _)| (k + 1) % (j + 1) == 0)
            .map(|(_, e)| {
                ClusterEventWithHint::with_hint(e.clone(), |_, _, _| Ok(QueueingHint::Queue))
            });
        config = config.with_hints("default-scheduler", plugin.clone(), registered);
    }
    let queue = PriorityQueue::new(config).expect("valid config");
    for i in 0..n {
        queue.add(pending_pod(i)).expect("valid pod");
    }
    refill(&queue, &plugins, case);
    (queue, plugins)
}

/// Pops every pod and fails it again with the case's rejector plugins.
fn refill(queue: &PriorityQueue, plugins: &[String], case: Case) {
    while let Some(mut attempt) = queue.try_pop() {
        match case {
            Case::Worst => attempt
                .unschedulable_plugins
                .extend(plugins.iter().cloned()),
            Case::Baseline | Case::Random => {
                let i: usize = attempt
                    .key()
                    .trim_start_matches("default/web-")
                    .parse()
                    .unwrap_or_default();
                attempt
                    .unschedulable_plugins
                    .insert(plugins[i % PLUGINS].clone());
            }
        }
        queue
            .add_unschedulable_if_not_present(attempt)
            .expect("not queued");
    }
}

fn move_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("move_all");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    let events = events();
    for case in [Case::Baseline, Case::Worst, Case::Random] {
        for n in [1000, 5000] {
            let mut setup = None;
            let mut round = 0usize;
            let name = format!("{case:?}").to_lowercase();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                let (queue, plugins) = setup.get_or_insert_with(|| move_all_queue(n, case));
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let event = match case {
                            Case::Baseline => well_known::UNSCHEDULABLE_TIMEOUT,
                            Case::Worst => well_known::NODE_ADD,
                            Case::Random => events[round % events.len()].clone(),
                        };
                        round += 1;
                        let start = Instant::now();
                        queue.move_all_to_active_or_backoff_queue(&event, None, None, None);
                        timed += start.elapsed();
                        refill(queue, plugins, case);
                    }
                    timed
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, add_pop_done, move_all);
criterion_main!(benches);
