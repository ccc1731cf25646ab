//! Fake nodes, test pods, binding, events.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Container, Event, Node, NodeCondition, NodeSpec as K8sNodeSpec, NodeStatus,
    ObjectReference, Pod, PodSpec, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::core::Status;
use kube::{Api, Client};

use crate::{Error, Result};

/// How many creates run concurrently in [`create_nodes`].
const CREATE_CONCURRENCY: usize = 16;

/// Template for fake nodes: there is no kubelet, so the status (capacity, allocatable, a `Ready`
/// condition) is set at creation, which kube-apiserver accepts for nodes.
///
/// Defaults: `cpu: 4`, `memory: 32Gi`, `pods: 110`, allocatable = capacity, labels
/// `kubernetes.io/hostname=<name>`, `kubernetes.io/os=linux`, `kubernetes.io/arch=amd64`.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Nodes are named `<name_prefix>-<index>` (default prefix `node`).
    pub name_prefix: String,
    /// `status.capacity` by resource name.
    pub capacity: BTreeMap<String, String>,
    /// Overrides of `status.allocatable` (otherwise equal to capacity).
    pub allocatable: BTreeMap<String, String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
}

impl Default for NodeSpec {
    fn default() -> Self {
        let capacity = [("cpu", "4"), ("memory", "32Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        NodeSpec {
            name_prefix: "node".to_owned(),
            capacity,
            allocatable: BTreeMap::new(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
        }
    }
}

impl NodeSpec {
    /// The default template.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names nodes `<prefix>-<index>`. On a shared control plane use the test namespace's name.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// CPU capacity, e.g. `"4"` or `"3500m"`.
    pub fn cpu(self, quantity: impl Into<String>) -> Self {
        self.capacity("cpu", quantity)
    }

    /// Memory capacity, e.g. `"32Gi"`.
    pub fn memory(self, quantity: impl Into<String>) -> Self {
        self.capacity("memory", quantity)
    }

    /// Pod capacity.
    pub fn pods(self, pods: u32) -> Self {
        self.capacity("pods", pods.to_string())
    }

    /// Capacity of any resource, e.g. `("ephemeral-storage", "100Gi")` or `("example.com/gpu", "2")`.
    pub fn capacity(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.capacity.insert(resource.into(), quantity.into());
        self
    }

    /// Allocatable of one resource when it differs from capacity.
    pub fn allocatable(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.allocatable.insert(resource.into(), quantity.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint; `effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: Option<&str>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: value.map(str::to_owned),
            effect: effect.into(),
            ..Taint::default()
        });
        self
    }

    /// Marks the nodes unschedulable (cordoned).
    pub fn unschedulable(mut self, unschedulable: bool) -> Self {
        self.unschedulable = unschedulable;
        self
    }

    /// The node named `name` built from this template.
    pub fn to_node(&self, name: &str) -> Node {
        let quantities = |m: &BTreeMap<String, String>| -> BTreeMap<String, Quantity> {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        };
        let capacity = quantities(&self.capacity);
        let mut allocatable = capacity.clone();
        allocatable.extend(quantities(&self.allocatable));
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.extend(self.labels.clone());
        let now = Time(jiff_now());
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(K8sNodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                unschedulable: self.unschedulable.then_some(true),
                ..K8sNodeSpec::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(capacity),
                allocatable: Some(allocatable),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".to_owned(),
                    status: "True".to_owned(),
                    reason: Some("KschedTestenv".to_owned()),
                    message: Some("fake node created by ksched-testenv (no kubelet)".to_owned()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now),
                }]),
                ..NodeStatus::default()
            }),
        }
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Creates one fake node named `name` from `spec`.
pub async fn create_node(client: &Client, name: &str, spec: &NodeSpec) -> Result<Node> {
    Ok(Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &spec.to_node(name))
        .await?)
}

/// Creates `count` fake nodes `<spec.name_prefix>-0 .. -<count-1>` (concurrently); returns them
/// in index order.
pub async fn create_nodes(client: &Client, count: usize, spec: &NodeSpec) -> Result<Vec<Node>> {
    futures::stream::iter(0..count)
        .map(|i| {
            let name = format!("{}-{i}", spec.name_prefix);
            async move { create_node(client, &name, spec).await }
        })
        .buffered(CREATE_CONCURRENCY)
        .try_collect()
        .await
}

/// Deletes a node (nodes have no kubelet-side finalization; deletion is immediate).
/// A node that does not exist is not an error.
pub async fn delete_node(client: &Client, name: &str) -> Result<()> {
    match Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A small pod builder: one `pause` container with optional requests (requests = limits).
#[derive(Clone, Debug)]
pub struct TestPod {
    name: String,
    requests: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
    scheduler_name: Option<String>,
    priority_class_name: Option<String>,
    priority: Option<i32>,
}

impl TestPod {
    /// A pod named `name` without requests, scheduled by `default-scheduler`.
    pub fn new(name: impl Into<String>) -> Self {
        TestPod {
            name: name.into(),
            requests: BTreeMap::new(),
            labels: BTreeMap::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            scheduler_name: None,
            priority_class_name: None,
            priority: None,
        }
    }

    /// CPU request (and limit), e.g. `"100m"`.
    pub fn cpu(self, quantity: impl Into<String>) -> Self {
        self.request("cpu", quantity)
    }

    /// Memory request (and limit), e.g. `"500Mi"`.
    pub fn memory(self, quantity: impl Into<String>) -> Self {
        self.request("memory", quantity)
    }

    /// Request (and limit) of any resource.
    pub fn request(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.requests.insert(resource.into(), quantity.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a `spec.nodeSelector` entry.
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Adds a toleration (`operator: Exists` when `value` is `None`, else `Equal`).
    pub fn toleration(
        mut self,
        key: impl Into<String>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Self {
        self.tolerations.push(Toleration {
            key: Some(key.into()),
            operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_owned()),
            value: value.map(str::to_owned),
            effect: effect.map(str::to_owned),
            ..Toleration::default()
        });
        self
    }

    /// Sets `spec.schedulerName`.
    pub fn scheduler_name(mut self, name: impl Into<String>) -> Self {
        self.scheduler_name = Some(name.into());
        self
    }

    /// Sets `spec.priorityClassName`.
    pub fn priority_class_name(mut self, name: impl Into<String>) -> Self {
        self.priority_class_name = Some(name.into());
        self
    }

    /// Sets `spec.priority` directly (the Priority admission plugin is disabled in the harness).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Builds the `Pod`.
    pub fn to_pod(&self) -> Pod {
        let resources = (!self.requests.is_empty()).then(|| {
            let q: BTreeMap<String, Quantity> = self
                .requests
                .iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect();
            ResourceRequirements {
                requests: Some(q.clone()),
                limits: Some(q),
                ..ResourceRequirements::default()
            }
        });
        let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: non_empty(&self.labels),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "pause".to_owned(),
                    image: Some("registry.k8s.io/pause:3.10".to_owned()),
                    resources,
                    ..Container::default()
                }],
                node_selector: non_empty(&self.node_selector),
                tolerations: (!self.tolerations.is_empty()).then(|| self.tolerations.clone()),
                scheduler_name: self.scheduler_name.clone(),
                priority_class_name: self.priority_class_name.clone(),
                priority: self.priority,
                termination_grace_period_seconds: Some(0),
                ..PodSpec::default()
            }),
            status: None,
        }
    }
}

impl From<TestPod> for Pod {
    fn from(p: TestPod) -> Pod {
        p.to_pod()
    }
}

impl From<&TestPod> for Pod {
    fn from(p: &TestPod) -> Pod {
        p.to_pod()
    }
}

/// Creates a pod in `namespace`.
pub async fn create_pod(client: &Client, namespace: &str, pod: impl Into<Pod>) -> Result<Pod> {
    Ok(Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod.into())
        .await?)
}

/// Deletes a pod with `gracePeriodSeconds: 0` (there is no kubelet to finish a graceful delete of
/// a bound pod). A pod that does not exist is not an error.
pub async fn delete_pod(client: &Client, namespace: &str, name: &str) -> Result<()> {
    match Api::<Pod>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Binds a pod to a node through the `pods/binding` subresource, as a scheduler does.
///
/// kube-apiserver answers with a `Status` (not a `Binding`). Binding an already bound pod fails
/// with status code 409 (see [`Error::status_code`]).
pub async fn bind_pod(client: &Client, namespace: &str, pod: &str, node: &str) -> Result<Status> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        },
    };
    Ok(Api::<Pod>::namespaced(client.clone(), namespace)
        .create_subresource::<Binding, Status>("binding", pod, &PostParams::default(), &binding)
        .await?)
}

/// Waits until the pod has `spec.nodeName` and returns it. On timeout the error contains the pod's
/// `PodScheduled` condition and its events.
pub async fn wait_for_pod_bound(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<String> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let bound = |pod: Option<&Pod>| node_name(pod).is_some();
    match tokio::time::timeout(
        timeout,
        kube::runtime::wait::await_condition(api, name, bound),
    )
    .await
    {
        Ok(Ok(pod)) => node_name(pod.as_ref()).ok_or_else(|| Error::NotRunning {
            message: format!("pod {namespace}/{name} was deleted while waiting for it to be bound"),
            output: String::new(),
        }),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Error::Timeout {
            what: format!("pod {namespace}/{name} to be bound"),
            timeout,
            details: describe_pod(client, namespace, name).await,
        }),
    }
}

fn node_name(pod: Option<&Pod>) -> Option<String> {
    pod?.spec.as_ref()?.node_name.clone()
}

async fn describe_pod(client: &Client, namespace: &str, name: &str) -> String {
    let mut out = String::new();
    match Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(pod)) => {
            for c in pod
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
            {
                out.push_str(&format!(
                    "\n  condition {}={} {} {}",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                ));
            }
        }
        Ok(None) => out.push_str("\n  (pod does not exist)"),
        Err(e) => out.push_str(&format!("\n  (cannot get pod: {e})")),
    }
    match events_for_pod(client, namespace, name).await {
        Ok(events) => {
            for e in events {
                out.push_str(&format!(
                    "\n  event {} {}: {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                ));
            }
        }
        Err(e) => out.push_str(&format!("\n  (cannot list events: {e})")),
    }
    out
}

/// Events (core/v1) whose involved object is the pod `namespace/name`, oldest first. This includes
/// the `Scheduled` / `FailedScheduling` events written by kube-scheduler.
pub async fn events_for_pod(client: &Client, namespace: &str, name: &str) -> Result<Vec<Event>> {
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={name}"
    ));
    let mut events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items;
    events.sort_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    Ok(events)
}
