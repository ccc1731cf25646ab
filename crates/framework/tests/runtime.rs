//! The runtime: plugin order per extension point, parallel Filter, host selection, Permit.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    Code, CycleState, FilterPlugin, Framework, Handle, NodeInfo, NodePluginScores, Plugin,
    PluginArgs, ScorePlugin, Snapshot, Status,
    config::SchedulerConfig,
    runtime::{FrameworkOptions, Parallelizer, ScheduleError, select_host},
};

fn framework(yaml: &str, registry: &ksched_framework::Registry) -> Arc<Framework> {
    let cfg = SchedulerConfig::from_yaml(yaml, None, registry).unwrap();
    let opts = FrameworkOptions {
        percentage_of_nodes_to_score: cfg.percentage_of_nodes_to_score,
        parallelizer: Parallelizer::new(4).unwrap(),
        metrics: None,
    };
    Framework::new(
        &cfg.profiles[0],
        registry,
        Arc::new(Handle::for_tests("default-scheduler")),
        opts,
    )
    .unwrap()
}

const ORDER_CONFIG: &str = r#"
profiles:
- plugins:
    multiPoint:
      enabled: [{name: Probe1}, {name: Probe2, weight: 3}, {name: Probe3}]
    filter:
      enabled: [{name: Probe4}, {name: Probe3}]
      disabled: [{name: Probe2}]
    score:
      enabled: [{name: Probe3, weight: 7}]
"#;

#[test]
fn order_per_extension_point() {
    let log = common::Log::default();
    let fw = framework(ORDER_CONFIG, &common::registry(&log));
    let plugins: HashMap<_, _> = fw.list_plugins().into_iter().collect();
    // Filter: re-configured MultiPoint plugin first, then MultiPoint-only, then other explicit.
    assert_eq!(plugins["filter"], ["Probe3", "Probe1", "Probe4"]);
    assert_eq!(plugins["preFilter"], ["Probe1", "Probe2", "Probe3"]);
    assert_eq!(plugins["score"], ["Probe3", "Probe1", "Probe2"]);
    assert_eq!(plugins["queueSort"], ["PrioritySort"]);
    assert_eq!(
        plugins["bind"],
        ["DefaultBinder", "Probe1", "Probe2", "Probe3"]
    );
    let weights: HashMap<_, _> = fw.score_weights().into_iter().collect();
    assert_eq!(weights["Probe3"], 7);
    assert_eq!(weights["Probe2"], 3);
    assert_eq!(weights["Probe1"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_order_and_reverse_unreserve() {
    let log = common::Log::default();
    let reg = common::registry(&log);
    let fw = framework(
        "profiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Probe1}, {name: Probe2}]\n",
        &reg,
    );
    let pod = common::pod("p");
    fw.handle()
        .set_snapshot(Arc::new(Snapshot::from_node_infos(vec![
            common::node("n1"),
            common::node("n2"),
        ])));
    let mut state = CycleState::new();
    let r = fw.schedule_pod(&mut state, &pod).await.unwrap();
    assert!(r.suggested_host == "n1" || r.suggested_host == "n2");
    assert_eq!(r.feasible_nodes, 2);
    assert!(
        fw.run_reserve_plugins_reserve(&mut state, &pod, &r.suggested_host)
            .await
            .is_success()
    );
    fw.run_reserve_plugins_unreserve(&mut state, &pod, &r.suggested_host)
        .await;
    assert!(
        fw.run_permit_plugins(&state, &pod, &r.suggested_host)
            .await
            .is_success()
    );
    assert!(
        fw.run_pre_bind_plugins(&state, &pod, &r.suggested_host)
            .await
            .is_success()
    );
    // DefaultBinder binds first; the probes (which skip) are not asked.
    assert!(
        fw.run_bind_plugins(&state, &pod, &r.suggested_host)
            .await
            .is_success()
    );
    fw.run_post_bind_plugins(&state, &pod, &r.suggested_host)
        .await;
    let calls: Vec<String> = log
        .lock()
        .iter()
        .filter(|c| !c.ends_with(".Filter") && !c.ends_with(".Score"))
        .cloned()
        .collect();
    assert_eq!(
        calls,
        [
            "Probe1.PreFilter",
            "Probe2.PreFilter",
            "Probe1.PreScore",
            "Probe2.PreScore",
            "Probe1.Reserve",
            "Probe2.Reserve",
            "Probe2.Unreserve",
            "Probe1.Unreserve",
            "Probe1.Permit",
            "Probe2.Permit",
            "Probe1.PreBind",
            "Probe2.PreBind",
            "Probe1.PostBind",
            "Probe2.PostBind",
        ]
    );
    // Filter ran both plugins, in order, on each node.
    let filters: Vec<String> = log
        .lock()
        .iter()
        .filter(|c| c.ends_with(".Filter"))
        .cloned()
        .collect();
    assert_eq!(filters.len(), 4);
}

/// Rejects nodes whose number is divisible by 3 or 7.
struct Picky;
impl Plugin for Picky {
    fn name(&self) -> &str {
        "Picky"
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
fn num(node: &NodeInfo) -> u64 {
    node.node_name().trim_start_matches('n').parse().unwrap()
}
impl FilterPlugin for Picky {
    fn filter(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Status {
        let n = num(node);
        if n.is_multiple_of(3) {
            Status::unschedulable("node(s) divisible by three")
        } else if n.is_multiple_of(7) {
            Status::unresolvable("node(s) divisible by seven")
        } else {
            Status::success()
        }
    }
}
impl ScorePlugin for Picky {
    fn score(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        Ok(i64::try_from(num(node) % 101).unwrap())
    }
}

fn picky_registry() -> ksched_framework::Registry {
    let log = common::Log::default();
    let mut reg = common::registry(&log);
    reg.register("Picky", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(Picky) as Arc<dyn Plugin>)
    })
    .unwrap();
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_filter_matches_sequential() {
    let reg = picky_registry();
    let fw = framework(
        "percentageOfNodesToScore: 100\nprofiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Picky}]\n",
        &reg,
    );
    let nodes: Vec<NodeInfo> = (1..=3000).map(|i| common::node(&format!("n{i}"))).collect();
    let expected: Vec<String> = nodes
        .iter()
        .filter(|n| !num(n).is_multiple_of(3) && !num(n).is_multiple_of(7))
        .map(|n| n.node_name().to_owned())
        .collect();
    let snapshot = Arc::new(Snapshot::from_node_infos(nodes));
    fw.handle().set_snapshot(snapshot.clone());
    let pod = common::pod("p");
    for _ in 0..3 {
        let state = CycleState::new();
        let mut d = ksched_framework::runtime::Diagnosis::default();
        let feasible = fw
            .find_nodes_that_pass_filters(&state, &pod, &mut d, snapshot.list(), snapshot.len())
            .unwrap();
        let mut got: Vec<String> = feasible.iter().map(|n| n.node_name().to_owned()).collect();
        got.sort_by_key(|n| n.trim_start_matches('n').parse::<u64>().unwrap());
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "feasible sets differ");
        assert_eq!(d.node_to_status.len(), 3000 - expected.len());
        assert!(d.unschedulable_plugins.contains("Picky"));
    }
    // The whole cycle picks the best-scoring feasible node (score = n % 101, max 100).
    let mut state = CycleState::new();
    let r = fw.schedule_pod(&mut state, &pod).await.unwrap();
    assert_eq!(
        r.suggested_host
            .trim_start_matches('n')
            .parse::<u64>()
            .unwrap()
            % 101,
        100
    );
}

/// Nodes n1 … n1000.
fn thousand_nodes() -> Arc<Snapshot> {
    let nodes: Vec<NodeInfo> = (1..=1000).map(|i| common::node(&format!("n{i}"))).collect();
    Arc::new(Snapshot::from_node_infos(nodes))
}

/// One Filter pass of a plain pod over `snapshot`: the feasible nodes and the diagnosis.
fn filter_once(
    fw: &Framework,
    snapshot: &Snapshot,
) -> (Vec<Arc<NodeInfo>>, ksched_framework::runtime::Diagnosis) {
    let mut d = ksched_framework::runtime::Diagnosis::default();
    let feasible = fw
        .find_nodes_that_pass_filters(
            &CycleState::new(),
            &common::pod("p"),
            &mut d,
            snapshot.list(),
            snapshot.len(),
        )
        .unwrap();
    (feasible, d)
}

/// Rejects nodes divisible by 5 through its own `filter_nodes`, reporting them last first and
/// each twice (the runtime keeps the first status per node and does not rely on the order).
struct Fives;
impl Plugin for Fives {
    fn name(&self) -> &str {
        "Fives"
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}
impl FilterPlugin for Fives {
    fn filter(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Status {
        if num(node).is_multiple_of(5) {
            Status::unschedulable("node(s) divisible by five")
        } else {
            Status::success()
        }
    }
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        for (i, node) in nodes.iter().enumerate().rev() {
            let s = self.filter(state, pod, node);
            if !s.is_success() {
                rejected.push((i, s.clone()));
                rejected.push((i, Status::unschedulable("reported twice")));
            }
        }
    }
}

/// Filter chunk by chunk, plugin by plugin: a node's status is its first rejecting plugin's,
/// and an early stop still evaluates exactly a prefix of the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_filter_keeps_first_rejection_and_prefix() {
    let mut reg = picky_registry();
    reg.register("Fives", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(Fives) as Arc<dyn Plugin>)
    })
    .unwrap();
    let fw = framework(
        "profiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Picky}, {name: Fives}]\n",
        &reg,
    );
    let snapshot = thousand_nodes();
    let (feasible, d) = filter_once(&fw, &snapshot);
    assert_eq!(feasible.len(), 420, "42 % of 1000 nodes");
    let ok = |n: u64| !(n.is_multiple_of(3) || n.is_multiple_of(5) || n.is_multiple_of(7));
    let nums: Vec<u64> = feasible.iter().map(|n| num(n)).collect();
    assert!(nums.iter().all(|&n| ok(n)));
    // The first cycle starts at n1: the 420 first feasible nodes, and the rejections before
    // the 421st (where a sequential scan stops), no more.
    let last = *nums.iter().max().unwrap();
    assert_eq!(nums, (1..=last).filter(|&n| ok(n)).collect::<Vec<_>>());
    let stop = (last + 1..).find(|&n| ok(n)).unwrap();
    assert_eq!(
        d.node_to_status.len() + 420,
        usize::try_from(stop - 1).unwrap()
    );
    for (node, plugin, reason) in [
        ("n15", "Picky", "node(s) divisible by three"),
        ("n35", "Picky", "node(s) divisible by seven"),
        ("n10", "Fives", "node(s) divisible by five"),
    ] {
        let s = d.node_to_status.get(node);
        assert_eq!(
            (s.plugin(), s.reasons()),
            (Some(plugin), &[reason.to_owned()][..])
        );
    }
    assert!(d.unschedulable_plugins.contains("Fives"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_search_stops_early_and_rotates() {
    let reg = picky_registry();
    let fw = framework(
        "profiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Picky}]\n",
        &reg,
    );
    let snapshot = thousand_nodes();
    let (first, _) = filter_once(&fw, &snapshot);
    assert_eq!(first.len(), 420, "42 % of 1000 nodes");
    let (second, _) = filter_once(&fw, &snapshot);
    assert_ne!(
        first[0].node_name(),
        second[0].node_name(),
        "the start index rotates between cycles"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fit_error_message_is_upstreams() {
    let reg = picky_registry();
    let fw = framework(
        "profiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Picky}]\n",
        &reg,
    );
    let nodes = ["n3", "n6", "n7", "n9"]
        .iter()
        .map(|n| common::node(n))
        .collect();
    fw.handle()
        .set_snapshot(Arc::new(Snapshot::from_node_infos(nodes)));
    let mut state = CycleState::new();
    let Err(ScheduleError::Fit(e)) = fw.schedule_pod(&mut state, &common::pod("p")).await else {
        panic!("expected a FitError")
    };
    assert_eq!(
        e.to_string(),
        "0/4 nodes are available: 1 node(s) divisible by seven, 3 node(s) divisible by three."
    );
    assert_eq!(
        e.diagnosis.node_to_status.get("n7").code(),
        Code::UnschedulableAndUnresolvable
    );
    assert_eq!(e.diagnosis.node_to_status.get("n7").plugin(), Some("Picky"));
}

#[test]
fn tie_break_spreads_evenly() {
    let scores: Vec<NodePluginScores> = (0..4)
        .map(|i| NodePluginScores {
            name: format!("n{i}"),
            scores: vec![],
            total_score: 50,
        })
        .chain(std::iter::once(NodePluginScores {
            name: "low".into(),
            scores: vec![],
            total_score: 10,
        }))
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let rounds = 8000;
    for _ in 0..rounds {
        *counts.entry(select_host(&scores).unwrap()).or_default() += 1;
    }
    assert!(!counts.contains_key("low"));
    for i in 0..4 {
        let c = counts[&format!("n{i}")];
        // Expected 2000 each; 4.5 standard deviations (~39) is far outside chance.
        assert!(
            (1800..=2200).contains(&c),
            "n{i} chosen {c} times of {rounds}: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_wait_allow_and_timeout() {
    let log = common::Log::default();
    let mut reg = common::registry(&log);
    let l2 = log.clone();
    reg.register("Gate", move |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(common::Probe {
            name: "Gate".into(),
            log: l2.clone(),
            permit: Some(Duration::from_secs(3600)),
            bind_skip: true,
        }) as Arc<dyn Plugin>)
    })
    .unwrap();
    let fw = framework(
        "profiles:\n- plugins:\n    permit:\n      enabled: [{name: Gate}]\n",
        &reg,
    );
    let pod = common::pod("p");
    let state = CycleState::new();
    assert!(fw.run_permit_plugins(&state, &pod, "n1").await.is_wait());
    assert!(fw.will_wait_on_permit(&pod));
    let h = fw.handle().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.waiting_pods().get("uid-p").unwrap().allow("Gate");
    });
    assert!(fw.wait_on_permit(&pod).await.is_success());
    assert!(!fw.will_wait_on_permit(&pod));

    // Rejected through the handle.
    let pod2 = common::pod("q");
    assert!(fw.run_permit_plugins(&state, &pod2, "n1").await.is_wait());
    assert!(fw.handle().waiting_pods().reject("uid-q", "Gate", "nope"));
    let s = fw.wait_on_permit(&pod2).await;
    assert_eq!(s.code(), Code::Unschedulable);
    assert_eq!(s.message(), "nope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_binders_skipping_is_a_skip() {
    let log = common::Log::default();
    let reg = common::registry(&log);
    let fw = framework(
        "profiles:\n- plugins:\n    bind:\n      disabled: [{name: DefaultBinder}]\n      enabled: [{name: Probe1}]\n",
        &reg,
    );
    let s = fw
        .run_bind_plugins(&CycleState::new(), &common::pod("p"), "n1")
        .await;
    assert!(s.is_skip());
}

/// Fails to score one node: `Early` (through its own `score_nodes`) at n15, `Late` at n18.
struct FailAt(&'static str, u64);
impl Plugin for FailAt {
    fn name(&self) -> &str {
        self.0
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
impl ScorePlugin for FailAt {
    fn score(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        if num(node) == self.1 {
            Err(Status::error(format!("no score for n{}", self.1)))
        } else {
            Ok(1)
        }
    }
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        for (i, (node, out)) in nodes.iter().zip(scores).enumerate() {
            *out = self.score(state, pod, node).map_err(|s| (i, s))?;
        }
        Ok(())
    }
    fn has_normalize_score(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_error_is_the_first_in_node_order() {
    let log = common::Log::default();
    let mut reg = common::registry(&log);
    reg.register("Late", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(FailAt("Late", 18)) as Arc<dyn Plugin>)
    })
    .unwrap();
    reg.register("Early", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(FailAt("Early", 15)) as Arc<dyn Plugin>)
    })
    .unwrap();
    // `Late` scores first, but `Early` fails on an earlier node of the same chunk: the error
    // is the one a node-by-node loop meets first, whichever order the chunk is scored in.
    let fw = framework(
        "percentageOfNodesToScore: 100\nprofiles:\n- plugins:\n    multiPoint:\n      enabled: [{name: Late}, {name: Early}]\n",
        &reg,
    );
    let nodes: Vec<NodeInfo> = (1..=100).map(|i| common::node(&format!("n{i}"))).collect();
    fw.handle()
        .set_snapshot(Arc::new(Snapshot::from_node_infos(nodes)));
    for _ in 0..3 {
        let mut state = CycleState::new();
        match fw.schedule_pod(&mut state, &common::pod("p")).await {
            Err(ScheduleError::Internal(s)) => {
                assert_eq!(s.plugin(), Some("Early"), "{}", s.message());
                assert!(s.message().contains("no score for n15"), "{}", s.message());
            }
            other => panic!("expected a score error, got {other:?}"),
        }
    }
}
