//! NetworkTraffic against a real Prometheus (Debian's `prometheus`; `scripts/install-prometheus.sh`
//! installs it) scraping fake node-exporters every second, with a 5 s rate window.

mod support;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus, Pod};
use ksched_framework::{CycleState, NodeInfo, NodeScore, ScorePlugin};
use ksched_networktraffic::{NetworkTraffic, NetworkTrafficMetrics, metrics::ErrorLabels};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn node(name: &str) -> NodeInfo {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    NodeInfo::new(Arc::new(n))
}

fn node_with_ip(name: &str, ip: &str) -> NodeInfo {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: ip.into(),
        }]),
        ..NodeStatus::default()
    });
    NodeInfo::new(Arc::new(n))
}

/// Score + NormalizeScore over `nodes`, as the framework runs them.
fn scores(p: &NetworkTraffic, nodes: &[NodeInfo]) -> Vec<i64> {
    let state = CycleState::new();
    let pod = Pod::default();
    let mut s: Vec<NodeScore> = nodes
        .iter()
        .map(|n| NodeScore {
            name: n.node_name().to_owned(),
            score: p.score(&state, &pod, n).expect("Score never fails"),
        })
        .collect();
    assert!(p.normalize_score(&state, &pod, &mut s).is_success());
    s.into_iter().map(|s| s.score).collect()
}

/// Scores equal to `want` within ±2 (rates measured by Prometheus jitter a little).
#[track_caller]
fn assert_scores(got: &[i64], want: &[i64]) {
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 2),
        "scores {got:?}, want ≈ {want:?}"
    );
}

fn rate(p: &NetworkTraffic, key: &str) -> Option<f64> {
    p.traffic().get(key).and_then(|t| t.rate)
}

fn near(v: Option<f64>, want: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= want * 0.1 + 1.0)
}

fn start(args: &ksched_networktraffic::NetworkTrafficArgs) -> NetworkTraffic {
    NetworkTraffic::start(args, "test", None, NetworkTrafficMetrics::default())
        .expect("plugin starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_follow_the_rates_through_the_uname_join() {
    init_tracing();
    // node_uname_info's nodename is how series find their node: the targets are 127.0.0.1:<port>.
    let quiet = Exporter::start(FakeNode::named("node-quiet", vec![dev("eth0", 1_000.0)])).await;
    let mid = Exporter::start(FakeNode::named("node-mid", vec![dev("eth0", 50_000.0)])).await;
    let busy = Exporter::start(FakeNode::named("node-busy", vec![dev("eth0", 200_000.0)])).await;
    let prom = Prometheus::start(&[quiet.addr, mid.addr, busy.addr]).await;
    let p = start(&args(&prom.url, json!({})));

    wait_for(&p, WAIT, "the three rates", |p| {
        near(rate(p, "node-quiet"), 1_000.0)
            && near(rate(p, "node-mid"), 50_000.0)
            && near(rate(p, "node-busy"), 200_000.0)
    })
    .await;
    let nodes = [
        node("node-quiet"),
        node("node-mid"),
        node("node-busy"),
        node("node-unscraped"),
    ];
    let s = scores(&p, &nodes);
    assert!(
        s[0] > s[1] && s[1] > s[2],
        "less traffic must score higher: {s:?}"
    );
    // 100 × (max − rate) / max, and a node without data is neutral.
    assert_scores(&s, &[100, 75, 0, 50]);
    assert_eq!(p.traffic().nodes_with_rate(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_devices_do_not_count_and_directions_add_up() {
    init_tracing();
    let mut a_devices = vec![
        dev("eth0", 1_000.0),
        dev("veth1a2b", 1e6),
        dev("lo", 1e7),
        dev("cali123", 1e6),
        dev("docker0", 1e6),
    ];
    a_devices[0].tx_per_sec = 400_000.0;
    let a = Exporter::start(FakeNode::named("a", a_devices)).await;
    let b = Exporter::start(FakeNode::named(
        "b",
        vec![dev("eth0", 100_000.0), dev("ens5", 10_000.0)],
    ))
    .await;
    let prom = Prometheus::start(&[a.addr, b.addr]).await;

    let default = start(&args(&prom.url, json!({})));
    wait_for(&default, WAIT, "physical NICs only", |p| {
        near(rate(p, "a"), 1_000.0) && near(rate(p, "b"), 110_000.0)
    })
    .await;
    assert_scores(&scores(&default, &[node("a"), node("b")]), &[99, 0]);

    // Counting lo too makes `a` the busy one.
    let with_lo = start(&args(
        &prom.url,
        json!({"excludeDeviceRegex": "veth.*|cali.*|docker.*"}),
    ));
    wait_for(&with_lo, WAIT, "lo counted", |p| {
        near(rate(p, "a"), 1e7 + 1_000.0)
    })
    .await;
    assert_scores(&scores(&with_lo, &[node("a"), node("b")]), &[0, 99]);

    // An include regex: only eth*.
    let eth_only = start(&args(&prom.url, json!({"deviceRegex": "eth\\d+"})));
    wait_for(&eth_only, WAIT, "eth only", |p| {
        near(rate(p, "b"), 100_000.0)
    })
    .await;

    // Both directions: a's transmit counts.
    let both = start(&args(&prom.url, json!({"direction": "Both"})));
    wait_for(&both, WAIT, "rx + tx", |p| {
        near(rate(p, "a"), 401_000.0) && near(rate(p, "b"), 110_000.0)
    })
    .await;
    assert_scores(&scores(&both, &[node("a"), node("b")]), &[0, 73]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ip_and_label_mappings() {
    init_tracing();
    let labelled = |name: &str, ip: [u8; 4], rx: f64| FakeNode {
        nodename: None,
        counter_labels: vec![("node".into(), name.into())],
        devices: vec![dev("eth0", rx)],
        extra: String::new(),
        ip: Some(Ipv4Addr::from(ip)),
    };
    let w2 = Exporter::start(labelled("worker-2", [127, 0, 0, 2], 30_000.0)).await;
    let w3 = Exporter::start(labelled("worker-3", [127, 0, 0, 3], 10_000.0)).await;
    let prom = Prometheus::start(&[w2.addr, w3.addr]).await;

    let by_ip = start(&args(&prom.url, json!({"nodeMapping": "InternalIP"})));
    wait_for(&by_ip, WAIT, "rates by IP", |p| {
        near(rate(p, "127.0.0.2"), 30_000.0) && near(rate(p, "127.0.0.3"), 10_000.0)
    })
    .await;
    let nodes = [
        node_with_ip("worker-2", "127.0.0.2"),
        node_with_ip("worker-3", "127.0.0.3"),
        node_with_ip("worker-4", "127.0.0.4"),
    ];
    assert_scores(&scores(&by_ip, &nodes), &[0, 67, 50]);

    let by_label = start(&args(
        &prom.url,
        json!({"nodeMapping": "Label", "nodeLabel": "node"}),
    ));
    wait_for(&by_label, WAIT, "rates by node label", |p| {
        near(rate(p, "worker-2"), 30_000.0) && near(rate(p, "worker-3"), 10_000.0)
    })
    .await;
    assert_scores(
        &scores(&by_label, &[node("worker-2"), node("worker-3")]),
        &[0, 67],
    );

    // The uname join finds nothing here (no node_uname_info): every node neutral, no error.
    let by_uname = start(&args(&prom.url, json!({})));
    let summary = by_uname
        .refresh_now()
        .await
        .expect("an empty answer is not an error");
    assert_eq!(summary.nodes_with_data, 0);
    assert_eq!(
        scores(&by_uname, &[node("worker-2"), node("worker-3")]),
        [50, 50]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_exporter_stops_goes_neutral() {
    init_tracing();
    let labelled = |name: &str, rx: f64| FakeNode {
        nodename: Some(name.into()),
        counter_labels: vec![("node".into(), name.into())],
        devices: vec![dev("eth0", rx)],
        ..FakeNode::default()
    };
    let steady = Exporter::start(labelled("steady", 5_000.0)).await;
    let dying = Exporter::start(labelled("dying", 50_000.0)).await;
    let prom = Prometheus::start(&[steady.addr, dying.addr]).await;
    // A 20 s window would keep a dead target's rate for 20 s; maxStaleness 3 s must cut it.
    let p = start(&args(
        &prom.url,
        json!({"nodeMapping": "Label", "nodeLabel": "node", "rateWindow": "20s", "maxStaleness": "3s"}),
    ));
    wait_for(&p, WAIT, "both nodes", |p| {
        near(rate(p, "steady"), 5_000.0) && near(rate(p, "dying"), 50_000.0)
    })
    .await;
    assert_scores(&scores(&p, &[node("steady"), node("dying")]), &[90, 0]);

    dying.stop();
    let stopped = std::time::Instant::now();
    wait_for(
        &p,
        Duration::from_secs(15),
        "the stopped node to drop out",
        |p| rate(p, "dying").is_none(),
    )
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(12),
        "dropped after {:?}, not after maxStaleness",
        stopped.elapsed()
    );
    assert!(rate(&p, "steady").is_some());
    assert_eq!(scores(&p, &[node("steady"), node("dying")]), [100, 50]);

    // With the uname join the node disappears as soon as its scrape fails (staleness marker).
    let joined = start(&args(&prom.url, json!({})));
    joined.refresh_now().await.expect("query works");
    assert!(rate(&joined, "dying").is_none() && rate(&joined, "steady").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_outage_scores_every_node_neutral() {
    init_tracing();
    let a = Exporter::start(FakeNode::named("a", vec![dev("eth0", 1_000.0)])).await;
    let b = Exporter::start(FakeNode::named("b", vec![dev("eth0", 9_000.0)])).await;
    let mut prom = Prometheus::start(&[a.addr, b.addr]).await;
    let metrics = NetworkTrafficMetrics::default();
    let p = NetworkTraffic::start(
        &args(&prom.url, json!({"maxStaleness": "3s"})),
        "outage",
        None,
        metrics.clone(),
    )
    .unwrap();
    wait_for(&p, WAIT, "data", |p| {
        near(rate(p, "a"), 1_000.0) && near(rate(p, "b"), 9_000.0)
    })
    .await;
    assert_scores(&scores(&p, &[node("a"), node("b")]), &[89, 0]);

    prom.kill();
    let e = p.refresh_now().await.expect_err("Prometheus is gone");
    assert_eq!(e.kind(), "connect", "{e}");
    // Until the data is maxStaleness old it is still used (a blip does not reshuffle scores)…
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    // …then dropped: every node scores the same, and Score still does not fail.
    p.expire_if_stale();
    assert!(p.traffic().is_empty());
    assert_eq!(scores(&p, &[node("a"), node("b")]), [50, 50]);
    let errors = metrics
        .refresh_errors
        .get_or_create(&ErrorLabels {
            profile: "outage".into(),
            kind: "connect",
        })
        .get();
    assert!(errors >= 1, "connect errors counted: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_inf_and_negative_samples_score_neutral() {
    init_tracing();
    let extra = "# TYPE my_node_traffic gauge\nmy_node_traffic{node=\"nan\"} NaN\nmy_node_traffic{node=\"inf\"} +Inf\nmy_node_traffic{node=\"neg\"} -5\nmy_node_traffic{node=\"ok\"} 100\nmy_node_traffic{node=\"busy\"} 400\n";
    let e = Exporter::start(FakeNode {
        extra: extra.into(),
        ..FakeNode::default()
    })
    .await;
    let prom = Prometheus::start(&[e.addr]).await;
    // A custom query, labelled with the node name directly.
    let p = start(&args(
        &prom.url,
        json!({"query": "my_node_traffic", "nodeMapping": "Label", "nodeLabel": "node"}),
    ));
    wait_for(&p, WAIT, "the gauges", |p| rate(p, "ok").is_some()).await;
    let summary = p.refresh_now().await.unwrap();
    assert_eq!(summary.stats.invalid, 3, "{summary:?}");
    assert_eq!(
        scores(
            &p,
            &[
                node("nan"),
                node("inf"),
                node("neg"),
                node("ok"),
                node("busy")
            ]
        ),
        [50, 50, 50, 75, 0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_prometheus_rejects_is_a_refresh_error() {
    init_tracing();
    let e = Exporter::start(FakeNode::named("a", vec![dev("eth0", 1.0)])).await;
    let prom = Prometheus::start(&[e.addr]).await;
    let p = start(&args(
        &prom.url,
        json!({"query": "rate(node_network_receive_bytes_total[5s]"}),
    ));
    let err = p.refresh_now().await.expect_err("syntax error");
    assert_eq!(err.kind(), "prometheus", "{err}");
    assert!(err.to_string().contains("parse error"), "{err}");
    assert_eq!(scores(&p, &[node("a")]), [50]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_through_a_checking_proxy_and_rotation() {
    init_tracing();
    // Prometheus' web config has no bearer tokens (basic auth and client certificates only),
    // so a proxy in front of it checks `Authorization: Bearer …`, as an auth proxy would.
    let e = Exporter::start(FakeNode::named("a", vec![dev("eth0", 2_000.0)])).await;
    let prom = Prometheus::start(&[e.addr]).await;
    let proxy = BearerProxy::start(&prom.url, "token-one").await;
    let dir = TempDir::new("bearer");
    let token_file = dir.file("token", "token-one\n");
    let p = start(&args(&proxy.url, json!({"bearerTokenFile": token_file})));
    wait_for(&p, WAIT, "data through the proxy", |p| {
        near(rate(p, "a"), 2_000.0)
    })
    .await;

    // The token rotates: the proxy wants the new one before the file has it.
    proxy.set_token("token-two");
    let err = p.refresh_now().await.expect_err("old token rejected");
    assert_eq!(err.kind(), "http_status", "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !err.to_string().contains("token-one"),
        "secrets never in errors: {err}"
    );
    std::fs::write(&token_file, "token-two").unwrap();
    p.refresh_now()
        .await
        .expect("the new token is read from the file");
    assert!(proxy.unauthorized_requests() >= 1);
}

/// bcrypt (cost 4) of `s3cret-pw`, for Prometheus' `basic_auth_users`.
const BCRYPT_S3CRET_PW: &str = "$2b$04$abcdefghijklmnopqrstuufbu7IbsAKnz0sK.RhkuQd5ApLvLcZVy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_prometheus_web_config() {
    init_tracing();
    let e = Exporter::start(FakeNode::named("a", vec![dev("eth0", 3_000.0)])).await;
    let web = format!("basic_auth_users:\n  ksched: '{BCRYPT_S3CRET_PW}'\n");
    let prom = Prometheus::start_with(
        &[e.addr],
        PrometheusOptions {
            web_config: Some(web),
        },
    )
    .await;
    let dir = TempDir::new("basic");
    let good = dir.file("good", "s3cret-pw\n");
    let bad = dir.file("bad", "wrong");

    let p = start(&args(
        &prom.url,
        json!({"basicAuth": {"username": "ksched", "passwordFile": good}}),
    ));
    wait_for(&p, WAIT, "data with basic auth", |p| {
        near(rate(p, "a"), 3_000.0)
    })
    .await;

    let denied = start(&args(
        &prom.url,
        json!({"basicAuth": {"username": "ksched", "passwordFile": bad}}),
    ));
    let err = denied.refresh_now().await.expect_err("wrong password");
    assert_eq!(err.kind(), "http_status", "{err}");
    let none = start(&args(&prom.url, json!({})));
    assert_eq!(
        none.refresh_now().await.expect_err("no credentials").kind(),
        "http_status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_garbage_and_empty_answers() {
    init_tracing();
    let slow = CannedServer::start(200, "application/json", "{}", Duration::from_secs(5)).await;
    let p = start(&args(&slow.url, json!({"timeout": "500ms"})));
    let t = std::time::Instant::now();
    assert_eq!(p.refresh_now().await.expect_err("slow").kind(), "timeout");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "bounded by the timeout: {:?}",
        t.elapsed()
    );

    let html = CannedServer::start(200, "text/html", "<html>login</html>", Duration::ZERO).await;
    let p = start(&args(&html.url, json!({})));
    assert_eq!(p.refresh_now().await.expect_err("html").kind(), "decode");

    let truncated = CannedServer::start(
        200,
        "application/json",
        "{\"status\":\"success\",\"data\":{\"resultType\":\"vec",
        Duration::ZERO,
    )
    .await;
    let p = start(&args(&truncated.url, json!({})));
    assert_eq!(
        p.refresh_now().await.expect_err("truncated").kind(),
        "decode"
    );

    let bad_gateway = CannedServer::start(502, "text/plain", "bad gateway", Duration::ZERO).await;
    let p = start(&args(&bad_gateway.url, json!({})));
    assert_eq!(
        p.refresh_now().await.expect_err("502").kind(),
        "http_status"
    );

    let empty = CannedServer::start(
        200,
        "application/json",
        "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}",
        Duration::ZERO,
    )
    .await;
    let p = start(&args(&empty.url, json!({})));
    assert_eq!(
        p.refresh_now()
            .await
            .expect("empty is an answer")
            .nodes_with_data,
        0
    );
    assert_eq!(scores(&p, &[node("a"), node("b")]), [50, 50]);

    let refused = start(&args("http://127.0.0.1:1", json!({})));
    assert_eq!(
        refused.refresh_now().await.expect_err("refused").kind(),
        "connect"
    );
}
