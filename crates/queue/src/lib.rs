//! The ksched scheduling queue: where pods wait to be scheduled, with upstream
//! kube-scheduler's semantics (`pkg/scheduler/backend/queue`).
//!
//! [`PriorityQueue`] holds three sub-queues:
//! - **activeQ** (`active_queue`): pods ready to be scheduled, ordered by the profile's
//!   QueueSort (PrioritySort by default), first-in first-out among equals;
//! - **backoffQ** (`backoff_queue`, upstream `podBackoffQ` and `podErrorBackoffQ`): pods that
//!   failed recently, waiting out a backoff of 1 s doubling to 10 s, counted from their
//!   rejections, or from their consecutive errors for error failures;
//! - **unschedulablePods** (`unschedulable_pods`): rejected pods waiting for a cluster event
//!   one of their rejector plugins' queueing hints says may help, and pods gated by a
//!   PreEnqueue plugin (scheduling gates).
//!
//! Background flushes started by [`PriorityQueue::run`] move pods whose backoff completed to
//! activeQ every second ([`PriorityQueue::flush_backoff_q_completed`]) and pods stuck in
//! unschedulablePods for 5 minutes every 30 seconds
//! ([`PriorityQueue::flush_unschedulable_pods_leftover`]). Cluster events reach the queue
//! through [`PriorityQueue::move_all_to_active_or_backoff_queue`],
//! [`PriorityQueue::assigned_pod_added`] and [`PriorityQueue::assigned_pod_updated`]; events
//! seen while a pod is being scheduled are replayed when it comes back
//! ([`PriorityQueue::add_unschedulable_if_not_present`]), so no wake-up is lost. The queue
//! also keeps the nominated pods preemption reserved room for (it implements
//! [`ksched_framework::PodNominator`] and [`ksched_framework::PodActivator`]).
//!
//! Time comes from a [`Clock`]; with a [`FakeClock`] tests move it by hand and call the
//! `flush_*` methods instead of sleeping.

mod active_queue;
mod backoff_queue;
mod clock;
mod config;
mod error;
mod heap;
mod hints;
mod in_flight;
mod metrics;
mod nominator;
mod pod_events;
mod scheduling_queue;
mod store;
mod unschedulable_pods;

pub use active_queue::LessFn;
pub use backoff_queue::{
    BACKOFF_ORDERING_WINDOW, DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF, backoff_duration,
};
pub use clock::{Clock, FakeClock, RealClock, TokioClock};
pub use config::{
    DEFAULT_POD_MAX_IN_UNSCHEDULABLE_PODS_DURATION, QueueConfig, UNSCHEDULABLE_FLUSH_INTERVAL,
};
pub use error::{Error, QueueName, Result};
pub use metrics::{IncomingPods, PendingPods, QueueMetrics};
pub use pod_events::{is_pod_updated, pod_scheduling_properties_change};
pub use scheduling_queue::{PreEnqueueCheck, PriorityQueue};
