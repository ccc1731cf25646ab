//! The offline scheduler: the same scheduling path, driven without an apiserver.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{Node, NodeStatus, Pod, PodSpec},
    apimachinery::pkg::api::resource::Quantity,
};
use ksched::Scheduler;
use ksched_framework::{BindPlugin, CycleState, Handle, Plugin, PluginArgs, Status};
use parking_lot::Mutex;

type Bound = Arc<Mutex<Vec<(String, String)>>>;

struct MemoryBinder(Bound);

impl Plugin for MemoryBinder {
    fn name(&self) -> &str {
        "MemoryBinder"
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

#[async_trait]
impl BindPlugin for MemoryBinder {
    async fn bind(&self, _: &CycleState, pod: &Pod, node: &str) -> Status {
        self.0.lock().push((
            pod.metadata.name.clone().unwrap_or_default(),
            node.to_owned(),
        ));
        Status::success()
    }
}

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
    let bound = Bound::default();
    let b = bound.clone();
    let sched = Scheduler::builder()
        .with_plugin("MemoryBinder", move |_: &PluginArgs, _: &Arc<Handle>| {
            Ok(Arc::new(MemoryBinder(b.clone())) as Arc<dyn Plugin>)
        })
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
    let bound = bound.lock().clone();
    assert_eq!(bound.len(), 10);
    // Report the bindings back, as the informer would: the queue forgets them, the cache
    // confirms them.
    for (name, node) in &bound {
        let old = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap()
            .clone();
        let mut new = (*old).clone();
        new.spec.as_mut().unwrap().node_name = Some(node.clone());
        sched.apply_pod(Some(old), Arc::new(new));
    }
    assert_eq!(sched.cache().pod_count(), 10);
    assert!(sched.cache().dump().assumed_pods().is_empty());
    assert_eq!(sched.queue().metrics().pending.total(), 0);
}
