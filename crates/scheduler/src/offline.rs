//! [`OfflineScheduler`]: the scheduler without an apiserver. The caller plays the informers
//! (nodes and pods in, bound pods back) and supplies an in-memory Bind plugin; everything else
//! — queue, cache, snapshot, profiles, `schedule_one`, the binding task, failure handling — is
//! the code that runs against a real cluster. The simulator and in-process benchmarks use it.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_cache::Cache;
use ksched_framework::{Framework, config::SchedulerConfig};
use ksched_queue::PriorityQueue;
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
