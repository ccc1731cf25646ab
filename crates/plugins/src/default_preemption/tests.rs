use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use ksched_framework::runtime::ScheduleError;

use super::*;
use crate::test_util::{NodeBuilder, PodBuilder, default_framework, selector_of, snapshot};

fn low(name: &str, prio: i32, cpu: &str) -> PodBuilder {
    PodBuilder::new(name).priority(prio).req("cpu", cpu)
}

async fn candidate(
    nodes: &[NodeBuilder],
    pod: &Pod,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, (Option<PostFilterResult>, Status)> {
    let fw = default_framework(snapshot(nodes));
    let mut state = CycleState::new();
    let fit = match fw.schedule_pod(&mut state, pod).await {
        Err(ScheduleError::Fit(f)) => f,
        other => panic!("expected no fit, got {other:?}"),
    };
    let pl = DefaultPreemption::with_args(fw.handle().clone(), DefaultPreemptionArgs::default());
    pl.find_candidate(&fw, &state, pod, &fit.diagnosis.node_to_status, pdbs)
}

fn victim_names(c: &Candidate) -> Vec<String> {
    c.victims
        .iter()
        .map(|v| v.pod().metadata.name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn fewest_lowest_priority_victims() {
    // 4 CPUs full. The pod needs 2: removing all three and giving back the most important
    // first keeps p3 (2 CPUs) and evicts p2 and p1.
    let nodes = [NodeBuilder::new("n1")
        .pod(low("p1", 1, "1"))
        .pod(low("p2", 2, "1"))
        .pod(low("p3", 3, "2"))];
    let pod = PodBuilder::new("big").priority(10).req("cpu", "2").pod();
    let c = candidate(&nodes, &pod, &[]).await.unwrap();
    assert_eq!(c.node, "n1");
    assert_eq!(victim_names(&c), ["p2", "p1"]);
    // A pod of higher priority is never a victim: p3 at 20 stays, p1 and p2 go.
    let nodes = [NodeBuilder::new("n1")
        .pod(low("p1", 1, "1"))
        .pod(low("p2", 2, "1"))
        .pod(low("p3", 20, "2"))];
    let c = candidate(&nodes, &pod, &[]).await.unwrap();
    assert_eq!(victim_names(&c), ["p2", "p1"]);
}

#[tokio::test]
async fn picks_the_node_with_the_least_important_victims() {
    let nodes = [
        NodeBuilder::new("n1").pod(low("a", 5, "4")),
        NodeBuilder::new("n2").pod(low("b", 1, "4")),
        NodeBuilder::new("n3")
            .pod(low("c", 1, "2"))
            .pod(low("d", 1, "2")),
    ];
    let pod = PodBuilder::new("big").priority(10).req("cpu", "3").pod();
    let c = candidate(&nodes, &pod, &[]).await.unwrap();
    // n2 and n3 tie on the highest victim priority (1); n2 has the smaller sum.
    assert_eq!(
        (c.node.as_str(), victim_names(&c)),
        ("n2", vec!["b".to_owned()])
    );
}

fn pdb(name: &str, app: &str, allowed: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(selector_of(&[("app", app)])),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            disruptions_allowed: Some(allowed),
            ..PodDisruptionBudgetStatus::default()
        }),
    }
}

#[tokio::test]
async fn respects_pod_disruption_budgets() {
    let nodes = [
        NodeBuilder::new("n1").pod(low("guarded", 1, "4").label("app", "db")),
        NodeBuilder::new("n2").pod(low("free", 3, "4").label("app", "web")),
    ];
    let pod = PodBuilder::new("big").priority(10).req("cpu", "3").pod();
    // Without a PDB the lower-priority victim on n1 wins.
    assert_eq!(candidate(&nodes, &pod, &[]).await.unwrap().node, "n1");
    // A PDB allowing no disruption makes n2 (no violation) the choice.
    let c = candidate(&nodes, &pod, &[pdb("db", "db", 0)])
        .await
        .unwrap();
    assert_eq!((c.node.as_str(), c.num_pdb_violations), ("n2", 0));
    // A budget with room is no violation.
    assert_eq!(
        candidate(&nodes, &pod, &[pdb("db", "db", 1)])
            .await
            .unwrap()
            .node,
        "n1"
    );
    // Violations are the last resort, and counted.
    let c = candidate(&nodes[..1], &pod, &[pdb("db", "db", 0)])
        .await
        .unwrap();
    assert_eq!((c.node.as_str(), c.num_pdb_violations), ("n1", 1));
}

#[tokio::test]
async fn pdb_violating_pods_are_reprieved_first() {
    // Either pod alone frees enough; the PDB-protected one is given back first and stays.
    let nodes = [NodeBuilder::new("n1")
        .pod(low("guarded", 1, "2").label("app", "db"))
        .pod(low("other", 2, "2"))];
    let pod = PodBuilder::new("big").priority(10).req("cpu", "2").pod();
    let c = candidate(&nodes, &pod, &[pdb("db", "db", 0)])
        .await
        .unwrap();
    assert_eq!(
        (victim_names(&c), c.num_pdb_violations),
        (vec!["other".to_owned()], 0)
    );
}

#[tokio::test]
async fn no_candidates() {
    // Unresolvable rejections (a taint) and nodes without lower-priority pods are no help.
    let nodes = [
        NodeBuilder::new("tainted")
            .taint("k", "v", "NoSchedule")
            .pod(low("a", 1, "4")),
        NodeBuilder::new("important").pod(low("b", 100, "4")),
    ];
    let pod = PodBuilder::new("big").priority(10).req("cpu", "3").pod();
    let (r, s) = candidate(&nodes, &pod, &[]).await.unwrap_err();
    assert_eq!(s.code(), Code::Unschedulable);
    assert_eq!(
        s.message(),
        "0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        r.and_then(|r| r.nominating_info)
            .map(|n| n.nominated_node_name),
        Some(String::new())
    );
    let mut never = PodBuilder::new("big").priority(10).req("cpu", "3").pod();
    never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
    let (_, s) = candidate(&nodes, &never, &[]).await.unwrap_err();
    assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
}

#[tokio::test]
async fn post_filter_nominates_the_node() {
    let nodes = [
        NodeBuilder::new("n1").pod(low("p1", 1, "4")),
        NodeBuilder::new("n2").pod(low("p2", 100, "4")),
    ];
    let fw = default_framework(snapshot(&nodes));
    let pod = PodBuilder::new("big").priority(10).req("cpu", "3").pod();
    let mut state = CycleState::new();
    let Err(ScheduleError::Fit(fit)) = fw.schedule_pod(&mut state, &pod).await else {
        panic!("expected no fit")
    };
    let (r, s) = fw
        .run_post_filter_plugins(&state, &pod, &fit.diagnosis.node_to_status)
        .await;
    assert!(s.is_success(), "{s}");
    let n = r.and_then(|r| r.nominating_info).unwrap();
    assert_eq!(
        (n.nominated_node_name.as_str(), n.mode),
        ("n1", NominatingMode::Override)
    );
}

#[test]
fn args() {
    let h = Arc::new(Handle::for_tests("t"));
    let a = |v: serde_json::Value| new(&PluginArgs::from_value(v), &h);
    assert!(a(serde_json::json!({})).is_ok());
    assert!(a(serde_json::json!({"minCandidateNodesPercentage": 101})).is_err());
    assert!(
        a(serde_json::json!({"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}))
            .is_err()
    );
    let pl = DefaultPreemption::with_args(h, DefaultPreemptionArgs::default());
    assert_eq!(pl.num_candidates(5000), 500);
    assert_eq!(pl.num_candidates(50), 50);
    assert_eq!(pl.num_candidates(300), 100);
}
