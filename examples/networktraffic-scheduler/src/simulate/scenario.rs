//! The scenario file: nodes, pods, arrivals, metric lag and profiles, in YAML.
//!
//! Every value is checked while it is deserialized (quantities, durations, rates, counts), so a
//! bad file fails with the field's path and its line and column; unknown fields are errors.
//! `docs/simulator.md` is the reference for the format.

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use ksched_framework::{config::parse_go_duration, parse_quantity};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A scenario that could not be read, with where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file, or `<generated>` / `<scenario>`.
    pub file: String,
    /// 1-based line and column, when the parser knows them.
    pub location: Option<(usize, usize)>,
    /// The field's path, e.g. `nodes[2].baselineTraffic` (empty for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// A duration written the Go way (`30s`, `1m30s`, `250ms`); keeps its text for round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dur {
    text: String,
    value: Duration,
}

impl Dur {
    /// `value`, written in milliseconds.
    #[must_use]
    pub fn from_duration(value: Duration) -> Self {
        Self {
            text: format!("{}ms", value.as_millis()),
            value,
        }
    }

    /// The duration.
    #[must_use]
    pub fn get(&self) -> Duration {
        self.value
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = parse_go_duration(&text).map_err(serde::de::Error::custom)?;
        Ok(Self { text, value })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A non-negative Kubernetes quantity (`500m`, `8Gi`, `10M`); YAML numbers are accepted too.
/// Keeps its text: the simulator writes it into the node's or pod's spec as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Qty {
    text: String,
    value: f64,
}

impl Qty {
    /// A quantity from its text.
    ///
    /// # Errors
    /// The parser's message for malformed or negative quantities.
    pub fn parse(text: &str) -> Result<Self, String> {
        let q = parse_quantity(text).map_err(|e| e.to_string())?;
        // Nano units to f64: exact far beyond any byte rate or resource amount we simulate.
        #[allow(clippy::cast_precision_loss)]
        let value = q.nanos() as f64 / 1e9;
        if value < 0.0 {
            return Err(format!("{text:?} is negative"));
        }
        Ok(Self {
            text: text.trim().to_owned(),
            value,
        })
    }

    /// Zero.
    #[must_use]
    pub fn zero() -> Self {
        Self {
            text: "0".into(),
            value: 0.0,
        }
    }

    /// The text, as written.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value in base units (bytes, cores, bytes/s).
    #[must_use]
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl<'de> Deserialize<'de> for Qty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a quantity such as 500m, 8Gi or 10M"))?
        {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        };
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Qty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Which scheduler configuration a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum ProfileKind {
    /// Upstream's default profile, no NetworkTraffic.
    #[serde(rename = "default")]
    Default,
    /// Default profile + NetworkTraffic at Score only: every pod of a burst sees the same
    /// measured traffic.
    #[serde(rename = "networktraffic-no-compensation")]
    NoCompensation,
    /// Default profile + NetworkTraffic with herd compensation (Score and Reserve).
    #[serde(rename = "networktraffic")]
    NetworkTraffic,
}

impl ProfileKind {
    /// All three, in the order `--compare` shows them.
    pub const ALL: [ProfileKind; 3] = [
        ProfileKind::Default,
        ProfileKind::NoCompensation,
        ProfileKind::NetworkTraffic,
    ];

    /// The name used in files, tables and the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Default => "default",
            ProfileKind::NoCompensation => "networktraffic-no-compensation",
            ProfileKind::NetworkTraffic => "networktraffic",
        }
    }

    /// Whether NetworkTraffic is enabled.
    #[must_use]
    pub fn uses_network_traffic(self) -> bool {
        self != ProfileKind::Default
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A taint on simulated nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaintSpec {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: TaintEffect,
}

/// A taint's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TaintEffect {
    /// Pods without a toleration are not placed here.
    NoSchedule,
    /// Scored lower.
    PreferNoSchedule,
    /// Like NoSchedule for scheduling.
    NoExecute,
}

impl TaintEffect {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A toleration on simulated pods.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TolerationSpec {
    /// Key to match (empty with `Exists`: every taint).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// Value for `Equal`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Effect to match (none: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// A toleration's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TolerationOperator {
    /// Key and value match.
    Equal,
    /// Key matches (any value).
    Exists,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// One node, or `count` alike nodes named `name-0`, `name-1`, ….
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeGroup {
    /// Node name (with `count` > 1: the prefix).
    pub name: String,
    /// How many nodes (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// Allocatable resources (`cpu`, `memory`, `pods`, extended resources).
    pub capacity: BTreeMap<String, Qty>,
    /// Node labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<TaintSpec>,
    /// Traffic the node carries without any simulated pod, bytes/s (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_traffic: Option<Qty>,
    /// Link capacity in bytes/s; when every node has one, NetworkTraffic scores by utilisation
    /// (its capacity mode) and the report shows utilisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_capacity: Option<Qty>,
}

/// When the pods of a group arrive. Exactly one of `at`, `rate` or `times`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Arrival {
    /// All at once.
    At {
        /// Simulated time of arrival.
        at: Dur,
    },
    /// `rate` pods per second from `start`, evenly spaced or as a Poisson process.
    Rate {
        /// First arrival (default 0s).
        start: Dur,
        /// Pods per second (> 0).
        rate: f64,
        /// Exponential gaps drawn from the scenario's seed instead of even spacing.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        poisson: bool,
    },
    /// Listed times; the group's `count` defaults to their number.
    Times {
        /// Arrival times; with fewer times than pods the list repeats from the last time.
        times: Vec<Dur>,
    },
}

impl Default for Arrival {
    fn default() -> Self {
        Arrival::At {
            at: Dur::from_duration(Duration::ZERO),
        }
    }
}

impl<'de> Deserialize<'de> for Arrival {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            at: Option<Dur>,
            start: Option<Dur>,
            rate: Option<f64>,
            #[serde(default)]
            poisson: bool,
            times: Option<Vec<Dur>>,
        }
        use serde::de::Error as _;
        let r = Raw::deserialize(d)?;
        match (r.at, r.rate, r.times) {
            (Some(at), None, None) if r.start.is_none() && !r.poisson => Ok(Arrival::At { at }),
            (None, Some(rate), None) => {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(D::Error::custom(format!(
                        "rate must be a number of pods per second > 0, got {rate}"
                    )));
                }
                let start = r
                    .start
                    .unwrap_or_else(|| Dur::from_duration(Duration::ZERO));
                Ok(Arrival::Rate {
                    start,
                    rate,
                    poisson: r.poisson,
                })
            }
            (None, None, Some(times)) if r.start.is_none() && !r.poisson => {
                if times.is_empty() {
                    return Err(D::Error::custom("times must list at least one time"));
                }
                Ok(Arrival::Times { times })
            }
            _ => Err(D::Error::custom(
                "give exactly one of `at: <time>`, `rate: <pods/s>` (with optional `start` and `poisson`) or `times: [...]`",
            )),
        }
    }
}

/// One pod, or `count` alike pods named `name-0`, `name-1`, ….
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodGroup {
    /// Pod name (with `count` > 1: the prefix).
    pub name: String,
    /// How many pods (default 1, or the number of `arrival.times`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Container requests (`cpu`, `memory`, extended resources).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Qty>,
    /// Pod priority (higher first in the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Bytes/s the pod will send/receive once running: written to the
    /// `networktraffic.ksched.io/expected-bandwidth` annotation, and added to its node's
    /// traffic `metricLag` after it is placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bandwidth: Option<Qty>,
    /// Pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// `spec.tolerations`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<TolerationSpec>,
    /// When the pods arrive (default: all at 0s).
    #[serde(default)]
    pub arrival: Arrival,
}

impl PodGroup {
    /// The number of pods this group creates.
    #[must_use]
    pub fn pod_count(&self) -> u32 {
        match (&self.count, &self.arrival) {
            (Some(c), _) => *c,
            (None, Arrival::Times { times }) => u32::try_from(times.len()).unwrap_or(u32::MAX),
            (None, _) => 1,
        }
    }
}

/// Settings of the NetworkTraffic plugin in the profiles that enable it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkTrafficSettings {
    /// Score weight (default 5, as in the deploy example).
    #[serde(default = "default_weight")]
    pub weight: i32,
    /// Extra plugin args (`rateWindow`, `maxBandwidth`, `defaultExpectedBandwidth`,
    /// `neutralScore`, …) as in `pluginConfig`; `prometheusAddress` is not needed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, serde_json::Value>,
}

fn default_weight() -> i32 {
    5
}

impl Default for NetworkTrafficSettings {
    fn default() -> Self {
        Self {
            weight: default_weight(),
            args: BTreeMap::new(),
        }
    }
}

fn default_lag() -> Dur {
    Dur::from_duration(Duration::from_secs(30))
}

fn default_refresh() -> Dur {
    Dur::from_duration(Duration::from_secs(15))
}

fn default_profiles() -> Vec<ProfileKind> {
    vec![ProfileKind::NetworkTraffic]
}

fn default_seed() -> u64 {
    1
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// A name for tables and the report.
    #[serde(default)]
    pub name: String,
    /// A sentence on what the scenario shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Seed of the tie-breaks between equal nodes and of Poisson arrivals (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long a placed pod takes to show up in the measured traffic (default 30s).
    #[serde(default = "default_lag")]
    pub metric_lag: Dur,
    /// How often the traffic source is sampled, like the plugin's refresh (default 15s).
    #[serde(default = "default_refresh")]
    pub refresh_interval: Dur,
    /// Profiles to run without `--compare` (default `[networktraffic]`).
    #[serde(default = "default_profiles")]
    pub profiles: Vec<ProfileKind>,
    /// NetworkTraffic's weight and args.
    #[serde(default)]
    pub network_traffic: NetworkTrafficSettings,
    /// `percentageOfNodesToScore` of the generated configuration (default: upstream's
    /// adaptive value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// The nodes.
    pub nodes: Vec<NodeGroup>,
    /// The pods.
    pub pods: Vec<PodGroup>,
}

/// Limits that keep a typo (`count: 10000000000`) from eating the machine.
const MAX_NODES: u64 = 100_000;
const MAX_PODS: u64 = 2_000_000;

impl Scenario {
    /// Reads a scenario file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Scenario::from_yaml`]'s errors.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            location: None,
            path: String::new(),
            message: format!("cannot read the scenario: {e}"),
        })?;
        let mut s = Self::from_yaml(&text, &path.display().to_string())?;
        if s.name.is_empty() {
            s.name = path
                .file_stem()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        }
        Ok(s)
    }

    /// Parses and checks YAML text; `file` names it in errors.
    ///
    /// # Errors
    /// Syntax errors, unknown fields, wrong types and bad values, each with the field's path
    /// and (where the parser knows it) line and column; then the checks of
    /// [`Scenario::validate`].
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ScenarioError> {
        let de = serde_norway::Deserializer::from_str(text);
        let s: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            let mut message = inner.to_string();
            // serde_norway appends " at line L column C"; the location is printed up front.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            // It may also start with the path of the enclosing value, which is printed too.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
                && path.starts_with(head)
            {
                message = rest.to_owned();
            }
            let path = if path == "." { String::new() } else { path };
            // A bad value is reported at the start of the mapping that holds it; the field's
            // own line, when it can be found below that, is more use.
            let location = match (location, locate(text, &path)) {
                (Some(parser), Some(field)) if field.0 > parser.0 => Some(field),
                (parser, field) => parser.or(field),
            };
            ScenarioError {
                file: file.to_owned(),
                location,
                path,
                message,
            }
        })?;
        s.validate().map_err(|(path, message)| ScenarioError {
            file: file.to_owned(),
            location: locate(text, &path),
            path,
            message,
        })?;
        Ok(s)
    }

    /// Checks what single fields cannot: at least one node and pod, unique names, sizes.
    ///
    /// # Errors
    /// The field's path and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.nodes.is_empty() {
            return Err(("nodes".into(), "at least one node is needed".into()));
        }
        if self.pods.is_empty() {
            return Err(("pods".into(), "at least one pod is needed".into()));
        }
        if self.profiles.is_empty() {
            return Err(("profiles".into(), "at least one profile is needed".into()));
        }
        if self.refresh_interval.get().is_zero() {
            return Err(("refreshInterval".into(), "must be > 0".into()));
        }
        if let Some(p) = self.percentage_of_nodes_to_score
            && p > 100
        {
            return Err((
                "percentageOfNodesToScore".into(),
                format!("must be in [0, 100], got {p}"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut total = 0u64;
        for (i, g) in self.nodes.iter().enumerate() {
            check_name(&g.name).map_err(|m| (format!("nodes[{i}].name"), m))?;
            if g.count == 0 {
                return Err((format!("nodes[{i}].count"), "must be ≥ 1".into()));
            }
            total += u64::from(g.count);
            for n in group_names(&g.name, g.count) {
                if !names.insert(n.clone()) {
                    return Err((
                        format!("nodes[{i}].name"),
                        format!("node {n:?} is defined twice"),
                    ));
                }
            }
            if let Some(c) = &g.link_capacity
                && c.value() <= 0.0
            {
                return Err((format!("nodes[{i}].linkCapacity"), "must be > 0".into()));
            }
        }
        if total > MAX_NODES {
            return Err((
                "nodes".into(),
                format!("{total} nodes; at most {MAX_NODES}"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut total = 0u64;
        for (i, g) in self.pods.iter().enumerate() {
            check_name(&g.name).map_err(|m| (format!("pods[{i}].name"), m))?;
            if g.pod_count() == 0 {
                return Err((format!("pods[{i}].count"), "must be ≥ 1".into()));
            }
            total += u64::from(g.pod_count());
            if !names.insert(g.name.clone()) {
                return Err((
                    format!("pods[{i}].name"),
                    format!("pod group {:?} is defined twice", g.name),
                ));
            }
        }
        if total > MAX_PODS {
            return Err(("pods".into(), format!("{total} pods; at most {MAX_PODS}")));
        }
        Ok(())
    }

    /// Total number of nodes.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.nodes.iter().map(|g| g.count as usize).sum()
    }

    /// Total number of pods.
    #[must_use]
    pub fn pod_count(&self) -> usize {
        self.pods.iter().map(|g| g.pod_count() as usize).sum()
    }

    /// The scenario as YAML (to save a generated one).
    ///
    /// # Errors
    /// Serialization errors (none expected: every field is plain data).
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_norway::to_string(self).map_err(|e| e.to_string())
    }
}

/// Names of the members of a group: `name` alone, or `name-0` … `name-{count-1}`.
#[must_use]
pub fn group_names(name: &str, count: u32) -> Vec<String> {
    if count == 1 {
        vec![name.to_owned()]
    } else {
        (0..count).map(|i| format!("{name}-{i}")).collect()
    }
}

/// Object names must be DNS subdomains: checked here so the cache and queue never see one
/// the apiserver would have refused.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ))
    }
}

/// Best-effort line of a path like `nodes[2].name` for errors found after parsing: walks the
/// text for the top-level key, then for the n-th `- ` item under it, then for the field.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    if path.is_empty() {
        return None;
    }
    let mut parts = path.split('.');
    let first = parts.next()?;
    let (key, index) = match first.split_once('[') {
        Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (first, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut at = lines
        .iter()
        .position(|l| l.starts_with(&format!("{key}:")))?;
    let mut col = 1;
    if let Some(n) = index {
        let mut seen = 0;
        let mut found = None;
        for (i, l) in lines.iter().enumerate().skip(at + 1) {
            let trimmed = l.trim_start();
            if !l.is_empty() && !l.starts_with([' ', '-', '#']) {
                break;
            }
            let indent = l.len() - trimmed.len();
            if trimmed.starts_with("- ") && indent <= 2 {
                if seen == n {
                    found = Some((i, indent + 3));
                    break;
                }
                seen += 1;
            }
        }
        let (line, c) = found?;
        at = line;
        col = c;
        if let Some(field) = parts.next() {
            for (i, l) in lines.iter().enumerate().skip(line) {
                if i > line
                    && l.trim_start().starts_with("- ")
                    && l.len() - l.trim_start().len() <= 2
                {
                    break;
                }
                let body = l.trim_start().trim_start_matches("- ");
                if body.starts_with(&format!("{field}:")) {
                    return Some((i + 1, l.len() - body.len() + 1));
                }
            }
        }
    }
    Some((at + 1, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r"
name: small
seed: 7
metricLag: 20s
profiles: [default, networktraffic]
networkTraffic:
  weight: 3
  args: {rateWindow: 30s}
nodes:
- name: a
  count: 2
  capacity: {cpu: 4, memory: 16Gi, pods: 110}
  baselineTraffic: 10M
  linkCapacity: 1250M
  taints: [{key: dedicated, value: db, effect: NoSchedule}]
- name: b
  capacity: {cpu: '8', memory: 32Gi}
pods:
- name: web
  count: 5
  requests: {cpu: 500m}
  expectedBandwidth: 5M
  arrival: {rate: 2, poisson: true}
- name: batch
  priority: 10
  tolerations: [{key: dedicated, operator: Exists}]
  arrival: {times: [1s, 2s, 3s]}
";

    #[test]
    fn parses_a_good_file() {
        let s = Scenario::from_yaml(GOOD, "good.yaml").unwrap();
        assert_eq!(s.seed, 7);
        assert_eq!(s.metric_lag.get(), Duration::from_secs(20));
        assert_eq!(s.refresh_interval.get(), Duration::from_secs(15));
        assert_eq!(
            s.profiles,
            [ProfileKind::Default, ProfileKind::NetworkTraffic]
        );
        assert_eq!(s.node_count(), 3);
        assert_eq!(s.pod_count(), 8);
        assert_eq!(s.nodes[0].capacity["cpu"].value(), 4.0);
        assert_eq!(s.nodes[0].baseline_traffic.as_ref().unwrap().value(), 10e6);
        assert_eq!(
            s.pods[0].arrival,
            Arrival::Rate {
                start: Dur::from_duration(Duration::ZERO),
                rate: 2.0,
                poisson: true
            }
        );
        assert_eq!(
            s.network_traffic.args["rateWindow"],
            serde_json::json!("30s")
        );
        // A round trip through YAML gives the same scenario.
        let again = Scenario::from_yaml(&s.to_yaml().unwrap(), "again").unwrap();
        assert_eq!(again, s);
    }

    fn err(yaml: &str) -> ScenarioError {
        Scenario::from_yaml(yaml, "bad.yaml").unwrap_err()
    }

    const NODES: &str = "nodes:\n- name: a\n  capacity: {cpu: 1}\n";

    #[test]
    fn bad_files_name_line_and_field() {
        // Unknown field.
        let e = err(&format!("{NODES}pods:\n- name: p\n  cpus: 1\n"));
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("pods[0].cpus", Some(6)),
            "{e}"
        );
        assert!(
            e.message
                .starts_with("unknown field `cpus`, expected one of `name`"),
            "{e}"
        );
        // Bad quantity.
        let e = err(
            "nodes:\n- name: a\n  capacity: {cpu: 1}\n  baselineTraffic: lots\npods: [{name: p}]\n",
        );
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("nodes[0].baselineTraffic", Some(4)),
            "{e}"
        );
        // Bad duration.
        let e = err(&format!(
            "metricLag: 30 seconds\n{NODES}pods: [{{name: p}}]\n"
        ));
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("metricLag", Some(1)),
            "{e}"
        );
        // Unknown profile.
        let e = err(&format!(
            "profiles: [fastest]\n{NODES}pods: [{{name: p}}]\n"
        ));
        assert_eq!(e.path, "profiles[0]", "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(1), "{e}");
        assert!(e.message.contains("unknown variant `fastest`"), "{e}");
        // Two kinds of arrival at once.
        let e = err(&format!(
            "{NODES}pods:\n- name: p\n  arrival: {{at: 1s, rate: 3}}\n"
        ));
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("pods[0].arrival", Some(6)),
            "{e}"
        );
        // A zero rate.
        let e = err(&format!(
            "{NODES}pods:\n- name: p\n  arrival:\n    rate: 0\n"
        ));
        assert_eq!(e.path, "pods[0].arrival", "{e}");
        assert!(e.message.contains("rate must be"), "{e}");
        // Wrong type.
        let e = err(&format!("seed: many\n{NODES}pods: [{{name: p}}]\n"));
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("seed", Some(1)),
            "{e}"
        );
        // Found after parsing: a duplicate node, located by its path.
        let e = err(
            "nodes:\n- name: a\n  capacity: {cpu: 1}\n- name: a\n  capacity: {cpu: 1}\npods: [{name: p}]\n",
        );
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("nodes[1].name", Some(4)),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "bad.yaml:4:3: nodes[1].name: node \"a\" is defined twice"
        );
        // No pods.
        let e = err(&format!("{NODES}pods: []\n"));
        assert_eq!(
            (e.path.as_str(), e.location.map(|l| l.0)),
            ("pods", Some(4)),
            "{e}"
        );
        // Not YAML at all.
        let e = err("nodes: [\n");
        assert!(e.location.is_some(), "{e}");
        // Missing required field.
        let e = err("pods: [{name: p}]\n");
        assert!(e.message.contains("missing field `nodes`"), "{e}");
    }
}
