//! [`TrafficSnapshot`]: what one refresh learnt, read by Score and Filter without locks.
//!
//! A snapshot is immutable; the refresher builds a new one and swaps it in (`ArcSwap`), so the
//! per-node Score calls of a cycle read it concurrently with no lock and no allocation.

use std::collections::HashMap;

/// A map keyed by node name (or IP). foldhash rather than std's SipHash: Score hashes one node
/// name per node per pod, and SipHash was most of its cost; the random seed keeps it
/// unpredictable, and the keys come from the cluster's own node names anyway.
pub type NodeMap<V> = HashMap<NodeKey, V, foldhash::fast::RandomState>;

/// Bytes of a node name kept inside the map's entry.
const INLINE_KEY: usize = 46;

/// A node name (or IP) as a map key: names up to 46 bytes are stored inside the entry, so the
/// key comparison after a hash hit reads the cache line the probe already loaded instead of
/// chasing a pointer to a heap string — on 5000 nodes that second miss was half of Score's
/// lookup. Longer names live on the heap. Hashes and compares as the `str` it holds.
#[derive(Clone)]
pub enum NodeKey {
    /// A short name, in place.
    Inline {
        /// Bytes used.
        len: u8,
        /// The name's bytes (valid UTF-8 up to `len`).
        bytes: [u8; INLINE_KEY],
    },
    /// A long name.
    Heap(Box<str>),
}

impl NodeKey {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            // Only ever filled from a `str` (see `From<&str>`), so always valid UTF-8.
            NodeKey::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            NodeKey::Heap(s) => s,
        }
    }
}

impl From<&str> for NodeKey {
    fn from(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE_KEY => {
                let mut bytes = [0u8; INLINE_KEY];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                NodeKey::Inline { len, bytes }
            }
            _ => NodeKey::Heap(s.into()),
        }
    }
}

impl From<Box<str>> for NodeKey {
    fn from(s: Box<str>) -> Self {
        if s.len() <= INLINE_KEY {
            NodeKey::from(&*s)
        } else {
            NodeKey::Heap(s)
        }
    }
}

impl std::borrow::Borrow<str> for NodeKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::hash::Hash for NodeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for NodeKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NodeKey {}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

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
            nodes: nodes
                .into_iter()
                .map(|(k, v)| (NodeKey::from(k.into()), v))
                .collect(),
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
                    NodeKey::from(k.into()),
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
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }
}
