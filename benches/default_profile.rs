//! One scheduling cycle of the default profile (`Framework::schedule_pod`: PreFilter, Filter
//! with early stop, PreScore, Score, NormalizeScore, host selection) for one pod over 5000
//! nodes with 30 pods each, in-process. Figures in `docs/benchmarks.md` ("Default profile").
//!
//! `KSCHED_BENCH_PARALLELISM` sets the Filter/Score threads (default 16, the configuration
//! default).

use std::{collections::BTreeMap, hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::{
    api::core::v1::{
        Affinity, Container, Node, NodeSpec, NodeStatus, Pod, PodAffinityTerm, PodAntiAffinity,
        PodSpec, ResourceRequirements, Taint, TopologySpreadConstraint, WeightedPodAffinityTerm,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use ksched_benches::quantities;
use ksched_framework::{
    CycleState, Framework, Handle, NodeInfo, PodInfo, Snapshot,
    config::{KubeSchedulerConfiguration, SchedulerConfig},
    runtime::{FrameworkOptions, Parallelizer},
};

const NODES: usize = 5000;
const PODS_PER_NODE: usize = 30;
const ZONES: usize = 10;
const APPS: usize = 50;

fn labels(items: &[(&str, String)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn node(i: usize) -> Arc<Node> {
    let name = format!("node-{i}");
    Arc::new(Node {
        metadata: ObjectMeta {
            labels: Some(labels(&[
                ("kubernetes.io/hostname", name.clone()),
                ("topology.kubernetes.io/zone", format!("zone-{}", i % ZONES)),
            ])),
            name: Some(name),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            // Every 20th node is tainted: TaintToleration does real work.
            taints: i.is_multiple_of(20).then(|| {
                vec![Taint {
                    key: "dedicated".into(),
                    value: Some("batch".into()),
                    effect: "NoSchedule".into(),
                    time_added: None,
                }]
            }),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            allocatable: Some(quantities(&[
                ("cpu", "32"),
                ("memory", "128Gi"),
                ("pods", "110"),
            ])),
            ..NodeStatus::default()
        }),
    })
}

fn pod(name: String, app: usize, node: Option<String>, cpu: &str, mem: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some("default".into()),
            labels: Some(labels(&[("app", format!("app-{app}"))])),
            uid: None,
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node,
            containers: vec![Container {
                name: "c".into(),
                image: Some(format!("registry.example/app-{app}:1")),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", cpu), ("memory", mem)])),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn snapshot() -> Arc<Snapshot> {
    let infos: Vec<NodeInfo> = (0..NODES)
        .map(|i| {
            let n = node(i);
            let mut info = NodeInfo::new(n);
            for j in 0..PODS_PER_NODE {
                let app = (i * PODS_PER_NODE + j) % APPS;
                // Uneven load so that scores differ between nodes.
                let cpu = format!("{}m", 100 + (i * 7 + j * 13) % 400);
                let p = pod(
                    format!("p-{i}-{j}"),
                    app,
                    Some(format!("node-{i}")),
                    &cpu,
                    "512Mi",
                );
                info.add_pod(Arc::new(PodInfo::new(Arc::new(p))));
            }
            info
        })
        .collect();
    Arc::new(Snapshot::from_node_infos(infos))
}

fn framework(snapshot: Arc<Snapshot>) -> Arc<Framework> {
    let registry = ksched_plugins::in_tree_registry();
    let config = SchedulerConfig::from_raw(KubeSchedulerConfiguration::default(), &registry)
        .expect("config");
    let parallelism = std::env::var("KSCHED_BENCH_PARALLELISM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(config.parallelism);
    let handle = Arc::new(Handle::for_tests("default-scheduler"));
    handle.set_snapshot(snapshot);
    let options = FrameworkOptions {
        percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
        parallelizer: Parallelizer::new(parallelism).expect("threads"),
        metrics: None,
    };
    Framework::new(&config.profiles[0], &registry, handle, options).expect("framework")
}

/// A pod with topology spread and preferred pod anti-affinity: PodTopologySpread and
/// InterPodAffinity walk every node in PreFilter/PreScore.
fn spread_pod() -> Pod {
    let mut p = pod("spread".into(), 7, None, "250m", "256Mi");
    if let Some(spec) = p.spec.as_mut() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "app-7".into())])),
            match_expressions: None,
        };
        spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(selector.clone()),
            ..TopologySpreadConstraint::default()
        }]);
        spec.affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(selector),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        });
    }
    p
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let fw = framework(snap);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let plain = pod("plain".into(), 3, None, "250m", "256Mi");
    let spread = spread_pod();
    let mut g = c.benchmark_group("default_profile");
    g.measurement_time(Duration::from_secs(10));
    for (name, p) in [
        ("plain_pod_5000x30", &plain),
        ("spread_anti_affinity_pod_5000x30", &spread),
    ] {
        // Sanity: the cycle finds a host.
        let mut state = CycleState::new();
        rt.block_on(fw.schedule_pod(&mut state, p))
            .expect("schedulable");
        if std::env::var_os("KSCHED_BENCH_PHASES").is_some() {
            let snap = fw.handle().snapshot();
            let nodes: Vec<_> = snap.list().iter().take(500).cloned().collect();
            let mut st = CycleState::new();
            let t = std::time::Instant::now();
            let _ = rt.block_on(fw.run_pre_filter_plugins(&mut st, p, snap.list()));
            eprintln!("{name}: prefilter {:?}", t.elapsed());
            for pl in fw.plugins() {
                if let Some(ps) = pl.as_pre_score() {
                    let t = std::time::Instant::now();
                    let s = rt.block_on(ps.pre_score(&mut st, p, &nodes));
                    eprintln!(
                        "{name}: prescore {} {:?} {}",
                        pl.name(),
                        t.elapsed(),
                        s.code()
                    );
                }
            }
            let t = std::time::Instant::now();
            let _ = fw.run_score_plugins(&st, p, &nodes);
            eprintln!("{name}: score {:?}", t.elapsed());
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut state = CycleState::new();
                black_box(
                    rt.block_on(fw.schedule_pod(&mut state, black_box(p)))
                        .expect("schedulable"),
                )
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
