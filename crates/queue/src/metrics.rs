//! Queue counters, read as a [`QueueMetrics`] snapshot.
//!
//! The scheduler exports them as upstream's `scheduler_pending_pods{queue}` (a gauge per
//! sub-queue) and `scheduler_queue_incoming_pods_total{queue,event}` (a counter per sub-queue
//! and event label). Counting happens under the queue's lock on plain integers, with event
//! labels interned to small ids, so the hot path pays an array increment rather than a
//! labelled-metric lookup.

use std::{borrow::Cow, collections::HashMap};

use ksched_framework::events::well_known;

use crate::error::QueueName;

/// Pods pending per sub-queue (`scheduler_pending_pods`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingPods {
    /// activeQ.
    pub active: usize,
    /// backoffQ (both heaps).
    pub backoff: usize,
    /// unschedulablePods, gated pods excluded.
    pub unschedulable: usize,
    /// Pods a PreEnqueue plugin holds back.
    pub gated: usize,
}

impl PendingPods {
    /// All pending pods.
    #[must_use]
    pub fn total(&self) -> usize {
        self.active + self.backoff + self.unschedulable + self.gated
    }
}

/// Pods that entered a sub-queue because of an event (`scheduler_queue_incoming_pods_total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingPods {
    /// The sub-queue: active, backoff or unschedulable (gated pods count as unschedulable, as
    /// upstream).
    pub queue: QueueName,
    /// The event label (`NodeAdd`, `ScheduleAttemptFailure`, `BackoffComplete`, …).
    pub event: String,
    /// How many pods so far.
    pub count: u64,
}

/// A snapshot of the queue's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueMetrics {
    /// Pending pods per sub-queue.
    pub pending: PendingPods,
    /// Incoming pods per sub-queue and event, in no particular order.
    pub incoming: Vec<IncomingPods>,
    /// Pods popped and not yet done.
    pub in_flight_pods: usize,
    /// Events kept for in-flight pods (upstream `scheduler_inflight_events`).
    pub in_flight_events: usize,
    /// Pods nominated to a node.
    pub nominated_pods: usize,
    /// Scheduling cycles so far (one per pop).
    pub scheduling_cycle: u64,
}

/// An interned event label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u16);

impl Label {
    pub(crate) const SCHEDULE_ATTEMPT_FAILURE: Label = Label(0);
    pub(crate) const BACKOFF_COMPLETE: Label = Label(1);
    pub(crate) const POP_FROM_BACKOFF_Q: Label = Label(2);
    pub(crate) const FORCE_ACTIVATE: Label = Label(3);
    pub(crate) const UNSCHEDULABLE_TIMEOUT: Label = Label(4);
    pub(crate) const UNSCHEDULED_POD_ADD: Label = Label(5);
    pub(crate) const UNSCHEDULED_POD_UPDATE: Label = Label(6);

    /// Labels after which the nominator follows the pod (upstream does for these two).
    pub(crate) fn follows_nomination(self) -> bool {
        self == Self::UNSCHEDULED_POD_ADD || self == Self::UNSCHEDULED_POD_UPDATE
    }
}

const QUEUES: [QueueName; 3] = [
    QueueName::Active,
    QueueName::Backoff,
    QueueName::Unschedulable,
];

/// Incoming-pod counters.
#[derive(Debug)]
pub(crate) struct Counters {
    labels: Vec<Cow<'static, str>>,
    ids: HashMap<Cow<'static, str>, Label>,
    counts: Vec<[u64; 3]>,
}

impl Default for Counters {
    fn default() -> Self {
        let mut c = Self {
            labels: Vec::new(),
            ids: HashMap::new(),
            counts: Vec::new(),
        };
        for (label, expected) in [
            (
                Cow::Borrowed(well_known::SCHEDULE_ATTEMPT_FAILURE),
                Label::SCHEDULE_ATTEMPT_FAILURE,
            ),
            (
                Cow::Borrowed(well_known::BACKOFF_COMPLETE),
                Label::BACKOFF_COMPLETE,
            ),
            (
                Cow::Borrowed(well_known::POP_FROM_BACKOFF_Q),
                Label::POP_FROM_BACKOFF_Q,
            ),
            (well_known::FORCE_ACTIVATE.label(), Label::FORCE_ACTIVATE),
            (
                well_known::UNSCHEDULABLE_TIMEOUT.label(),
                Label::UNSCHEDULABLE_TIMEOUT,
            ),
            (
                well_known::UNSCHEDULED_POD_ADD.label(),
                Label::UNSCHEDULED_POD_ADD,
            ),
            (
                well_known::UNSCHEDULED_POD_UPDATE.label(),
                Label::UNSCHEDULED_POD_UPDATE,
            ),
        ] {
            let id = c.intern(label);
            debug_assert_eq!(id, expected);
        }
        c
    }
}

impl Counters {
    /// The id of `label`, registering it on first use.
    pub(crate) fn intern(&mut self, label: Cow<'static, str>) -> Label {
        if let Some(id) = self.ids.get(&label) {
            return *id;
        }
        // Labels come from the plugins' registered events: a few dozen. Should something
        // mint labels without bound, the last id absorbs them rather than wrapping around.
        let Ok(raw) = u16::try_from(self.labels.len()) else {
            return Label(u16::MAX);
        };
        let id = Label(raw);
        self.labels.push(label.clone());
        self.ids.insert(label, id);
        self.counts.push([0; 3]);
        id
    }

    pub(crate) fn incoming(&mut self, queue: QueueName, label: Label) {
        let q = match queue {
            QueueName::Active => 0,
            QueueName::Backoff => 1,
            QueueName::Unschedulable | QueueName::Gated => 2,
        };
        if let Some(c) = self.counts.get_mut(usize::from(label.0)) {
            c[q] += 1;
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<IncomingPods> {
        let mut out = Vec::new();
        for (label, counts) in self.labels.iter().zip(&self.counts) {
            for (queue, count) in QUEUES.iter().zip(counts) {
                if *count > 0 {
                    out.push(IncomingPods {
                        queue: *queue,
                        event: label.clone().into_owned(),
                        count: *count,
                    });
                }
            }
        }
        out
    }
}
