//! Shared pieces of the in-tree plugins: score normalization, taint matching, node selectors
//! and small pod accessors (upstream `plugins/helper` and `component-helpers/scheduling`).

mod node_selector;
mod normalize;
mod parallel;
mod pod;
mod taints;

pub use node_selector::{NodeSelectorMatcher, PreferredSchedulingTerms, RequiredNodeAffinity};
pub use normalize::default_normalize_score;

/// The PreFilter result stored as an `Arc<T>` under `key`, or — PreFilter disabled, as
/// upstream's Filter plugins allow — `compute`d here.
pub fn pre_filter_state<'s, T: Clone + Send + Sync + 'static>(
    state: &'s ksched_framework::CycleState,
    key: &str,
    compute: impl FnOnce() -> T,
) -> std::borrow::Cow<'s, T> {
    match state.read::<std::sync::Arc<T>>(key) {
        Ok(v) => std::borrow::Cow::Borrowed(&**v),
        Err(_) => std::borrow::Cow::Owned(compute()),
    }
}

/// `FilterPlugin::filter_nodes` from a per-node check that has its per-cycle inputs already
/// at hand: pushes each non-success status with the node's position.
pub fn filter_each(
    nodes: &[&ksched_framework::NodeInfo],
    rejected: &mut Vec<(usize, ksched_framework::Status)>,
    mut check: impl FnMut(&ksched_framework::NodeInfo) -> ksched_framework::Status,
) {
    for (i, node) in nodes.iter().enumerate() {
        let s = check(node);
        if !s.is_success() {
            rejected.push((i, s));
        }
    }
}
pub use parallel::par_map;
pub use pod::{cached_pod_resource, node_labels, pod_labels, pod_namespace, pod_uid, same_pod};
pub use taints::{
    TAINT_NODE_UNSCHEDULABLE, do_not_schedule_taint, find_untolerated_taint, tolerates_taint,
};
