//! [`TrafficSnapshot`]: what one refresh learnt, read by Score and Filter without locks.
//!
//! A snapshot is immutable; the refresher builds a new one and swaps it in (`ArcSwap`), so the
//! per-node Score calls of a cycle read it concurrently with no lock and no allocation.

use std::collections::HashMap;

/// A map keyed by node name (or IP). foldhash rather than std's SipHash: Score hashes one node
/// name per node per pod, and SipHash was most of its cost; the random seed keeps it
/// unpredictable, and the keys come from the cluster's own node names anyway.
pub type NodeMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

use k8s_openapi::api::core::v1::Node;

use crate::args::NodeMapping;

/// One node's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeTraffic {
    /// Traffic in bytes/s (finite, ≥ 0), or `None` when the query gave none.
    pub rate: Option<f64>,
    /// Link speed in bytes/s from the capacity query, one direction.
    pub capacity: Option<f64>,
}

/// Traffic of every node that has data, as of one query's evaluation time.
#[derive(Debug, Clone, Default)]
pub struct TrafficSnapshot {
    /// Keyed by node name, or by IP for the `InternalIP` mapping.
    nodes: NodeMap<NodeTraffic>,
    /// Unix seconds at which the query was evaluated (0: never).
    evaluated_at: i64,
}

impl TrafficSnapshot {
    /// A snapshot of `nodes` (any map or list of key → measurements) evaluated at
    /// `evaluated_at` (unix seconds).
    #[must_use]
    pub fn new<K: Into<Box<str>>>(
        nodes: impl IntoIterator<Item = (K, NodeTraffic)>,
        evaluated_at: i64,
    ) -> Self {
        Self {
            nodes: nodes.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            evaluated_at,
        }
    }

    pub(crate) fn from_map(nodes: NodeMap<NodeTraffic>, evaluated_at: i64) -> Self {
        Self {
            nodes,
            evaluated_at,
        }
    }

    /// No data: every node scores neutral.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a snapshot from `(key, bytes per second)` pairs (tests, simulators, benchmarks).
    #[must_use]
    pub fn from_rates<K: Into<Box<str>>>(
        rates: impl IntoIterator<Item = (K, f64)>,
        evaluated_at: i64,
    ) -> Self {
        let nodes = rates
            .into_iter()
            .map(|(k, r)| {
                (
                    k.into(),
                    NodeTraffic {
                        rate: Some(r),
                        capacity: None,
                    },
                )
            })
            .collect();
        Self {
            nodes,
            evaluated_at,
        }
    }

    /// Unix seconds at which the query was evaluated (0 for a snapshot with no data yet).
    #[must_use]
    pub fn evaluated_at(&self) -> i64 {
        self.evaluated_at
    }

    /// The measurements under `key` (node name or IP).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&NodeTraffic> {
        self.nodes.get(key)
    }

    /// The measurements of `node` under `mapping`: by name, or by the first of its
    /// `InternalIP` addresses that has data.
    #[must_use]
    pub fn lookup(
        &self,
        mapping: NodeMapping,
        node_name: &str,
        node: Option<&Node>,
    ) -> Option<&NodeTraffic> {
        if self.nodes.is_empty() {
            return None;
        }
        match mapping {
            NodeMapping::Uname | NodeMapping::Label => self.nodes.get(node_name),
            NodeMapping::InternalIp => node?
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| self.nodes.get(a.address.as_str())),
        }
    }

    /// Number of keys with a traffic rate (the `nodes_with_fresh_data` gauge).
    #[must_use]
    pub fn nodes_with_rate(&self) -> usize {
        self.nodes.values().filter(|t| t.rate.is_some()).count()
    }

    /// True when no node has data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All keys and measurements.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &NodeTraffic)> {
        self.nodes.iter().map(|(k, v)| (&**k, v))
    }
}
