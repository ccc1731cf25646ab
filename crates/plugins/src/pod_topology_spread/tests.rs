use std::sync::Arc;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use ksched_framework::{
    Code, CycleState, FilterPlugin, Handle, NodeScore, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Snapshot, Status,
};

use super::*;
use crate::test_util::{NodeBuilder, PodBuilder, selector_of, snapshot};

const ZONE: &str = "topology.kubernetes.io/zone";

fn plugin(snap: &Arc<Snapshot>) -> PodTopologySpread {
    let handle = Arc::new(Handle::for_tests("t"));
    handle.set_snapshot(snap.clone());
    PodTopologySpread::without_listers(handle, &PodTopologySpreadArgs::default())
}

fn web(name: &str) -> PodBuilder {
    PodBuilder::new(name).label("app", "web")
}

/// Zones a (2 web pods), b (1), c (0), one node each plus node a2 in zone a.
fn zones() -> Vec<NodeBuilder> {
    vec![
        NodeBuilder::new("a1")
            .zone("a")
            .pod(web("w1"))
            .pod(web("w2")),
        NodeBuilder::new("a2").zone("a"),
        NodeBuilder::new("b1")
            .zone("b")
            .pod(web("w3"))
            .pod(PodBuilder::new("other")),
        NodeBuilder::new("c1").zone("c"),
    ]
}

async fn feasible(pl: &PodTopologySpread, snap: &Snapshot, pod: &Pod) -> Vec<(String, Status)> {
    let mut state = CycleState::new();
    let (_, s) = pl.pre_filter(&mut state, pod, snap.list()).await;
    assert!(s.is_success(), "{s}");
    snap.list()
        .iter()
        .map(|n| (n.node_name().to_owned(), pl.filter(&state, pod, n)))
        .collect()
}

#[tokio::test]
async fn skew_across_several_domains() {
    let snap = snapshot(&zones());
    let pl = plugin(&snap);
    // Counts a=2, b=1, c=0: with maxSkew 1 only zone c fits (a: 2+1-0, b: 1+1-0 = 2 > 1).
    let pod = web("new")
        .spread(1, ZONE, "DoNotSchedule", &[("app", "web")])
        .pod();
    let res = feasible(&pl, &snap, &pod).await;
    let ok: Vec<&str> = res
        .iter()
        .filter(|(_, s)| s.is_success())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(ok, ["c1"]);
    let (_, s) = &res[0];
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unschedulable,
            ERR_REASON_CONSTRAINTS_NOT_MATCH.to_owned()
        )
    );
    // maxSkew 2: zones b and c.
    let pod = web("new")
        .spread(2, ZONE, "DoNotSchedule", &[("app", "web")])
        .pod();
    let ok: Vec<String> = feasible(&pl, &snap, &pod)
        .await
        .into_iter()
        .filter(|(_, s)| s.is_success())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ok, ["b1", "c1"]);
    // A pod that does not match its own selector does not count itself.
    let pod = PodBuilder::new("new")
        .spread(1, ZONE, "DoNotSchedule", &[("app", "web")])
        .pod();
    let ok: Vec<String> = feasible(&pl, &snap, &pod)
        .await
        .into_iter()
        .filter(|(_, s)| s.is_success())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ok, ["b1", "c1"]);
}

#[tokio::test]
async fn missing_topology_label_is_unresolvable() {
    let mut nodes = zones();
    nodes.push(NodeBuilder::new("nozone"));
    let snap = snapshot(&nodes);
    let pl = plugin(&snap);
    let pod = web("new")
        .spread(5, ZONE, "DoNotSchedule", &[("app", "web")])
        .pod();
    let res = feasible(&pl, &snap, &pod).await;
    let (_, s) = res.iter().find(|(n, _)| n == "nozone").unwrap();
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::UnschedulableAndUnresolvable,
            ERR_REASON_NODE_LABEL_NOT_MATCH.to_owned()
        )
    );
}

#[tokio::test]
async fn min_domains_counts_missing_domains_as_zero() {
    // Only zones a (1 pod) and b (1 pod): the global minimum is 1, so maxSkew 1 allows both;
    // with minDomains 3 the minimum is taken as 0 and neither fits.
    let nodes = [
        NodeBuilder::new("a1").zone("a").pod(web("w1")),
        NodeBuilder::new("b1").zone("b").pod(web("w2")),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap);
    let mut c = TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE.into(),
        when_unsatisfiable: "DoNotSchedule".into(),
        label_selector: Some(selector_of(&[("app", "web")])),
        ..TopologySpreadConstraint::default()
    };
    let pod = web("new").spread_constraint(c.clone()).pod();
    assert!(
        feasible(&pl, &snap, &pod)
            .await
            .iter()
            .all(|(_, s)| s.is_success())
    );
    c.min_domains = Some(3);
    let pod = web("new").spread_constraint(c).pod();
    assert!(
        feasible(&pl, &snap, &pod)
            .await
            .iter()
            .all(|(_, s)| !s.is_success())
    );
}

#[tokio::test]
async fn node_inclusion_policies() {
    // Zone b's only node is tainted: with nodeTaintsPolicy Honor it does not count as a domain.
    let nodes = [
        NodeBuilder::new("a1").zone("a").pod(web("w1")),
        NodeBuilder::new("b1")
            .zone("b")
            .taint("dedicated", "x", "NoSchedule"),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap);
    let mut c = TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE.into(),
        when_unsatisfiable: "DoNotSchedule".into(),
        label_selector: Some(selector_of(&[("app", "web")])),
        ..TopologySpreadConstraint::default()
    };
    let ignore = web("new").spread_constraint(c.clone()).pod();
    let res = feasible(&pl, &snap, &ignore).await;
    assert!(!res[0].1.is_success(), "a: 1+1-0 > 1 while zone b counts");
    c.node_taints_policy = Some("Honor".into());
    let honor = web("new").spread_constraint(c.clone()).pod();
    assert!(
        feasible(&pl, &snap, &honor).await[0].1.is_success(),
        "zone b left out: minimum is 1"
    );
    // nodeAffinityPolicy: Honor (default) leaves out zones the pod cannot go to.
    c.node_taints_policy = None;
    let affine = web("new")
        .spread_constraint(c.clone())
        .node_selector(ZONE, "a")
        .pod();
    assert!(feasible(&pl, &snap, &affine).await[0].1.is_success());
    c.node_affinity_policy = Some("Ignore".into());
    let ignore_affinity = web("new")
        .spread_constraint(c)
        .node_selector(ZONE, "a")
        .pod();
    assert!(
        !feasible(&pl, &snap, &ignore_affinity).await[0]
            .1
            .is_success()
    );
}

#[tokio::test]
async fn match_label_keys_narrow_the_selector() {
    let nodes = [
        NodeBuilder::new("a1")
            .zone("a")
            .pod(web("w1").label("rev", "1"))
            .pod(web("w2").label("rev", "1")),
        NodeBuilder::new("b1").zone("b"),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap);
    let c = TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE.into(),
        when_unsatisfiable: "DoNotSchedule".into(),
        label_selector: Some(selector_of(&[("app", "web")])),
        match_label_keys: Some(vec!["rev".into()]),
        ..TopologySpreadConstraint::default()
    };
    // Revision 2 does not see revision 1's pods: both zones fit.
    let pod = web("new")
        .label("rev", "2")
        .spread_constraint(c.clone())
        .pod();
    assert!(
        feasible(&pl, &snap, &pod)
            .await
            .iter()
            .all(|(_, s)| s.is_success())
    );
    let pod = web("new").label("rev", "1").spread_constraint(c).pod();
    assert!(!feasible(&pl, &snap, &pod).await[0].1.is_success());
}

#[tokio::test]
async fn add_and_remove_pod_update_counts() {
    let snap = snapshot(&zones());
    let pl = plugin(&snap);
    let pod = web("new")
        .spread(1, ZONE, "DoNotSchedule", &[("app", "web")])
        .pod();
    let mut state = CycleState::new();
    assert!(
        pl.pre_filter(&mut state, &pod, snap.list())
            .await
            .1
            .is_success()
    );
    let c1 = snap.get("c1").unwrap().clone();
    let b1 = snap.get("b1").unwrap().clone();
    // Adding a web pod to zone c makes c (1+1-1) fit and b (1+1-1) fit too.
    let ext = pl.pre_filter_extensions().unwrap();
    assert!(
        ext.add_pod(&mut state, &pod, &web("n1").info(), &c1)
            .is_success()
    );
    assert!(pl.filter(&state, &pod, &b1).is_success());
    // Removing the zone-b pod makes b the minimum (0): c (1+1-0) no longer fits.
    assert!(
        ext.remove_pod(&mut state, &pod, &web("w3").info(), &b1)
            .is_success()
    );
    assert!(!pl.filter(&state, &pod, &c1).is_success());
    assert!(pl.filter(&state, &pod, &b1).is_success());
    // Pods of other namespaces are ignored.
    assert!(
        ext.add_pod(&mut state, &pod, &web("x").ns("other").info(), &b1)
            .is_success()
    );
    assert!(pl.filter(&state, &pod, &b1).is_success());
}

#[tokio::test]
async fn score_prefers_less_crowded_domains() {
    let snap = snapshot(&zones());
    let pl = plugin(&snap);
    let pod = web("new")
        .spread(1, ZONE, "ScheduleAnyway", &[("app", "web")])
        .pod();
    let mut state = CycleState::new();
    // No DoNotSchedule constraint: PreFilter skips.
    assert!(
        pl.pre_filter(&mut state, &pod, snap.list())
            .await
            .1
            .is_skip()
    );
    assert!(
        pl.pre_score(&mut state, &pod, snap.list())
            .await
            .is_success()
    );
    let mut scores: Vec<NodeScore> = snap
        .list()
        .iter()
        .map(|n| NodeScore {
            name: n.node_name().into(),
            score: pl.score(&state, &pod, n).unwrap(),
        })
        .collect();
    // 3 zones: weight ln 5 ≈ 1.609; raw = count · w, rounded: a 3, b 2, c 0.
    assert_eq!(
        scores.iter().map(|s| s.score).collect::<Vec<_>>(),
        [3, 3, 2, 0]
    );
    assert!(pl.normalize_score(&state, &pod, &mut scores).is_success());
    assert_eq!(
        scores.iter().map(|s| s.score).collect::<Vec<_>>(),
        [0, 0, 33, 100]
    );
    // Nothing to score without soft constraints or a default selector.
    assert!(
        pl.pre_score(&mut CycleState::new(), &web("x").pod(), snap.list())
            .await
            .is_skip()
    );
}

#[test]
fn args_validation() {
    let handle = Arc::new(Handle::for_tests("t"));
    let args = |v: serde_json::Value| new(&PluginArgs::from_value(v), &handle);
    assert!(args(serde_json::json!({})).is_ok());
    assert!(args(serde_json::json!({"defaultingType": "List", "defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]})).is_ok());
    assert!(args(serde_json::json!({"defaultingType": "System", "defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]})).is_err());
    assert!(args(serde_json::json!({"defaultingType": "List", "defaultConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]})).is_err());
    assert!(args(serde_json::json!({"defaultingType": "Other"})).is_err());
}
