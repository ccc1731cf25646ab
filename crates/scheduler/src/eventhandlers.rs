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
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
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

/// Starts the pod and node informers; they run until `shutdown`. With `trim_assigned`, the pod
/// informer also applies [`trim_assigned_pod`] to pods bound to a node (see there).
pub fn start(
    client: Client,
    handlers: Handlers,
    shutdown: CancellationToken,
    trim_assigned: bool,
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
        move |pod: &mut Pod| trim_pod(pod, trim_assigned),
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
        trim::<Node>,
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

/// The pod informer's transform: [`trim`], then [`trim_assigned_pod`] for a pod bound to a
/// node when `trim_assigned`, then [`shrink_pod`].
fn trim_pod(pod: &mut Pod, trim_assigned: bool) {
    trim(pod);
    if trim_assigned && node_name(pod).is_some() {
        trim_assigned_pod(pod);
    }
    shrink_pod(pod);
}

/// The annotation `kubectl apply` keeps a copy of the whole object in (often the largest
/// annotation a pod has).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The only pod conditions the scheduler reads of a bound pod: `PodResizePending` (an infeasible
/// resize: the node keeps counting the allocated requests) and `DisruptionTarget` (a victim
/// already being evicted by preemption).
const ASSIGNED_POD_CONDITIONS: [&str; 2] = ["PodResizePending", "DisruptionTarget"];

/// What the pod informer drops, beyond [`trim`], from a pod bound to a node — a **deviation
/// from upstream**, whose informer keeps whole pods. Bound pods are most of what the scheduler
/// holds (every running pod of the cluster, for as long as it runs), and they are read only as
/// the existing pods a new pod is placed among: their labels, namespace, owner, priority and
/// affinity, their containers' requests and ports, their resize status, volumes that are claims,
/// start time and deletion. Dropped, because no plugin of the default profile, NetworkTraffic,
/// the queue or the cache reads them of a bound pod:
///
/// - the `kubectl.kubernetes.io/last-applied-configuration` annotation (other annotations stay:
///   NetworkTraffic reads its own);
/// - `spec.tolerations` (only the pod being scheduled is matched against taints),
///   `dnsConfig`, `dnsPolicy`, `hostAliases`, `imagePullSecrets`, `readinessGates`,
///   `securityContext`;
/// - `spec.volumes` that are `configMap`, `secret`, `projected`, `downwardAPI` or `emptyDir`
///   (volume plugins read claims, ephemeral volumes and cloud disks);
/// - per container (regular, init): `resources.limits` (scheduling reads requests), `args`,
///   `command`, `env`, `envFrom`, `imagePullPolicy`, `lifecycle`, the three probes,
///   `securityContext`, `terminationMessagePath`/`Policy`, `volumeMounts`, `volumeDevices`,
///   `workingDir`;
/// - in the status: conditions other than `PodResizePending` and `DisruptionTarget`, `hostIP(s)`,
///   `podIP(s)`, `message`, `reason`, `qosClass`, ephemeral container statuses, and of each
///   container status everything but its name and resources (allocated and actual).
///
/// A custom plugin that reads any of these from the existing pods of a node turns it off:
/// `SchedulerBuilder::with_assigned_pod_trim(false)` (the binary's
/// `--keep-assigned-pod-fields`). Pods not yet bound, which plugins read in full, are never
/// trimmed; nothing writes a pod back from these copies (status changes are patches).
pub fn trim_assigned_pod(pod: &mut Pod) {
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.tolerations = None;
        spec.dns_config = None;
        spec.dns_policy = None;
        spec.host_aliases = None;
        spec.image_pull_secrets = None;
        spec.readiness_gates = None;
        spec.security_context = None;
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| {
                v.config_map.is_none()
                    && v.secret.is_none()
                    && v.projected.is_none()
                    && v.downward_api.is_none()
                    && v.empty_dir.is_none()
            });
        }
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            if let Some(r) = c.resources.as_mut() {
                r.limits = None;
            }
            c.args = None;
            c.command = None;
            c.env = None;
            c.env_from = None;
            c.image_pull_policy = None;
            c.lifecycle = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.security_context = None;
            c.termination_message_path = None;
            c.termination_message_policy = None;
            c.volume_mounts = None;
            c.volume_devices = None;
            c.working_dir = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| ASSIGNED_POD_CONDITIONS.contains(&c.type_.as_str()));
        }
        status.host_ip = None;
        status.host_ips = None;
        status.pod_ip = None;
        status.pod_ips = None;
        status.message = None;
        status.reason = None;
        status.qos_class = None;
        status.ephemeral_container_statuses = None;
        for cs in status
            .container_statuses
            .iter_mut()
            .flatten()
            .chain(status.init_container_statuses.iter_mut().flatten())
        {
            *cs = ContainerStatus {
                name: std::mem::take(&mut cs.name),
                allocated_resources: cs.allocated_resources.take(),
                resources: cs.resources.take(),
                ..ContainerStatus::default()
            };
        }
    }
}

/// Gives back the spare capacity of the pod's lists: serde grows a list to 4 elements on the
/// first push, so one status condition held 640 bytes and two tolerations 448. Only memory
/// changes, never content.
pub fn shrink_pod(pod: &mut Pod) {
    fn shrink<T>(v: &mut Option<Vec<T>>) {
        if let Some(v) = v.as_mut() {
            v.shrink_to_fit();
        }
    }
    let meta = &mut pod.metadata;
    shrink(&mut meta.owner_references);
    shrink(&mut meta.finalizers);
    if let Some(spec) = pod.spec.as_mut() {
        shrink(&mut spec.tolerations);
        shrink(&mut spec.volumes);
        shrink(&mut spec.topology_spread_constraints);
        shrink(&mut spec.scheduling_gates);
        shrink(&mut spec.resource_claims);
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            shrink(&mut c.ports);
            shrink(&mut c.env);
            shrink(&mut c.volume_mounts);
        }
    }
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
    }
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
    transform: impl Fn(&mut K),
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
                transform(&mut obj);
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
                    transform(&mut obj);
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

    /// A pod with something in every field `trim_assigned_pod` drops or must keep.
    fn full_pod(node: Option<&str>) -> Pod {
        use std::collections::BTreeMap;

        use k8s_openapi::{
            api::core::v1::{
                Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
                PersistentVolumeClaimVolumeSource, PodCondition, PodSpec, PodStatus, Probe,
                ResourceRequirements, Toleration, Volume,
            },
            apimachinery::pkg::api::resource::Quantity,
        };
        let q = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect()
        };
        let container = |name: &str| Container {
            name: name.into(),
            image: Some("app:1".into()),
            ports: Some(vec![ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..ContainerPort::default()
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(q(&[("cpu", "100m"), ("memory", "64Mi")])),
                limits: Some(q(&[("cpu", "200m"), ("memory", "64Mi")])),
                ..ResourceRequirements::default()
            }),
            env: Some(vec![EnvVar {
                name: "A".into(),
                value: Some("b".into()),
                ..EnvVar::default()
            }]),
            command: Some(vec!["/app".into()]),
            liveness_probe: Some(Probe::default()),
            termination_message_path: Some("/dev/termination-log".into()),
            ..Container::default()
        };
        let condition = |type_: &str| PodCondition {
            type_: type_.into(),
            status: "True".into(),
            ..PodCondition::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_owned(), "a".to_owned())].into()),
                annotations: Some(
                    [
                        ("keep".to_owned(), "v".to_owned()),
                        (LAST_APPLIED.to_owned(), "{...}".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_owned),
                priority: Some(7),
                affinity: Some(Affinity::default()),
                containers: vec![container("app")],
                init_containers: Some(vec![container("init")]),
                tolerations: Some(vec![Toleration {
                    key: Some("k".into()),
                    operator: Some("Exists".into()),
                    ..Toleration::default()
                }]),
                dns_policy: Some("ClusterFirst".into()),
                volumes: Some(vec![
                    Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: "pvc".into(),
                            read_only: None,
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource::default()),
                        ..Volume::default()
                    },
                ]),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![
                    condition("PodScheduled"),
                    condition("Ready"),
                    condition("DisruptionTarget"),
                    condition("PodResizePending"),
                ]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    image: "app:1".into(),
                    image_id: "sha256:abc".into(),
                    allocated_resources: Some(q(&[("cpu", "300m")])),
                    ..ContainerStatus::default()
                }]),
                pod_ip: Some("10.0.0.1".into()),
                qos_class: Some("Burstable".into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn pods_not_bound_are_kept_whole() {
        let original = full_pod(None);
        let mut pod = original.clone();
        trim_pod(&mut pod, true);
        assert_eq!(pod, original);
    }

    #[test]
    fn bound_pods_are_kept_whole_when_trimming_is_off() {
        let original = full_pod(Some("n1"));
        let mut pod = original.clone();
        trim_pod(&mut pod, false);
        assert_eq!(pod, original);
    }

    #[test]
    fn bound_pods_lose_what_no_plugin_reads_and_keep_what_they_do() {
        use ksched_framework::resource::PodResource;

        let original = full_pod(Some("n1"));
        let mut pod = original.clone();
        trim_pod(&mut pod, true);
        // What the cache, the plugins and the queue read of a bound pod is unchanged…
        assert_eq!(PodResource::of_pod(&pod), PodResource::of_pod(&original));
        assert_eq!(pod.metadata.labels, original.metadata.labels);
        assert_eq!(
            pod.metadata.annotations,
            Some([("keep".to_owned(), "v".to_owned())].into())
        );
        let (spec, was) = (pod.spec.as_ref().unwrap(), original.spec.as_ref().unwrap());
        assert_eq!(spec.priority, was.priority);
        assert_eq!(spec.affinity, was.affinity);
        assert_eq!(spec.node_name, was.node_name);
        assert_eq!(spec.containers[0].ports, was.containers[0].ports);
        assert_eq!(spec.containers[0].image, was.containers[0].image);
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data"]);
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(conditions, ["DisruptionTarget", "PodResizePending"]);
        let cs = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.name, "app");
        assert!(cs.allocated_resources.is_some());
        assert!(cs.image.is_empty() && cs.image_id.is_empty());
        // …and the rest is gone.
        assert_eq!(spec.tolerations, None);
        assert_eq!(spec.dns_policy, None);
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            assert_eq!(c.resources.as_ref().unwrap().limits, None);
            assert_eq!((&c.env, &c.command), (&None, &None));
            assert_eq!(c.liveness_probe, None);
            assert_eq!(c.termination_message_path, None);
        }
        assert_eq!((&status.pod_ip, &status.qos_class), (&None, &None));
    }

    #[test]
    fn shrinking_gives_back_spare_capacity() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
                "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
            },
            "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]},
        }))
        .unwrap();
        let original = pod.clone();
        trim_pod(&mut pod, true);
        assert_eq!(pod, original);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.tolerations.as_ref().unwrap().capacity(), 2);
        assert_eq!(spec.containers[0].ports.as_ref().unwrap().capacity(), 1);
        let conditions = pod.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(conditions.capacity(), 1);
    }
}
