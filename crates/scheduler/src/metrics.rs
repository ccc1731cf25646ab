//! The scheduler's Prometheus metrics under upstream's names (`scheduler_*`).

use std::sync::Arc;

use ksched_framework::metrics::FrameworkMetrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// `{result, profile}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultProfile {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: &'static str,
    /// The profile.
    pub profile: String,
}

/// `{attempts}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Attempts {
    /// Attempts the pod needed.
    pub attempts: String,
}

/// `{type}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheType {
    /// `nodes`, `pods` or `assumed_pods`.
    pub r#type: &'static str,
}

fn attempt_duration() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn sli_duration() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// Every metric the scheduler exports, registered in one registry.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    /// `scheduler_schedule_attempts_total{result,profile}`.
    pub schedule_attempts: Family<ResultProfile, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds{result,profile}`.
    pub scheduling_attempt_duration: Family<ResultProfile, Histogram, fn() -> Histogram>,
    /// `scheduler_pod_scheduling_sli_duration_seconds{attempts}`: from the first attempt to bound.
    pub pod_scheduling_sli_duration: Family<Attempts, Histogram, fn() -> Histogram>,
    /// `scheduler_pod_scheduling_attempts`: attempts a pod needed until scheduled.
    pub pod_scheduling_attempts: Histogram,
    /// `scheduler_cache_size{type}`.
    pub cache_size: Family<CacheType, Gauge>,
    /// `scheduler_goroutines{operation="binding"}` analogue: binding tasks in flight.
    pub binding_in_flight: Gauge,
    /// Framework histograms (extension points, plugins).
    pub framework: Arc<FrameworkMetrics>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self {
            schedule_attempts: Family::default(),
            scheduling_attempt_duration: Family::new_with_constructor(attempt_duration),
            pod_scheduling_sli_duration: Family::new_with_constructor(sli_duration),
            pod_scheduling_attempts: Histogram::new(exponential_buckets(1.0, 2.0, 5)),
            cache_size: Family::default(),
            binding_in_flight: Gauge::default(),
            framework: Arc::new(FrameworkMetrics::new()),
        }
    }
}

impl SchedulerMetrics {
    /// Registers everything under the `scheduler` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("scheduler");
        r.register(
            "schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            self.schedule_attempts.clone(),
        );
        r.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            self.scheduling_attempt_duration.clone(),
        );
        r.register(
            "pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue.",
            self.pod_scheduling_sli_duration.clone(),
        );
        r.register(
            "pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            self.pod_scheduling_attempts.clone(),
        );
        r.register(
            "cache_size",
            "Number of nodes, pods, and assumed pods in the scheduler cache.",
            self.cache_size.clone(),
        );
        r.register(
            "binding_in_flight",
            "Binding cycles running.",
            self.binding_in_flight.clone(),
        );
        self.framework.register(r);
    }

    /// Records one attempt's outcome and duration.
    pub fn observe_attempt(&self, result: &'static str, profile: &str, seconds: f64) {
        let labels = ResultProfile {
            result,
            profile: profile.to_owned(),
        };
        self.schedule_attempts.get_or_create(&labels).inc();
        self.scheduling_attempt_duration
            .get_or_create(&labels)
            .observe(seconds);
    }
}
