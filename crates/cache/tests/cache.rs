//! Cache behaviour: the pod state machine, ghosts, aggregates and snapshots.

mod common;

use std::{sync::Arc, thread};

use common::{container, node, pod};
use ksched_cache::{Cache, Error};
use ksched_framework::{
    PodInfo, Snapshot,
    resource::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST},
};

fn cache_with_nodes(names: &[&str]) -> Cache {
    let cache = Cache::new();
    for name in names {
        cache.add_node(node(name).build()).unwrap();
    }
    cache
}

fn snapshot(cache: &Cache) -> Snapshot {
    let mut s = Snapshot::default();
    cache.update_snapshot(&mut s).unwrap();
    s
}

#[test]
fn assume_finish_binding_then_informer_add() {
    let cache = cache_with_nodes(&["n1"]);
    let p = pod("p")
        .node("n1")
        .requests(&[("cpu", "500m"), ("memory", "1Gi")])
        .build();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    assert!(cache.is_assumed_pod(&p));
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 500);

    cache.finish_binding(&p);
    assert!(
        cache.is_assumed_pod(&p),
        "finishing the binding does not confirm the pod"
    );
    assert!(cache.dump().pods["default/p"].binding_finished);

    cache.add_pod(Arc::clone(&p)).unwrap();
    assert!(!cache.is_assumed_pod(&p));
    let info = cache.node_info("n1").unwrap();
    assert_eq!(info.pods().len(), 1, "confirmed, not counted twice");
    assert_eq!(info.requested().milli_cpu, 500);
    assert_eq!(info.requested().memory, 1 << 30);
    assert_eq!(cache.pod_count(), 1);

    // finish_binding after the informer already confirmed: fine, nothing changes.
    cache.finish_binding(&p);
    assert_eq!(
        cache.add_pod(p),
        Err(Error::PodAlreadyAdded {
            pod: "default/p".into()
        })
    );
}

#[test]
fn assume_then_forget_undoes_exactly() {
    let cache = cache_with_nodes(&["n1"]);
    cache
        .add_pod(
            pod("bound")
                .node("n1")
                .requests(&[("cpu", "1")])
                .host_port(80, "", "")
                .build(),
        )
        .unwrap();
    let before = cache.node_info("n1").unwrap();
    let before_snapshot = snapshot(&cache);

    let p = pod("p")
        .node("n1")
        .requests(&[("cpu", "250m"), ("example.com/gpu", "1")])
        .host_port(8080, "UDP", "10.0.0.1")
        .anti_affinity("web")
        .build();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    let during = cache.node_info("n1").unwrap();
    assert_eq!(during.requested().milli_cpu, 1250);
    assert_eq!(during.requested().scalar("example.com/gpu"), 1);
    assert!(during.used_ports().check_conflict("10.0.0.1", "UDP", 8080));
    assert_eq!(during.pods_with_required_anti_affinity().len(), 1);

    cache.forget_pod(&p).unwrap();
    let after = cache.node_info("n1").unwrap();
    assert_eq!(after.requested(), before.requested());
    assert_eq!(after.non_zero_requested(), before.non_zero_requested());
    assert_eq!(after.used_ports(), before.used_ports());
    assert_eq!(after.pods().len(), 1);
    assert!(after.pods_with_affinity().is_empty());
    assert!(after.requested().scalar_resources.is_empty());
    assert!(!cache.is_assumed_pod(&p));
    assert!(cache.get_pod(&p).is_none());

    let s = snapshot(&cache);
    assert_eq!(
        s.get("n1").unwrap().requested(),
        before_snapshot.get("n1").unwrap().requested()
    );
    assert!(s.have_pods_with_required_anti_affinity_list().is_empty());
}

#[test]
fn forget_errors() {
    let cache = cache_with_nodes(&["n1", "n2"]);
    let p = pod("p").node("n1").build();
    // Unknown pod: nothing to forget.
    cache.forget_pod(&p).unwrap();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    let elsewhere = pod("p").node("n2").build();
    assert_eq!(
        cache.forget_pod(&elsewhere),
        Err(Error::PodNodeMismatch {
            pod: "default/p".into(),
            assumed_node: "n1".into(),
            node: "n2".into()
        })
    );
    cache.add_pod(Arc::clone(&p)).unwrap();
    assert_eq!(
        cache.forget_pod(&p),
        Err(Error::PodNotAssumed {
            pod: "default/p".into()
        })
    );
    assert_eq!(
        cache.forget_pod(&p).unwrap_err().to_string(),
        "pod default/p is not assumed"
    );
}

#[test]
fn assume_pod_info_of_the_queued_pod() {
    let cache = cache_with_nodes(&["n1"]);
    let queued = PodInfo::new(pod("p").requests(&[("cpu", "250m")]).build());
    assert_eq!(
        cache.assume_pod_info(queued.clone()),
        Err(Error::PodNotAssigned {
            pod: "default/p".into()
        })
    );
    let assumed = queued.with_node_name("n1");
    let p = Arc::clone(assumed.pod());
    cache.assume_pod_info(assumed).unwrap();
    assert!(cache.is_assumed_pod(&p));
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 250);
    assert_eq!(
        cache.assume_pod_info(queued.with_node_name("n1")),
        Err(Error::PodAlreadyInCache {
            pod: "default/p".into()
        })
    );
    // Binding failed: forgetting it undoes it exactly.
    cache.forget_pod(&p).unwrap();
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 0);
    assert_eq!(cache.pod_count(), 0);
}

#[test]
fn assume_errors() {
    let cache = cache_with_nodes(&["n1"]);
    let unassigned = pod("p").build();
    assert_eq!(
        cache.assume_pod(unassigned),
        Err(Error::PodNotAssigned {
            pod: "default/p".into()
        })
    );
    let p = pod("p").node("n1").build();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    assert_eq!(
        cache.assume_pod(p),
        Err(Error::PodAlreadyInCache {
            pod: "default/p".into()
        })
    );
}

#[test]
fn assumed_pod_deleted() {
    let cache = cache_with_nodes(&["n1"]);
    let p = pod("p").node("n1").requests(&[("cpu", "1")]).build();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    cache.remove_pod(&p).unwrap();
    assert_eq!(cache.pod_count(), 0);
    assert!(!cache.is_assumed_pod(&p));
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 0);
    // The binder's forget after the deletion is a no-op.
    cache.forget_pod(&p).unwrap();
    assert_eq!(
        cache.remove_pod(&p),
        Err(Error::PodNotFound {
            pod: "default/p".into()
        })
    );
}

#[test]
fn pod_updated_while_assumed() {
    let cache = cache_with_nodes(&["n1"]);
    let p = pod("p").node("n1").requests(&[("cpu", "1")]).build();
    cache.assume_pod(Arc::clone(&p)).unwrap();
    let updated = pod("p")
        .node("n1")
        .requests(&[("cpu", "2")])
        .label("a", "b")
        .build();
    assert_eq!(
        cache.update_pod(Arc::clone(&updated)),
        Err(Error::AssumedPodUpdated {
            pod: "default/p".into()
        })
    );
    assert_eq!(
        cache.node_info("n1").unwrap().requested().milli_cpu,
        1000,
        "unchanged"
    );
    assert!(cache.is_assumed_pod(&p));

    // Once confirmed, updates apply.
    cache.add_pod(p).unwrap();
    cache.update_pod(Arc::clone(&updated)).unwrap();
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 2000);
    assert_eq!(
        cache.get_pod(&updated).unwrap().metadata.labels,
        updated.metadata.labels
    );
    assert_eq!(
        cache.update_pod(pod("other").node("n1").build()),
        Err(Error::PodNotFound {
            pod: "default/other".into()
        })
    );
}

#[test]
fn informer_add_for_pod_assumed_on_another_node_moves_it() {
    let cache = cache_with_nodes(&["n1", "n2"]);
    let mut s = snapshot(&cache);
    cache
        .assume_pod(pod("p").node("n1").requests(&[("cpu", "1")]).build())
        .unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.get("n1").unwrap().pods().len(), 1);

    let bound = pod("p").node("n2").requests(&[("cpu", "1")]).build();
    cache.add_pod(Arc::clone(&bound)).unwrap();
    assert!(!cache.is_assumed_pod(&bound));
    assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 0);
    assert_eq!(cache.node_info("n2").unwrap().requested().milli_cpu, 1000);
    cache.update_snapshot(&mut s).unwrap();
    assert!(s.get("n1").unwrap().pods().is_empty());
    assert_eq!(s.get("n2").unwrap().pods()[0].key(), "default/p");
}

#[test]
fn bound_pod_changing_node_is_reported_and_followed() {
    let cache = cache_with_nodes(&["n1", "n2"]);
    cache.add_pod(pod("p").node("n1").build()).unwrap();
    let moved = pod("p").node("n2").build();
    assert_eq!(
        cache.update_pod(Arc::clone(&moved)),
        Err(Error::PodNodeChanged {
            pod: "default/p".into(),
            from: "n1".into(),
            to: "n2".into()
        })
    );
    assert!(cache.node_info("n1").unwrap().pods().is_empty());
    assert_eq!(cache.node_info("n2").unwrap().pods().len(), 1);

    // A delete naming another node still removes the pod, and says so.
    let stale = pod("p").node("n1").build();
    assert!(matches!(
        cache.remove_pod(&stale),
        Err(Error::PodNodeChanged { .. })
    ));
    assert_eq!(cache.pod_count(), 0);

    // A delete with no node name (last known state after a missed delete) is fine.
    cache.add_pod(pod("q").node("n1").build()).unwrap();
    cache.remove_pod(&pod("q").build()).unwrap();
    assert_eq!(cache.pod_count(), 0);
}

#[test]
fn node_removed_and_re_added_with_pods() {
    let cache = cache_with_nodes(&["n1", "n2"]);
    cache
        .add_pod(pod("a").node("n1").requests(&[("cpu", "1")]).build())
        .unwrap();
    cache
        .add_pod(pod("b").node("n1").requests(&[("cpu", "1")]).build())
        .unwrap();
    let mut s = snapshot(&cache);
    assert_eq!(s.len(), 2);

    cache.remove_node("n1").unwrap();
    assert_eq!(
        cache.node_count(),
        2,
        "n1 stays as a ghost while pods remain"
    );
    assert!(cache.node_info("n1").unwrap().node().is_none());
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.len(), 1);
    assert!(s.get("n1").is_none());
    assert_eq!(
        cache.remove_node("n1"),
        Err(Error::NodeNotFound { node: "n1".into() })
    );

    // Re-added before its pods' deletes arrived: it comes back with them.
    cache.add_node(node("n1").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.get("n1").unwrap().pods().len(), 2);
    assert_eq!(s.get("n1").unwrap().requested().milli_cpu, 2000);

    // Removed again, then its pods go: the ghost goes with the last one.
    cache.remove_node("n1").unwrap();
    cache.remove_pod(&pod("a").node("n1").build()).unwrap();
    assert_eq!(cache.node_count(), 2);
    cache.remove_pod(&pod("b").node("n1").build()).unwrap();
    assert_eq!(cache.node_count(), 1);
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.len(), 1);
    assert!(s.is_consistent());
}

#[test]
fn pods_seen_before_their_node() {
    let cache = Cache::new();
    cache
        .add_pod(pod("a").node("late").requests(&[("cpu", "1")]).build())
        .unwrap();
    let mut s = snapshot(&cache);
    assert!(
        s.is_empty(),
        "a node without its Node object is not schedulable"
    );
    cache.add_node(node("late").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.get("late").unwrap().requested().milli_cpu, 1000);
}

#[test]
fn requested_and_non_zero_requested_with_init_containers_and_overhead() {
    let cache = cache_with_nodes(&["n1"]);
    let p = pod("p")
        .node("n1")
        .containers(vec![
            container("app", &[("cpu", "500m"), ("memory", "256Mi")]),
            container("side", &[]),
        ])
        .init_containers(vec![
            container("init", &[("cpu", "2"), ("memory", "64Mi")]),
            container("init-empty", &[]),
        ])
        .overhead(&[("cpu", "100m"), ("memory", "32Mi")])
        .build();
    cache.add_pod(p).unwrap();
    let s = snapshot(&cache);
    let info = s.get("n1").unwrap();
    // Requests: max(app+side = 500m, init 2000m) + overhead 100m.
    assert_eq!(info.requested().milli_cpu, 2100);
    assert_eq!(info.requested().memory, (256 << 20) + (32 << 20));
    // Non-zero: side gets the defaults; init-empty gets them too but is the smaller step.
    assert_eq!(info.non_zero_requested().milli_cpu, 2000 + 100);
    assert_eq!(
        info.non_zero_requested().memory,
        (256 << 20) + DEFAULT_MEMORY_REQUEST + (32 << 20)
    );
    let empty = pod("empty").node("n1").build();
    cache.add_pod(empty).unwrap();
    let s = snapshot(&cache);
    let info = s.get("n1").unwrap();
    assert_eq!(info.requested().milli_cpu, 2100);
    assert_eq!(
        info.non_zero_requested().milli_cpu,
        2100 + DEFAULT_MILLI_CPU_REQUEST
    );
}

#[test]
fn malformed_quantities_are_kept_with_the_pod_and_node() {
    let cache = Cache::new();
    cache
        .add_node(node("n1").allocatable(&[("cpu", "four")]).build())
        .unwrap();
    let p = pod("p")
        .node("n1")
        .requests(&[("memory", "1.5.Gi")])
        .build();
    cache.add_pod(p).unwrap();
    let s = snapshot(&cache);
    let info = s.get("n1").unwrap();
    assert_eq!(info.allocatable_errors().len(), 1);
    assert!(
        info.allocatable_errors()[0]
            .to_string()
            .contains("\"four\"")
    );
    let err = info.pods()[0].parse_error().unwrap().to_string();
    assert!(
        err.contains("spec.containers[app].resources.requests[memory]"),
        "{err}"
    );
    assert!(err.contains("\"1.5.Gi\""), "{err}");
}

#[test]
fn host_ports() {
    let cache = cache_with_nodes(&["n1"]);
    let p = pod("p")
        .node("n1")
        .host_port(80, "TCP", "")
        .host_port(53, "UDP", "10.1.1.1")
        .build();
    cache.add_pod(Arc::clone(&p)).unwrap();
    let s = snapshot(&cache);
    let ports = s.get("n1").unwrap().used_ports();
    assert!(
        ports.check_conflict("192.168.0.1", "TCP", 80),
        "0.0.0.0 conflicts with any IP"
    );
    assert!(
        ports.check_conflict("0.0.0.0", "UDP", 53),
        "any IP conflicts with 0.0.0.0"
    );
    assert!(!ports.check_conflict("10.1.1.2", "UDP", 53));
    assert!(!ports.check_conflict("", "UDP", 80));
    cache.remove_pod(&p).unwrap();
    let s = snapshot(&cache);
    assert!(s.get("n1").unwrap().used_ports().is_empty());
}

#[test]
fn image_states_count_nodes() {
    let cache = Cache::new();
    cache
        .add_node(node("n1").images(&[("nginx", 100), ("redis", 50)]).build())
        .unwrap();
    cache
        .add_node(node("n2").images(&[("nginx", 100)]).build())
        .unwrap();
    let mut s = snapshot(&cache);
    let n1 = s.get("n1").unwrap().image_states();
    assert_eq!((n1["nginx"].size, n1["nginx"].num_nodes), (100, 2));
    assert_eq!((n1["redis"].size, n1["redis"].num_nodes), (50, 1));
    assert_eq!(cache.dump().images["nginx"], (100, 2));

    cache.remove_node("n2").unwrap();
    assert_eq!(cache.dump().images["nginx"], (100, 1));
    // As upstream, n1's summaries refresh when n1 itself is next copied into a snapshot.
    cache.add_pod(pod("p").node("n1").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(s.get("n1").unwrap().image_states()["nginx"].num_nodes, 1);

    // Image changes on update.
    cache
        .update_node(node("n1").images(&[("redis", 50)]).build())
        .unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert!(!s.get("n1").unwrap().image_states().contains_key("nginx"));
    assert!(!cache.dump().images.contains_key("nginx"));
}

#[test]
fn snapshot_copies_only_changed_nodes_and_keeps_order() {
    let cache = Cache::new();
    for (name, zone) in [
        ("a1", "a"),
        ("a2", "a"),
        ("b1", "b"),
        ("b2", "b"),
        ("c1", "c"),
    ] {
        cache.add_node(node(name).zone(zone).build()).unwrap();
    }
    let mut s = snapshot(&cache);
    let order: Vec<&str> = s.list().iter().map(|n| n.node_name()).collect();
    assert_eq!(order, ["a1", "b1", "c1", "a2", "b2"], "zones interleaved");
    let before = s.clone();

    cache.add_pod(pod("p").node("b2").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    for (old, new) in before.list().iter().zip(s.list()) {
        assert_eq!(old.node_name(), new.node_name(), "order stable");
        assert_eq!(
            Arc::ptr_eq(old, new),
            new.node_name() != "b2",
            "{}",
            new.node_name()
        );
    }
    // The clone taken before is untouched.
    assert!(before.get("b2").unwrap().pods().is_empty());
    // Nothing changed: nothing copied.
    let again = s.clone();
    cache.update_snapshot(&mut s).unwrap();
    assert!(
        s.list()
            .iter()
            .zip(again.list())
            .all(|(a, b)| Arc::ptr_eq(a, b))
    );

    // A node added: the list is rebuilt in tree order.
    cache.add_node(node("c2").zone("c").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    let order: Vec<&str> = s.list().iter().map(|n| n.node_name()).collect();
    assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "c2"]);
}

#[test]
fn snapshot_affinity_lists() {
    let cache = cache_with_nodes(&["n1", "n2", "n3"]);
    let mut s = snapshot(&cache);
    assert!(s.have_pods_with_affinity_list().is_empty());
    cache
        .add_pod(pod("anti").node("n2").anti_affinity("web").build())
        .unwrap();
    cache
        .add_pod(pod("pref").node("n3").preferred_anti_affinity().build())
        .unwrap();
    cache.update_snapshot(&mut s).unwrap();
    let names = |list: &[Arc<ksched_framework::NodeInfo>]| {
        list.iter()
            .map(|n| n.node_name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(s.have_pods_with_affinity_list()), ["n2", "n3"]);
    assert_eq!(
        names(s.have_pods_with_required_anti_affinity_list()),
        ["n2"]
    );

    // A change on a listed node is visible through the lists too.
    cache.add_pod(pod("x").node("n2").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(
        s.have_pods_with_required_anti_affinity_list()[0]
            .pods()
            .len(),
        2
    );

    cache.remove_pod(&pod("anti").node("n2").build()).unwrap();
    cache.update_snapshot(&mut s).unwrap();
    assert_eq!(names(s.have_pods_with_affinity_list()), ["n3"]);
    assert!(s.have_pods_with_required_anti_affinity_list().is_empty());
}

#[test]
fn zone_change_moves_the_node_in_the_tree() {
    let cache = Cache::new();
    cache.add_node(node("n1").zone("a").build()).unwrap();
    cache.add_node(node("n2").zone("a").build()).unwrap();
    cache.update_node(node("n1").zone("b").build()).unwrap();
    cache.add_node(node("n3").zone("a").build()).unwrap();
    let s = snapshot(&cache);
    let order: Vec<&str> = s.list().iter().map(|n| n.node_name()).collect();
    assert_eq!(order, ["n2", "n1", "n3"]);
    assert_eq!(cache.node_count(), 3);
}

#[test]
fn node_and_pod_without_names() {
    let cache = Cache::new();
    let mut nameless = (*node("x").build()).clone();
    nameless.metadata.name = None;
    assert_eq!(
        cache.add_node(Arc::new(nameless)),
        Err(Error::NodeWithoutName)
    );
    let mut nameless = (*pod("x").node("n").build()).clone();
    nameless.metadata.name = None;
    assert_eq!(
        cache.add_pod(Arc::new(nameless)),
        Err(Error::PodWithoutName {
            namespace: "default".into()
        })
    );
}

#[test]
fn dump_is_readable() {
    let cache = cache_with_nodes(&["n1", "n2"]);
    cache
        .assume_pod(pod("p").node("n1").requests(&[("cpu", "1")]).build())
        .unwrap();
    cache.add_pod(pod("q").node("n2").build()).unwrap();
    cache.remove_node("n2").unwrap();
    let dump = cache.dump();
    assert_eq!(
        dump.assumed_pods().into_iter().collect::<Vec<_>>(),
        ["default/p"]
    );
    let text = dump.to_string();
    assert!(text.contains("node n1: cpu 1000m/4000m"), "{text}");
    assert!(text.contains("node n2 (ghost)"), "{text}");
    assert!(text.contains("assumed pods: [default/p]"), "{text}");
}

#[test]
fn concurrent_event_handlers_and_snapshots() {
    let cache = Arc::new(Cache::new());
    for i in 0..8 {
        cache.add_node(node(&format!("n{i}")).build()).unwrap();
    }
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                for i in 0..200 {
                    let p = pod(&format!("p{t}-{i}"))
                        .node(&format!("n{}", i % 8))
                        .requests(&[("cpu", "10m")])
                        .build();
                    cache.assume_pod(Arc::clone(&p)).unwrap();
                    if i % 3 == 0 {
                        cache.forget_pod(&p).unwrap();
                    } else {
                        cache.add_pod(p).unwrap();
                    }
                }
            })
        })
        .collect();
    let mut s = Snapshot::default();
    for _ in 0..100 {
        cache.update_snapshot(&mut s).unwrap();
        assert_eq!(s.len(), 8);
    }
    for w in writers {
        w.join().unwrap();
    }
    cache.update_snapshot(&mut s).unwrap();
    let total: i64 = s.list().iter().map(|n| n.requested().milli_cpu).sum();
    let pods: usize = s.list().iter().map(|n| n.pods().len()).sum();
    assert_eq!(pods, 4 * 133);
    assert_eq!(total, 10 * 4 * 133);
    assert_eq!(cache.pod_count(), 4 * 133);
}
