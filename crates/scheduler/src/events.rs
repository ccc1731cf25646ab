//! Kubernetes events about pods (`Scheduled`, `FailedScheduling`) in `events.k8s.io/v1`,
//! published off the scheduling path by a background task with the semantics of client-go's
//! `tools/events` broadcaster, which upstream kube-scheduler uses:
//!
//! - An event is created as `<regarding name>.<event time in hex nanoseconds>` in the regarding
//!   object's namespace, with its note cut to 1024 bytes.
//! - A repeat of an event seen in the last 6 minutes — same action, reason, reporting
//!   controller, regarding object (including its `resourceVersion`) and related object; the
//!   note may differ — does not create a new event: the first repeat patches the original into
//!   a series (`series.count` 2), later ones only count, and the count is sent when the series
//!   ends (no repeat for 6 minutes) and every 30 minutes while it goes on.
//!
//! Unlike client-go's broadcaster (and kube-runtime's `Recorder`, used here before) the cache
//! behind the series keeps no copy of the events: only a 64-bit hash of the key and what a
//! series patch needs (namespace, name, count), about a tenth of the memory per event.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        core::v1::{ObjectReference, Pod},
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use ksched_framework::{EventRecorder, EventType};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How long an event is remembered for series, and how long a series may go without a repeat
/// before it is finished: client-go's `finishTime`.
const FINISH_AFTER: Duration = Duration::from_secs(6 * 60);
/// How often a running series' count is sent: client-go's `refreshTime`.
const REFRESH_EVERY: Duration = Duration::from_secs(30 * 60);
/// client-go's `maxNoteLength`.
const MAX_NOTE_BYTES: usize = 1024;
/// Events waiting to be published; beyond it new events are dropped with a warning, as
/// client-go's broadcaster drops them when its queue is full.
const QUEUE: usize = 4096;
/// Event requests in flight at once (client-go sends each from its own goroutine); with the
/// client on HTTP/2 they share its connection.
const CONCURRENT_REQUESTS: usize = 32;

struct Pending {
    regarding: ObjectReference,
    /// The pod's `spec.schedulerName`: the profile that reports the event.
    controller: Option<Box<str>>,
    type_: EventType,
    reason: String,
    action: String,
    note: String,
}

/// An [`EventRecorder`] publishing to `events.k8s.io/v1` (see the module docs). `record` never
/// blocks the scheduling loop: events queue in a bounded channel and a task publishes them.
pub struct KubeEventRecorder {
    tx: mpsc::Sender<Message>,
}

/// What the publishing task receives.
enum Message {
    Event(Box<Pending>),
    /// Answer once everything queued before has been sent and answered.
    Flush(oneshot::Sender<()>),
}

impl KubeEventRecorder {
    /// Starts the publishing task. As upstream, where each profile has its own recorder, an
    /// event's reporting controller is the pod's `spec.schedulerName` (`reporter` for a pod
    /// without one) and its reporting instance `<controller>-<host>` (client-go's
    /// `NewRecorder`); `host` defaults to `reporter`.
    #[must_use]
    pub fn start(client: Client, reporter: &str, host: Option<String>) -> Self {
        let (tx, rx) = mpsc::channel::<Message>(QUEUE);
        let publisher = Publisher {
            client,
            controller: reporter.to_owned(),
            host: host.unwrap_or_else(|| reporter.to_owned()),
            series: HashMap::new(),
            hasher: RandomState::new(),
            slots: Arc::new(Semaphore::new(CONCURRENT_REQUESTS)),
        };
        tokio::spawn(publisher.run(rx));
        Self { tx }
    }

    /// Waits until every event recorded so far has been published (its request answered or
    /// failed). The scheduler calls it on a graceful shutdown, after the bindings in flight,
    /// so the last `Scheduled` and `FailedScheduling` events are not lost with the process.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

impl EventRecorder for KubeEventRecorder {
    fn record(&self, pod: &Pod, event_type: EventType, reason: &str, action: &str, note: &str) {
        let pending = Pending {
            regarding: pod.object_ref(&()),
            controller: pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.as_deref())
                .filter(|n| !n.is_empty())
                .map(Into::into),
            type_: event_type,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: truncate(note, MAX_NOTE_BYTES).to_owned(),
        };
        if self.tx.try_send(Message::Event(Box::new(pending))).is_err() {
            tracing::warn!(reason, "event queue full, dropping event");
        }
    }
}

/// What the series of one published event needs.
struct Seen {
    namespace: Box<str>,
    name: Box<str>,
    /// When the event was created, or the series last repeated.
    last: Timestamp,
    /// `series.count` once repeated (2 and more); 0 before.
    count: i32,
    /// Repeats not sent yet.
    unsent: bool,
}

struct Publisher {
    client: Client,
    /// The reporting controller of events about pods without a scheduler name.
    controller: String,
    /// This process's host name, for the reporting instance.
    host: String,
    /// Events of the last [`FINISH_AFTER`] by the hash of their key. A collision (one in
    /// 2^64 per pair) would count an event into another's series.
    series: HashMap<u64, Seen>,
    hasher: RandomState,
    slots: Arc<Semaphore>,
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut finish = tokio::time::interval(FINISH_AFTER);
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        // Both fire at once first; nothing to do then.
        finish.tick().await;
        refresh.tick().await;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Message::Event(p)) => self.publish(*p).await,
                    Some(Message::Flush(done)) => {
                        // Every request holds a slot until answered: all slots free, all sent.
                        let all = u32::try_from(CONCURRENT_REQUESTS).unwrap_or(u32::MAX);
                        if let Ok(slots) = self.slots.acquire_many(all).await {
                            drop(slots);
                        }
                        let _ = done.send(());
                    }
                    None => return,
                },
                _ = finish.tick() => self.finish_series().await,
                _ = refresh.tick() => self.refresh_series().await,
            }
        }
    }

    fn key(&self, p: &Pending) -> u64 {
        let mut h = self.hasher.build_hasher();
        p.action.hash(&mut h);
        p.reason.hash(&mut h);
        p.controller.hash(&mut h);
        let r = &p.regarding;
        (
            &r.api_version,
            &r.kind,
            &r.namespace,
            &r.name,
            &r.uid,
            &r.resource_version,
            &r.field_path,
        )
            .hash(&mut h);
        h.finish()
    }

    async fn publish(&mut self, p: Pending) {
        let now = Timestamp::now();
        let key = self.key(&p);
        if let Some(seen) = self.series.get_mut(&key) {
            seen.last = now;
            if seen.count >= 2 {
                seen.count += 1;
                seen.unsent = true;
                return;
            }
            seen.count = 2;
            let patch = series_patch(seen);
            self.send(patch).await;
            return;
        }
        let controller = p.controller.as_deref().unwrap_or(&self.controller);
        let namespace = p
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            p.regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_instance: Some(format!("{controller}-{}", self.host)),
            reporting_controller: Some(controller.to_owned()),
            action: Some(p.action),
            reason: Some(p.reason),
            note: Some(p.note),
            type_: Some(
                match p.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            regarding: Some(p.regarding),
            ..Default::default()
        };
        self.series.insert(
            key,
            Seen {
                namespace: namespace.into(),
                name: name.into(),
                last: now,
                count: 0,
                unsent: false,
            },
        );
        self.send(Request::Create(Box::new(event))).await;
    }

    /// Sends the count of series without a repeat for [`FINISH_AFTER`] and forgets them, and
    /// forgets events that were not repeated in that time.
    async fn finish_series(&mut self) {
        let Some(cutoff) = Timestamp::now().checked_sub(FINISH_AFTER).ok() else {
            return;
        };
        let mut finished = Vec::new();
        self.series.retain(|_, seen| {
            let keep = seen.last > cutoff;
            if !keep && seen.unsent {
                finished.push(series_patch(seen));
            }
            keep
        });
        for patch in finished {
            self.send(patch).await;
        }
    }

    /// Sends the count of every running series.
    async fn refresh_series(&mut self) {
        let patches: Vec<_> = self
            .series
            .values_mut()
            .filter(|s| s.count >= 2)
            .map(series_patch)
            .collect();
        for patch in patches {
            self.send(patch).await;
        }
    }

    /// Sends `req` from its own task once a slot is free.
    async fn send(&self, req: Request) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = req.send(client).await {
                tracing::debug!(error = %e, "publishing an event failed");
            }
            drop(slot);
        });
    }
}

fn series_patch(seen: &mut Seen) -> Request {
    seen.unsent = false;
    Request::Series {
        namespace: seen.namespace.to_string(),
        name: seen.name.to_string(),
        series: EventSeries {
            count: seen.count,
            last_observed_time: MicroTime(seen.last),
        },
    }
}

enum Request {
    Create(Box<Event>),
    /// A merge patch of `series` onto the event created first.
    Series {
        namespace: String,
        name: String,
        series: EventSeries,
    },
}

impl Request {
    async fn send(self, client: Client) -> Result<(), kube::Error> {
        match self {
            Request::Create(event) => {
                let ns = event.metadata.namespace.as_deref().unwrap_or("default");
                Api::<Event>::namespaced(client, ns)
                    .create(&PostParams::default(), &event)
                    .await
                    .map(drop)
            }
            Request::Series {
                namespace,
                name,
                series,
            } => {
                // Only the series changes (client-go's createPatchBytesForSeries). If the
                // event is gone (expired by the apiserver's event TTL), client-go creates it
                // again; we let the series go.
                let patch = serde_json::json!({ "series": series });
                Api::<Event>::namespaced(client, &namespace)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<parking_lot::Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A client whose "apiserver" records each request (method, path, JSON body) and answers
    /// with the body.
    fn recording_client() -> (Client, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let svc = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
            let s = s.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await?;
                let json: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                s.lock()
                    .push((parts.method.to_string(), parts.uri.path().to_owned(), json));
                Ok::<_, kube::Error>(
                    axum::http::Response::builder()
                        .status(201)
                        .body(kube::client::Body::from(bytes.to_vec()))
                        .unwrap(),
                )
            }
        });
        (Client::new(svc, "default"), seen)
    }

    fn pending(rv: &str, note: &str) -> Pending {
        Pending {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some("ns".into()),
                name: Some("p".into()),
                uid: Some("u".into()),
                resource_version: Some(rv.into()),
                field_path: None,
            },
            controller: Some("my-scheduler".into()),
            type_: EventType::Warning,
            reason: "FailedScheduling".into(),
            action: "Scheduling".into(),
            note: note.into(),
        }
    }

    async fn requests(seen: &Seen, n: usize) -> Vec<(String, String, serde_json::Value)> {
        for _ in 0..500 {
            if seen.lock().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::mem::take(&mut *seen.lock())
    }

    #[tokio::test]
    async fn repeats_become_a_series() {
        let (client, seen) = recording_client();
        let mut p = Publisher {
            client,
            controller: "ksched".into(),
            host: "host".into(),
            series: HashMap::new(),
            hasher: RandomState::new(),
            slots: Arc::new(Semaphore::new(4)),
        };
        p.publish(pending("1", "0/3 nodes are available")).await;
        let created = requests(&seen, 1).await;
        assert_eq!(created.len(), 1);
        let (method, path, event) = &created[0];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events")
        );
        let name = event["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("p."), "{name}");
        assert_eq!(event["reason"], "FailedScheduling");
        assert_eq!(event["type"], "Warning");
        // The pod's scheduler name reports, as upstream's per-profile recorders.
        assert_eq!(event["reportingController"], "my-scheduler");
        assert_eq!(event["reportingInstance"], "my-scheduler-host");
        assert_eq!(event["regarding"]["resourceVersion"], "1");
        assert!(event.get("series").is_none());

        // A repeat (another note) patches the series in; the next ones only count.
        p.publish(pending("1", "0/4 nodes are available")).await;
        p.publish(pending("1", "0/5 nodes are available")).await;
        p.publish(pending("1", "0/5 nodes are available")).await;
        let patched = requests(&seen, 1).await;
        assert_eq!(patched.len(), 1);
        let (method, path, body) = &patched[0];
        assert_eq!(method, "PATCH");
        assert_eq!(
            path,
            &format!("/apis/events.k8s.io/v1/namespaces/ns/events/{name}")
        );
        assert_eq!(body["series"]["count"], 2);
        assert!(body.get("note").is_none(), "only the series is patched");

        // Another resourceVersion of the pod is another event, as in client-go.
        p.publish(pending("2", "0/5 nodes are available")).await;
        assert_eq!(requests(&seen, 1).await[0].0, "POST");
        assert_eq!(p.series.len(), 2);

        // Six quiet minutes end the series with its count and forget both events.
        for s in p.series.values_mut() {
            s.last = s.last.checked_sub(FINISH_AFTER * 2).unwrap();
        }
        p.finish_series().await;
        let finished = requests(&seen, 1).await;
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].2["series"]["count"], 4);
        assert!(p.series.is_empty());
    }

    #[tokio::test]
    async fn flush_returns_once_every_recorded_event_is_published() {
        let (client, seen) = recording_client();
        let recorder = KubeEventRecorder::start(client, "ksched", Some("host".into()));
        for i in 0..100 {
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some(format!("p{i}")),
                    namespace: Some("ns".into()),
                    ..ObjectMeta::default()
                },
                ..Pod::default()
            };
            recorder.record(&pod, EventType::Normal, "Scheduled", "Binding", "bound");
        }
        recorder.flush().await;
        // Nothing waited for: the 100 requests were all answered before flush returned.
        assert_eq!(seen.lock().len(), 100);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 1024), "abc");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncate(&long, MAX_NOTE_BYTES);
        assert_eq!(cut.len(), 1024);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
