//! `Cache::update_snapshot` on 5000 nodes with 30 pods each: one node changed, every node
//! changed, and a first snapshot from nothing. Figures in `docs/benchmarks.md`.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::{
    api::core::v1::{
        Affinity, Container, ContainerImage, Node, NodeStatus, Pod, PodAffinityTerm,
        PodAntiAffinity, PodSpec, ResourceRequirements,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use ksched_benches::quantities;
use ksched_cache::Cache;
use ksched_framework::Snapshot;

const NODES: usize = 5000;
const PODS_PER_NODE: usize = 30;
const ZONES: usize = 5;
const IMAGES_PER_NODE: usize = 10;

fn node(i: usize) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{i}")),
            labels: Some(
                [
                    (
                        "topology.kubernetes.io/zone".to_owned(),
                        format!("zone-{}", i % ZONES),
                    ),
                    ("kubernetes.io/hostname".to_owned(), format!("node-{i}")),
                ]
                .into(),
            ),
            ..Default::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(quantities(&[
                ("cpu", "32"),
                ("memory", "128Gi"),
                ("pods", "110"),
            ])),
            images: Some(
                (0..IMAGES_PER_NODE)
                    .map(|k| ContainerImage {
                        names: Some(vec![format!("registry.example/image-{}:1", (i + k) % 50)]),
                        size_bytes: Some(100_000_000),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pod(name: &str, node: &str, anti_affinity: bool) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(name.into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", "100m"), ("memory", "256Mi")])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            affinity: anti_affinity.then(|| Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                                match_expressions: None,
                            }),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    ]),
                    preferred_during_scheduling_ignored_during_execution: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// 5000 nodes in 5 zones, 30 bound pods each; one node in ten has a pod with required
/// anti-affinity.
fn populated_cache() -> Cache {
    let cache = Cache::new();
    for i in 0..NODES {
        cache.add_node(node(i)).expect("node");
        for j in 0..PODS_PER_NODE {
            let anti_affinity = j == 0 && i % 10 == 0;
            cache
                .add_pod(pod(
                    &format!("p-{i}-{j}"),
                    &format!("node-{i}"),
                    anti_affinity,
                ))
                .expect("pod");
        }
    }
    cache
}

/// Assumes an extra pod on `node`, or forgets it if it is there, so that every call changes
/// the node.
fn touch(cache: &Cache, node: usize) {
    let p = pod(&format!("extra-{node}"), &format!("node-{node}"), false);
    if cache.is_assumed_pod(&p) {
        cache.forget_pod(&p).expect("forget");
    } else {
        cache.assume_pod(p).expect("assume");
    }
}

/// Times `update_snapshot` alone: `prepare` (untimed) changes the cache and may return a value
/// kept alive across the update (a published clone).
fn time_updates<T>(
    cache: &Cache,
    snapshot: &mut Snapshot,
    iters: u64,
    mut prepare: impl FnMut(&Cache, &Snapshot) -> T,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let keep = prepare(cache, snapshot);
        let start = Instant::now();
        cache
            .update_snapshot(black_box(&mut *snapshot))
            .expect("update");
        total += start.elapsed();
        drop(keep);
    }
    total
}

fn bench(c: &mut Criterion) {
    let cache = populated_cache();
    let mut snapshot = Snapshot::default();
    cache
        .update_snapshot(&mut snapshot)
        .expect("first snapshot");
    assert_eq!(snapshot.len(), NODES);

    let mut group = c.benchmark_group("cache_update_snapshot_5000_nodes");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("one_node_changed", |b| {
        b.iter_custom(|iters| {
            time_updates(&cache, &mut snapshot, iters, |cache, _| touch(cache, 1234))
        });
    });

    // As the scheduling loop runs it: the previous cycle's snapshot is still published to
    // plugins (a clone is alive), so the node list is copied once before the in-place update.
    group.bench_function("one_node_changed_previous_published", |b| {
        b.iter_custom(|iters| {
            time_updates(&cache, &mut snapshot, iters, |cache, snapshot| {
                touch(cache, 1234);
                snapshot.clone()
            })
        });
    });

    group.bench_function("all_nodes_changed", |b| {
        b.iter_custom(|iters| {
            time_updates(&cache, &mut snapshot, iters, |cache, _| {
                for node in 0..NODES {
                    touch(cache, node);
                }
            })
        });
    });

    group.bench_function("all_nodes_changed_previous_published", |b| {
        b.iter_custom(|iters| {
            time_updates(&cache, &mut snapshot, iters, |cache, snapshot| {
                for node in 0..NODES {
                    touch(cache, node);
                }
                snapshot.clone()
            })
        });
    });

    group.bench_function("first_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut fresh = Snapshot::default();
                let start = Instant::now();
                cache
                    .update_snapshot(black_box(&mut fresh))
                    .expect("update");
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
