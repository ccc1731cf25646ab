//! Small accessors that treat absent fields as empty.

use std::{collections::BTreeMap, sync::LazyLock};

use k8s_openapi::api::core::v1::{Node, Pod};

static EMPTY: LazyLock<BTreeMap<String, String>> = LazyLock::new(BTreeMap::new);

/// The pod's labels (empty when unset).
pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// The node's labels (empty when unset).
pub fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// The pod's namespace ("" when unset).
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

/// The pod's UID ("" when unset).
pub fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Whether two pod objects are the same pod: the same UID, or (for objects without UIDs, as in
/// tests) the same namespace and name.
pub fn same_pod(a: &Pod, b: &Pod) -> bool {
    match (a.metadata.uid.as_deref(), b.metadata.uid.as_deref()) {
        (Some(x), Some(y)) => x == y,
        _ => a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name,
    }
}
