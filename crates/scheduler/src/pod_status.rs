//! The `PodScheduled` condition and `status.nominatedNodeName` of pods that failed an attempt
//! (upstream `updatePod`), written off the scheduling loop.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Reason of `PodScheduled=False` when no node fits.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Reason of `PodScheduled=False` when the scheduler failed.
pub const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// Concurrency cap and tracking for status writes.
#[derive(Clone)]
pub(crate) struct StatusUpdates {
    pub(crate) tracker: TaskTracker,
    pub(crate) permits: Arc<Semaphore>,
}

impl Default for StatusUpdates {
    fn default() -> Self {
        Self {
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(16)),
        }
    }
}

/// Whether the pod already says this (then we skip the write, as upstream does).
fn unchanged(pod: &Pod, reason: &str, message: &str, nominated: Option<&str>) -> bool {
    let status = pod.status.as_ref();
    let cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same_cond = cond.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let current_nominated = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or_default();
    same_cond && nominated.is_none_or(|n| n == current_nominated)
}

/// Sets `PodScheduled=False` with `reason`/`message` (and the nominated node when given) in a
/// background task.
pub(crate) fn update_async(
    client: Option<Client>,
    pod: Arc<Pod>,
    reason: &'static str,
    message: String,
    nominated: Option<String>,
    updates: &StatusUpdates,
) {
    let Some(client) = client else { return };
    if unchanged(&pod, reason, &message, nominated.as_deref()) {
        return;
    }
    let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
        return;
    };
    let permits = updates.permits.clone();
    updates.tracker.spawn(async move {
        let Ok(_permit) = permits.acquire().await else { return };
        let api: Api<Pod> = Api::namespaced(client, &ns);
        let keep_time = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
            .and_then(|c| c.last_transition_time.clone());
        let transition = keep_time.map_or_else(
            || serde_json::Value::String(k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()),
            |t| serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
        );
        let mut status = serde_json::json!({
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]
        });
        if let Some(n) = nominated {
            status["nominatedNodeName"] = if n.is_empty() { serde_json::Value::Null } else { serde_json::Value::String(n) };
        }
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "updating the PodScheduled condition");
        }
    });
}
