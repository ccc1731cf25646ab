//! Kubernetes events about pods (`Scheduled`, `FailedScheduling`), published off the
//! scheduling path by a background task.

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{EventRecorder, EventType};
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter},
};
use tokio::sync::mpsc;

struct Pending {
    pod_ref: k8s_openapi::api::core::v1::ObjectReference,
    event: Event,
}

/// An [`EventRecorder`] backed by kube's events API (`events.k8s.io/v1`, with kube's series
/// de-duplication). `record` never blocks the scheduling loop: events queue in a bounded
/// channel and a task publishes them; when the channel is full the event is dropped with a
/// warning, as client-go's broadcaster does.
pub struct KubeEventRecorder {
    tx: mpsc::Sender<Pending>,
}

impl KubeEventRecorder {
    /// Starts the publishing task. `reporter` is the component name (the profile's scheduler
    /// name or `ksched`), `instance` the pod or host name.
    #[must_use]
    pub fn start(client: Client, reporter: &str, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: reporter.to_owned(),
                instance,
            },
        );
        let (tx, mut rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if let Err(e) = recorder.publish(&p.event, &p.pod_ref).await {
                    tracing::debug!(error = %e, reason = %p.event.reason, "publishing event failed");
                }
            }
        });
        Self { tx }
    }
}

impl EventRecorder for KubeEventRecorder {
    fn record(&self, pod: &Pod, event_type: EventType, reason: &str, action: &str, note: &str) {
        let event = Event {
            type_: match event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1024).collect()),
            action: action.to_owned(),
            secondary: None,
        };
        let pending = Pending {
            pod_ref: pod.object_ref(&()),
            event,
        };
        if self.tx.try_send(pending).is_err() {
            tracing::warn!(reason, "event queue full, dropping event");
        }
    }
}
