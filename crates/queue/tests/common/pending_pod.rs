//! A typical pending pod, shared by the queue's memory test and the queue benchmarks (which
//! include this file by path) so that both measure the same object.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::{Container, Pod, PodSpec, ResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};

/// Pod `i`: generated name and UID, two labels, one container with CPU and memory requests,
/// and `priority`.
pub fn pending_pod(i: usize, priority: i32) -> Arc<Pod> {
    let mut p = Pod::default();
    p.metadata.namespace = Some("default".into());
    p.metadata.name = Some(format!("web-{i:07}"));
    p.metadata.uid = Some(format!("6f1c2a3e-0000-4000-8000-{i:012}"));
    p.metadata.labels = Some(BTreeMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("pod-template-hash".to_owned(), "5d8f7c9b4".to_owned()),
    ]));
    let requests = BTreeMap::from([
        ("cpu".to_owned(), Quantity("250m".into())),
        ("memory".to_owned(), Quantity("256Mi".into())),
    ]);
    p.spec = Some(PodSpec {
        priority: Some(priority),
        containers: vec![Container {
            name: "web".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    Arc::new(p)
}
