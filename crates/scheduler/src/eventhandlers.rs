//! Informers: pods and nodes from the apiserver into the cache and the queue (upstream
//! `eventhandlers.go`: `addPodToCache`, `addPodToSchedulingQueue`, `addNodeToCache`, …).
//!
//! One watch per resource (kube-runtime's `watcher`, which relists after `410 Gone` and
//! retries with backoff). Each handler keeps the last object it saw per key, so it can tell an
//! add from an update, derive what changed, and — after a relist — notice objects deleted while
//! the watch was down (present before, absent from the new list) and deliver those deletions.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_cache::Cache;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterObject, EventResource, Framework, events::well_known, pod_key,
};
use ksched_queue::{PriorityQueue, pod_scheduling_properties_change};
use kube::{Api, Client, runtime::watcher};
use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The pods the informer knows, by `namespace/name` (upstream's pod lister).
#[derive(Debug, Default)]
pub struct PodLister {
    pods: RwLock<HashMap<String, Arc<Pod>>>,
}

impl PodLister {
    /// The latest version of a pod, if it still exists.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Arc<Pod>> {
        self.pods.read().get(key).cloned()
    }

    /// Number of known pods.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pods.read().len()
    }

    /// No known pods.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pods.read().is_empty()
    }
}

/// What the handlers feed.
#[derive(Clone)]
pub struct Handlers {
    pub(crate) cache: Arc<Cache>,
    pub(crate) queue: Arc<PriorityQueue>,
    pub(crate) profiles: Arc<HashMap<String, Arc<Framework>>>,
    pub(crate) pods: Arc<PodLister>,
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default-scheduler")
}

impl Handlers {
    fn responsible_for(&self, pod: &Pod) -> bool {
        self.profiles.contains_key(scheduler_name(pod))
    }

    /// A pod appeared or changed (`old` is what we saw before, if anything).
    pub(crate) fn on_pod(&self, old: Option<Arc<Pod>>, new: Arc<Pod>) {
        let key = pod_key(&new);
        self.pods.pods.write().insert(key, new.clone());
        let old = match old {
            Some(o) if o.metadata.uid != new.metadata.uid => {
                // Deleted and recreated under the same name while we were not looking.
                self.on_pod_deleted(&o);
                None
            }
            o => o,
        };
        match (old, node_name(&new).is_some()) {
            (None, true) => self.add_pod_to_cache(&new),
            (None, false) => self.add_pod_to_scheduling_queue(&new),
            (Some(old), true) if node_name(&old).is_none() => {
                // Just bound: it leaves the queue and is confirmed in the cache.
                if self.responsible_for(&old) {
                    self.queue.delete(&old);
                }
                self.add_pod_to_cache(&new);
            }
            (Some(old), true) => self.update_pod_in_cache(&old, &new),
            (Some(old), false) => self.update_pod_in_scheduling_queue(&old, new),
        }
    }

    /// A pod went away (or left the watch: it reached Succeeded/Failed).
    pub(crate) fn on_pod_deleted(&self, pod: &Arc<Pod>) {
        self.pods.pods.write().remove(&pod_key(pod));
        if node_name(pod).is_some() {
            self.delete_pod_from_cache(pod);
        } else if self.responsible_for(pod) {
            self.delete_pod_from_scheduling_queue(pod);
        }
    }

    fn add_pod_to_cache(&self, pod: &Arc<Pod>) {
        if let Err(e) = self.cache.add_pod(pod.clone()) {
            tracing::error!(pod = %pod_key(pod), error = %e, "adding pod to the cache");
        }
        self.queue.assigned_pod_added(pod);
    }

    fn update_pod_in_cache(&self, old: &Arc<Pod>, new: &Arc<Pod>) {
        if let Err(e) = self.cache.update_pod(new.clone()) {
            tracing::error!(pod = %pod_key(new), error = %e, "updating pod in the cache");
        }
        for event in pod_scheduling_properties_change(new, old) {
            self.queue.assigned_pod_updated(old, new, &event);
        }
    }

    fn delete_pod_from_cache(&self, pod: &Arc<Pod>) {
        if let Err(e) = self.cache.remove_pod(pod) {
            tracing::debug!(pod = %pod_key(pod), error = %e, "removing pod from the cache");
        }
        let old = ClusterObject::Pod(pod.clone());
        self.queue.move_all_to_active_or_backoff_queue(
            &well_known::ASSIGNED_POD_DELETE,
            Some(&old),
            None,
            None,
        );
    }

    fn add_pod_to_scheduling_queue(&self, pod: &Arc<Pod>) {
        if !self.responsible_for(pod) {
            return;
        }
        if let Err(e) = self.queue.add(pod.clone()) {
            tracing::error!(pod = %pod_key(pod), error = %e, "adding pod to the scheduling queue");
        }
    }

    fn update_pod_in_scheduling_queue(&self, old: &Arc<Pod>, new: Arc<Pod>) {
        match (self.responsible_for(old), self.responsible_for(&new)) {
            (_, true) => {
                if let Err(e) = self.queue.update(old, new.clone()) {
                    tracing::error!(pod = %pod_key(&new), error = %e, "updating pod in the scheduling queue");
                }
            }
            (true, false) => self.delete_pod_from_scheduling_queue(old),
            (false, false) => {}
        }
    }

    fn delete_pod_from_scheduling_queue(&self, pod: &Arc<Pod>) {
        self.queue.delete(pod);
        if let Some(fw) = self.profiles.get(scheduler_name(pod))
            && let Some(uid) = pod.metadata.uid.as_deref()
        {
            fw.handle()
                .waiting_pods()
                .reject(uid, "", "pod was deleted");
        }
    }

    /// A node appeared.
    pub(crate) fn add_node_to_cache(&self, node: &Arc<Node>) {
        if let Err(e) = self.cache.add_node(node.clone()) {
            tracing::error!(node = ?node.metadata.name, error = %e, "adding node to the cache");
        }
        let new = ClusterObject::Node(node.clone());
        self.queue.move_all_to_active_or_backoff_queue(
            &well_known::NODE_ADD,
            None,
            Some(&new),
            None,
        );
    }

    /// A node changed.
    pub(crate) fn update_node_in_cache(&self, old: &Arc<Node>, new: &Arc<Node>) {
        if let Err(e) = self.cache.update_node(new.clone()) {
            tracing::error!(node = ?new.metadata.name, error = %e, "updating node in the cache");
        }
        let (o, n) = (
            ClusterObject::Node(old.clone()),
            ClusterObject::Node(new.clone()),
        );
        for event in node_scheduling_properties_change(new, old) {
            self.queue
                .move_all_to_active_or_backoff_queue(&event, Some(&o), Some(&n), None);
        }
    }

    /// A node went away.
    pub(crate) fn delete_node_from_cache(&self, node: &Arc<Node>) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if let Err(e) = self.cache.remove_node(name) {
            tracing::debug!(node = name, error = %e, "removing node from the cache");
        }
    }
}

/// The node-change events upstream derives (`nodeSchedulingPropertiesChange`): allocatable,
/// labels, taints or `spec.unschedulable`, conditions (type and status only), annotations.
#[must_use]
pub fn node_scheduling_properties_change(new: &Node, old: &Node) -> Vec<ClusterEvent> {
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    let taints = |n: &Node| {
        let spec = n.spec.as_ref();
        (
            spec.and_then(|s| s.unschedulable).unwrap_or(false),
            spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
        )
    };
    let conditions = |n: &Node| {
        let mut c: Vec<(String, String)> = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect()
            })
            .unwrap_or_default();
        c.sort();
        c
    };
    let mut actions = ActionType::empty();
    if allocatable(new) != allocatable(old) {
        actions |= ActionType::UPDATE_NODE_ALLOCATABLE;
    }
    if new.metadata.labels != old.metadata.labels {
        actions |= ActionType::UPDATE_NODE_LABEL;
    }
    if taints(new) != taints(old) {
        actions |= ActionType::UPDATE_NODE_TAINT;
    }
    if conditions(new) != conditions(old) {
        actions |= ActionType::UPDATE_NODE_CONDITION;
    }
    if new.metadata.annotations != old.metadata.annotations {
        actions |= ActionType::UPDATE_NODE_ANNOTATION;
    }
    actions
        .iter()
        .map(|a| ClusterEvent::new(EventResource::Node, a))
        .collect()
}

/// Which informers have listed everything once.
#[derive(Debug, Clone)]
pub struct Synced {
    pods: watch::Receiver<bool>,
    nodes: watch::Receiver<bool>,
}

impl Synced {
    /// Waits until pods and nodes are both listed.
    pub async fn wait(&mut self) {
        let _ = self.pods.wait_for(|s| *s).await;
        let _ = self.nodes.wait_for(|s| *s).await;
    }

    /// Whether both are listed.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        *self.pods.borrow() && *self.nodes.borrow()
    }
}

/// Starts the pod and node informers; they run until `shutdown`.
pub fn start(
    client: Client,
    handlers: Handlers,
    shutdown: CancellationToken,
) -> (Synced, Vec<tokio::task::JoinHandle<()>>) {
    let (pods_tx, pods_rx) = watch::channel(false);
    let (nodes_tx, nodes_rx) = watch::channel(false);
    // Terminal pods hold no resources; when a pod turns terminal it leaves this watch, which
    // delivers it as a deletion.
    let pod_cfg = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let pod_api: Api<Pod> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client);
    let h = handlers.clone();
    let pods = tokio::spawn(run_watch(
        watcher(pod_api, pod_cfg),
        pods_tx,
        shutdown.clone(),
        "pods",
        move |old, new| h.on_pod(old, new),
        {
            let h = handlers.clone();
            move |p: &Arc<Pod>| h.on_pod_deleted(p)
        },
    ));
    let h = handlers.clone();
    let nodes = tokio::spawn(run_watch(
        watcher(node_api, watcher::Config::default()),
        nodes_tx,
        shutdown,
        "nodes",
        move |old: Option<Arc<Node>>, new: Arc<Node>| match old {
            None => h.add_node_to_cache(&new),
            Some(old) => h.update_node_in_cache(&old, &new),
        },
        move |n: &Arc<Node>| handlers.delete_node_from_cache(n),
    ));
    (
        Synced {
            pods: pods_rx,
            nodes: nodes_rx,
        },
        vec![pods, nodes],
    )
}

/// What the informers drop from every object before anything keeps it (upstream's pod
/// informer transform in `pkg/scheduler/scheduler.go`, applied here to nodes too):
/// `metadata.managedFields`. Server-side-apply bookkeeping that no scheduling decision reads,
/// yet a large part of a decoded object (`fieldsV1` is a tree of JSON maps), and every pod and
/// node is held for as long as it exists: dropping it took the side-by-side benchmark's peak
/// RSS from 119 to 85 MiB at 5000 pods (`docs/benchmarks.md`, "Memory").
pub fn trim<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// First retry delay after a failed list or watch; it doubles per failure up to
/// [`WATCH_BACKOFF_MAX`] and resets once objects flow again (client-go's reflector: 0.8 s to
/// 30 s).
const WATCH_BACKOFF_INITIAL: std::time::Duration = std::time::Duration::from_millis(800);
/// Longest retry delay after failed lists or watches.
const WATCH_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

async fn run_watch<K, S>(
    stream: S,
    synced: watch::Sender<bool>,
    shutdown: CancellationToken,
    what: &'static str,
    on_apply: impl Fn(Option<Arc<K>>, Arc<K>),
    on_delete: impl Fn(&Arc<K>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let key = |o: &K| {
        let m = o.meta();
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
    };
    let mut known: HashMap<String, Arc<K>> = HashMap::new();
    let mut relisting: Option<HashSet<String>> = None;
    // Our own backoff, not kube's `default_backoff()`: that one resets on every `Ok` item, and the
    // watcher yields `Ok(Event::Init)` before each (re)list request, so against an unreachable
    // apiserver it retried every ~1 s forever (and logged a "recovery" before every failure).
    futures::pin_mut!(stream);
    let mut failing = false;
    let mut delay = WATCH_BACKOFF_INITIAL;
    loop {
        let ev = tokio::select! {
            () = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let ev = match ev {
            // `Init` comes before the list request is even sent: not a sign of recovery.
            Ok(watcher::Event::Init) => watcher::Event::Init,
            Ok(ev) => {
                if failing {
                    tracing::info!(what, "watch recovered");
                    failing = false;
                }
                delay = WATCH_BACKOFF_INITIAL;
                ev
            }
            Err(e) => {
                let retry_in = delay.mul_f64(rand::random_range(1.0..1.25));
                if !failing {
                    tracing::warn!(what, error = %e, ?retry_in, "watch failed; retrying with backoff");
                } else if delay == WATCH_BACKOFF_MAX {
                    tracing::warn!(what, error = %e, ?retry_in, "watch still failing; retrying");
                } else {
                    tracing::debug!(what, error = %e, ?retry_in, "watch still failing; retrying");
                }
                failing = true;
                delay = (delay * 2).min(WATCH_BACKOFF_MAX);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry_in) => {}
                }
                continue;
            }
        };
        match ev {
            watcher::Event::Init => relisting = Some(HashSet::new()),
            watcher::Event::InitApply(mut obj) | watcher::Event::Apply(mut obj) => {
                trim(&mut obj);
                let k = key(&obj);
                if let Some(seen) = relisting.as_mut() {
                    seen.insert(k.clone());
                }
                let new = Arc::new(obj);
                let old = known.insert(k, new.clone());
                on_apply(old, new);
            }
            watcher::Event::Delete(mut obj) => {
                let k = key(&obj);
                let last = known.remove(&k).unwrap_or_else(|| {
                    trim(&mut obj);
                    Arc::new(obj)
                });
                on_delete(&last);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisting.take() {
                    // Deleted while the watch was down: in our view, not in the fresh list.
                    let gone: Vec<String> = known
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some(obj) = known.remove(&k) {
                            on_delete(&obj);
                        }
                    }
                }
                synced.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta,
    };

    use super::*;

    #[test]
    fn trim_drops_managed_fields_and_keeps_the_rest() {
        let meta = ObjectMeta {
            name: Some("p".into()),
            labels: Some([("app".to_owned(), "a".to_owned())].into()),
            annotations: Some([("k".to_owned(), "v".to_owned())].into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                fields_v1: Some(FieldsV1(
                    serde_json::json!({"f:metadata": {"f:labels": {}}}),
                )),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        };
        let mut pod = Pod {
            metadata: meta.clone(),
            ..Pod::default()
        };
        trim(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(
            pod.metadata,
            ObjectMeta {
                managed_fields: None,
                ..meta
            }
        );
    }
}
