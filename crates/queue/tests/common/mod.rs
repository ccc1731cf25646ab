//! Pods, plugins and queues for the integration tests.
#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Pod, PodSchedulingGate, PodSpec};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, EventResource, Plugin, PreEnqueuePlugin,
    QueuedPodInfo, QueueingHint, Status, events::well_known,
};
use ksched_queue::{FakeClock, PriorityQueue, QueueConfig};

pub const PROFILE: &str = "default-scheduler";
/// A plugin whose NodeAdd hint says Queue.
pub const QUEUES_ON_NODE_ADD: &str = "QueuesOnNodeAdd";
/// A plugin whose NodeAdd hint says QueueSkip.
pub const SKIPS_NODE_ADD: &str = "SkipsNodeAdd";
/// A plugin that registers no event.
pub const DEAF: &str = "Deaf";
/// A plugin registered for pod label updates.
pub const LABEL_WATCHER: &str = "LabelWatcher";
pub const GATES: &str = "SchedulingGates";

pub fn pod(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some("default".into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec = Some(PodSpec::default());
    p
}

pub fn with_priority(mut p: Pod, priority: i32) -> Pod {
    p.spec.get_or_insert_default().priority = Some(priority);
    p
}

pub fn with_label(mut p: Pod, key: &str, value: &str) -> Pod {
    p.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    p
}

pub fn gated(mut p: Pod) -> Pod {
    p.spec.get_or_insert_default().scheduling_gates = Some(vec![PodSchedulingGate {
        name: "wait".into(),
    }]);
    p
}

pub fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    let mut n: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    n.sort();
    n
}

/// The upstream SchedulingGates plugin's behaviour: gated while `spec.schedulingGates` is
/// non-empty.
pub struct Gates;

impl Plugin for Gates {
    fn name(&self) -> &str {
        GATES
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for Gates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        match pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()) {
            Some(gates) if !gates.is_empty() => {
                Status::unresolvable("waiting for scheduling gates")
            }
            _ => Status::success(),
        }
    }
}

/// A queue on a fake clock with the test plugins registered.
pub fn queue() -> (Arc<PriorityQueue>, Arc<FakeClock>) {
    queue_with(|c| c)
}

pub fn config(clock: &Arc<FakeClock>) -> QueueConfig {
    let queue_hint = |_: &Pod, _: Option<&_>, _: Option<&_>| Ok(QueueingHint::Queue);
    let skip_hint = |_: &Pod, _: Option<&_>, _: Option<&_>| Ok(QueueingHint::QueueSkip);
    QueueConfig::default()
        .with_clock(clock.clone())
        .with_pre_enqueue(PROFILE, vec![Arc::new(Gates)])
        .with_hints(
            PROFILE,
            QUEUES_ON_NODE_ADD,
            [ClusterEventWithHint::with_hint(
                well_known::NODE_ADD,
                queue_hint,
            )],
        )
        .with_hints(
            PROFILE,
            SKIPS_NODE_ADD,
            [ClusterEventWithHint::with_hint(
                well_known::NODE_ADD,
                skip_hint,
            )],
        )
        .with_hints(PROFILE, DEAF, [])
        .with_hints(
            PROFILE,
            LABEL_WATCHER,
            [ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::Pod,
                ActionType::UPDATE_POD_LABEL,
            ))],
        )
        .with_hints(
            PROFILE,
            GATES,
            [ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::Pod,
                ActionType::UPDATE_POD_SCHEDULING_GATES_ELIMINATED,
            ))],
        )
}

pub fn queue_with(
    f: impl FnOnce(QueueConfig) -> QueueConfig,
) -> (Arc<PriorityQueue>, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new());
    let q = PriorityQueue::new(f(config(&clock))).expect("valid config");
    (Arc::new(q), clock)
}

/// Pops `name` (which must be next) and fails its attempt with `plugins` as rejectors.
pub fn pop_and_fail(q: &PriorityQueue, name: &str, plugins: &[&str]) -> QueuedPodInfo {
    let mut info = q
        .try_pop()
        .unwrap_or_else(|| panic!("{name} should be ready"));
    assert_eq!(info.pod().metadata.name.as_deref(), Some(name));
    info.unschedulable_plugins
        .extend(plugins.iter().map(|p| (*p).to_owned()));
    q.add_unschedulable_if_not_present(info.clone())
        .expect("requeue");
    info
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
