//! The framework's Prometheus metrics, under upstream's names and labels.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of `scheduler_framework_extension_point_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionPointLabels {
    /// `PreFilter`, `Filter`, …
    pub extension_point: &'static str,
    /// The status code name (`Success`, `Unschedulable`, …).
    pub status: &'static str,
    /// The profile.
    pub profile: String,
}

/// Labels of `scheduler_plugin_execution_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin.
    pub plugin: String,
    /// The extension point.
    pub extension_point: &'static str,
    /// The status code name.
    pub status: &'static str,
}

fn extension_point_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 12))
}

fn plugin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 1.5, 20))
}

/// Histograms the runtime records into; share one across all profiles' frameworks.
#[derive(Debug, Clone)]
pub struct FrameworkMetrics {
    /// `scheduler_framework_extension_point_duration_seconds{extension_point,status,profile}`.
    pub extension_point_duration: Family<ExtensionPointLabels, Histogram, fn() -> Histogram>,
    /// `scheduler_plugin_execution_duration_seconds{plugin,extension_point,status}` (sampled in
    /// 10 % of cycles, as upstream).
    pub plugin_execution_duration: Family<PluginLabels, Histogram, fn() -> Histogram>,
}

impl Default for FrameworkMetrics {
    fn default() -> Self {
        Self {
            extension_point_duration: Family::new_with_constructor(extension_point_histogram),
            plugin_execution_duration: Family::new_with_constructor(plugin_histogram),
        }
    }
}

impl FrameworkMetrics {
    /// New, unregistered metrics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the metrics in `registry` (give it the `scheduler` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            self.extension_point_duration.clone(),
        );
        registry.register(
            "plugin_execution_duration_seconds",
            "Duration for running a plugin at a specific extension point.",
            self.plugin_execution_duration.clone(),
        );
    }
}
