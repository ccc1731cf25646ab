//! End to end: ksched with NetworkTraffic, in-process, against the real control plane
//! (etcd + kube-apiserver, `ksched-testenv`) and a real Prometheus scraping one fake
//! node-exporter per fake node. A single pod lands on the quietest node; a burst of 20 pods
//! with an expected bandwidth spreads instead of piling onto it.

mod support;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use ksched::Scheduler;
use ksched_networktraffic::{EXPECTED_BANDWIDTH_ANNOTATION, NetworkTraffic, NetworkTrafficMetrics};
use ksched_testenv::{ControlPlane, NodeSpec, TestPod};
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

const RATE_WINDOW: &str = "10s";

fn plugin_args(url: &str) -> serde_json::Value {
    // A short window so that the rates are right after ten seconds of scrapes (a window that
    // Prometheus has only partly filled reads low); the burst binds within about a second, so
    // its reservations are still mostly uncovered.
    json!({"prometheusAddress": url, "refreshInterval": "1s", "rateWindow": RATE_WINDOW, "maxStaleness": "10s", "timeout": "2s"})
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scheduler not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quietest_node_first_and_a_burst_spreads() {
    init_tracing();
    let cp = ControlPlane::shared().await.expect("control plane");
    let ns = cp.namespace("nt-e2e").await.expect("namespace");
    let client = cp.client().await.expect("client");
    let scheduler_name = format!("{}-scheduler", ns.name());

    // Three nodes with equal resources and very different traffic.
    let names: Vec<String> = ["quiet", "mid", "busy"]
        .iter()
        .map(|s| format!("{}-{s}", ns.name()))
        .collect();
    let spec = NodeSpec::new()
        .cpu("32")
        .memory("128Gi")
        .pods(110)
        .label("ksched.io/nt-e2e", ns.name());
    for n in &names {
        ksched_testenv::create_node(&client, n, &spec)
            .await
            .expect("node");
    }
    let rates = [1_000.0, 50_000.0, 200_000.0];
    let mut exporters = Vec::new();
    for (n, r) in names.iter().zip(rates) {
        exporters.push(Exporter::start(FakeNode::named(n, vec![dev("eth0", r)])).await);
    }
    let targets: Vec<SocketAddr> = exporters.iter().map(|e| e.addr).collect();
    let prom = Prometheus::start(&targets).await;

    // Wait until Prometheus has all three rates (through a second instance of the plugin).
    let probe_args = args(&prom.url, plugin_args(&prom.url));
    let probe = NetworkTraffic::start(&probe_args, "probe", None, NetworkTrafficMetrics::default())
        .unwrap();
    wait_for(&probe, Duration::from_secs(40), "the three rates", |p| {
        names.iter().zip(rates).all(|(n, want)| {
            p.traffic()
                .get(n)
                .and_then(|t| t.rate)
                .is_some_and(|r| (r - want).abs() <= want * 0.1 + 1.0)
        })
    })
    .await;

    let config = json!({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": false},
        "clientConnection": {"qps": 5000, "burst": 5000},
        "profiles": [{
            "schedulerName": scheduler_name,
            "plugins": {"multiPoint": {"enabled": [{"name": "NetworkTraffic", "weight": 10}]}},
            "pluginConfig": [{"name": "NetworkTraffic", "args": plugin_args(&prom.url)}],
        }],
    });
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let scheduler = Scheduler::builder()
        .with_plugin(ksched_networktraffic::NAME, ksched_networktraffic::new)
        .with_client(client.clone())
        .with_config_yaml(config.to_string())
        .with_bind_address(http)
        .build()
        .await
        .expect("build scheduler");
    let token = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(token.clone()));
    wait_ready(http).await;
    // The scheduler's own plugin refreshes every second: give it two.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pod = |name: &str, bandwidth: Option<&str>| -> Pod {
        let mut p = TestPod::new(name)
            .cpu("100m")
            .scheduler_name(&scheduler_name)
            .node_selector("ksched.io/nt-e2e", ns.name())
            .to_pod();
        if let Some(b) = bandwidth {
            p.metadata.annotations = Some(BTreeMap::from([(
                EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
                b.to_owned(),
            )]));
        }
        p
    };

    ns.create_pod(pod("single", None)).await.expect("pod");
    let node = ns
        .wait_for_pod_bound("single", Duration::from_secs(30))
        .await
        .expect("bound");
    assert_eq!(node, names[0], "one pod goes to the quietest node");

    // 20 pods expecting 20 kB/s each: without compensation all would land on `quiet`
    // (1 kB/s against 50 and 200 kB/s); with it, each placement raises its node's load.
    for i in 0..20 {
        ns.create_pod(pod(&format!("burst-{i}"), Some("20k")))
            .await
            .expect("pod");
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..20 {
        let n = ns
            .wait_for_pod_bound(&format!("burst-{i}"), Duration::from_secs(60))
            .await
            .expect("bound");
        *per_node.entry(n).or_default() += 1;
    }
    eprintln!("burst placement: {per_node:?}");
    let on = |i: usize| per_node.get(&names[i]).copied().unwrap_or(0);
    assert!(
        per_node.len() >= 2,
        "the burst spread over several nodes: {per_node:?}"
    );
    assert!(
        on(0) < 20 && on(0) <= 14,
        "the quiet node did not take the whole burst: {per_node:?}"
    );
    assert!(
        on(0) >= on(1) && on(1) >= on(2),
        "quieter nodes still take more: {per_node:?}"
    );

    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
}
