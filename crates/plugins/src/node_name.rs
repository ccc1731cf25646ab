//! `NodeName`: a pod that names a node in `spec.nodeName` fits only that node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, NodeInfo, Plugin, PluginArgs, PluginError, QueueingHint, Status,
};

use crate::names;

/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Upstream's NodeName Filter plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeName;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(NodeName))
}

fn wanted(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Plugin for NodeName {
    fn name(&self) -> &str {
        names::NODE_NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match wanted(pod) {
            Some(name) if name != node.node_name() => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
        }
    }
}

impl EnqueueExtensions for NodeName {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![ClusterEventWithHint::with_hint(
            ClusterEvent::new(EventResource::Node, ActionType::ADD),
            |pod, _, new| {
                let name = new
                    .and_then(|n| n.as_node())
                    .and_then(|n| n.metadata.name.as_deref());
                Ok(if name.is_some() && name == wanted(pod) {
                    QueueingHint::Queue
                } else {
                    QueueingHint::QueueSkip
                })
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    #[test]
    fn only_the_named_node() {
        let state = CycleState::new();
        let pod = PodBuilder::new("p").node_name("a").pod();
        assert!(
            NodeName
                .filter(&state, &pod, &NodeBuilder::new("a").info())
                .is_success()
        );
        assert_eq!(
            NodeName
                .filter(&state, &pod, &NodeBuilder::new("b").info())
                .message(),
            ERR_REASON
        );
        assert!(
            NodeName
                .filter(
                    &state,
                    &PodBuilder::new("p").pod(),
                    &NodeBuilder::new("b").info()
                )
                .is_success()
        );
    }
}
