//! The `kubescheduler.config.k8s.io/v1` `KubeSchedulerConfiguration` as written in a file:
//! every field optional, unknown fields rejected. [`super::SchedulerConfig`] is the defaulted,
//! validated form the scheduler runs on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::opt_go_duration;

/// The file format, field for field (upstream `staging/src/k8s.io/kube-scheduler/config/v1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeSchedulerConfiguration {
    /// Must be `kubescheduler.config.k8s.io/v1`.
    pub api_version: Option<String>,
    /// Must be `KubeSchedulerConfiguration`.
    pub kind: Option<String>,
    /// Threads used by Filter and Score across nodes (default 16).
    pub parallelism: Option<i32>,
    /// Leader election settings.
    #[serde(default)]
    pub leader_election: LeaderElectionConfiguration,
    /// Connection to the apiserver.
    #[serde(default)]
    pub client_connection: ClientConnectionConfiguration,
    /// Accepted for compatibility; ksched serves no pprof endpoints.
    pub enable_profiling: Option<bool>,
    /// Accepted for compatibility; ksched serves no pprof endpoints.
    pub enable_contention_profiling: Option<bool>,
    /// Percent of nodes to find feasible before scoring (0 = adaptive, the default).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// First backoff of an unschedulable pod, seconds (default 1).
    pub pod_initial_backoff_seconds: Option<i64>,
    /// Backoff cap, seconds (default 10).
    pub pod_max_backoff_seconds: Option<i64>,
    /// Scheduling profiles (default: one `default-scheduler` profile).
    pub profiles: Option<Vec<Profile>>,
    /// Scheduler extenders: not supported by ksched; a non-empty list is rejected.
    pub extenders: Option<Vec<serde_json::Value>>,
    /// Accepted for compatibility; ksched always fills its cache before leading.
    pub delay_cache_until_active: Option<bool>,
}

/// `leaderElection` (component-base `LeaderElectionConfiguration`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfiguration {
    /// Run leader election (default true).
    pub leader_elect: Option<bool>,
    /// How long a lease is valid (default 15s).
    #[serde(default, with = "opt_go_duration")]
    pub lease_duration: Option<Duration>,
    /// How long the leader keeps trying to renew before giving up (default 10s).
    #[serde(default, with = "opt_go_duration")]
    pub renew_deadline: Option<Duration>,
    /// Wait between attempts (default 2s).
    #[serde(default, with = "opt_go_duration")]
    pub retry_period: Option<Duration>,
    /// Only `leases` is supported (default).
    pub resource_lock: Option<String>,
    /// Lease name (default `kube-scheduler`).
    pub resource_name: Option<String>,
    /// Lease namespace (default `kube-system`).
    pub resource_namespace: Option<String>,
}

/// `clientConnection` (component-base `ClientConnectionConfiguration`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnectionConfiguration {
    /// Path to a kubeconfig; empty means in-cluster / `$KUBECONFIG`.
    pub kubeconfig: Option<String>,
    /// Accepted for compatibility (kube-rs speaks JSON).
    pub accept_content_types: Option<String>,
    /// Accepted for compatibility (kube-rs speaks JSON).
    pub content_type: Option<String>,
    /// Client-side request rate limit (default 50/s).
    pub qps: Option<f32>,
    /// Client-side burst (default 100).
    pub burst: Option<i32>,
}

/// One scheduling profile.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// The `spec.schedulerName` this profile serves.
    pub scheduler_name: Option<String>,
    /// Per-profile override of `percentageOfNodesToScore`.
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugins enabled/disabled per extension point, merged with the defaults.
    pub plugins: Option<Plugins>,
    /// Arguments per plugin.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// Plugin sets per extension point.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plugins {
    /// PreEnqueue.
    #[serde(default)]
    pub pre_enqueue: PluginSet,
    /// QueueSort.
    #[serde(default)]
    pub queue_sort: PluginSet,
    /// PreFilter.
    #[serde(default)]
    pub pre_filter: PluginSet,
    /// Filter.
    #[serde(default)]
    pub filter: PluginSet,
    /// PostFilter.
    #[serde(default)]
    pub post_filter: PluginSet,
    /// PreScore.
    #[serde(default)]
    pub pre_score: PluginSet,
    /// Score.
    #[serde(default)]
    pub score: PluginSet,
    /// Reserve.
    #[serde(default)]
    pub reserve: PluginSet,
    /// Permit.
    #[serde(default)]
    pub permit: PluginSet,
    /// PreBind.
    #[serde(default)]
    pub pre_bind: PluginSet,
    /// Bind.
    #[serde(default)]
    pub bind: PluginSet,
    /// PostBind.
    #[serde(default)]
    pub post_bind: PluginSet,
    /// Enables a plugin at every extension point it implements.
    #[serde(default)]
    pub multi_point: PluginSet,
}

/// Enabled and disabled plugins of one extension point.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSet {
    /// Enabled plugins, in order.
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Disabled default plugins; `*` disables all defaults.
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin name with an optional Score weight.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    /// Score weight (Score and MultiPoint only; unset or 0 means 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

impl PluginRef {
    /// A plugin without weight.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            weight: None,
        }
    }

    /// A plugin with a weight.
    #[must_use]
    pub fn weighted(name: impl Into<String>, weight: i32) -> Self {
        Self {
            name: name.into(),
            weight: Some(weight),
        }
    }
}

/// Arguments for one plugin.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin.
    pub name: String,
    /// Its arguments (decoded by the plugin's factory into its typed args).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
}
