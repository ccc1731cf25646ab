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

/// Cycle-state key of the pod's [`PodResource`], shared by the resource plugins.
const POD_RESOURCE_KEY: &str = "ksched/PodResource";

/// The cached requests and the pod they belong to (its address, name and UID: a state reused
/// for another pod, as some tests do, must not answer with the first pod's requests).
#[derive(Clone)]
struct CachedPodResource {
    pod: (usize, Option<String>, Option<String>),
    resource: std::sync::Arc<(
        ksched_framework::PodResource,
        Vec<ksched_framework::ResourceError>,
    )>,
}

fn identity(pod: &Pod) -> (usize, Option<&str>, Option<&str>) {
    (
        std::ptr::from_ref(pod) as usize,
        pod.metadata.name.as_deref(),
        pod.metadata.uid.as_deref(),
    )
}

/// The pod's requests (with the quantity errors found), computed once per cycle: parsing a
/// pod's quantities costs microseconds, and NodeResourcesFit's PreFilter and PreScore and
/// BalancedAllocation's PreScore all need them.
pub fn cached_pod_resource(
    state: &mut ksched_framework::CycleState,
    pod: &Pod,
) -> std::sync::Arc<(
    ksched_framework::PodResource,
    Vec<ksched_framework::ResourceError>,
)> {
    let id = identity(pod);
    if let Ok(c) = state.read::<CachedPodResource>(POD_RESOURCE_KEY)
        && (c.pod.0, c.pod.1.as_deref(), c.pod.2.as_deref()) == id
    {
        return c.resource.clone();
    }
    let resource = std::sync::Arc::new(ksched_framework::PodResource::of_pod(pod));
    state.write(
        POD_RESOURCE_KEY,
        CachedPodResource {
            pod: (id.0, id.1.map(str::to_owned), id.2.map(str::to_owned)),
            resource: resource.clone(),
        },
    );
    resource
}
