//! ksched against a real kube-apiserver: pods are bound, events and metrics say so, other
//! schedulers' pods are left alone, a 1000-pod burst is bound exactly once each.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use ksched_testenv::{NodeSpec, TestPod, create_nodes, kube::Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binds_pods_records_events_and_ignores_other_schedulers() {
    let (cp, client) = common::cluster().await;
    let ns = cp.namespace("basic").await.unwrap();
    let profile = cp.unique_name("ksched-basic");
    create_nodes(
        &client,
        3,
        &NodeSpec::new()
            .name_prefix(ns.name())
            .cpu("4")
            .memory("8Gi"),
    )
    .await
    .unwrap();
    let sched = common::start(client.clone(), &profile, "").await;

    for i in 0..10 {
        ns.create_pod(
            TestPod::new(format!("p{i}"))
                .cpu("100m")
                .scheduler_name(&profile),
        )
        .await
        .unwrap();
    }
    ns.create_pod(TestPod::new("foreign").scheduler_name("someone-else"))
        .await
        .unwrap();
    for i in 0..10 {
        let node = ns
            .wait_for_pod_bound(&format!("p{i}"), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(!node.is_empty());
    }
    // The Scheduled event, upstream's wording.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = ns.events_for_pod("p0").await.unwrap();
        if let Some(e) = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Scheduled"))
        {
            let note = e.message.clone().unwrap_or_default();
            assert!(
                note.starts_with(&format!("Successfully assigned {}/p0 to ", ns.name())),
                "{note}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Scheduled event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Pods of other schedulers are not ours.
    let foreign = ns.pods().get("foreign").await.unwrap();
    assert!(foreign.spec.unwrap().node_name.is_none());
    let scheduled = sched
        .metric(&format!(
            "scheduler_schedule_attempts_total{{result=\"scheduled\",profile=\"{profile}\"}}"
        ))
        .await;
    assert!(scheduled >= 10.0, "scheduled attempts: {scheduled}");
    let (code, _) = common::http_get(sched.http, "/healthz").await;
    assert_eq!(code, 200);
    sched.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_pods_on_a_hundred_nodes_each_bound_once() {
    let (cp, client) = common::cluster().await;
    let ns = cp.namespace("burst").await.unwrap();
    let profile = cp.unique_name("ksched-burst");
    create_nodes(
        &client,
        100,
        &NodeSpec::new()
            .name_prefix(ns.name())
            .cpu("32")
            .memory("64Gi")
            .pods(110),
    )
    .await
    .unwrap();
    let sched = common::start(client.clone(), &profile, "").await;
    let started = std::time::Instant::now();
    futures::stream::iter(0..1000)
        .map(|i| {
            let ns = &ns;
            let profile = &profile;
            async move {
                ns.create_pod(
                    TestPod::new(format!("b{i}"))
                        .cpu("10m")
                        .scheduler_name(profile),
                )
                .await
            }
        })
        .buffer_unordered(30)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let pods: Api<Pod> = ns.pods();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let list = pods.list(&Default::default()).await.unwrap();
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if bound == 1000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {bound}/1000 bound after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    eprintln!("1000 pods bound in {took:?}");
    // Exactly once: one successful attempt per pod, no binding conflicts.
    let scheduled = sched
        .metric(&format!(
            "scheduler_schedule_attempts_total{{result=\"scheduled\",profile=\"{profile}\"}}"
        ))
        .await;
    assert_eq!(scheduled, 1000.0);
    let errors = sched
        .metric(&format!(
            "scheduler_schedule_attempts_total{{result=\"error\",profile=\"{profile}\"}}"
        ))
        .await;
    assert_eq!(errors, 0.0);
    sched.stop().await.unwrap();
}
