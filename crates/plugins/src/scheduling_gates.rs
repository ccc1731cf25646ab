//! `SchedulingGates`: a pod with `spec.schedulingGates` waits outside activeQ until its last
//! gate is removed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, EnqueueExtensions, EventResource, Handle,
    Plugin, PluginArgs, PluginError, PreEnqueuePlugin, QueueingHint, Status,
};

use crate::names;

/// Upstream's SchedulingGates PreEnqueue plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedulingGates;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(SchedulingGates))
}

impl Plugin for SchedulingGates {
    fn name(&self) -> &str {
        names::SCHEDULING_GATES
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gates = pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref());
        match gates {
            Some(g) if !g.is_empty() => {
                let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
                Status::unresolvable(format!(
                    "waiting for scheduling gates: [{}]",
                    names.join(" ")
                ))
            }
            _ => Status::success(),
        }
    }
}

impl EnqueueExtensions for SchedulingGates {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        // Only the removal of the pod's own gates lets it in.
        vec![ClusterEventWithHint::with_hint(
            ClusterEvent::new(
                EventResource::Pod,
                ActionType::UPDATE_POD_SCHEDULING_GATES_ELIMINATED,
            ),
            |pod, _old, new| {
                let same = new
                    .and_then(|n| n.as_pod())
                    .is_some_and(|n| n.metadata.uid == pod.metadata.uid);
                Ok(if same {
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
    use k8s_openapi::api::core::v1::{PodSchedulingGate, PodSpec};
    use ksched_framework::Code;

    use super::*;

    #[test]
    fn gated_until_no_gates() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                scheduling_gates: Some(vec![
                    PodSchedulingGate {
                        name: "example.com/a".into(),
                    },
                    PodSchedulingGate {
                        name: "example.com/b".into(),
                    },
                ]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let s = SchedulingGates.pre_enqueue(&pod);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s.message(),
            "waiting for scheduling gates: [example.com/a example.com/b]"
        );
        pod.spec.as_mut().unwrap().scheduling_gates = Some(vec![]);
        assert!(SchedulingGates.pre_enqueue(&pod).is_success());
    }
}
