//! The plugin's arguments (`pluginConfig[].args` of `NetworkTraffic`), their defaults, and
//! their validation into a [`Config`].
//!
//! Every check happens when the plugin is built, so a bad value stops the scheduler at start-up
//! with the field's path (`profiles[0].pluginConfig[1].args.rateWindow: must be > 0`) instead of
//! surfacing later as a query error or silently neutral scores.

use std::{fmt, path::PathBuf, time::Duration};

use ksched_framework::{config::parse_go_duration, parse_quantity};
use regex::Regex;
use reqwest::Url;
use serde::{Deserialize, Deserializer};

use crate::Error;

/// Virtual interfaces whose bytes are either local (loopback), or also counted on the physical
/// NIC they are bridged/encapsulated onto (veth pairs, bridges, overlays): counting them would
/// count pod traffic twice or count traffic that never touches the wire.
pub const DEFAULT_EXCLUDE_DEVICE_REGEX: &str = "lo|veth.*|docker.*|cni.*|flannel.*|cali.*|cilium.*|lxc.*|vxlan.*|tunl.*|kube-ipvs.*|nodelocaldns|virbr.*|br-.*";

/// A Go duration string (`15s`, `1m30s`, `500ms`), as Kubernetes component configs write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_go_duration(&s)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Which direction of traffic counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Direction {
    /// Bytes received (`node_network_receive_bytes_total`).
    #[default]
    Receive,
    /// Bytes sent (`node_network_transmit_bytes_total`).
    Transmit,
    /// Both, added up; link capacity counts twice (full duplex).
    Both,
}

impl Direction {
    /// How many times the link capacity the traffic may reach (full duplex).
    #[must_use]
    pub fn capacity_factor(self) -> f64 {
        match self {
            Direction::Receive | Direction::Transmit => 1.0,
            Direction::Both => 2.0,
        }
    }
}

/// How a query result's series are matched to Kubernetes nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum NodeMapping {
    /// Join on `instance` with node-exporter's `node_uname_info` and take the node name from its
    /// `nodeLabel` label (`nodename`, the kernel's hostname — usually the node name).
    #[default]
    Uname,
    /// The traffic series themselves carry the node name in label `nodeLabel` (e.g. `node`, as
    /// kube-prometheus relabels it).
    Label,
    /// The `instance` label's host (port stripped) is one of the node's `InternalIP` addresses.
    #[serde(rename = "InternalIP")]
    InternalIp,
}

/// `basicAuth` of the args.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthArgs {
    /// The user name.
    pub username: String,
    /// A file holding the password (re-read before every query, so a rotated Secret is picked
    /// up). The password itself is never part of the args, so it is never logged.
    pub password_file: PathBuf,
}

/// `tls` of the args.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsArgs {
    /// PEM file with the CA certificate(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Off unless set: it lets anyone on the path feed the
    /// scheduler made-up traffic.
    pub insecure_skip_verify: bool,
}

/// The args of `NetworkTraffic`, as written in the KubeSchedulerConfiguration. See
/// `docs/networktraffic.md` for each field with an example.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NetworkTrafficArgs {
    /// Prometheus base URL with scheme, e.g. `http://prometheus.monitoring.svc:9090` (a path
    /// prefix such as `/prometheus` is kept). Required.
    pub prometheus_address: String,
    /// How often the one query runs. Default `15s`.
    pub refresh_interval: GoDuration,
    /// The `rate()` window. Default `1m`.
    pub rate_window: GoDuration,
    /// Data older than this scores neutral; at least `refreshInterval`. Default `2m`.
    pub max_staleness: GoDuration,
    /// Bound on one query: connect plus answer. Default `5s`.
    pub timeout: GoDuration,
    /// `Receive` (default), `Transmit` or `Both`.
    pub direction: Direction,
    /// Devices to count (a PromQL regex, fully anchored). Default `.*`.
    pub device_regex: String,
    /// Devices never to count (a PromQL regex, fully anchored; empty for none). Default
    /// [`DEFAULT_EXCLUDE_DEVICE_REGEX`].
    pub exclude_device_regex: String,
    /// `Uname` (default), `Label` or `InternalIP`.
    pub node_mapping: NodeMapping,
    /// The label holding the node name (`Uname`, `Label`). Default `nodename`.
    pub node_label: String,
    /// Replaces the built-in traffic query: an instant-vector PromQL expression giving bytes/s,
    /// one series per node, labelled as `nodeMapping` expects (`nodeLabel`, or `instance` for
    /// `InternalIP`).
    pub query: Option<String>,
    /// Link capacity in bytes/s per direction as a quantity (`1250M` for 10 Gbit/s); turns on
    /// scoring by utilisation.
    pub link_capacity: Option<String>,
    /// Read each node's link capacity from `node_network_speed_bytes` (summed over the counted
    /// devices); `linkCapacity`, when set, stands in for nodes without it.
    pub link_capacity_from_metric: bool,
    /// Replaces the built-in capacity query (needs `linkCapacityFromMetric`).
    pub capacity_query: Option<String>,
    /// Turns on the Filter: nodes above this are rejected. A quantity in bytes/s (`800M`), or a
    /// percentage of link capacity (`80%`, needs capacity).
    pub max_bandwidth: Option<String>,
    /// Bytes/s assumed for a pod without the `networktraffic.ksched.io/expected-bandwidth`
    /// annotation (herd compensation). Default `0`.
    pub default_expected_bandwidth: String,
    /// Score of a node without fresh data, in [0, 100]. Default 50.
    pub neutral_score: i64,
    /// File holding a bearer token (re-read before every query).
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth with a password file.
    pub basic_auth: Option<BasicAuthArgs>,
    /// TLS settings for `https` addresses.
    pub tls: TlsArgs,
}

impl Default for NetworkTrafficArgs {
    fn default() -> Self {
        Self {
            prometheus_address: String::new(),
            refresh_interval: GoDuration(Duration::from_secs(15)),
            rate_window: GoDuration(Duration::from_secs(60)),
            max_staleness: GoDuration(Duration::from_secs(120)),
            timeout: GoDuration(Duration::from_secs(5)),
            direction: Direction::Receive,
            device_regex: ".*".into(),
            exclude_device_regex: DEFAULT_EXCLUDE_DEVICE_REGEX.into(),
            node_mapping: NodeMapping::Uname,
            node_label: "nodename".into(),
            query: None,
            link_capacity: None,
            link_capacity_from_metric: false,
            capacity_query: None,
            max_bandwidth: None,
            default_expected_bandwidth: "0".into(),
            neutral_score: 50,
            bearer_token_file: None,
            basic_auth: None,
            tls: TlsArgs::default(),
        }
    }
}

/// The Filter's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxBandwidth {
    /// Bytes/s.
    Absolute(f64),
    /// A fraction (0, 1] of the node's link capacity.
    FractionOfCapacity(f64),
}

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <file content>`.
    BearerTokenFile(PathBuf),
    /// `Authorization: Basic base64(username:<file content>)`.
    Basic {
        /// The user name.
        username: String,
        /// The password file.
        password_file: PathBuf,
    },
}

/// Validated, typed args.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prometheus base URL.
    pub address: Url,
    /// Refresh period.
    pub refresh_interval: Duration,
    /// `rate()` window.
    pub rate_window: Duration,
    /// Data older than this is not used.
    pub max_staleness: Duration,
    /// HTTP connect and request timeout.
    pub timeout: Duration,
    /// Direction counted.
    pub direction: Direction,
    /// Devices counted.
    pub device_regex: String,
    /// Devices never counted (empty: none).
    pub exclude_device_regex: String,
    /// Series-to-node mapping.
    pub node_mapping: NodeMapping,
    /// The node-name label.
    pub node_label: String,
    /// Traffic query override.
    pub query: Option<String>,
    /// Static link capacity, bytes/s per direction.
    pub link_capacity: Option<f64>,
    /// Capacity from `node_network_speed_bytes`.
    pub link_capacity_from_metric: bool,
    /// Capacity query override.
    pub capacity_query: Option<String>,
    /// The Filter's limit, `None` when the Filter is off.
    pub max_bandwidth: Option<MaxBandwidth>,
    /// Bytes/s of a pod without the annotation.
    pub default_expected_bandwidth: f64,
    /// Score of a node without fresh data.
    pub neutral_score: i64,
    /// Credentials.
    pub auth: AuthConfig,
    /// CA file.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure_skip_verify: bool,
}

impl Config {
    /// Whether scores are utilisation of link capacity rather than relative to the busiest node.
    #[must_use]
    pub fn capacity_mode(&self) -> bool {
        self.link_capacity.is_some() || self.link_capacity_from_metric
    }
}

/// A byte rate given as a Kubernetes quantity (`1250M`, `10Mi`, `0`), in bytes/s.
///
/// # Errors
/// A message when `s` is not a quantity or is negative.
pub fn parse_byte_rate(s: &str) -> Result<f64, String> {
    let q = parse_quantity(s).map_err(|e| e.to_string())?;
    // Nano units to a float: exact up to 2^53 nano units, far beyond any meaningful precision
    // for a byte rate.
    #[allow(clippy::cast_precision_loss)]
    let v = q.nanos() as f64 / 1e9;
    if v < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok(v)
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a device regex the way Prometheus uses it: fully anchored, RE2 syntax (the `regex`
/// crate accepts the same language for everything a device pattern needs).
fn check_regex(field: &str, re: &str) -> Result<(), Error> {
    Regex::new(&format!("^(?:{re})$"))
        .map(|_| ())
        .map_err(|e| Error::invalid(field, format!("invalid regex: {e}")))
}

fn positive(field: &str, d: Duration) -> Result<Duration, Error> {
    if d.is_zero() {
        return Err(Error::invalid(field, "must be > 0"));
    }
    Ok(d)
}

fn readable(field: &str, path: &std::path::Path) -> Result<(), Error> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| Error::invalid(field, format!("cannot read {}: {e}", path.display())))
}

impl NetworkTrafficArgs {
    /// Checks every field and converts to a [`Config`]. Files (token, password, CA) must be
    /// readable now: a typo in a path is a start-up error, not a stream of refresh failures.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the first bad field.
    pub fn validate(&self) -> Result<Config, Error> {
        let address = parse_address(&self.prometheus_address)?;
        let refresh_interval = positive("refreshInterval", self.refresh_interval.0)?;
        let rate_window = positive("rateWindow", self.rate_window.0)?;
        if !rate_window.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::invalid(
                "rateWindow",
                "must be a whole number of milliseconds",
            ));
        }
        let max_staleness = positive("maxStaleness", self.max_staleness.0)?;
        if max_staleness < refresh_interval {
            return Err(Error::invalid(
                "maxStaleness",
                format!(
                    "{max_staleness:?} is shorter than refreshInterval {refresh_interval:?}: every snapshot would be stale before the next one"
                ),
            ));
        }
        if !max_staleness.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::invalid(
                "maxStaleness",
                "must be a whole number of milliseconds",
            ));
        }
        let timeout = positive("timeout", self.timeout.0)?;
        check_regex("deviceRegex", &self.device_regex)?;
        check_regex("excludeDeviceRegex", &self.exclude_device_regex)?;
        if !is_label_name(&self.node_label) {
            return Err(Error::invalid(
                "nodeLabel",
                format!("{:?} is not a Prometheus label name", self.node_label),
            ));
        }
        for (field, q) in [
            ("query", &self.query),
            ("capacityQuery", &self.capacity_query),
        ] {
            if q.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return Err(Error::invalid(field, "must not be empty when set"));
            }
        }
        if self.capacity_query.is_some() && !self.link_capacity_from_metric {
            return Err(Error::invalid(
                "capacityQuery",
                "is only used with linkCapacityFromMetric: true",
            ));
        }
        let link_capacity = match &self.link_capacity {
            None => None,
            Some(s) => match parse_byte_rate(s) {
                Ok(v) if v > 0.0 => Some(v),
                Ok(_) => return Err(Error::invalid("linkCapacity", "must be > 0")),
                Err(e) => return Err(Error::invalid("linkCapacity", e)),
            },
        };
        let capacity_known = link_capacity.is_some() || self.link_capacity_from_metric;
        let max_bandwidth = self
            .max_bandwidth
            .as_deref()
            .map(|s| parse_max_bandwidth(s, capacity_known))
            .transpose()?;
        let default_expected_bandwidth = parse_byte_rate(&self.default_expected_bandwidth)
            .map_err(|e| Error::invalid("defaultExpectedBandwidth", e))?;
        if !(0..=100).contains(&self.neutral_score) {
            return Err(Error::invalid("neutralScore", "must be within [0, 100]"));
        }
        let auth = match (&self.bearer_token_file, &self.basic_auth) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "basicAuth",
                    "bearerTokenFile and basicAuth exclude each other",
                ));
            }
            (Some(f), None) => {
                readable("bearerTokenFile", f)?;
                AuthConfig::BearerTokenFile(f.clone())
            }
            (None, Some(b)) => {
                if b.username.is_empty() || b.username.contains(':') {
                    return Err(Error::invalid(
                        "basicAuth.username",
                        "must be non-empty and contain no ':'",
                    ));
                }
                readable("basicAuth.passwordFile", &b.password_file)?;
                AuthConfig::Basic {
                    username: b.username.clone(),
                    password_file: b.password_file.clone(),
                }
            }
            (None, None) => AuthConfig::None,
        };
        if let Some(ca) = &self.tls.ca_file {
            readable("tls.caFile", ca)?;
        }
        Ok(Config {
            address,
            refresh_interval,
            rate_window,
            max_staleness,
            timeout,
            direction: self.direction,
            device_regex: self.device_regex.clone(),
            exclude_device_regex: self.exclude_device_regex.clone(),
            node_mapping: self.node_mapping,
            node_label: self.node_label.clone(),
            query: self.query.clone(),
            link_capacity,
            link_capacity_from_metric: self.link_capacity_from_metric,
            capacity_query: self.capacity_query.clone(),
            max_bandwidth,
            default_expected_bandwidth,
            neutral_score: self.neutral_score,
            auth,
            ca_file: self.tls.ca_file.clone(),
            insecure_skip_verify: self.tls.insecure_skip_verify,
        })
    }
}

fn parse_address(s: &str) -> Result<Url, Error> {
    const FIELD: &str = "prometheusAddress";
    if s.trim().is_empty() {
        return Err(Error::invalid(
            FIELD,
            "is required (e.g. http://prometheus.monitoring.svc:9090)",
        ));
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(Error::invalid(
            FIELD,
            format!("{s:?} has no http:// or https:// scheme (write e.g. http://{s})"),
        ));
    }
    let url =
        Url::parse(s).map_err(|e| Error::invalid(FIELD, format!("{s:?} is not a URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(FIELD, format!("{s:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in logs and error messages.
        return Err(Error::invalid(
            FIELD,
            "must not contain credentials; use basicAuth or bearerTokenFile",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(FIELD, "must not have a query or fragment"));
    }
    Ok(url)
}

fn parse_max_bandwidth(s: &str, capacity_known: bool) -> Result<MaxBandwidth, Error> {
    const FIELD: &str = "maxBandwidth";
    if let Some(p) = s.trim().strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .map_err(|_| Error::invalid(FIELD, format!("{s:?} is not a percentage")))?;
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(Error::invalid(
                FIELD,
                "a percentage must be within (0, 100]",
            ));
        }
        if !capacity_known {
            return Err(Error::invalid(
                FIELD,
                "a percentage needs linkCapacity or linkCapacityFromMetric",
            ));
        }
        return Ok(MaxBandwidth::FractionOfCapacity(pct / 100.0));
    }
    match parse_byte_rate(s) {
        Ok(v) if v > 0.0 => Ok(MaxBandwidth::Absolute(v)),
        Ok(_) => Err(Error::invalid(FIELD, "must be > 0")),
        Err(e) => Err(Error::invalid(
            FIELD,
            format!("{e} (write bytes/s as a quantity such as 800M, or a percentage such as 80%)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use ksched_framework::PluginArgs;
    use serde_json::json;

    use super::*;

    fn args(v: serde_json::Value) -> Result<Config, String> {
        let a: NetworkTrafficArgs = PluginArgs::from_value(v)
            .decode()
            .map_err(|e| e.to_string())?;
        a.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = args(json!({"prometheusAddress": "http://prom:9090/prefix"})).unwrap();
        assert_eq!(c.address.as_str(), "http://prom:9090/prefix");
        assert_eq!(c.refresh_interval, Duration::from_secs(15));
        assert_eq!(c.rate_window, Duration::from_secs(60));
        assert_eq!(c.max_staleness, Duration::from_secs(120));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.direction, Direction::Receive);
        assert_eq!(c.node_mapping, NodeMapping::Uname);
        assert_eq!(c.node_label, "nodename");
        assert!(c.max_bandwidth.is_none());
        assert!(!c.capacity_mode());
        assert_eq!(c.default_expected_bandwidth, 0.0);
        assert_eq!(c.neutral_score, 50);
        assert_eq!(c.auth, AuthConfig::None);
        assert!(!c.insecure_skip_verify);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({}), "prometheusAddress: is required"),
            (
                json!({"prometheusAddress": "prometheus.kube-system:9090"}),
                "prometheusAddress: \"prometheus.kube-system:9090\" has no http:// or https:// scheme",
            ),
            (
                json!({"prometheusAddress": "http://u:p@prom:9090"}),
                "prometheusAddress: must not contain credentials",
            ),
            (
                json!({"prometheusAddress": "http://p", "rateWindow": "0s"}),
                "rateWindow: must be > 0",
            ),
            (
                json!({"prometheusAddress": "http://p", "rateWindow": "-1m"}),
                "rateWindow: duration \"-1m\" is negative",
            ),
            (
                json!({"prometheusAddress": "http://p", "refreshInterval": "0"}),
                "refreshInterval: must be > 0",
            ),
            (
                json!({"prometheusAddress": "http://p", "maxStaleness": "10s"}),
                "maxStaleness: 10s is shorter than refreshInterval 15s",
            ),
            (
                json!({"prometheusAddress": "http://p", "deviceRegex": "eth(0"}),
                "deviceRegex: invalid regex",
            ),
            (
                json!({"prometheusAddress": "http://p", "excludeDeviceRegex": "*"}),
                "excludeDeviceRegex: invalid regex",
            ),
            (
                json!({"prometheusAddress": "http://p", "nodeLabel": "node-name"}),
                "nodeLabel: \"node-name\" is not a Prometheus label name",
            ),
            (
                json!({"prometheusAddress": "http://p", "maxBandwidth": "80%"}),
                "maxBandwidth: a percentage needs linkCapacity",
            ),
            (
                json!({"prometheusAddress": "http://p", "maxBandwidth": "fast"}),
                "maxBandwidth: quantity \"fast\"",
            ),
            (
                json!({"prometheusAddress": "http://p", "linkCapacity": "0"}),
                "linkCapacity: must be > 0",
            ),
            (
                json!({"prometheusAddress": "http://p", "defaultExpectedBandwidth": "-1M"}),
                "defaultExpectedBandwidth: \"-1M\" is negative",
            ),
            (
                json!({"prometheusAddress": "http://p", "neutralScore": 101}),
                "neutralScore: must be within [0, 100]",
            ),
            (
                json!({"prometheusAddress": "http://p", "capacityQuery": "x"}),
                "capacityQuery: is only used with linkCapacityFromMetric",
            ),
            (
                json!({"prometheusAddress": "http://p", "bearerTokenFile": "/nonexistent/token"}),
                "bearerTokenFile: cannot read /nonexistent/token",
            ),
            (
                json!({"prometheusAddress": "http://p", "basicAuth": {"username": "u", "passwordFile": "/nonexistent/pw"}}),
                "basicAuth.passwordFile: cannot read",
            ),
            (
                json!({"prometheusAddress": "http://p", "tls": {"caFile": "/nonexistent/ca.pem"}}),
                "tls.caFile: cannot read",
            ),
            (
                json!({"prometheusAddress": "http://p", "direction": "Sideways"}),
                "direction: unknown variant `Sideways`",
            ),
            (
                json!({"prometheusAddress": "http://p", "ip": "x"}),
                "unknown field `ip`",
            ),
            (
                json!({"prometheusAddress": "http://p", "timeout": "5"}),
                "timeout: invalid duration \"5\": missing unit",
            ),
        ];
        for (v, want) in cases {
            let got = args(v.clone())
                .err()
                .unwrap_or_else(|| panic!("{v} should be rejected"));
            assert!(got.contains(want), "{v}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn capacity_and_filter_forms() {
        let c = args(json!({"prometheusAddress": "https://p", "linkCapacity": "1250M", "maxBandwidth": "80%", "direction": "Both", "nodeMapping": "InternalIP"})).unwrap();
        assert_eq!(c.link_capacity, Some(1.25e9));
        assert_eq!(c.max_bandwidth, Some(MaxBandwidth::FractionOfCapacity(0.8)));
        assert_eq!(c.node_mapping, NodeMapping::InternalIp);
        assert!(c.capacity_mode());
        let c = args(json!({"prometheusAddress": "http://p", "maxBandwidth": "100Mi", "defaultExpectedBandwidth": "1.5M"})).unwrap();
        assert_eq!(c.max_bandwidth, Some(MaxBandwidth::Absolute(104_857_600.0)));
        assert_eq!(c.default_expected_bandwidth, 1.5e6);
    }
}
