//! What the queue costs in memory per pending pod, beyond the shared `Pod` object, measured
//! with a counting global allocator. Alone in its binary so that no other test allocates
//! meanwhile; run with `--nocapture` to see the figures (recorded in docs/benchmarks.md).

#[path = "common/pending_pod.rs"]
mod fixture;

use std::{alloc::System, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::PodInfo;
use ksched_queue::{PriorityQueue, QueueConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PODS: usize = 100_000;
const BUDGET: f64 = 1024.0;

/// Net bytes allocated while `f` runs, per pod.
fn per_pod<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let region = Region::new(GLOBAL);
    let out = f();
    let c = region.change();
    // Reallocations are already in these two (growth in allocated, shrinking in deallocated).
    let net = c.bytes_allocated as f64 - c.bytes_deallocated as f64;
    (out, net / PODS as f64)
}

#[test]
fn bookkeeping_per_pending_pod_stays_under_a_kibibyte() {
    let pods: Vec<Arc<Pod>> = (0..PODS).map(|i| fixture::pending_pod(i, 0)).collect();
    let (infos, pod_info) = per_pod(|| {
        pods.iter()
            .map(|p| Arc::new(PodInfo::new(Arc::clone(p))))
            .collect::<Vec<_>>()
    });

    let queue = PriorityQueue::new(QueueConfig::default()).unwrap();
    let ((), active) = per_pod(|| {
        for info in &infos {
            queue.add_pod_info(Arc::clone(info)).unwrap();
        }
    });
    assert_eq!(queue.metrics().pending.active, PODS);

    // The same pods rejected by a plugin, one attempt at a time, waiting in unschedulablePods.
    let ((), moved) = per_pod(|| {
        while let Some(mut attempt) = queue.try_pop() {
            attempt
                .unschedulable_plugins
                .insert("NodeResourcesFit".to_owned());
            queue.add_unschedulable_if_not_present(attempt).unwrap();
        }
    });
    assert_eq!(queue.metrics().pending.unschedulable, PODS);
    let unschedulable = active + moved;

    // `add(Arc<Pod>)` builds the PodInfo itself: queue plus PodInfo.
    let fresh = PriorityQueue::new(QueueConfig::default()).unwrap();
    let ((), with_pod_info) = per_pod(|| {
        for pod in &pods {
            fresh.add(Arc::clone(pod)).unwrap();
        }
    });

    eprintln!(
        "bytes per pending pod ({PODS} pods, beyond the Pod object): queue bookkeeping in activeQ {active:.0}, \
         in unschedulablePods with one rejector plugin {unschedulable:.0}; PodInfo (shared with the cache) \
         {pod_info:.0}; add(Pod) = queue + its own PodInfo {with_pod_info:.0}"
    );
    assert!(active < BUDGET, "activeQ bookkeeping {active:.0} B/pod");
    assert!(
        unschedulable < BUDGET,
        "unschedulablePods bookkeeping {unschedulable:.0} B/pod"
    );
    assert!(
        with_pod_info < 2.0 * BUDGET,
        "queue + PodInfo {with_pod_info:.0} B/pod"
    );
    drop((queue, fresh, infos));
}
