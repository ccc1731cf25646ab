//! The one PromQL query per refresh, and how its result becomes a [`TrafficSnapshot`].
//!
//! The query returns, for every node at once, its traffic in bytes/s (and, when capacity comes
//! from a metric, its link speed). Both parts travel in one request, told apart by the
//! [`SERIES_LABEL`] label that `label_replace` adds, so a refresh is one round trip however
//! many nodes there are.
//!
//! Built-in traffic query for the default `Uname` mapping (receive, window 1m):
//!
//! ```text
//! max by (nodename) (
//!     sum by (instance, job) (rate(node_network_receive_bytes_total{device!~"<virtual>"}[1m]))
//!   * on (instance, job) group_left (nodename)
//!     topk by (instance, job) (1, max by (instance, job, nodename) (node_uname_info))
//! )
//! ```
//!
//! - `rate()`, not the seed's `sum_over_time` of a counter: bytes per second, immune to
//!   counter resets and to how long a node has been up.
//! - Summed per scrape target first, so devices add up; `max` per node last, so a node scraped
//!   by two jobs is not counted twice.
//! - `topk by (instance, job) (1, …)` keeps one `node_uname_info` per target: a hostname change
//!   inside the lookback window would otherwise give two matches and fail the whole query.

use std::{collections::HashMap, fmt::Write as _};

use prometheus_http_query::response::Data;

use crate::{
    args::{Config, Direction, NodeMapping},
    snapshot::{NodeMap, NodeTraffic, TrafficSnapshot},
};

/// The label telling traffic series (`traffic`) from capacity series (`capacity`).
pub const SERIES_LABEL: &str = "ksched_series";

/// A PromQL double-quoted string literal holding `s`.
fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A PromQL duration (`60s`, `500ms`).
fn promql_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The labels that identify one scrape target (and, for `Label`, the node it reports for).
fn target_labels(config: &Config) -> String {
    match config.node_mapping {
        NodeMapping::Uname | NodeMapping::InternalIp => "instance, job".to_owned(),
        NodeMapping::Label => format!("{}, instance, job", config.node_label),
    }
}

fn selector(metric: &str, config: &Config) -> String {
    let mut m = Vec::new();
    if config.device_regex != ".*" {
        m.push(format!("device=~{}", promql_string(&config.device_regex)));
    }
    if !config.exclude_device_regex.is_empty() {
        m.push(format!(
            "device!~{}",
            promql_string(&config.exclude_device_regex)
        ));
    }
    format!("{metric}{{{}}}", m.join(","))
}

/// Per-target traffic of one counter. When data may be older than `maxStaleness` yet still
/// inside the rate window, targets without a sample in the last `maxStaleness` are dropped.
fn per_target_rate(metric: &str, config: &Config) -> String {
    let by = target_labels(config);
    let sel = selector(metric, config);
    let mut q = format!(
        "sum by ({by}) (rate({sel}[{}]))",
        promql_duration(config.rate_window)
    );
    if config.max_staleness < config.rate_window {
        let _ = write!(
            q,
            " and on ({by}) count by ({by}) (count_over_time({sel}[{}]))",
            promql_duration(config.max_staleness)
        );
    }
    q
}

/// Joins per-target values to node names and keeps one value per node.
fn per_node(per_target: &str, config: &Config) -> String {
    let nl = &config.node_label;
    match config.node_mapping {
        NodeMapping::Uname => format!(
            "max by ({nl}) (({per_target}) * on (instance, job) group_left ({nl}) topk by (instance, job) (1, max by (instance, job, {nl}) (node_uname_info)))"
        ),
        NodeMapping::Label => format!("max by ({nl}) ({per_target})"),
        NodeMapping::InternalIp => format!("max by (instance) ({per_target})"),
    }
}

/// The built-in traffic expression (bytes/s per node).
#[must_use]
pub fn traffic_expr(config: &Config) -> String {
    if let Some(q) = &config.query {
        return q.clone();
    }
    let rx = || per_target_rate("node_network_receive_bytes_total", config);
    let tx = || per_target_rate("node_network_transmit_bytes_total", config);
    let per_target = match config.direction {
        Direction::Receive => rx(),
        Direction::Transmit => tx(),
        // A target exporting only one of the two still counts with what it has.
        Direction::Both => {
            let (a, b) = (rx(), tx());
            format!("(({a}) + ({b})) or ({a}) or ({b})")
        }
    };
    per_node(&per_target, config)
}

/// The built-in capacity expression (link speed in bytes/s per node, one direction).
/// Virtual devices report -1 or nothing; `> 0` keeps only real speeds.
#[must_use]
pub fn capacity_expr(config: &Config) -> String {
    if let Some(q) = &config.capacity_query {
        return q.clone();
    }
    let by = target_labels(config);
    let per_target = format!(
        "sum by ({by}) ({} > 0)",
        selector("node_network_speed_bytes", config)
    );
    per_node(&per_target, config)
}

/// The whole query sent each refresh.
#[must_use]
pub fn build(config: &Config) -> String {
    let traffic = format!(
        "label_replace(({}), \"{SERIES_LABEL}\", \"traffic\", \"\", \"\")",
        traffic_expr(config)
    );
    if !config.link_capacity_from_metric {
        return traffic;
    }
    format!(
        "{traffic} or label_replace(({}), \"{SERIES_LABEL}\", \"capacity\", \"\", \"\")",
        capacity_expr(config)
    )
}

/// The node key of a series: its node name, or for `InternalIP` the host part of `instance`.
fn series_key<'a>(
    labels: &'a HashMap<String, String>,
    mapping: NodeMapping,
    node_label: &str,
) -> Option<&'a str> {
    match mapping {
        NodeMapping::Uname | NodeMapping::Label => labels.get(node_label).map(String::as_str),
        NodeMapping::InternalIp => labels.get("instance").map(|i| strip_port(i)),
    }
}

/// `10.0.0.1:9100` → `10.0.0.1`, `[fd00::1]:9100` → `fd00::1`; an address without a port
/// (including a bare IPv6 address) is returned as it is.
#[must_use]
pub fn strip_port(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => instance,
    }
}

/// What parsing found besides the snapshot, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Series in the result.
    pub series: usize,
    /// Series without the node label (or `instance`).
    pub unmapped: usize,
    /// Samples that are NaN, infinite or negative: not a traffic rate.
    pub invalid: usize,
}

/// Turns the query's result into a snapshot evaluated at `evaluated_at` (unix seconds).
///
/// NaN, ±Inf and negative values are dropped (the node then has no data and scores neutral):
/// a rate is never negative, and NaN/Inf come from divisions in custom queries. When a node
/// appears twice (a custom query without a final aggregation), the larger value wins, as the
/// built-in query's `max by` does.
///
/// # Errors
/// [`crate::Error::UnexpectedResultType`] when the result is not an instant vector.
pub fn parse(
    data: &Data,
    mapping: NodeMapping,
    node_label: &str,
    evaluated_at: i64,
) -> Result<(TrafficSnapshot, ParseStats), crate::Error> {
    let vector = match data {
        Data::Vector(v) => v,
        Data::Matrix(_) => return Err(crate::Error::UnexpectedResultType("range vector")),
        Data::Scalar(_) => return Err(crate::Error::UnexpectedResultType("scalar")),
    };
    let mut stats = ParseStats {
        series: vector.len(),
        ..ParseStats::default()
    };
    let mut nodes: NodeMap<NodeTraffic> =
        NodeMap::with_capacity_and_hasher(vector.len(), Default::default());
    for s in vector {
        let labels = s.metric();
        let Some(key) = series_key(labels, mapping, node_label) else {
            stats.unmapped += 1;
            continue;
        };
        let v = s.sample().value();
        if !v.is_finite() || v < 0.0 {
            stats.invalid += 1;
            continue;
        }
        let is_capacity = labels.get(SERIES_LABEL).is_some_and(|k| k == "capacity");
        let entry = nodes.entry(key.into()).or_default();
        let slot = if is_capacity {
            &mut entry.capacity
        } else {
            &mut entry.rate
        };
        *slot = Some(slot.map_or(v, |old: f64| old.max(v)));
    }
    Ok((TrafficSnapshot::from_map(nodes, evaluated_at), stats))
}

#[cfg(test)]
mod tests {
    use ksched_framework::PluginArgs;
    use serde_json::json;

    use super::*;
    use crate::args::NetworkTrafficArgs;

    fn config(v: serde_json::Value) -> Config {
        let a: NetworkTrafficArgs = PluginArgs::from_value(v).decode().unwrap();
        a.validate().unwrap()
    }

    #[test]
    fn default_query() {
        let c = config(json!({"prometheusAddress": "http://p", "excludeDeviceRegex": "lo|veth.*"}));
        assert_eq!(
            build(&c),
            "label_replace((max by (nodename) ((sum by (instance, job) (rate(node_network_receive_bytes_total{device!~\"lo|veth.*\"}[60s]))) * on (instance, job) group_left (nodename) topk by (instance, job) (1, max by (instance, job, nodename) (node_uname_info)))), \"ksched_series\", \"traffic\", \"\", \"\")"
        );
    }

    #[test]
    fn label_mapping_both_directions_staleness_and_escaping() {
        let c = config(json!({
            "prometheusAddress": "http://p", "nodeMapping": "Label", "nodeLabel": "node",
            "direction": "Both", "deviceRegex": "eth\\d+|\"x\"", "excludeDeviceRegex": "",
            "rateWindow": "5m", "maxStaleness": "90s", "refreshInterval": "1500ms"
        }));
        let rx = "sum by (node, instance, job) (rate(node_network_receive_bytes_total{device=~\"eth\\\\d+|\\\"x\\\"\"}[300s])) and on (node, instance, job) count by (node, instance, job) (count_over_time(node_network_receive_bytes_total{device=~\"eth\\\\d+|\\\"x\\\"\"}[90s]))";
        let q = traffic_expr(&c);
        assert!(q.starts_with(&format!("max by (node) ((({rx}) + (")), "{q}");
        assert!(q.contains("node_network_transmit_bytes_total"));
        assert!(q.contains(&format!(") or ({rx}) or (")));
    }

    #[test]
    fn capacity_rides_in_the_same_query() {
        let c = config(
            json!({"prometheusAddress": "http://p", "nodeMapping": "InternalIP", "linkCapacityFromMetric": true, "excludeDeviceRegex": "lo"}),
        );
        let q = build(&c);
        assert!(q.contains("max by (instance) (sum by (instance, job) (node_network_speed_bytes{device!~\"lo\"} > 0))"), "{q}");
        assert!(q.contains("\"ksched_series\", \"capacity\""));
        let c = config(
            json!({"prometheusAddress": "http://p", "query": "my_rate", "linkCapacityFromMetric": true, "capacityQuery": "my_speed"}),
        );
        assert_eq!(
            build(&c),
            "label_replace((my_rate), \"ksched_series\", \"traffic\", \"\", \"\") or label_replace((my_speed), \"ksched_series\", \"capacity\", \"\", \"\")"
        );
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.1:9100"), "10.0.0.1");
        assert_eq!(strip_port("10.0.0.1"), "10.0.0.1");
        assert_eq!(strip_port("[fd00::1]:9100"), "fd00::1");
        assert_eq!(strip_port("fd00::1"), "fd00::1");
        assert_eq!(strip_port("node-a:9100"), "node-a");
    }

    fn vector(json: serde_json::Value) -> Data {
        serde_json::from_value(json!({"resultType": "vector", "result": json})).unwrap()
    }

    #[test]
    fn parse_keeps_valid_samples() {
        let data = vector(json!([
            {"metric": {"nodename": "a", "ksched_series": "traffic"}, "value": [1.0, "100.5"]},
            {"metric": {"nodename": "a", "ksched_series": "capacity"}, "value": [1.0, "1e9"]},
            {"metric": {"nodename": "b"}, "value": [1.0, "NaN"]},
            {"metric": {"nodename": "c"}, "value": [1.0, "+Inf"]},
            {"metric": {"nodename": "d"}, "value": [1.0, "-3"]},
            {"metric": {"instance": "x:1"}, "value": [1.0, "7"]},
            {"metric": {"nodename": "e"}, "value": [1.0, "0"]},
            {"metric": {"nodename": "e"}, "value": [1.0, "5"]},
        ]));
        let (snap, stats) = parse(&data, NodeMapping::Uname, "nodename", 42).unwrap();
        assert_eq!(
            stats,
            ParseStats {
                series: 8,
                unmapped: 1,
                invalid: 3
            }
        );
        assert_eq!(snap.evaluated_at(), 42);
        assert_eq!(
            snap.get("a"),
            Some(&NodeTraffic {
                rate: Some(100.5),
                capacity: Some(1e9)
            })
        );
        assert_eq!(snap.get("b"), None);
        assert_eq!(snap.get("e").and_then(|t| t.rate), Some(5.0));
        assert_eq!(snap.nodes_with_rate(), 2);
        let (snap, _) = parse(&data, NodeMapping::InternalIp, "nodename", 42).unwrap();
        assert_eq!(snap.get("x").and_then(|t| t.rate), Some(7.0));
    }

    #[test]
    fn parse_rejects_other_result_types() {
        let data: Data =
            serde_json::from_value(json!({"resultType": "scalar", "result": [1.0, "1"]})).unwrap();
        assert_eq!(
            parse(&data, NodeMapping::Uname, "nodename", 0)
                .unwrap_err()
                .kind(),
            "result_type"
        );
    }
}
