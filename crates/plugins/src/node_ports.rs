//! `NodePorts`: a pod's host ports must be free on the node.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, NodeInfo, Plugin, PluginArgs, PluginError, PreFilterPlugin,
    PreFilterResult, QueueingHint, Status, pod_host_ports,
};

use crate::names;

/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const PRE_FILTER_KEY: &str = "PreFilterNodePorts";

/// Upstream's NodePorts plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodePorts;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(NodePorts))
}

/// (host IP, protocol, host port) of each port the pod wants on the host.
type WantedPorts = Arc<Vec<(String, String, i32)>>;

fn wanted_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod_host_ports(pod)
        .map(|p| {
            (
                p.host_ip.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

fn protocol(p: &str) -> &str {
    if p.is_empty() { "TCP" } else { p }
}

fn conflicts(ports: &[(String, String, i32)], node: &NodeInfo) -> bool {
    ports
        .iter()
        .any(|(ip, proto, port)| node.used_ports().check_conflict(ip, proto, *port))
}

impl Plugin for NodePorts {
    fn name(&self) -> &str {
        names::NODE_PORTS
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

#[async_trait]
impl PreFilterPlugin for NodePorts {
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let ports = wanted_ports(pod);
        if ports.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, WantedPorts::new(ports));
        (None, Status::success())
    }
}

fn conflict_status(conflict: bool) -> Status {
    if conflict {
        Status::unschedulable(ERR_REASON)
    } else {
        Status::success()
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let wanted = crate::helper::pre_filter_state(state, PRE_FILTER_KEY, || wanted_ports(pod));
        conflict_status(conflicts(&wanted, node))
    }

    /// [`FilterPlugin::filter`] with the PreFilter state read (or computed) once per chunk.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        let wanted = crate::helper::pre_filter_state(state, PRE_FILTER_KEY, || wanted_ports(pod));
        crate::helper::filter_each(nodes, rejected, |n| conflict_status(conflicts(&wanted, n)));
    }
}

impl EnqueueExtensions for NodePorts {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        vec![
            ClusterEventWithHint::with_hint(
                ClusterEvent::new(EventResource::Pod, ActionType::DELETE),
                |pod, old, _| {
                    let Some(deleted) = old.and_then(|o| o.as_pod()) else {
                        return Ok(QueueingHint::Queue);
                    };
                    let bound = deleted
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty());
                    let wanted = wanted_ports(pod);
                    let overlap = wanted_ports(deleted).iter().any(|(_, proto, port)| {
                        wanted
                            .iter()
                            .any(|(_, p, q)| q == port && protocol(p) == protocol(proto))
                    });
                    Ok(if bound && overlap {
                        QueueingHint::Queue
                    } else {
                        QueueingHint::QueueSkip
                    })
                },
            ),
            ClusterEventWithHint::new(ClusterEvent::new(EventResource::Node, ActionType::ADD)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    #[tokio::test]
    async fn host_port_conflicts() {
        let busy = NodeBuilder::new("n")
            .pod(PodBuilder::new("other").host_port(8080))
            .info();
        let free = NodeBuilder::new("m").info();
        let pod = PodBuilder::new("p").host_port(8080).pod();
        let mut state = CycleState::new();
        assert!(
            NodePorts
                .pre_filter(&mut state, &pod, &[])
                .await
                .1
                .is_success()
        );
        let s = NodePorts.filter(&state, &pod, &busy);
        assert_eq!(s.code(), Code::Unschedulable);
        assert_eq!(s.message(), ERR_REASON);
        assert!(NodePorts.filter(&state, &pod, &free).is_success());
        let other = PodBuilder::new("q").host_port(9090).pod();
        let mut state = CycleState::new();
        assert!(
            NodePorts
                .pre_filter(&mut state, &other, &[])
                .await
                .1
                .is_success()
        );
        assert!(NodePorts.filter(&state, &other, &busy).is_success());
        assert!(
            NodePorts
                .pre_filter(&mut CycleState::new(), &PodBuilder::new("r").pod(), &[])
                .await
                .1
                .is_skip()
        );
    }
}
