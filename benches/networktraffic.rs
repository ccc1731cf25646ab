//! NetworkTraffic on 5000 nodes: Score for every node plus NormalizeScore (the per-pod cost
//! the plugin adds to a cycle, run on one thread here), and parsing a 5000-series query answer
//! into a snapshot (the refresher's cost every refresh). Figures in `docs/benchmarks.md`.

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{CycleState, NodeInfo, NodeScore, PluginArgs, ReservePlugin, ScorePlugin};
use ksched_networktraffic::{
    EXPECTED_BANDWIDTH_ANNOTATION, NetworkTraffic, NetworkTrafficArgs, TrafficSnapshot,
    args::NodeMapping, query,
};
use prometheus_http_query::response::Data;

const NODES: usize = 5000;

fn node(i: usize) -> NodeInfo {
    let mut n = Node::default();
    n.metadata.name = Some(format!("node-{i:05}"));
    NodeInfo::new(Arc::new(n))
}

fn plugin() -> NetworkTraffic {
    let args: NetworkTrafficArgs =
        PluginArgs::from_value(serde_json::json!({"prometheusAddress": "http://prometheus:9090"}))
            .decode()
            .unwrap();
    let p = NetworkTraffic::without_refresher(&args).unwrap();
    #[allow(clippy::cast_precision_loss)]
    let rates = (0..NODES).map(|i| (format!("node-{i:05}"), (i * 7919 % 10_000) as f64 * 1e4));
    p.install_snapshot(TrafficSnapshot::from_rates(rates, 1_900_000_000));
    p
}

/// Score per node into the framework's score list (its node names are the framework's cost,
/// filled once outside the timed loop), then NormalizeScore.
fn score_all(
    p: &NetworkTraffic,
    nodes: &[NodeInfo],
    state: &CycleState,
    pod: &Pod,
    out: &mut [NodeScore],
) {
    for (n, s) in nodes.iter().zip(out.iter_mut()) {
        s.score = p.score(state, pod, n).unwrap_or(0);
    }
    let _ = p.normalize_score(state, pod, out);
}

fn score_and_normalize(c: &mut Criterion) {
    let nodes: Vec<NodeInfo> = (0..NODES).map(node).collect();
    let state = CycleState::new();
    let pod = Pod::default();
    let mut out: Vec<NodeScore> = nodes
        .iter()
        .map(|n| NodeScore {
            name: n.node_name().to_owned(),
            score: 0,
        })
        .collect();
    let mut g = c.benchmark_group("networktraffic");

    let p = plugin();
    g.bench_function("score_normalize_5000_nodes", |b| {
        b.iter(|| {
            score_all(&p, black_box(&nodes), &state, &pod, &mut out);
            black_box(&out);
        });
    });

    // A burst in flight: 200 pods reserved on 200 nodes.
    let p = plugin();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..200 {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("burst-{i}"));
        pod.metadata.annotations =
            Some([(EXPECTED_BANDWIDTH_ANNOTATION.to_owned(), "10M".to_owned())].into());
        let mut s = CycleState::new();
        rt.block_on(p.reserve(&mut s, &pod, &format!("node-{:05}", i * 25)));
    }
    g.bench_function("score_normalize_5000_nodes_200_reservations", |b| {
        b.iter(|| {
            score_all(&p, black_box(&nodes), &state, &pod, &mut out);
            black_box(&out);
        });
    });
    g.finish();
}

/// A Prometheus answer (`data` of `/api/v1/query`) with one traffic series per node.
fn answer() -> String {
    let series: Vec<String> = (0..NODES)
        .map(|i| {
            format!(
                r#"{{"metric":{{"nodename":"node-{i:05}","ksched_series":"traffic"}},"value":[1900000000,"{}.25"]}}"#,
                i * 1013
            )
        })
        .collect();
    format!(
        r#"{{"resultType":"vector","result":[{}]}}"#,
        series.join(",")
    )
}

fn parse_answer(c: &mut Criterion) {
    let body = answer();
    let mut g = c.benchmark_group("networktraffic");
    g.bench_function("parse_5000_series", |b| {
        b.iter(|| {
            let data: Data = serde_json::from_str(black_box(&body)).unwrap();
            let (snap, stats) =
                query::parse(&data, NodeMapping::Uname, "nodename", 1_900_000_000).unwrap();
            assert_eq!(stats.series, NODES);
            black_box(snap);
        });
    });
    g.finish();
}

criterion_group!(benches, score_and_normalize, parse_answer);
criterion_main!(benches);
