//! `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`): parsing, upstream
//! defaults, and validation whose errors name the file, the field path and the problem.
//!
//! ```
//! use ksched_framework::{config::SchedulerConfig, Registry};
//!
//! let registry = Registry::new(); // a real scheduler uses the in-tree registry of ksched-plugins
//! let yaml = r#"
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! profiles:
//! - schedulerName: my-scheduler
//!   plugins:
//!     multiPoint:
//!       enabled: [{name: NoSuchPlugin}]
//! "#;
//! let err = SchedulerConfig::from_yaml(yaml, None, &registry).unwrap_err();
//! assert!(err.to_string().contains("profiles[0].plugins.multiPoint.enabled[0].name"));
//! assert!(err.to_string().contains("unknown plugin \"NoSuchPlugin\""));
//! ```

mod duration;
mod error;
mod types;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

pub use duration::parse_go_duration;
use error::Problems;
pub use error::{ConfigError, Problem};
pub use types::*;

use crate::Registry;

/// The API version ksched reads.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The kind ksched reads.
pub const KIND: &str = "KubeSchedulerConfiguration";
/// The profile name when none is given and there is one profile.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Extension points, in the order a pod meets them. The names are the configuration's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExtensionPoint {
    /// `preEnqueue`.
    PreEnqueue,
    /// `queueSort`.
    QueueSort,
    /// `preFilter`.
    PreFilter,
    /// `filter`.
    Filter,
    /// `postFilter`.
    PostFilter,
    /// `preScore`.
    PreScore,
    /// `score`.
    Score,
    /// `reserve`.
    Reserve,
    /// `permit`.
    Permit,
    /// `preBind`.
    PreBind,
    /// `bind`.
    Bind,
    /// `postBind`.
    PostBind,
}

impl ExtensionPoint {
    /// All points in order.
    pub const ALL: [ExtensionPoint; 12] = [
        ExtensionPoint::PreEnqueue,
        ExtensionPoint::QueueSort,
        ExtensionPoint::PreFilter,
        ExtensionPoint::Filter,
        ExtensionPoint::PostFilter,
        ExtensionPoint::PreScore,
        ExtensionPoint::Score,
        ExtensionPoint::Reserve,
        ExtensionPoint::Permit,
        ExtensionPoint::PreBind,
        ExtensionPoint::Bind,
        ExtensionPoint::PostBind,
    ];

    /// The configuration key (`preFilter`).
    #[must_use]
    pub const fn config_key(self) -> &'static str {
        match self {
            ExtensionPoint::PreEnqueue => "preEnqueue",
            ExtensionPoint::QueueSort => "queueSort",
            ExtensionPoint::PreFilter => "preFilter",
            ExtensionPoint::Filter => "filter",
            ExtensionPoint::PostFilter => "postFilter",
            ExtensionPoint::PreScore => "preScore",
            ExtensionPoint::Score => "score",
            ExtensionPoint::Reserve => "reserve",
            ExtensionPoint::Permit => "permit",
            ExtensionPoint::PreBind => "preBind",
            ExtensionPoint::Bind => "bind",
            ExtensionPoint::PostBind => "postBind",
        }
    }

    /// The metrics label (`PreFilter`).
    #[must_use]
    pub const fn metric_label(self) -> &'static str {
        match self {
            ExtensionPoint::PreEnqueue => "PreEnqueue",
            ExtensionPoint::QueueSort => "QueueSort",
            ExtensionPoint::PreFilter => "PreFilter",
            ExtensionPoint::Filter => "Filter",
            ExtensionPoint::PostFilter => "PostFilter",
            ExtensionPoint::PreScore => "PreScore",
            ExtensionPoint::Score => "Score",
            ExtensionPoint::Reserve => "Reserve",
            ExtensionPoint::Permit => "Permit",
            ExtensionPoint::PreBind => "PreBind",
            ExtensionPoint::Bind => "Bind",
            ExtensionPoint::PostBind => "PostBind",
        }
    }
}

impl Plugins {
    /// The set configured for `point`.
    #[must_use]
    pub fn get(&self, point: ExtensionPoint) -> &PluginSet {
        match point {
            ExtensionPoint::PreEnqueue => &self.pre_enqueue,
            ExtensionPoint::QueueSort => &self.queue_sort,
            ExtensionPoint::PreFilter => &self.pre_filter,
            ExtensionPoint::Filter => &self.filter,
            ExtensionPoint::PostFilter => &self.post_filter,
            ExtensionPoint::PreScore => &self.pre_score,
            ExtensionPoint::Score => &self.score,
            ExtensionPoint::Reserve => &self.reserve,
            ExtensionPoint::Permit => &self.permit,
            ExtensionPoint::PreBind => &self.pre_bind,
            ExtensionPoint::Bind => &self.bind,
            ExtensionPoint::PostBind => &self.post_bind,
        }
    }

    fn get_mut(&mut self, point: ExtensionPoint) -> &mut PluginSet {
        match point {
            ExtensionPoint::PreEnqueue => &mut self.pre_enqueue,
            ExtensionPoint::QueueSort => &mut self.queue_sort,
            ExtensionPoint::PreFilter => &mut self.pre_filter,
            ExtensionPoint::Filter => &mut self.filter,
            ExtensionPoint::PostFilter => &mut self.post_filter,
            ExtensionPoint::PreScore => &mut self.pre_score,
            ExtensionPoint::Score => &mut self.score,
            ExtensionPoint::Reserve => &mut self.reserve,
            ExtensionPoint::Permit => &mut self.permit,
            ExtensionPoint::PreBind => &mut self.pre_bind,
            ExtensionPoint::Bind => &mut self.bind,
            ExtensionPoint::PostBind => &mut self.post_bind,
        }
    }

    /// Each configured set with its config key, MultiPoint last.
    pub fn sets(&self) -> impl Iterator<Item = (&'static str, &PluginSet)> {
        ExtensionPoint::ALL
            .into_iter()
            .map(|p| (p.config_key(), self.get(p)))
            .chain(std::iter::once(("multiPoint", &self.multi_point)))
    }

    /// Names of every enabled plugin, at any point.
    #[must_use]
    pub fn enabled_names(&self) -> BTreeSet<String> {
        self.sets()
            .flat_map(|(_, s)| s.enabled.iter().map(|p| p.name.clone()))
            .collect()
    }

    /// `custom` applied over `defaults` (upstream `mergePlugins`): per point, disabled entries
    /// (or `*`) remove defaults, an enabled entry naming a default replaces it in place, other
    /// enabled entries are appended.
    #[must_use]
    pub fn merge(defaults: &Plugins, custom: &Plugins) -> Plugins {
        let mut out = Plugins::default();
        for point in ExtensionPoint::ALL {
            *out.get_mut(point) = PluginSet::merge(defaults.get(point), custom.get(point));
        }
        out.multi_point = PluginSet::merge(&defaults.multi_point, &custom.multi_point);
        out
    }
}

impl PluginSet {
    /// Whether `name` (or `*`) is disabled.
    #[must_use]
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled
            .iter()
            .any(|p| p.name == "*" || p.name == name)
    }

    fn merge(defaults: &PluginSet, custom: &PluginSet) -> PluginSet {
        let mut replaced = BTreeSet::new();
        let mut enabled = Vec::new();
        for d in &defaults.enabled {
            if custom.is_disabled(&d.name) {
                continue;
            }
            match custom.enabled.iter().find(|c| c.name == d.name) {
                Some(c) => {
                    replaced.insert(c.name.clone());
                    enabled.push(c.clone());
                }
                None => enabled.push(d.clone()),
            }
        }
        enabled.extend(
            custom
                .enabled
                .iter()
                .filter(|c| !replaced.contains(&c.name))
                .cloned(),
        );
        PluginSet {
            enabled,
            disabled: custom.disabled.clone(),
        }
    }
}

/// Leader election, defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderElection {
    /// Whether to run leader election.
    pub leader_elect: bool,
    /// Lease validity.
    pub lease_duration: Duration,
    /// How long the leader retries renewal before giving up leadership.
    pub renew_deadline: Duration,
    /// Wait between attempts.
    pub retry_period: Duration,
    /// Lease name.
    pub resource_name: String,
    /// Lease namespace.
    pub resource_namespace: String,
}

/// Client connection, defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConnection {
    /// Kubeconfig path (`None`: `$KUBECONFIG`, `~/.kube/config`, or in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Requests per second allowed to the apiserver.
    pub qps: f32,
    /// Burst above `qps`.
    pub burst: u32,
}

/// A profile after merging the default plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    /// Index in `profiles` (for error paths).
    pub index: usize,
    /// The `schedulerName`.
    pub scheduler_name: String,
    /// Profile override of `percentageOfNodesToScore`.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// The plugins, defaults merged in.
    pub plugins: Plugins,
    /// Arguments by plugin name, with the index of their `pluginConfig` entry.
    pub plugin_config: BTreeMap<String, (usize, Option<serde_json::Value>)>,
}

/// A validated, defaulted scheduler configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Where it was read from.
    pub file: Option<PathBuf>,
    /// Threads for Filter/Score.
    pub parallelism: usize,
    /// 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    /// Initial backoff.
    pub pod_initial_backoff: Duration,
    /// Backoff cap.
    pub pod_max_backoff: Duration,
    /// How long a pod may stay in unschedulablePods before being retried anyway (5 min; not a
    /// file field upstream either).
    pub pod_max_in_unschedulable_pods_duration: Duration,
    /// Leader election.
    pub leader_election: LeaderElection,
    /// Client connection.
    pub client_connection: ClientConnection,
    /// Profiles.
    pub profiles: Vec<ProfileConfig>,
}

impl SchedulerConfig {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid YAML/JSON, or fails validation.
    pub fn from_file(path: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single("", format!("cannot read file: {e}")).in_file(Some(path.to_owned()))
        })?;
        Self::from_yaml(&text, Some(path), registry)
    }

    /// Parses and validates YAML (or JSON) text; `file` names it in errors.
    ///
    /// # Errors
    /// Syntax errors (with line and column), unknown fields, wrong types and validation
    /// problems, all with field paths.
    pub fn from_yaml(
        text: &str,
        file: Option<&Path>,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let file = file.map(Path::to_path_buf);
        let de = serde_norway::Deserializer::from_str(text);
        let raw: KubeSchedulerConfiguration =
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let location = inner.location().map(|l| (l.line(), l.column()));
                let mut message = inner.to_string();
                // serde_norway appends " at line L column C"; we print the location ourselves.
                if let Some(i) = message.find(" at line ") {
                    message.truncate(i);
                }
                // It also starts the message with the field path, which we print once.
                if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
                    message = rest.to_owned();
                }
                ConfigError {
                    file: file.clone(),
                    problems: vec![Problem {
                        path: if path == "." { String::new() } else { path },
                        location,
                        message,
                    }],
                }
            })?;
        Self::from_raw(raw, registry)
            .map_err(|e| e.in_file(file.clone()))
            .map(|mut c| {
                c.file = file;
                c
            })
    }

    /// Validates and defaults a configuration given as a struct.
    ///
    /// # Errors
    /// All validation problems at once.
    pub fn from_raw(
        raw: KubeSchedulerConfiguration,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let mut p = Problems::default();
        match raw.api_version.as_deref() {
            Some(API_VERSION) | None => {}
            Some(other) => p.add(
                "apiVersion",
                format!("unsupported apiVersion {other:?}; ksched reads {API_VERSION:?}"),
            ),
        }
        match raw.kind.as_deref() {
            Some(KIND) | None => {}
            Some(other) => p.add(
                "kind",
                format!("unsupported kind {other:?}; expected {KIND:?}"),
            ),
        }
        let parallelism = raw.parallelism.unwrap_or(16);
        if parallelism <= 0 {
            p.add(
                "parallelism",
                format!("{parallelism}: should be an integer value greater than zero"),
            );
        }
        let pct = raw.percentage_of_nodes_to_score.unwrap_or(0);
        check_percentage(&mut p, "percentageOfNodesToScore", pct);
        let initial = raw.pod_initial_backoff_seconds.unwrap_or(1);
        let max = raw.pod_max_backoff_seconds.unwrap_or(10);
        if initial <= 0 {
            p.add(
                "podInitialBackoffSeconds",
                format!("{initial}: must be greater than 0"),
            );
        }
        if max < initial {
            p.add(
                "podMaxBackoffSeconds",
                format!("{max}: must be greater than or equal to podInitialBackoffSeconds"),
            );
        }
        if raw.extenders.as_ref().is_some_and(|e| !e.is_empty()) {
            p.add(
                "extenders",
                "scheduler extenders are not supported by ksched; write a plugin instead",
            );
        }
        let le = &raw.leader_election;
        if let Some(lock) = le.resource_lock.as_deref()
            && lock != "leases"
        {
            p.add(
                "leaderElection.resourceLock",
                format!("{lock:?}: resourceLock value must be \"leases\""),
            );
        }
        let leader_election = LeaderElection {
            leader_elect: le.leader_elect.unwrap_or(true),
            lease_duration: le.lease_duration.unwrap_or(Duration::from_secs(15)),
            renew_deadline: le.renew_deadline.unwrap_or(Duration::from_secs(10)),
            retry_period: le.retry_period.unwrap_or(Duration::from_secs(2)),
            resource_name: le
                .resource_name
                .clone()
                .unwrap_or_else(|| "kube-scheduler".into()),
            resource_namespace: le
                .resource_namespace
                .clone()
                .unwrap_or_else(|| "kube-system".into()),
        };
        if leader_election.leader_elect {
            if leader_election.lease_duration <= leader_election.renew_deadline {
                p.add(
                    "leaderElection.leaseDuration",
                    "must be greater than renewDeadline",
                );
            }
            if leader_election.renew_deadline <= leader_election.retry_period {
                p.add(
                    "leaderElection.renewDeadline",
                    "must be greater than retryPeriod",
                );
            }
            if leader_election.retry_period.is_zero() {
                p.add("leaderElection.retryPeriod", "must be greater than zero");
            }
            if leader_election.resource_name.is_empty() {
                p.add("leaderElection.resourceName", "required");
            }
            if leader_election.resource_namespace.is_empty() {
                p.add("leaderElection.resourceNamespace", "required");
            }
        }
        let cc = &raw.client_connection;
        let qps = cc.qps.unwrap_or(50.0);
        let burst = cc.burst.unwrap_or(100);
        if !qps.is_finite() || qps < 0.0 {
            p.add(
                "clientConnection.qps",
                format!("{qps}: must be a non-negative number"),
            );
        }
        if burst < 0 {
            p.add(
                "clientConnection.burst",
                format!("{burst}: must be non-negative"),
            );
        }
        let client_connection = ClientConnection {
            kubeconfig: cc
                .kubeconfig
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            qps,
            burst: u32::try_from(burst).unwrap_or(0),
        };

        let raw_profiles = raw.profiles.clone().unwrap_or_default();
        let raw_profiles = if raw_profiles.is_empty() {
            vec![Profile::default()]
        } else {
            raw_profiles
        };
        let single = raw_profiles.len() == 1;
        let mut profiles = Vec::with_capacity(raw_profiles.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, prof) in raw_profiles.iter().enumerate() {
            let path = format!("profiles[{i}]");
            let scheduler_name = match prof.scheduler_name.clone() {
                Some(n) if !n.is_empty() => n,
                _ if single => DEFAULT_SCHEDULER_NAME.to_owned(),
                _ => {
                    p.add(
                        format!("{path}.schedulerName"),
                        "required when there is more than one profile",
                    );
                    String::new()
                }
            };
            if let Some(&first) = names.get(&scheduler_name) {
                p.add(
                    format!("{path}.schedulerName"),
                    format!("duplicate schedulerName {scheduler_name:?} (also profiles[{first}].schedulerName)"),
                );
            } else {
                names.insert(scheduler_name.clone(), i);
            }
            if let Some(pp) = prof.percentage_of_nodes_to_score {
                check_percentage(&mut p, &format!("{path}.percentageOfNodesToScore"), pp);
            }
            let custom = prof.plugins.clone().unwrap_or_default();
            validate_plugin_refs(&mut p, &path, &custom, registry);
            let plugins = Plugins::merge(registry.default_plugins(), &custom);
            let enabled = plugins.enabled_names();
            let mut plugin_config = BTreeMap::new();
            for (j, pc) in prof.plugin_config.iter().enumerate() {
                let pc_path = format!("{path}.pluginConfig[{j}]");
                if plugin_config.contains_key(&pc.name) {
                    p.add(
                        format!("{pc_path}.name"),
                        format!("duplicate pluginConfig for plugin {:?}", pc.name),
                    );
                    continue;
                }
                if !registry.contains(&pc.name) {
                    p.add(
                        format!("{pc_path}.name"),
                        unknown_plugin(&pc.name, registry),
                    );
                } else if !enabled.contains(&pc.name) {
                    // Upstream silently ignores such args; that is how a config naming
                    // `network_traffic` next to a plugin registered as `NetworkTraffic` went
                    // unnoticed. We reject it.
                    let similar = similar_name(&pc.name, enabled.iter().map(String::as_str));
                    let hint = match similar {
                        Some(s) => {
                            format!("; the profile enables {s:?} — plugin names must match exactly")
                        }
                        None => format!(
                            "; enabled plugins: {}",
                            enabled.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    p.add(
                        format!("{pc_path}.name"),
                        format!(
                            "pluginConfig for plugin {:?}, which is not enabled in profile {scheduler_name:?}{hint}",
                            pc.name
                        ),
                    );
                }
                plugin_config.insert(pc.name.clone(), (j, pc.args.clone()));
            }
            profiles.push(ProfileConfig {
                index: i,
                scheduler_name,
                percentage_of_nodes_to_score: prof
                    .percentage_of_nodes_to_score
                    .and_then(|v| u32::try_from(v).ok()),
                plugins,
                plugin_config,
            });
        }
        // One queue serves every profile, so they must sort it the same way.
        if let Some(first) = raw_profiles.first() {
            let canon = first
                .plugins
                .as_ref()
                .map(|pl| pl.queue_sort.clone())
                .unwrap_or_default();
            for (i, prof) in raw_profiles.iter().enumerate().skip(1) {
                let curr = prof
                    .plugins
                    .as_ref()
                    .map(|pl| pl.queue_sort.clone())
                    .unwrap_or_default();
                if curr != canon {
                    p.add(
                        format!("profiles[{i}].plugins.queueSort"),
                        "must be the same for all profiles",
                    );
                }
            }
        }
        p.into_result()?;
        Ok(SchedulerConfig {
            file: None,
            parallelism: usize::try_from(parallelism).unwrap_or(16),
            percentage_of_nodes_to_score: u32::try_from(pct).unwrap_or(0),
            pod_initial_backoff: Duration::from_secs(initial.unsigned_abs()),
            pod_max_backoff: Duration::from_secs(max.unsigned_abs()),
            pod_max_in_unschedulable_pods_duration: Duration::from_secs(5 * 60),
            leader_election,
            client_connection,
            profiles,
        })
    }

    /// The profile serving `scheduler_name`.
    #[must_use]
    pub fn profile(&self, scheduler_name: &str) -> Option<&ProfileConfig> {
        self.profiles
            .iter()
            .find(|p| p.scheduler_name == scheduler_name)
    }
}

fn check_percentage(p: &mut Problems, path: &str, v: i32) {
    if !(0..=100).contains(&v) {
        p.add(path, format!("{v}: not in valid range [0-100]"));
    }
}

fn validate_plugin_refs(p: &mut Problems, path: &str, plugins: &Plugins, registry: &Registry) {
    for (key, set) in plugins.sets() {
        for (k, r) in set.enabled.iter().enumerate() {
            let rpath = format!("{path}.plugins.{key}.enabled[{k}]");
            if r.name.is_empty() {
                p.add(format!("{rpath}.name"), "required");
            } else if !registry.contains(&r.name) {
                p.add(format!("{rpath}.name"), unknown_plugin(&r.name, registry));
            }
            if let Some(w) = r.weight {
                if key != "score" && key != "multiPoint" {
                    p.add(
                        format!("{rpath}.weight"),
                        format!("weight is only meaningful for score and multiPoint, not {key}"),
                    );
                } else if !(0..=MAX_PLUGIN_WEIGHT).contains(&w) {
                    p.add(
                        format!("{rpath}.weight"),
                        format!("{w}: weight out of range [0-{MAX_PLUGIN_WEIGHT}] (0 means the default, 1)"),
                    );
                }
            }
        }
        if key == "queueSort" && set.enabled.len() > 1 {
            p.add(
                format!("{path}.plugins.queueSort.enabled"),
                "only one queue sort plugin can be enabled",
            );
        }
    }
}

/// Largest Score weight accepted. Upstream only guards against the weighted sum overflowing;
/// no real profile comes near this bound, and rejecting larger values catches typos.
pub const MAX_PLUGIN_WEIGHT: i32 = 1_000_000;

fn unknown_plugin(name: &str, registry: &Registry) -> String {
    let known: Vec<&str> = registry.names().collect();
    format!(
        "unknown plugin {name:?}{}; known plugins: {}",
        suggestion(name, known.iter().copied()),
        known.join(", ")
    )
}

/// ` (did you mean "NetworkTraffic"?)` when a known name differs only in case, `_` or `-`.
fn suggestion<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    similar_name(name, candidates)
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// The one candidate that differs from `name` only in case, `_` or `-`.
fn similar_name<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_lowercase()
    };
    let n = norm(name);
    let matches: Vec<&str> = candidates.filter(|c| *c != name && norm(c) == n).collect();
    match matches.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}
