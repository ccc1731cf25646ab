//! [`OfflineScheduler`]: the scheduler without an apiserver. The caller plays the informers
//! (nodes and pods in, bound pods back) and supplies an in-memory Bind plugin — usually
//! [`MemoryBinder`]; everything else — queue, cache, snapshot, profiles, `schedule_one`, the
//! binding task, failure handling — is the code that runs against a real cluster. The
//! simulator and in-process benchmarks use it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_cache::Cache;
use ksched_framework::{
    BindPlugin, CycleState, Framework, Handle, Plugin, PluginArgs, PluginError, Status,
    config::SchedulerConfig, pod_key,
};
use ksched_queue::PriorityQueue;
use parking_lot::Mutex;
use prometheus_client::registry::Registry as MetricsRegistry;

use crate::{eventhandlers::Handlers, scheduler::Inner};

/// A scheduler driven by hand; see the module docs.
pub struct OfflineScheduler {
    inner: Arc<Inner>,
    handlers: Handlers,
    config: SchedulerConfig,
}

impl OfflineScheduler {
    pub(crate) fn new(inner: Arc<Inner>, config: SchedulerConfig) -> Self {
        let handlers = Handlers {
            cache: inner.cache.clone(),
            queue: inner.queue.clone(),
            profiles: inner.profiles.clone(),
            pods: inner.pods.clone(),
        };
        Self {
            inner,
            handlers,
            config,
        }
    }

    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// A node appeared (as the node informer would report it).
    pub fn add_node(&self, node: Arc<Node>) {
        self.handlers.add_node_to_cache(&node);
    }

    /// A node changed.
    pub fn update_node(&self, old: &Arc<Node>, new: Arc<Node>) {
        self.handlers.update_node_in_cache(old, &new);
    }

    /// A node went away.
    pub fn remove_node(&self, node: &Arc<Node>) {
        self.handlers.delete_node_from_cache(node);
    }

    /// A pod appeared or changed (`old`: the version reported before, if any) — e.g. the
    /// bound version after the in-memory binder bound it.
    pub fn apply_pod(&self, old: Option<Arc<Pod>>, new: Arc<Pod>) {
        self.handlers.on_pod(old, new);
    }

    /// A pod went away.
    pub fn delete_pod(&self, pod: &Arc<Pod>) {
        self.handlers.on_pod_deleted(pod);
    }

    /// Schedules one pod if one is ready now: pop without waiting, run `schedule_one`.
    /// Returns false when no pod was ready. The binding continues in a task: call
    /// [`OfflineScheduler::wait_for_bindings`] to let it finish.
    pub async fn schedule_next(&self) -> bool {
        match self.inner.queue.try_pop() {
            Some(qpi) => {
                self.inner.schedule_one(qpi).await;
                true
            }
            None => false,
        }
    }

    /// Waits until every binding task started so far has finished.
    pub async fn wait_for_bindings(&self) {
        let mut spins = 0u32;
        while !self.inner.bindings.is_empty() {
            if spins < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            spins += 1;
        }
    }

    /// The scheduling queue (pending counts, flushes).
    #[must_use]
    pub fn queue(&self) -> &Arc<PriorityQueue> {
        &self.inner.queue
    }

    /// The node cache.
    #[must_use]
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    /// The framework of profile `name`.
    #[must_use]
    pub fn framework(&self, name: &str) -> Option<&Arc<Framework>> {
        self.inner.profiles.get(name)
    }

    /// The scheduler's metrics, registered in a fresh registry (to encode after a run).
    #[must_use]
    pub fn metrics_registry(&self) -> MetricsRegistry {
        let mut r = MetricsRegistry::default();
        self.inner.metrics.register(&mut r);
        r
    }
}

/// One binding a [`MemoryBinder`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The pod, `namespace/name`.
    pub pod: String,
    /// The node it was bound to.
    pub node: String,
    /// When the Bind plugin ran (wall clock, for latency measurements).
    pub at: Instant,
}

/// A Bind plugin that binds in memory: it records each binding and answers success, as the
/// apiserver's `pods/binding` would. The caller reports bindings back like an informer (the bound
/// pod through [`OfflineScheduler::apply_pod`]), so the queue forgets the pod and the cache
/// confirms it.
///
/// Clones share the record. Register it under [`MemoryBinder::NAME`] with
/// [`MemoryBinder::factory`] and enable it in place of `DefaultBinder`:
///
/// ```
/// # fn main() -> Result<(), ksched::Error> {
/// use std::sync::Arc;
///
/// use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodSpec};
/// use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
/// use ksched::{Scheduler, offline::MemoryBinder};
///
/// let binder = MemoryBinder::new();
/// let sched = Scheduler::builder()
///     .with_plugin(MemoryBinder::NAME, binder.factory())
///     .with_config_yaml(
///         "profiles:\n- schedulerName: sim\n  plugins:\n    bind:\n      \
///          disabled: [{name: DefaultBinder}]\n      enabled: [{name: MemoryBinder}]\n",
///     )
///     .build_offline()?;
///
/// let mut node = Node::default();
/// node.metadata.name = Some("n0".into());
/// node.status = Some(NodeStatus {
///     allocatable: Some([("cpu".to_owned(), Quantity("4".into())), ("pods".to_owned(), Quantity("110".into()))].into()),
///     ..NodeStatus::default()
/// });
/// sched.add_node(Arc::new(node));
/// let mut pod = Pod::default();
/// pod.metadata.name = Some("p".into());
/// pod.metadata.namespace = Some("default".into());
/// pod.metadata.uid = Some("uid-p".into());
/// pod.spec = Some(PodSpec { scheduler_name: Some("sim".into()), ..PodSpec::default() });
/// let pod = Arc::new(pod);
/// sched.apply_pod(None, pod.clone());
///
/// // Filter and Score run on a thread pool entered with `block_in_place`: a multi-thread
/// // runtime is needed.
/// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     while sched.schedule_next().await {}
///     sched.wait_for_bindings().await;
/// });
/// let bindings = binder.take();
/// assert_eq!(bindings.len(), 1);
/// assert_eq!((bindings[0].pod.as_str(), bindings[0].node.as_str()), ("default/p", "n0"));
///
/// // Report the binding back, as the pod informer would.
/// sched.apply_pod(Some(pod.clone()), Arc::new(MemoryBinder::bound(&pod, &bindings[0].node)));
/// assert_eq!(sched.cache().pod_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBinder {
    bindings: Arc<Mutex<Vec<Binding>>>,
}

impl MemoryBinder {
    /// The plugin's name in a profile.
    pub const NAME: &'static str = "MemoryBinder";

    /// A binder with no bindings yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The factory to register with [`crate::SchedulerBuilder::with_plugin`]; every plugin it
    /// builds records into this binder.
    pub fn factory(
        &self,
    ) -> impl Fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> + Send + Sync + 'static
    {
        let binder = self.clone();
        move |_: &PluginArgs, _: &Arc<Handle>| Ok(Arc::new(binder.clone()) as Arc<dyn Plugin>)
    }

    /// The bindings made since the last call, in the order they were made.
    #[must_use]
    pub fn take(&self) -> Vec<Binding> {
        std::mem::take(&mut *self.bindings.lock())
    }

    /// How many bindings are waiting to be taken.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bindings.lock().len()
    }

    /// No binding waiting to be taken.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bindings.lock().is_empty()
    }

    /// `pod` as the apiserver would report it once bound to `node` (`spec.nodeName` set).
    #[must_use]
    pub fn bound(pod: &Pod, node: &str) -> Pod {
        let mut p = pod.clone();
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_owned());
        p
    }
}

impl Plugin for MemoryBinder {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

#[async_trait]
impl BindPlugin for MemoryBinder {
    async fn bind(&self, _: &CycleState, pod: &Pod, node: &str) -> Status {
        self.bindings.lock().push(Binding {
            pod: pod_key(pod),
            node: node.to_owned(),
            at: Instant::now(),
        });
        Status::success()
    }
}
