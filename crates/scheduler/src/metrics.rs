//! The scheduler's Prometheus metrics under upstream's names (`scheduler_*`).

use std::sync::{Arc, OnceLock};

use ksched_framework::metrics::FrameworkMetrics;
use parking_lot::RwLock;
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
    /// `schedule_attempts` and `scheduling_attempt_duration` resolved per profile, so an
    /// attempt's observation neither allocates a label string nor hashes one into the families.
    attempt_handles: Arc<RwLock<ProfileHandles>>,
    /// `pod_scheduling_sli_duration` for 1..=[`SLI_CACHED_ATTEMPTS`] attempts (index
    /// `attempts - 1`), each resolved on its first observation: no `to_string` per bound pod.
    sli_handles: Arc<[OnceLock<Histogram>; SLI_CACHED_ATTEMPTS]>,
}

/// Attempt counts whose SLI histogram is cached; pods needing more go through the family.
const SLI_CACHED_ATTEMPTS: usize = 8;

/// Each profile seen so far with its handles; profiles are few, so a scan beats hashing.
type ProfileHandles = Vec<(String, Arc<AttemptHandles>)>;

/// One profile's attempt counter and histogram for each result, indexed by [`result_index`]
/// and each resolved on its first observation (so, as before, a series exists once observed).
#[derive(Debug, Default)]
struct AttemptHandles {
    by_result: [OnceLock<(Counter, Histogram)>; 3],
}

/// The attempt results `observe_attempt` accepts, in handle order.
const RESULTS: [&str; 3] = ["scheduled", "unschedulable", "error"];

fn result_index(result: &str) -> Option<usize> {
    RESULTS.iter().position(|r| *r == result)
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
            attempt_handles: Arc::default(),
            sli_handles: Arc::default(),
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
        let Some(i) = result_index(result) else {
            // Not one of the three results: no pre-resolved handle, go through the families.
            let labels = ResultProfile {
                result,
                profile: profile.to_owned(),
            };
            self.schedule_attempts.get_or_create(&labels).inc();
            self.scheduling_attempt_duration
                .get_or_create(&labels)
                .observe(seconds);
            return;
        };
        let handles = self.attempt_handles(profile);
        let (counter, duration) = handles.by_result[i].get_or_init(|| {
            let labels = ResultProfile {
                result,
                profile: profile.to_owned(),
            };
            // Family handles share their value with the family: observing through a clone
            // is observing in the exported series.
            (
                self.schedule_attempts.get_or_create(&labels).clone(),
                self.scheduling_attempt_duration
                    .get_or_create(&labels)
                    .clone(),
            )
        });
        counter.inc();
        duration.observe(seconds);
    }

    /// Records the time from a pod's first attempt until it was bound, by the attempts it took.
    pub fn observe_sli(&self, attempts: u32, seconds: f64) {
        let family = || {
            self.pod_scheduling_sli_duration
                .get_or_create(&Attempts {
                    attempts: attempts.to_string(),
                })
                .clone()
        };
        let slot = usize::try_from(attempts)
            .ok()
            .and_then(|a| a.checked_sub(1))
            .and_then(|i| self.sli_handles.get(i));
        match slot {
            Some(slot) => slot.get_or_init(family).observe(seconds),
            None => family().observe(seconds),
        }
    }

    /// The profile's handles (made the first time the profile is seen).
    fn attempt_handles(&self, profile: &str) -> Arc<AttemptHandles> {
        if let Some((_, h)) = self
            .attempt_handles
            .read()
            .iter()
            .find(|(p, _)| p == profile)
        {
            return h.clone();
        }
        let mut all = self.attempt_handles.write();
        if let Some((_, h)) = all.iter().find(|(p, _)| p == profile) {
            return h.clone();
        }
        let handles = Arc::new(AttemptHandles::default());
        all.push((profile.to_owned(), handles.clone()));
        handles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observations through the cached handles land in the exported series, and a series
    /// appears only once observed, as with the families alone.
    #[test]
    fn cached_handles_feed_the_families() {
        let m = SchedulerMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.observe_attempt("scheduled", "p", 0.5);
        m.observe_attempt("scheduled", "p", 0.5);
        m.observe_attempt("error", "q", 0.1);
        m.observe_sli(1, 0.2);
        m.observe_sli(100, 0.2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"scheduler_schedule_attempts_total{result="scheduled",profile="p"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"scheduler_schedule_attempts_total{result="error",profile="q"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"result="unschedulable""#), "{text}");
        assert!(!text.contains(r#"result="error",profile="p""#), "{text}");
        assert!(text.contains(r#"scheduler_scheduling_attempt_duration_seconds_count{result="scheduled",profile="p"} 2"#), "{text}");
        assert!(
            text.contains(r#"scheduler_pod_scheduling_sli_duration_seconds_count{attempts="1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"scheduler_pod_scheduling_sli_duration_seconds_count{attempts="100"} 1"#
            ),
            "{text}"
        );
    }
}
