//! [`QueueConfig`]: everything the queue is built from, as plain values.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use ksched_framework::{ClusterEventWithHint, Plugin};

use crate::{
    DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF,
    active_queue::LessFn,
    clock::{Clock, RealClock},
};

/// How long a pod may sit in unschedulablePods before the leftover flush moves it anyway
/// (upstream `DefaultPodMaxInUnschedulablePodsDuration`).
pub const DEFAULT_POD_MAX_IN_UNSCHEDULABLE_PODS_DURATION: Duration = Duration::from_secs(5 * 60);
/// Period of the unschedulable-pods leftover flush.
pub const UNSCHEDULABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// What a [`crate::PriorityQueue`] is built from. Profiles are keyed by scheduler name (a pod's
/// `spec.schedulerName`, `default-scheduler` when empty).
#[derive(Clone)]
pub struct QueueConfig {
    /// The QueueSort `less` shared by all profiles; `None` is PrioritySort (higher priority
    /// first, then earlier queue timestamp), which the queue compares on keys kept in its heaps
    /// — pass `None` rather than a closure calling PrioritySort, so that sorting never reads
    /// the pods. Pods the order cannot tell apart leave first-in first-out either way.
    pub less: Option<LessFn>,
    /// PreEnqueue plugins per profile, in order. Each must implement PreEnqueue.
    pub pre_enqueue: HashMap<String, Vec<Arc<dyn Plugin>>>,
    /// Per profile, the events each plugin registered, with their hints:
    /// `(plugin name, event)`, as the profile's enqueue extensions give them (plugins that do
    /// not implement EnqueueExtensions defaulted to every event by the framework).
    pub queueing_hints: HashMap<String, Vec<(String, ClusterEventWithHint)>>,
    /// Backoff after the first failure (1 s).
    pub pod_initial_backoff: Duration,
    /// Longest backoff (10 s); zero disables backoff.
    pub pod_max_backoff: Duration,
    /// Longest stay in unschedulablePods before the leftover flush moves a pod (5 min).
    pub pod_max_in_unschedulable_pods_duration: Duration,
    /// Where the queue reads the time.
    pub clock: Arc<dyn Clock>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            less: None,
            pre_enqueue: HashMap::new(),
            queueing_hints: HashMap::new(),
            pod_initial_backoff: DEFAULT_POD_INITIAL_BACKOFF,
            pod_max_backoff: DEFAULT_POD_MAX_BACKOFF,
            pod_max_in_unschedulable_pods_duration: DEFAULT_POD_MAX_IN_UNSCHEDULABLE_PODS_DURATION,
            clock: Arc::new(RealClock),
        }
    }
}

impl QueueConfig {
    /// Uses `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses a QueueSort plugin's `less` instead of PrioritySort.
    #[must_use]
    pub fn with_less(mut self, less: LessFn) -> Self {
        self.less = Some(less);
        self
    }

    /// Adds the PreEnqueue plugins of `profile`.
    #[must_use]
    pub fn with_pre_enqueue(
        mut self,
        profile: impl Into<String>,
        plugins: Vec<Arc<dyn Plugin>>,
    ) -> Self {
        self.pre_enqueue
            .entry(profile.into())
            .or_default()
            .extend(plugins);
        self
    }

    /// Adds the events `plugin` of `profile` registered.
    #[must_use]
    pub fn with_hints(
        mut self,
        profile: impl Into<String>,
        plugin: impl Into<String>,
        events: impl IntoIterator<Item = ClusterEventWithHint>,
    ) -> Self {
        let plugin = plugin.into();
        self.queueing_hints
            .entry(profile.into())
            .or_default()
            .extend(events.into_iter().map(|e| (plugin.clone(), e)));
        self
    }

    /// Sets the initial and the longest backoff.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.pod_initial_backoff = initial;
        self.pod_max_backoff = max;
        self
    }
}

impl fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hints: HashMap<&str, usize> = self
            .queueing_hints
            .iter()
            .map(|(p, h)| (p.as_str(), h.len()))
            .collect();
        let pre_enqueue: HashMap<&str, Vec<&str>> = self
            .pre_enqueue
            .iter()
            .map(|(p, v)| (p.as_str(), v.iter().map(|pl| pl.name()).collect()))
            .collect();
        f.debug_struct("QueueConfig")
            .field(
                "less",
                &self.less.as_ref().map_or("PrioritySort", |_| "custom"),
            )
            .field("pre_enqueue", &pre_enqueue)
            .field("queueing_hints", &hints)
            .field("pod_initial_backoff", &self.pod_initial_backoff)
            .field("pod_max_backoff", &self.pod_max_backoff)
            .field(
                "pod_max_in_unschedulable_pods_duration",
                &self.pod_max_in_unschedulable_pods_duration,
            )
            .field("clock", &self.clock)
            .finish()
    }
}
