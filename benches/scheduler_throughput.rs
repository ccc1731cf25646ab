//! In-process scheduling throughput: pods per second through `OfflineScheduler` — the real
//! queue, cache, snapshot, default-profile plugins, `schedule_one` and binding task, with an
//! in-memory Bind plugin — on **5000 nodes**, with upstream's default profile and with
//! NetworkTraffic added (scores from an installed snapshot, herd compensation at Reserve).
//! Each iteration schedules a batch of pods and reports the bindings back as the informer
//! would; building the cluster is not timed. Figures in `docs/benchmarks.md`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::{
    api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use ksched::{OfflineScheduler, Scheduler, offline::MemoryBinder};
use ksched_benches::quantities;
use ksched_framework::{Handle, Plugin, PluginArgs, pod_key};
use ksched_networktraffic::{
    EXPECTED_BANDWIDTH_ANNOTATION, NetworkTraffic, NetworkTrafficArgs, TrafficSnapshot,
};

const NODES: usize = 5000;
const ZONES: usize = 5;
/// Pods per timed batch.
const BATCH: usize = 2000;
const SCHEDULER_NAME: &str = "bench";

fn node(i: usize) -> Arc<Node> {
    let name = format!("node-{i:05}");
    Arc::new(Node {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([
                (
                    "topology.kubernetes.io/zone".to_owned(),
                    format!("zone-{}", i % ZONES),
                ),
                ("kubernetes.io/hostname".to_owned(), name.clone()),
            ])),
            name: Some(name),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(quantities(&[
                ("cpu", "32"),
                ("memory", "128Gi"),
                ("pods", "110"),
            ])),
            ..NodeStatus::default()
        }),
        ..Node::default()
    })
}

fn pod(batch: usize, i: usize) -> Arc<Pod> {
    let name = format!("pod-{batch}-{i}");
    Arc::new(Pod {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            uid: Some(format!("uid-{name}")),
            annotations: Some(BTreeMap::from([(
                EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
                "5M".to_owned(),
            )])),
            name: Some(name),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some(SCHEDULER_NAME.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    })
}

/// The scheduler with 5000 nodes, and what its binder records.
fn cluster(network_traffic: bool) -> (OfflineScheduler, MemoryBinder) {
    let bound = MemoryBinder::new();
    let mut builder = Scheduler::builder().with_plugin(MemoryBinder::NAME, bound.factory());
    // `SCHEDULER_THROUGHPUT_PARALLELISM`: Filter/Score threads (default upstream's 16).
    let parallelism =
        std::env::var("SCHEDULER_THROUGHPUT_PARALLELISM").unwrap_or_else(|_| "16".into());
    let mut profile = format!(
        "parallelism: {parallelism}\nprofiles:\n- schedulerName: {SCHEDULER_NAME}\n  plugins:\n    bind:\n      disabled: [{{name: DefaultBinder}}]\n      enabled: [{{name: MemoryBinder}}]\n"
    );
    if network_traffic {
        builder = builder.with_plugin(
            ksched_networktraffic::NAME,
            |args: &PluginArgs, _: &Arc<Handle>| {
                let args: NetworkTrafficArgs = args.decode()?;
                let p = NetworkTraffic::without_refresher(&args)
                    .map_err(|e| ksched_framework::PluginError::Other(Box::new(e)))?;
                #[allow(clippy::cast_precision_loss)]
                let rates =
                    (0..NODES).map(|i| (format!("node-{i:05}"), (i * 7919 % 10_000) as f64 * 1e4));
                p.install_snapshot(TrafficSnapshot::from_rates(rates, 1_900_000_000));
                Ok(Arc::new(p) as Arc<dyn Plugin>)
            },
        );
        profile.push_str(
            "    multiPoint:\n      enabled: [{name: NetworkTraffic, weight: 5}]\n  pluginConfig:\n  - name: NetworkTraffic\n    args: {prometheusAddress: 'http://prometheus.invalid:9090', nodeMapping: Label, nodeLabel: node}\n",
        );
    }
    let sched = builder
        .with_config_yaml(profile)
        .build_offline()
        .expect("the benchmark configuration is valid");
    for i in 0..NODES {
        sched.add_node(node(i));
    }
    (sched, bound)
}

/// Schedules one batch and reports its bindings back; returns the time it took and the bound
/// pods.
async fn schedule_batch(
    sched: &OfflineScheduler,
    bound: &MemoryBinder,
    pods: &[Arc<Pod>],
) -> (Duration, Vec<Arc<Pod>>) {
    for p in pods {
        sched.apply_pod(None, p.clone());
    }
    let start = Instant::now();
    while sched.schedule_next().await {}
    sched.wait_for_bindings().await;
    let done = bound.take();
    let by_key: std::collections::HashMap<String, &Arc<Pod>> =
        pods.iter().map(|p| (pod_key(p), p)).collect();
    let mut bound_pods = Vec::with_capacity(pods.len());
    for binding in done {
        if let Some(old) = by_key.get(&binding.pod) {
            let new = Arc::new(MemoryBinder::bound(old, &binding.node));
            sched.apply_pod(Some((*old).clone()), new.clone());
            bound_pods.push(new);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(bound_pods.len(), pods.len(), "every pod was bound");
    (elapsed, bound_pods)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut g = c.benchmark_group("scheduler_throughput");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, nt) in [
        ("default_profile", false),
        ("default_profile+networktraffic", true),
    ] {
        g.bench_function(BenchmarkId::new(name, format!("{NODES}_nodes")), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    // A fresh cluster per sample so pods do not pile up across samples.
                    let (sched, bound) = cluster(nt);
                    for it in 0..iters {
                        let batch: Vec<_> = (0..BATCH)
                            .map(|i| pod(usize::try_from(it).unwrap_or(usize::MAX), i))
                            .collect();
                        let (took, bound_pods) = schedule_batch(&sched, &bound, &batch).await;
                        total += took;
                        // Keep the cluster from filling up: remove the batch again (untimed).
                        for p in &bound_pods {
                            sched.delete_pod(p);
                        }
                    }
                    total
                })
            });
        });
    }
    g.finish();
}

/// With `SCHEDULER_THROUGHPUT_BREAKDOWN=1`: one batch per profile outside criterion
/// (`SCHEDULER_THROUGHPUT_BATCHES` for more), each with its rate, CPU time and context switches
/// per pod, then the mean time per call of each extension point and (sampled) plugin from the
/// framework's own metrics — where a cycle's time goes.
fn breakdown(_: &mut Criterion) {
    if std::env::var_os("SCHEDULER_THROUGHPUT_BREAKDOWN").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // `SCHEDULER_THROUGHPUT_BATCHES`: batches per profile (default 1); the metrics below cover
    // all of them.
    let batches: usize = std::env::var("SCHEDULER_THROUGHPUT_BATCHES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1);
    for nt in [false, true] {
        let (sched, bound) = cluster(nt);
        for b in 0..batches {
            let batch: Vec<_> = (0..BATCH).map(|i| pod(b, i)).collect();
            let before = ThreadTotals::now();
            let (took, bound_pods) = rt.block_on(schedule_batch(&sched, &bound, &batch));
            let used = ThreadTotals::now().since(&before);
            #[allow(clippy::cast_precision_loss)]
            let (rate, per_pod) = (BATCH as f64 / took.as_secs_f64(), BATCH as f64);
            println!(
                "networktraffic={nt}: {BATCH} pods in {took:?} ({rate:.0} pods/s); CPU {:.1} µs/pod, \
                 {:.2} context switches/pod",
                used.cpu.as_secs_f64() * 1e6 / per_pod,
                used.switches as f64 / per_pod,
            );
            for p in &bound_pods {
                sched.delete_pod(p);
            }
        }
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &sched.metrics_registry());
        // Sums and counts of the histograms, by label set.
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            for (suffix, slot) in [("_sum{", 0), ("_count{", 1)] {
                if let Some(i) = name.find(suffix) {
                    let key = format!("{}{{{}", &name[..i], &name[i + suffix.len()..]);
                    let e = sums.entry(key).or_default();
                    if slot == 0 { e.0 += v } else { e.1 += v }
                }
            }
        }
        for (key, (sum, count)) in sums {
            if count > 0.0
                && (key.contains("extension_point")
                    || key.contains("plugin_execution")
                    || key.contains("attempt"))
            {
                println!("  {:>10.1} µs x {count:>6}  {key}", sum / count * 1e6);
            }
        }
    }
}

/// CPU time and context switches of all the process's threads, from `/proc/self/task`: unlike
/// wall-clock time, CPU time per pod hardly depends on what else the machine runs (it still
/// does through caches), so before/after comparisons on a loaded machine rest on it.
struct ThreadTotals {
    cpu: Duration,
    switches: u64,
}

impl ThreadTotals {
    fn now() -> Self {
        let mut t = Self {
            cpu: Duration::ZERO,
            switches: 0,
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return t;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            // schedstat: nanoseconds on a CPU, nanoseconds waiting for one, timeslices.
            if let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                t.cpu += Duration::from_nanos(ns);
            }
            if let Ok(status) = std::fs::read_to_string(dir.join("status")) {
                t.switches += status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        t
    }

    /// What the threads used since `before` (threads that ended meanwhile are not counted).
    fn since(&self, before: &Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(before.cpu),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

criterion_group!(benches, breakdown, bench);
criterion_main!(benches);
