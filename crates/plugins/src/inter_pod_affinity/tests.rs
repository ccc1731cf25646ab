use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use ksched_framework::{
    Code, CycleState, FilterPlugin, Handle, NodeScore, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Snapshot, Status,
};

use super::*;
use crate::test_util::{NodeBuilder, PodBuilder, selector_of, snapshot};

const ZONE: &str = "topology.kubernetes.io/zone";
const HOST: &str = "kubernetes.io/hostname";

fn plugin(snap: &Arc<Snapshot>, hard: i32) -> InterPodAffinity {
    let handle = Arc::new(Handle::for_tests("t"));
    handle.set_snapshot(snap.clone());
    InterPodAffinity::with_args(
        handle,
        InterPodAffinityArgs {
            hard_pod_affinity_weight: hard,
            ignore_preferred_terms_of_existing_pods: false,
        },
    )
}

fn term(key: &str, labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector_of(labels)),
        topology_key: key.into(),
        ..PodAffinityTerm::default()
    }
}

fn required(affinity: Vec<PodAffinityTerm>, anti: Vec<PodAffinityTerm>) -> Affinity {
    Affinity {
        pod_affinity: (!affinity.is_empty()).then(|| PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(affinity),
            ..PodAffinity::default()
        }),
        pod_anti_affinity: (!anti.is_empty()).then(|| PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(anti),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn preferred(affinity: Vec<(i32, PodAffinityTerm)>, anti: Vec<(i32, PodAffinityTerm)>) -> Affinity {
    let w = |v: Vec<(i32, PodAffinityTerm)>| {
        v.into_iter()
            .map(|(weight, t)| WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: t,
            })
            .collect::<Vec<_>>()
    };
    Affinity {
        pod_affinity: Some(PodAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(w(affinity)),
            ..PodAffinity::default()
        }),
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(w(anti)),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

async fn filter_all(pl: &InterPodAffinity, snap: &Snapshot, pod: &Pod) -> Vec<Status> {
    let mut state = CycleState::new();
    let (_, s) = pl.pre_filter(&mut state, pod, snap.list()).await;
    if s.is_skip() {
        return snap.list().iter().map(|_| Status::success()).collect();
    }
    assert!(s.is_success(), "{s}");
    snap.list()
        .iter()
        .map(|n| pl.filter(&state, pod, n))
        .collect()
}

fn zones() -> Vec<NodeBuilder> {
    vec![
        NodeBuilder::new("a1")
            .zone("a")
            .pod(PodBuilder::new("db").label("app", "db")),
        NodeBuilder::new("a2").zone("a"),
        NodeBuilder::new("b1").zone("b"),
    ]
}

#[tokio::test]
async fn required_affinity_by_zone() {
    let snap = snapshot(&zones());
    let pl = plugin(&snap, 1);
    let pod = PodBuilder::new("web")
        .affinity(required(vec![term(ZONE, &[("app", "db")])], vec![]))
        .pod();
    let res = filter_all(&pl, &snap, &pod).await;
    assert!(res[0].is_success() && res[1].is_success());
    assert_eq!(
        (res[2].code(), res[2].message()),
        (
            Code::UnschedulableAndUnresolvable,
            ERR_REASON_AFFINITY.to_owned()
        )
    );
    // Another namespace's pods do not count.
    let other = PodBuilder::new("web")
        .ns("other")
        .affinity(required(vec![term(ZONE, &[("app", "db")])], vec![]))
        .pod();
    assert!(
        filter_all(&pl, &snap, &other)
            .await
            .iter()
            .all(|s| !s.is_success())
    );
}

#[tokio::test]
async fn first_pod_of_a_self_affine_group() {
    let snap = snapshot(&zones());
    let pl = plugin(&snap, 1);
    let pod = PodBuilder::new("c1")
        .label("app", "cache")
        .affinity(required(vec![term(ZONE, &[("app", "cache")])], vec![]))
        .pod();
    assert!(
        filter_all(&pl, &snap, &pod)
            .await
            .iter()
            .all(Status::is_success)
    );
    // Without matching its own terms it cannot start the group.
    let pod = PodBuilder::new("c1")
        .affinity(required(vec![term(ZONE, &[("app", "cache")])], vec![]))
        .pod();
    assert!(
        filter_all(&pl, &snap, &pod)
            .await
            .iter()
            .all(|s| !s.is_success())
    );
}

#[tokio::test]
async fn anti_affinity_both_ways() {
    let nodes = [
        NodeBuilder::new("n1").pod(PodBuilder::new("web-1").label("app", "web")),
        NodeBuilder::new("n2").pod(
            PodBuilder::new("lonely")
                .label("app", "lonely")
                .affinity(required(vec![], vec![term(HOST, &[("app", "web")])])),
        ),
        NodeBuilder::new("n3"),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap, 1);
    // The incoming pod's anti-affinity keeps it off n1; the existing pod's keeps it off n2.
    let pod = PodBuilder::new("web-2")
        .label("app", "web")
        .affinity(required(vec![], vec![term(HOST, &[("app", "web")])]))
        .pod();
    let res = filter_all(&pl, &snap, &pod).await;
    assert_eq!(
        (res[0].code(), res[0].message()),
        (Code::Unschedulable, ERR_REASON_ANTI_AFFINITY.to_owned())
    );
    assert_eq!(
        (res[1].code(), res[1].message()),
        (
            Code::Unschedulable,
            ERR_REASON_EXISTING_ANTI_AFFINITY.to_owned()
        )
    );
    assert!(res[2].is_success());
    // A pod without any affinity is still kept away from the existing anti-affinity.
    let plain = PodBuilder::new("web-3").label("app", "web").pod();
    let res = filter_all(&pl, &snap, &plain).await;
    assert!(res[0].is_success());
    assert_eq!(res[1].message(), ERR_REASON_EXISTING_ANTI_AFFINITY);
}

#[tokio::test]
async fn remove_and_add_pod_update_counts() {
    let nodes = [
        NodeBuilder::new("n1").pod(
            PodBuilder::new("lonely")
                .label("app", "lonely")
                .affinity(required(vec![], vec![term(HOST, &[("app", "web")])])),
        ),
        NodeBuilder::new("n2"),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap, 1);
    let pod = PodBuilder::new("web").label("app", "web").pod();
    let mut state = CycleState::new();
    assert!(
        pl.pre_filter(&mut state, &pod, snap.list())
            .await
            .1
            .is_success()
    );
    let (n1, n2) = (
        snap.get("n1").unwrap().clone(),
        snap.get("n2").unwrap().clone(),
    );
    assert!(!pl.filter(&state, &pod, &n1).is_success());
    let ext = pl.pre_filter_extensions().unwrap();
    let lonely = n1.pods()[0].clone();
    assert!(ext.remove_pod(&mut state, &pod, &lonely, &n1).is_success());
    assert!(pl.filter(&state, &pod, &n1).is_success());
    assert!(ext.add_pod(&mut state, &pod, &lonely, &n2).is_success());
    assert!(!pl.filter(&state, &pod, &n2).is_success());
}

#[tokio::test]
async fn no_affinity_anywhere_skips() {
    let snap = snapshot(&[NodeBuilder::new("n1").pod(PodBuilder::new("x"))]);
    let pl = plugin(&snap, 1);
    assert!(
        pl.pre_filter(
            &mut CycleState::new(),
            &PodBuilder::new("p").pod(),
            snap.list()
        )
        .await
        .1
        .is_skip()
    );
    assert!(
        pl.pre_score(
            &mut CycleState::new(),
            &PodBuilder::new("p").pod(),
            snap.list()
        )
        .await
        .is_skip()
    );
}

async fn scores(pl: &InterPodAffinity, snap: &Snapshot, pod: &Pod) -> Vec<i64> {
    let mut state = CycleState::new();
    assert!(
        pl.pre_score(&mut state, pod, snap.list())
            .await
            .is_success()
    );
    let mut s: Vec<NodeScore> = snap
        .list()
        .iter()
        .map(|n| NodeScore {
            name: n.node_name().into(),
            score: pl.score(&state, pod, n).unwrap(),
        })
        .collect();
    assert!(pl.normalize_score(&state, pod, &mut s).is_success());
    s.into_iter().map(|s| s.score).collect()
}

#[tokio::test]
async fn preferred_terms_score() {
    let nodes = [
        NodeBuilder::new("a1")
            .zone("a")
            .pod(PodBuilder::new("db").label("app", "db")),
        NodeBuilder::new("b1")
            .zone("b")
            .pod(PodBuilder::new("noisy").label("app", "noisy")),
        NodeBuilder::new("c1").zone("c"),
    ];
    let snap = snapshot(&nodes);
    let pl = plugin(&snap, 1);
    let pod = PodBuilder::new("web")
        .affinity(preferred(
            vec![(10, term(ZONE, &[("app", "db")]))],
            vec![(5, term(ZONE, &[("app", "noisy")]))],
        ))
        .pod();
    // Raw: a 10, b −5, c 0 → min–max.
    assert_eq!(scores(&pl, &snap, &pod).await, [100, 0, 33]);
}

#[tokio::test]
async fn existing_pods_terms_score_symmetrically() {
    let nodes = [
        NodeBuilder::new("a1").zone("a").pod(
            PodBuilder::new("client")
                .affinity(required(vec![term(ZONE, &[("app", "server")])], vec![])),
        ),
        NodeBuilder::new("b1")
            .zone("b")
            .pod(PodBuilder::new("fan").affinity(preferred(
                vec![(3, term(ZONE, &[("app", "server")]))],
                vec![],
            ))),
        NodeBuilder::new("c1").zone("c"),
    ];
    let snap = snapshot(&nodes);
    // hardPodAffinityWeight 10: a 10, b 3, c 0.
    assert_eq!(
        scores(
            &plugin(&snap, 10),
            &snap,
            &PodBuilder::new("s").label("app", "server").pod()
        )
        .await,
        [100, 30, 0]
    );
    // Weight 0 ignores existing required terms: a 0, b 3.
    assert_eq!(
        scores(
            &plugin(&snap, 0),
            &snap,
            &PodBuilder::new("s").label("app", "server").pod()
        )
        .await,
        [0, 100, 0]
    );
}

#[test]
fn args() {
    let handle = Arc::new(Handle::for_tests("t"));
    assert!(
        new(
            &PluginArgs::from_value(serde_json::json!({"hardPodAffinityWeight": 101})),
            &handle
        )
        .is_err()
    );
    assert!(
        new(
            &PluginArgs::from_value(serde_json::json!({"hardPodAffinityWeight": 0})),
            &handle
        )
        .is_ok()
    );
}
