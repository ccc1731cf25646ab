//! Property: after any sequence of cache operations, the incrementally updated snapshot equals
//! a snapshot rebuilt from scratch (from a model of the cluster, and from the cache itself).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use common::{node, pod};
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_cache::{Cache, Error};
use ksched_framework::{NodeInfo, Resource, Snapshot};
use proptest::prelude::*;

const NODES: usize = 6;
const PODS: usize = 16;
const IMAGES: usize = 4;

#[derive(Debug, Clone)]
struct NodeGen {
    zone: usize,
    images: u8,
    cpu: u8,
}

#[derive(Debug, Clone)]
struct PodGen {
    cpu_m: u16,
    mem_mi: u16,
    /// 0 plain, 1 required anti-affinity, 2 preferred anti-affinity, 3 host port, 4 extended
    /// resource, 5 no requests.
    kind: u8,
}

#[derive(Debug, Clone)]
enum Op {
    AddNode(usize, NodeGen),
    UpdateNode(usize, NodeGen),
    RemoveNode(usize),
    AssumePod(usize, usize, PodGen),
    FinishBinding(usize),
    ForgetPod(usize),
    AddPod(usize, usize, PodGen),
    UpdatePod(usize, PodGen),
    RemovePod(usize),
    UpdateSnapshot,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (0..3usize, any::<u8>(), 1..8u8).prop_map(|(zone, images, cpu)| NodeGen { zone, images, cpu })
}

fn pod_gen() -> impl Strategy<Value = PodGen> {
    (0..2000u16, 0..4096u16, 0..6u8).prop_map(|(cpu_m, mem_mi, kind)| PodGen {
        cpu_m,
        mem_mi,
        kind,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NODES, node_gen()).prop_map(|(n, g)| Op::AddNode(n, g)),
        1 => (0..NODES, node_gen()).prop_map(|(n, g)| Op::UpdateNode(n, g)),
        1 => (0..NODES).prop_map(Op::RemoveNode),
        4 => (0..PODS, 0..NODES, pod_gen()).prop_map(|(p, n, g)| Op::AssumePod(p, n, g)),
        1 => (0..PODS).prop_map(Op::FinishBinding),
        2 => (0..PODS).prop_map(Op::ForgetPod),
        4 => (0..PODS, 0..NODES, pod_gen()).prop_map(|(p, n, g)| Op::AddPod(p, n, g)),
        2 => (0..PODS, pod_gen()).prop_map(|(p, g)| Op::UpdatePod(p, g)),
        2 => (0..PODS).prop_map(Op::RemovePod),
        3 => Just(Op::UpdateSnapshot),
    ]
}

fn build_node(i: usize, g: &NodeGen) -> Arc<Node> {
    let images: Vec<(String, i64)> = (0..IMAGES)
        .filter(|k| g.images & (1 << k) != 0)
        .map(|k| (format!("img{k}"), 100 * (k as i64 + 1)))
        .collect();
    let images: Vec<(&str, i64)> = images.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    node(&format!("n{i}"))
        .zone(&format!("z{}", g.zone))
        .allocatable(&[
            ("cpu", &g.cpu.to_string()),
            ("memory", "32Gi"),
            ("pods", "110"),
        ])
        .images(&images)
        .build()
}

fn build_pod(p: usize, n: usize, g: &PodGen) -> Arc<Pod> {
    let cpu = format!("{}m", g.cpu_m);
    let mem = format!("{}Mi", g.mem_mi);
    let b = pod(&format!("p{p}")).node(&format!("n{n}"));
    let b = match g.kind {
        4 => b.requests(&[("cpu", &cpu), ("example.com/gpu", "1")]),
        5 => b,
        _ => b.requests(&[("cpu", &cpu), ("memory", &mem)]),
    };
    let b = match g.kind {
        1 => b.anti_affinity("web"),
        2 => b.preferred_anti_affinity(),
        3 => b.host_port(8000 + (g.cpu_m % 3) as i32, "", ""),
        _ => b,
    };
    b.build()
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// What the test compares of one node.
#[derive(Debug, PartialEq, Eq)]
struct NodeSummary {
    pods: BTreeSet<String>,
    pods_with_affinity: BTreeSet<String>,
    pods_with_required_anti_affinity: BTreeSet<String>,
    requested: Resource,
    non_zero_requested: Resource,
    allocatable: Resource,
    ports: BTreeSet<(String, String, i32)>,
    images: BTreeMap<String, i64>,
}

fn keys(pods: &[Arc<ksched_framework::PodInfo>]) -> BTreeSet<String> {
    pods.iter().map(|p| p.key().to_owned()).collect()
}

fn summarize_node(n: &NodeInfo) -> NodeSummary {
    NodeSummary {
        pods: keys(n.pods()),
        pods_with_affinity: keys(n.pods_with_affinity()),
        pods_with_required_anti_affinity: keys(n.pods_with_required_anti_affinity()),
        requested: n.requested().clone(),
        non_zero_requested: n.non_zero_requested().clone(),
        allocatable: n.allocatable().clone(),
        ports: n
            .used_ports()
            .iter()
            .map(|(ip, pp)| (ip.to_owned(), pp.protocol.clone(), pp.port))
            .collect(),
        images: n
            .image_states()
            .iter()
            .map(|(k, v)| (k.clone(), v.size))
            .collect(),
    }
}

type Summary = (
    BTreeMap<String, NodeSummary>,
    BTreeSet<String>,
    BTreeSet<String>,
);

fn summarize(s: &Snapshot) -> Summary {
    let names = |list: &[Arc<NodeInfo>]| {
        list.iter()
            .map(|n| n.node_name().to_owned())
            .collect::<BTreeSet<_>>()
    };
    (
        s.list()
            .iter()
            .map(|n| (n.node_name().to_owned(), summarize_node(n)))
            .collect(),
        names(s.have_pods_with_affinity_list()),
        names(s.have_pods_with_required_anti_affinity_list()),
    )
}

#[derive(Default)]
struct Model {
    nodes: BTreeMap<usize, Arc<Node>>,
    /// Pod → (pod, assumed).
    pods: BTreeMap<usize, (Arc<Pod>, bool)>,
}

impl Model {
    fn scratch(&self) -> Snapshot {
        Snapshot::from_pods_and_nodes(
            self.pods.values().map(|(p, _)| Arc::clone(p)),
            self.nodes.values().map(Arc::clone),
        )
    }
}

fn apply(
    cache: &Cache,
    model: &mut Model,
    snapshot: &mut Snapshot,
    op: &Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::AddNode(i, g) | Op::UpdateNode(i, g) => {
            let n = build_node(*i, g);
            if matches!(op, Op::AddNode(..)) {
                cache.add_node(Arc::clone(&n)).unwrap();
            } else {
                cache.update_node(Arc::clone(&n)).unwrap();
            }
            model.nodes.insert(*i, n);
        }
        Op::RemoveNode(i) => {
            let got = cache.remove_node(&format!("n{i}"));
            if model.nodes.remove(i).is_some() {
                prop_assert_eq!(got, Ok(()));
            } else {
                prop_assert_eq!(
                    got,
                    Err(Error::NodeNotFound {
                        node: format!("n{i}")
                    })
                );
            }
        }
        Op::AssumePod(p, n, g) => {
            let pod = build_pod(*p, *n, g);
            let got = cache.assume_pod(Arc::clone(&pod));
            if model.pods.contains_key(p) {
                prop_assert_eq!(
                    got,
                    Err(Error::PodAlreadyInCache {
                        pod: format!("default/p{p}")
                    })
                );
            } else {
                prop_assert_eq!(got, Ok(()));
                model.pods.insert(*p, (pod, true));
            }
        }
        Op::FinishBinding(p) => {
            if let Some((pod, _)) = model.pods.get(p) {
                cache.finish_binding(pod);
            }
        }
        Op::ForgetPod(p) => match model.pods.get(p).cloned() {
            None => prop_assert_eq!(
                cache.forget_pod(&build_pod(
                    *p,
                    0,
                    &PodGen {
                        cpu_m: 0,
                        mem_mi: 0,
                        kind: 0
                    }
                )),
                Ok(())
            ),
            Some((pod, true)) => {
                prop_assert_eq!(cache.forget_pod(&pod), Ok(()));
                model.pods.remove(p);
            }
            Some((pod, false)) => {
                prop_assert_eq!(
                    cache.forget_pod(&pod),
                    Err(Error::PodNotAssumed {
                        pod: format!("default/p{p}")
                    })
                );
            }
        },
        Op::AddPod(p, n, g) => {
            let pod = build_pod(*p, *n, g);
            let got = cache.add_pod(Arc::clone(&pod));
            match model.pods.get(p) {
                Some((_, false)) => {
                    prop_assert_eq!(
                        got,
                        Err(Error::PodAlreadyAdded {
                            pod: format!("default/p{p}")
                        })
                    );
                }
                _ => {
                    prop_assert_eq!(got, Ok(()));
                    model.pods.insert(*p, (pod, false));
                }
            }
        }
        Op::UpdatePod(p, g) => match model.pods.get(p).cloned() {
            None => {
                let got = cache.update_pod(build_pod(*p, 0, g));
                prop_assert_eq!(
                    got,
                    Err(Error::PodNotFound {
                        pod: format!("default/p{p}")
                    })
                );
            }
            Some((old, assumed)) => {
                let n: usize = node_of(&old)[1..].parse().unwrap();
                let pod = build_pod(*p, n, g);
                let got = cache.update_pod(Arc::clone(&pod));
                if assumed {
                    prop_assert_eq!(
                        got,
                        Err(Error::AssumedPodUpdated {
                            pod: format!("default/p{p}")
                        })
                    );
                } else {
                    prop_assert_eq!(got, Ok(()));
                    model.pods.insert(*p, (pod, false));
                }
            }
        },
        Op::RemovePod(p) => match model.pods.remove(p) {
            None => {
                let got = cache.remove_pod(&build_pod(
                    *p,
                    0,
                    &PodGen {
                        cpu_m: 0,
                        mem_mi: 0,
                        kind: 0,
                    },
                ));
                prop_assert_eq!(
                    got,
                    Err(Error::PodNotFound {
                        pod: format!("default/p{p}")
                    })
                );
            }
            Some((pod, _)) => prop_assert_eq!(cache.remove_pod(&pod), Ok(())),
        },
        Op::UpdateSnapshot => check_snapshot(cache, model, snapshot)?,
    }
    Ok(())
}

fn check_snapshot(
    cache: &Cache,
    model: &Model,
    snapshot: &mut Snapshot,
) -> Result<(), TestCaseError> {
    cache.update_snapshot(snapshot).unwrap();
    prop_assert!(snapshot.is_consistent());
    let incremental = summarize(snapshot);
    prop_assert_eq!(
        &incremental,
        &summarize(&model.scratch()),
        "incremental vs model"
    );
    let mut fresh = Snapshot::default();
    cache.update_snapshot(&mut fresh).unwrap();
    prop_assert_eq!(
        &incremental,
        &summarize(&fresh),
        "incremental vs fresh from the cache"
    );
    // Bookkeeping matches the model too.
    prop_assert_eq!(cache.pod_count(), model.pods.len());
    for (p, (pod, assumed)) in &model.pods {
        prop_assert_eq!(cache.is_assumed_pod(pod), *assumed, "p{}", p);
    }
    let ghosts_or_nodes: BTreeSet<String> = model
        .nodes
        .keys()
        .map(|i| format!("n{i}"))
        .chain(model.pods.values().map(|(p, _)| node_of(p)))
        .collect();
    prop_assert_eq!(cache.node_count(), ghosts_or_nodes.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn incremental_snapshot_equals_rebuilt(ops in prop::collection::vec(op(), 1..80)) {
        let cache = Cache::new();
        let mut model = Model::default();
        let mut snapshot = Snapshot::default();
        for op in &ops {
            apply(&cache, &mut model, &mut snapshot, op)?;
        }
        check_snapshot(&cache, &model, &mut snapshot)?;
    }

    #[test]
    fn published_snapshots_never_change(ops in prop::collection::vec(op(), 1..60)) {
        // A clone handed to plugins keeps its content while the cache moves on.
        let cache = Cache::new();
        let mut model = Model::default();
        let mut snapshot = Snapshot::default();
        let mut published: Vec<(Snapshot, Summary)> = Vec::new();
        for op in &ops {
            apply(&cache, &mut model, &mut snapshot, op)?;
            if matches!(op, Op::UpdateSnapshot) {
                published.push((snapshot.clone(), summarize(&snapshot)));
            }
        }
        for (s, summary) in &published {
            prop_assert_eq!(&summarize(s), summary);
        }
    }
}
