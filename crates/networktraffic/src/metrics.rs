//! The plugin's own metrics, for the scheduler's `/metrics`.
//!
//! A plugin factory has no access to the scheduler's metrics registry, so the metrics live in
//! one process-wide [`NetworkTrafficMetrics`] ([`NetworkTrafficMetrics::global`]), labelled by
//! profile; the scheduler registers them once with [`register`]:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `networktraffic_last_successful_refresh_timestamp_seconds` | gauge | `profile` |
//! | `networktraffic_refresh_duration_seconds` | histogram | `profile` |
//! | `networktraffic_refresh_errors_total` | counter | `profile`, `kind` |
//! | `networktraffic_nodes_with_fresh_data` | gauge | `profile` |
//! | `networktraffic_nodes_without_data` | gauge | `profile` |
//! | `networktraffic_pending_reservations` | gauge | `profile` |
//!
//! `kind` is [`crate::Error::kind`]: `timeout`, `connect`, `http_status`, `prometheus`,
//! `decode`, `result_type`, `credentials`, `client`.

use std::sync::{
    LazyLock,
    atomic::{AtomicI64, AtomicU64},
};

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

/// Label set of the per-profile metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabel {
    /// The scheduler profile (`schedulerName`) the plugin instance belongs to.
    pub profile: String,
}

/// Label set of `networktraffic_refresh_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The profile.
    pub profile: String,
    /// The error kind.
    pub kind: &'static str,
}

fn duration_histogram() -> Histogram {
    // 5 ms … ~20 s: a healthy query takes tens of ms, the timeout caps it at seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The metric families (cheap to clone: each is an `Arc`).
#[derive(Debug, Clone)]
pub struct NetworkTrafficMetrics {
    /// Unix time of the last refresh that returned data.
    pub last_success: Family<ProfileLabel, Gauge<f64, AtomicU64>>,
    /// Wall time of each refresh, successful or not.
    pub refresh_duration: Family<ProfileLabel, Histogram, fn() -> Histogram>,
    /// Failed refreshes by kind.
    pub refresh_errors: Family<ErrorLabels, Counter>,
    /// Nodes (keys) with a traffic rate in the current snapshot.
    pub nodes_with_fresh_data: Family<ProfileLabel, Gauge<i64, AtomicI64>>,
    /// Nodes of the cluster the current snapshot has no data for (they score neutral).
    pub nodes_without_data: Family<ProfileLabel, Gauge<i64, AtomicI64>>,
    /// Herd-compensation reservations in flight.
    pub pending_reservations: Family<ProfileLabel, Gauge<i64, AtomicI64>>,
}

impl Default for NetworkTrafficMetrics {
    fn default() -> Self {
        Self {
            last_success: Family::default(),
            refresh_duration: Family::new_with_constructor(duration_histogram),
            refresh_errors: Family::default(),
            nodes_with_fresh_data: Family::default(),
            nodes_without_data: Family::default(),
            pending_reservations: Family::default(),
        }
    }
}

static GLOBAL: LazyLock<NetworkTrafficMetrics> = LazyLock::new(NetworkTrafficMetrics::default);

impl NetworkTrafficMetrics {
    /// The instance every plugin built by [`crate::new`] records into.
    #[must_use]
    pub fn global() -> &'static NetworkTrafficMetrics {
        &GLOBAL
    }

    /// Registers the families in `registry` under the `networktraffic_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("networktraffic");
        r.register(
            "last_successful_refresh_timestamp_seconds",
            "Unix time of the last successful Prometheus query.",
            self.last_success.clone(),
        );
        r.register(
            "refresh_duration_seconds",
            "Duration of each Prometheus query.",
            self.refresh_duration.clone(),
        );
        r.register(
            "refresh_errors",
            "Failed Prometheus queries by kind.",
            self.refresh_errors.clone(),
        );
        r.register(
            "nodes_with_fresh_data",
            "Nodes with a traffic rate in the current snapshot.",
            self.nodes_with_fresh_data.clone(),
        );
        r.register(
            "nodes_without_data",
            "Cluster nodes without traffic data; they get the neutral score.",
            self.nodes_without_data.clone(),
        );
        r.register(
            "pending_reservations",
            "Pods whose expected bandwidth is added to their node until Prometheus sees it.",
            self.pending_reservations.clone(),
        );
    }
}

/// Registers the process-wide metrics of every NetworkTraffic instance in `registry` (call
/// once, e.g. where the scheduler builds its `/metrics` registry).
pub fn register(registry: &mut Registry) {
    NetworkTrafficMetrics::global().register(registry);
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn names_in_the_exposition() {
        let m = NetworkTrafficMetrics::default();
        let p = ProfileLabel {
            profile: "p".into(),
        };
        m.last_success.get_or_create(&p).set(1.5);
        m.refresh_errors
            .get_or_create(&ErrorLabels {
                profile: "p".into(),
                kind: "timeout",
            })
            .inc();
        m.refresh_duration.get_or_create(&p).observe(0.01);
        m.nodes_with_fresh_data.get_or_create(&p).set(3);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        for want in [
            "networktraffic_last_successful_refresh_timestamp_seconds{profile=\"p\"} 1.5",
            "networktraffic_refresh_errors_total{profile=\"p\",kind=\"timeout\"} 1",
            "networktraffic_refresh_duration_seconds_count{profile=\"p\"} 1",
            "networktraffic_nodes_with_fresh_data{profile=\"p\"} 3",
        ] {
            assert!(out.contains(want), "{want} missing from\n{out}");
        }
    }
}
