//! Shared pieces of the in-tree plugins: score normalization, taint matching, node selectors
//! and small pod accessors (upstream `plugins/helper` and `component-helpers/scheduling`).

mod node_selector;
mod normalize;
mod parallel;
mod pod;
mod taints;

pub use node_selector::{NodeSelectorMatcher, PreferredSchedulingTerms, RequiredNodeAffinity};
pub use normalize::default_normalize_score;
pub use parallel::par_map;
pub use pod::{cached_pod_resource, node_labels, pod_labels, pod_namespace, pod_uid, same_pod};
pub use taints::{
    TAINT_NODE_UNSCHEDULABLE, do_not_schedule_taint, find_untolerated_taint, tolerates_taint,
};
