//! Builders for the cache tests.
#![allow(dead_code, missing_docs)]

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::{
        Affinity, Container, ContainerImage, ContainerPort, Node, NodeStatus, Pod, PodAffinityTerm,
        PodAntiAffinity, PodSpec, ResourceRequirements,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// A node builder.
#[derive(Clone)]
pub struct NodeBuilder {
    node: Node,
}

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        node: Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(quantities(&[
                    ("cpu", "4"),
                    ("memory", "16Gi"),
                    ("pods", "110"),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

impl NodeBuilder {
    pub fn zone(mut self, zone: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_default()
            .insert(ZONE_LABEL.into(), zone.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    pub fn allocatable(mut self, items: &[(&str, &str)]) -> Self {
        self.node.status.get_or_insert_default().allocatable = Some(quantities(items));
        self
    }

    /// Images as (name, size).
    pub fn images(mut self, images: &[(&str, i64)]) -> Self {
        self.node.status.get_or_insert_default().images = Some(
            images
                .iter()
                .map(|(name, size)| ContainerImage {
                    names: Some(vec![(*name).into()]),
                    size_bytes: Some(*size),
                })
                .collect(),
        );
        self
    }

    pub fn build(self) -> Arc<Node> {
        Arc::new(self.node)
    }
}

/// A pod builder: one container named "app" unless containers are set.
#[derive(Clone)]
pub struct PodBuilder {
    pod: Pod,
}

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

pub fn container(name: &str, requests: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        resources: (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(quantities(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_default()
    }

    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn requests(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().containers[0] = container("app", requests);
        self
    }

    pub fn containers(mut self, containers: Vec<Container>) -> Self {
        self.spec().containers = containers;
        self
    }

    pub fn init_containers(mut self, containers: Vec<Container>) -> Self {
        self.spec().init_containers = Some(containers);
        self
    }

    pub fn overhead(mut self, items: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(quantities(items));
        self
    }

    pub fn host_port(mut self, port: i32, protocol: &str, ip: &str) -> Self {
        let c = &mut self.spec().containers[0];
        c.ports.get_or_insert_default().push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: (!protocol.is_empty()).then(|| protocol.into()),
            host_ip: (!ip.is_empty()).then(|| ip.into()),
            ..Default::default()
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    /// Required anti-affinity to pods labelled `app=<app>` per hostname.
    pub fn anti_affinity(mut self, app: &str) -> Self {
        self.spec().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                        match_expressions: None,
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        });
        self
    }

    /// Preferred (not required) anti-affinity: counts as "with affinity" only.
    pub fn preferred_anti_affinity(mut self) -> Self {
        self.spec().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity::default()),
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> Arc<Pod> {
        Arc::new(self.pod)
    }
}
