//! `NodeUnschedulable`: a node with `spec.unschedulable` (cordoned) takes only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, NodeInfo, Plugin, PluginArgs, PluginError, QueueingHint, Status,
};

use crate::{
    helper::{TAINT_NODE_UNSCHEDULABLE, same_pod, tolerates_taint},
    names,
};

/// Upstream's reason for a cordoned node.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// Upstream's reason when the NodeInfo has no node.
pub const ERR_REASON_UNKNOWN_CONDITION: &str = "node(s) had unknown conditions";

/// Upstream's NodeUnschedulable Filter plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeUnschedulable;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(NodeUnschedulable))
}

fn tolerates_unschedulable(pod: &Pod) -> bool {
    let taint = Taint {
        key: TAINT_NODE_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    tolerations.iter().any(|t| tolerates_taint(t, &taint))
}

fn cordoned(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &str {
        names::NODE_UNSCHEDULABLE
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if node.node().is_none() {
            return Status::unresolvable(ERR_REASON_UNKNOWN_CONDITION);
        }
        // `spec.unschedulable` as cached in the NodeInfo: the `Node` is not read.
        if node.unschedulable() && !tolerates_unschedulable(pod) {
            return Status::unresolvable(ERR_REASON_UNSCHEDULABLE);
        }
        Status::success()
    }
}

impl EnqueueExtensions for NodeUnschedulable {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::Node,
                    ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
                ),
                |pod, old, new| {
                    let Some(new) = new.and_then(|n| n.as_node()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let was_blocked = old.and_then(|o| o.as_node()).is_none_or(cordoned);
                    let now_open = !cordoned(new) || tolerates_unschedulable(pod);
                    Ok(if was_blocked && now_open {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(
                    EventResource::UnschedulablePod,
                    ActionType::UPDATE_POD_TOLERATION,
                ),
                |pod, _, new| {
                    let Some(new) = new.and_then(|n| n.as_pod()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let hint = same_pod(pod, new) && tolerates_unschedulable(new);
                    Ok(if hint {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    #[test]
    fn cordoned_nodes_need_a_toleration() {
        let cordon = NodeBuilder::new("n").unschedulable().info();
        let open = NodeBuilder::new("n").info();
        let plain = PodBuilder::new("p").pod();
        let tolerant = PodBuilder::new("p")
            .toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoSchedule")
            .pod();
        let s = NodeUnschedulable.filter(&CycleState::new(), &plain, &cordon);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), ERR_REASON_UNSCHEDULABLE);
        assert!(
            NodeUnschedulable
                .filter(&CycleState::new(), &tolerant, &cordon)
                .is_success()
        );
        assert!(
            NodeUnschedulable
                .filter(&CycleState::new(), &plain, &open)
                .is_success()
        );
    }
}
