//! `PrioritySort`: higher `spec.priority` first, then the pod that entered the queue earlier.

use std::sync::Arc;

use ksched_framework::{
    Handle, Plugin, PluginArgs, PluginError, QueueSortPlugin, QueuedPodInfo, pod_priority,
};

use crate::names;

/// Upstream's default QueueSort plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrioritySort;

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(PrioritySort))
}

impl Plugin for PrioritySort {
    fn name(&self) -> &str {
        names::PRIORITY_SORT
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (pod_priority(a.pod()), pod_priority(b.pod()));
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use ksched_framework::PodInfo;

    use super::*;

    fn q(prio: i32, at: Instant) -> QueuedPodInfo {
        let pod = Pod {
            spec: Some(PodSpec {
                priority: Some(prio),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        QueuedPodInfo::new(Arc::new(PodInfo::new(Arc::new(pod))), at)
    }

    #[test]
    fn priority_then_time() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert!(PrioritySort.less(&q(10, later), &q(1, t)));
        assert!(PrioritySort.less(&q(1, t), &q(1, later)));
        assert!(!PrioritySort.less(&q(1, later), &q(1, t)));
        assert!(!PrioritySort.less(&q(1, t), &q(1, t)));
    }
}
