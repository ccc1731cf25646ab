//! A pod that cannot be scheduled gets FailedScheduling and `PodScheduled=False`, and is
//! scheduled within seconds when a node appears — moved by the NodeAdd event, not the 5-minute
//! flush. Its own test binary: it needs a cluster with no nodes.

mod common;

use std::time::{Duration, Instant};

use ksched_testenv::{NodeSpec, TestPod, create_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unschedulable_until_a_node_is_added() {
    let (cp, client) = common::cluster().await;
    let ns = cp.namespace("nonodes").await.unwrap();
    let profile = cp.unique_name("ksched-nonodes");
    let sched = common::start(client.clone(), &profile, "").await;
    ns.create_pod(TestPod::new("waiting").cpu("100m").scheduler_name(&profile))
        .await
        .unwrap();

    // FailedScheduling with upstream's message, and the condition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = ns.events_for_pod("waiting").await.unwrap();
        let failed = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"));
        let pod = ns.pods().get("waiting").await.unwrap();
        let cond = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned());
        if let (Some(e), Some(c)) = (failed, cond) {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert!(
                e.message
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("0/0 nodes are available"),
                "{e:?}"
            );
            assert_eq!(c.status, "False");
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event / condition: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past the backoff (1 s initial), the pod waits in unschedulablePods for an event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let added = Instant::now();
    create_node(
        &client,
        &format!("{}-n0", ns.name()),
        &NodeSpec::new().cpu("4").memory("8Gi"),
    )
    .await
    .unwrap();
    let node = ns
        .wait_for_pod_bound("waiting", Duration::from_secs(30))
        .await
        .unwrap();
    let took = added.elapsed();
    assert_eq!(node, format!("{}-n0", ns.name()));
    assert!(
        took < Duration::from_secs(15),
        "scheduled {took:?} after the node appeared"
    );
    sched.stop().await.unwrap();
}
