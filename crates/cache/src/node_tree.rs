//! [`NodeTree`]: node names grouped by zone, listed round-robin across zones (upstream
//! `node_tree.go`).
//!
//! The snapshot lists nodes in this order. Filtering stops after enough feasible nodes
//! (`percentageOfNodesToScore`) starting from a rotating index, so an interleaved order makes
//! each cycle see nodes of every zone instead of one zone's block.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Node;

/// `topology.kubernetes.io/zone`.
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `topology.kubernetes.io/region`.
const LABEL_REGION: &str = "topology.kubernetes.io/region";
/// Deprecated zone label, still read when the GA one is absent (as upstream).
const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
/// Deprecated region label.
const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";

/// The zone a node belongs to: `region:\0:zone`, or "" without zone and region labels
/// (upstream `GetZoneKey`; the NUL keeps a colon inside a name from making two keys equal).
#[must_use]
pub fn zone_key(node: &Node) -> String {
    let Some(labels) = node.metadata.labels.as_ref() else {
        return String::new();
    };
    let get = |ga: &str, beta: &str| {
        labels
            .get(ga)
            .or_else(|| labels.get(beta))
            .map(String::as_str)
            .unwrap_or("")
    };
    let zone = get(LABEL_ZONE, LABEL_ZONE_BETA);
    let region = get(LABEL_REGION, LABEL_REGION_BETA);
    if zone.is_empty() && region.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

/// Node names by zone, zones in the order they first appeared.
#[derive(Debug, Default)]
pub(crate) struct NodeTree {
    zones: Vec<String>,
    nodes: HashMap<String, Vec<String>>,
    len: usize,
}

impl NodeTree {
    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `name` in `zone`; false if it is already there.
    pub(crate) fn add(&mut self, name: &str, zone: &str) -> bool {
        match self.nodes.get_mut(zone) {
            Some(names) if names.iter().any(|n| n == name) => return false,
            Some(names) => names.push(name.to_owned()),
            None => {
                self.zones.push(zone.to_owned());
                self.nodes.insert(zone.to_owned(), vec![name.to_owned()]);
            }
        }
        self.len += 1;
        true
    }

    /// Removes `name` from `zone`; false if it was not there.
    pub(crate) fn remove(&mut self, name: &str, zone: &str) -> bool {
        let Some(names) = self.nodes.get_mut(zone) else {
            return false;
        };
        let Some(i) = names.iter().position(|n| n == name) else {
            return false;
        };
        // Keeps the order of the remaining nodes (upstream slices the node out too).
        names.remove(i);
        if names.is_empty() {
            self.nodes.remove(zone);
            self.zones.retain(|z| z != zone);
        }
        self.len -= 1;
        true
    }

    /// Node names, taking the i-th node of every zone before any (i+1)-th.
    pub(crate) fn list(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.len);
        let zones: Vec<&Vec<String>> = self
            .zones
            .iter()
            .filter_map(|z| self.nodes.get(z))
            .collect();
        let longest = zones.iter().map(|z| z.len()).max().unwrap_or(0);
        for i in 0..longest {
            out.extend(zones.iter().filter_map(|z| z.get(i)).map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn interleaves_zones() {
        let mut t = NodeTree::default();
        for (n, z) in [
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
            ("b1", "b"),
            ("c1", "c"),
            ("c2", "c"),
        ] {
            assert!(t.add(n, z));
        }
        assert!(!t.add("a1", "a"));
        assert_eq!(t.list(), ["a1", "b1", "c1", "a2", "c2", "a3"]);
        assert!(t.remove("b1", "b"));
        assert!(!t.remove("b1", "b"));
        assert!(!t.remove("a1", "c"));
        assert_eq!(t.list(), ["a1", "c1", "a2", "c2", "a3"]);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn zone_keys() {
        let node = |labels: &[(&str, &str)]| Node {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(zone_key(&Node::default()), "");
        assert_eq!(zone_key(&node(&[("other", "x")])), "");
        assert_eq!(
            zone_key(&node(&[(LABEL_ZONE, "z1"), (LABEL_REGION, "r1")])),
            "r1:\0:z1"
        );
        assert_eq!(zone_key(&node(&[(LABEL_ZONE_BETA, "z1")])), ":\0:z1");
        assert_eq!(
            zone_key(&node(&[(LABEL_ZONE, "z2"), (LABEL_ZONE_BETA, "z1")])),
            ":\0:z2"
        );
    }
}
