//! The offline scheduler: the same scheduling path, driven without an apiserver.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{Node, NodeStatus, Pod, PodSpec},
    apimachinery::pkg::api::resource::Quantity,
};
use ksched::{Scheduler, offline::MemoryBinder};
use ksched_framework::{BindPlugin, CycleState, Handle, Plugin, PluginArgs, PluginError, Status};
use tokio::sync::Semaphore;

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
    assert_eq!(scheduled, 10);
    assert_eq!(
        binder.len(),
        10,
        "a binding cycle that never waits completes before schedule_next returns"
    );
    sched.wait_for_bindings().await;
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

/// A Bind plugin that binds only once the test lets it: an apiserver that takes its time.
struct GatedBinder {
    gate: Arc<Semaphore>,
    bound: Arc<AtomicUsize>,
}

impl Plugin for GatedBinder {
    fn name(&self) -> &str {
        "GatedBinder"
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

#[async_trait]
impl BindPlugin for GatedBinder {
    async fn bind(&self, _: &CycleState, _: &Pod, _: &str) -> Status {
        match self.gate.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Status::error("gate closed"),
        }
        self.bound.fetch_add(1, Ordering::SeqCst);
        Status::success()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_does_not_wait_for_a_binding_that_waits() {
    let gate = Arc::new(Semaphore::new(0));
    let bound = Arc::new(AtomicUsize::new(0));
    let (g, b) = (gate.clone(), bound.clone());
    let sched = Scheduler::builder()
        .with_plugin(
            "GatedBinder",
            move |_: &PluginArgs, _: &Arc<Handle>| -> Result<Arc<dyn Plugin>, PluginError> {
                Ok(Arc::new(GatedBinder {
                    gate: g.clone(),
                    bound: b.clone(),
                }))
            },
        )
        .with_config_yaml(
            "profiles:\n- schedulerName: sim\n  plugins:\n    bind:\n      disabled: [{name: DefaultBinder}]\n      enabled: [{name: GatedBinder}]\n",
        )
        .build_offline()
        .unwrap();
    sched.add_node(node("n0"));
    let pods: Vec<_> = (0..3).map(|i| pod(&format!("p{i}"))).collect();
    for p in &pods {
        sched.apply_pod(None, p.clone());
    }
    // Every pod is scheduled and assumed while no binding can finish.
    let schedule_all = async { while sched.schedule_next().await {} };
    tokio::time::timeout(Duration::from_secs(30), schedule_all)
        .await
        .expect("the scheduling loop does not wait for the binder");
    assert_eq!(bound.load(Ordering::SeqCst), 0);
    assert_eq!(sched.cache().dump().assumed_pods().len(), 3);
    for p in &pods {
        assert!(sched.cache().is_assumed_pod(p));
    }

    // The binding tasks take it from there once the binder answers.
    gate.add_permits(3);
    tokio::time::timeout(Duration::from_secs(30), sched.wait_for_bindings())
        .await
        .expect("the bindings finish in their tasks");
    assert_eq!(bound.load(Ordering::SeqCst), 3);
    let dump = sched.cache().dump();
    assert!(
        pods.iter()
            .all(|p| dump.pods[&ksched_framework::pod_key(p)].binding_finished),
        "each binding cycle ran to its end"
    );
}
