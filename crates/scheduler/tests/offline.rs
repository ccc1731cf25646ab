//! The offline scheduler: the same scheduling path, driven without an apiserver.

use std::sync::Arc;

use k8s_openapi::{
    api::core::v1::{Node, NodeStatus, Pod, PodSpec},
    apimachinery::pkg::api::resource::Quantity,
};
use ksched::{Scheduler, offline::MemoryBinder};

fn node(name: &str) -> Arc<Node> {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.status = Some(NodeStatus {
        allocatable: Some(
            [
                ("cpu".to_owned(), Quantity("4".into())),
                ("pods".to_owned(), Quantity("110".into())),
            ]
            .into(),
        ),
        ..NodeStatus::default()
    });
    Arc::new(n)
}

fn pod(name: &str) -> Arc<Pod> {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec = Some(PodSpec {
        scheduler_name: Some("sim".into()),
        ..PodSpec::default()
    });
    Arc::new(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_binds_in_memory() {
    let binder = MemoryBinder::new();
    let sched = Scheduler::builder()
        .with_plugin(MemoryBinder::NAME, binder.factory())
        .with_config_yaml(
            "profiles:\n- schedulerName: sim\n  plugins:\n    bind:\n      disabled: [{name: DefaultBinder}]\n      enabled: [{name: MemoryBinder}]\n",
        )
        .build_offline()
        .unwrap();
    for i in 0..3 {
        sched.add_node(node(&format!("n{i}")));
    }
    let pods: Vec<_> = (0..10).map(|i| pod(&format!("p{i}"))).collect();
    for p in &pods {
        sched.apply_pod(None, p.clone());
    }
    let mut scheduled = 0;
    while sched.schedule_next().await {
        scheduled += 1;
    }
    sched.wait_for_bindings().await;
    assert_eq!(scheduled, 10);
    let bound = binder.take();
    assert_eq!(bound.len(), 10);
    // Report the bindings back, as the informer would: the queue forgets them, the cache
    // confirms them.
    for b in &bound {
        let old = pods
            .iter()
            .find(|p| ksched_framework::pod_key(p) == b.pod)
            .unwrap()
            .clone();
        let new = MemoryBinder::bound(&old, &b.node);
        sched.apply_pod(Some(old), Arc::new(new));
    }
    assert_eq!(sched.cache().pod_count(), 10);
    assert!(sched.cache().dump().assumed_pods().is_empty());
    assert_eq!(sched.queue().metrics().pending.total(), 0);
}
