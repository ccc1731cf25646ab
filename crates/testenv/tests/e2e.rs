//! End-to-end tests against the shared real control plane of this test binary.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use ksched_testenv::{ControlPlane, KubeSchedulerOptions, NodeSpec, TestPod};
use kube::Api;
use kube::api::ListParams;
use kube::config::Kubeconfig;

#[tokio::test]
async fn client_connects_with_the_written_kubeconfig() {
    let cp = ControlPlane::shared().await.expect("control plane");

    // The kubeconfig verifies TLS against the generated CA: no insecure-skip-tls-verify.
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path()).expect("kubeconfig");
    let cluster = kubeconfig.clusters[0].cluster.as_ref().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some(cp.apiserver_url()));
    assert_ne!(cluster.insecure_skip_tls_verify, Some(true));
    assert!(cluster.certificate_authority_data.is_some());

    let client = cp.client().await.expect("client");
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.git_version, "v1.37.2");

    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    let names: Vec<_> = namespaces
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(names.iter().any(|n| n == "default"), "{names:?}");

    // The same control plane is returned to every test of this binary.
    let again = ControlPlane::shared().await.expect("control plane");
    assert!(std::ptr::eq(cp, again));
}

#[tokio::test]
async fn fake_nodes_pod_binding_and_conflict() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let ns = cp.namespace("binding").await.expect("namespace");
    let client = cp.client().await.expect("client");

    let spec = NodeSpec::new()
        .name_prefix(ns.name())
        .cpu("8")
        .memory("16Gi")
        .pods(50)
        .allocatable("cpu", "7500m")
        .label("example.com/pool", "blue")
        .taint("example.com/dedicated", Some("infra"), "NoSchedule");
    let nodes = ksched_testenv::create_nodes(&client, 3, &spec)
        .await
        .expect("create nodes");
    assert_eq!(nodes.len(), 3);

    // Status set at creation is kept; no not-ready taint was added (TaintNodesByCondition is off).
    let node: Node = Api::all(client.clone())
        .get(&format!("{}-1", ns.name()))
        .await
        .expect("get node");
    let status = node.status.expect("status");
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "8");
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "50");
    assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "7500m");
    assert_eq!(status.allocatable.as_ref().unwrap()["memory"].0, "16Gi");
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["example.com/pool"], "blue");
    assert_eq!(labels["kubernetes.io/hostname"], format!("{}-1", ns.name()));
    let taints = node.spec.unwrap().taints.unwrap();
    assert_eq!(taints.len(), 1, "{taints:?}");
    assert_eq!(taints[0].key, "example.com/dedicated");

    // A pod nobody schedules (no scheduler runs for this name) stays pending until we bind it.
    let pod = TestPod::new("web")
        .cpu("100m")
        .memory("64Mi")
        .scheduler_name("nobody");
    ns.create_pod(&pod).await.expect("create pod");
    let target = format!("{}-2", ns.name());
    let status = ns.bind_pod("web", &target).await.expect("bind");
    assert_eq!(status.code, 201, "{status:?}");
    assert!(status.is_success(), "{status:?}");

    let bound: Pod = ns.pods().get("web").await.expect("get pod");
    assert_eq!(
        bound.spec.unwrap().node_name.as_deref(),
        Some(target.as_str())
    );
    let node = ns
        .wait_for_pod_bound("web", Duration::from_secs(5))
        .await
        .expect("bound");
    assert_eq!(node, target);

    // Binding a bound pod again is a conflict.
    let err = ns
        .bind_pod("web", &format!("{}-0", ns.name()))
        .await
        .expect_err("second binding must fail");
    assert_eq!(err.status_code(), Some(409), "{err}");

    // Deleting a bound pod with grace period 0 removes it at once (there is no kubelet).
    ns.delete_pod("web").await.expect("delete");
    assert!(ns.pods().get_opt("web").await.expect("get").is_none());
    ns.delete_pod("web")
        .await
        .expect("deleting a missing pod is fine");
    for n in &nodes {
        ksched_testenv::delete_node(&client, n.metadata.name.as_deref().unwrap())
            .await
            .expect("delete node");
    }
}

#[tokio::test]
async fn wait_for_an_unbound_pod_times_out_with_diagnostics() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let ns = cp.namespace("timeout").await.expect("namespace");
    ns.create_pod(TestPod::new("lonely").scheduler_name("nobody"))
        .await
        .expect("create pod");
    let started = Instant::now();
    let err = ns
        .wait_for_pod_bound("lonely", Duration::from_secs(2))
        .await
        .expect_err("nobody binds this pod");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = err.to_string();
    assert!(message.contains("timed out after 2s"), "{message}");
    assert!(message.contains("lonely"), "{message}");
}

#[tokio::test]
async fn upstream_kube_scheduler_schedules_onto_a_fake_node() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let ns = cp.namespace("upstream").await.expect("namespace");
    let client = cp.client().await.expect("client");
    // Only this test's pods use this scheduler name, and only this test's nodes carry the label,
    // so tests sharing the control plane do not interfere.
    let scheduler_name = format!("upstream-{}", ns.name());
    let group = ("ksched.io/test-group", ns.name().to_owned());
    let spec = NodeSpec::new()
        .name_prefix(ns.name())
        .cpu("2")
        .memory("4Gi")
        .label(group.0, group.1.clone());
    ksched_testenv::create_nodes(&client, 2, &spec)
        .await
        .expect("nodes");

    let scheduler = cp
        .start_kube_scheduler(KubeSchedulerOptions::named(&scheduler_name))
        .await
        .expect("start kube-scheduler");

    let pod = TestPod::new("scheduled")
        .cpu("500m")
        .memory("1Gi")
        .scheduler_name(&scheduler_name)
        .node_selector(group.0, group.1.clone());
    ns.create_pod(pod).await.expect("create pod");
    let node = match ns
        .wait_for_pod_bound("scheduled", Duration::from_secs(90))
        .await
    {
        Ok(node) => node,
        Err(e) => panic!(
            "{e}\n{:?}\n--- kube-scheduler log ---\n{}",
            scheduler.ensure_running(),
            scheduler.log_tail(40)
        ),
    };
    assert!(
        node.starts_with(&format!("{}-", ns.name())),
        "bound to {node}"
    );

    // kube-scheduler reports the binding as an event.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = ns.events_for_pod("scheduled").await.expect("events");
        if let Some(e) = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Scheduled"))
        {
            assert!(e.message.as_deref().unwrap_or("").contains(&node), "{e:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no Scheduled event: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A pod that fits nowhere gets a FailedScheduling event and stays unbound.
    let huge = TestPod::new("too-big")
        .cpu("64")
        .scheduler_name(&scheduler_name)
        .node_selector(group.0, group.1.clone());
    ns.create_pod(huge).await.expect("create pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = ns.events_for_pod("too-big").await.expect("events");
        if events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no FailedScheduling event: {events:?}\n{}",
            scheduler.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pod = ns.pods().get("too-big").await.expect("get");
    assert!(pod.spec.unwrap().node_name.is_none());

    scheduler
        .ensure_running()
        .expect("kube-scheduler still running");
    let log = scheduler.log_path().to_owned();
    scheduler.stop().await.expect("stop kube-scheduler");
    let text = std::fs::read_to_string(&log).expect("scheduler log");
    assert!(text.contains("Starting Kubernetes Scheduler"), "{text}");
}
