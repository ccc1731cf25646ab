//! Builders for unit tests: nodes, pods, snapshots and a default-profile framework.

// Shared by every test module; not each one uses every builder.
#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::{
        Affinity, Container, ContainerImage, ContainerPort, Node, NodeSpec, NodeStatus, Pod,
        PodSpec, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use ksched_framework::{
    Framework, Handle, NodeInfo, PodInfo, Snapshot,
    config::{KubeSchedulerConfiguration, SchedulerConfig},
    runtime::{FrameworkOptions, Parallelizer},
};

/// Builds a node; allocatable defaults to 4 CPUs, 8 GiB and 110 pods.
pub struct NodeBuilder {
    node: Node,
    pods: Vec<Arc<PodInfo>>,
}

impl NodeBuilder {
    pub fn new(name: &str) -> Self {
        let allocatable: BTreeMap<String, Quantity> =
            [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
                .iter()
                .map(|(k, v)| ((*k).into(), Quantity((*v).into())))
                .collect();
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_owned(), name.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(allocatable),
                ..NodeStatus::default()
            }),
        };
        Self {
            node,
            pods: Vec::new(),
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_default()
            .insert(k.into(), v.into());
        self
    }

    pub fn zone(self, z: &str) -> Self {
        self.label("topology.kubernetes.io/zone", z)
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.node.spec.get_or_insert_default();
        spec.taints.get_or_insert_default().push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.node.spec.get_or_insert_default().unschedulable = Some(true);
        self
    }

    pub fn alloc(mut self, name: &str, q: &str) -> Self {
        let status = self.node.status.get_or_insert_default();
        status
            .allocatable
            .get_or_insert_default()
            .insert(name.into(), Quantity(q.into()));
        self
    }

    pub fn image(mut self, name: &str, size: i64) -> Self {
        let status = self.node.status.get_or_insert_default();
        status.images.get_or_insert_default().push(ContainerImage {
            names: Some(vec![name.into()]),
            size_bytes: Some(size),
        });
        self
    }

    /// Places a pod (its `spec.nodeName` is set to this node).
    pub fn pod(mut self, pod: PodBuilder) -> Self {
        let name = self.node.metadata.name.clone().unwrap_or_default();
        self.pods
            .push(Arc::new(PodInfo::new(Arc::new(pod.node_name(&name).pod()))));
        self
    }

    pub fn node(&self) -> Arc<Node> {
        Arc::new(self.node.clone())
    }

    pub fn info(&self) -> NodeInfo {
        let mut info = NodeInfo::new(self.node());
        for p in &self.pods {
            info.add_pod(p.clone());
        }
        info
    }
}

/// Builds a pod in namespace `default` with one container `c`.
#[derive(Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    pub fn new(name: &str) -> Self {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("pause".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        };
        Self { pod }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_default()
    }

    pub fn ns(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.into());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_default()
            .insert(k.into(), v.into());
        self
    }

    pub fn req(mut self, name: &str, q: &str) -> Self {
        let c = &mut self.spec().containers[0];
        let r = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        r.requests
            .get_or_insert_default()
            .insert(name.into(), Quantity(q.into()));
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.spec().containers[0].image = Some(image.into());
        self
    }

    pub fn container(mut self, image: &str) -> Self {
        let n = self.spec().containers.len();
        self.spec().containers.push(Container {
            name: format!("c{n}"),
            image: Some(image.into()),
            ..Container::default()
        });
        self
    }

    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        self.spec()
            .tolerations
            .get_or_insert_default()
            .push(Toleration {
                key: opt(key),
                operator: opt(op),
                value: opt(value),
                effect: opt(effect),
                toleration_seconds: None,
            });
        self
    }

    pub fn node_name(mut self, n: &str) -> Self {
        self.spec().node_name = Some(n.into());
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_default()
            .insert(k.into(), v.into());
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    pub fn host_port(mut self, port: i32) -> Self {
        let c = &mut self.spec().containers[0];
        c.ports.get_or_insert_default().push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            ..ContainerPort::default()
        });
        self
    }

    pub fn affinity(mut self, a: Affinity) -> Self {
        self.spec().affinity = Some(a);
        self
    }

    pub fn spread(
        mut self,
        max_skew: i32,
        key: &str,
        when: &str,
        selector: &[(&str, &str)],
    ) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_default()
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: when.into(),
                label_selector: Some(selector_of(selector)),
                ..TopologySpreadConstraint::default()
            });
        self
    }

    pub fn spread_constraint(mut self, c: TopologySpreadConstraint) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_default()
            .push(c);
        self
    }

    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now()),
        );
        self
    }

    pub fn pod(&self) -> Pod {
        self.pod.clone()
    }

    pub fn info(&self) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(self.pod())))
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::UNIX_EPOCH
}

pub fn selector_of(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// A snapshot of the given nodes, in order.
pub fn snapshot(nodes: &[NodeBuilder]) -> Arc<Snapshot> {
    Arc::new(Snapshot::from_node_infos(
        nodes.iter().map(NodeBuilder::info).collect(),
    ))
}

/// The default profile (every in-tree plugin, upstream weights) over `snapshot`.
pub fn default_framework(snapshot: Arc<Snapshot>) -> Arc<Framework> {
    framework_with(snapshot, KubeSchedulerConfiguration::default())
}

/// A framework for the first profile of `config` over `snapshot`.
pub fn framework_with(
    snapshot: Arc<Snapshot>,
    config: KubeSchedulerConfiguration,
) -> Arc<Framework> {
    let registry = crate::in_tree_registry();
    let config = SchedulerConfig::from_raw(config, &registry).expect("valid config");
    let handle = Arc::new(Handle::for_tests(config.profiles[0].scheduler_name.clone()));
    handle.set_snapshot(snapshot);
    let options = FrameworkOptions {
        percentage_of_nodes_to_score: 0,
        parallelizer: Parallelizer::new(2).expect("thread pool"),
        metrics: None,
    };
    Framework::new(&config.profiles[0], &registry, handle, options).expect("framework")
}
