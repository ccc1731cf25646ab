//! Node selectors as upstream `component-helpers/scheduling/corev1/nodeaffinity` evaluates
//! them: `nodeSelector` labels, required node affinity (ORed terms of ANDed requirements) and
//! preferred terms with weights. Operators In, NotIn, Exists, DoesNotExist, Gt, Lt on labels;
//! In and NotIn on the `metadata.name` field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

use super::pod::node_labels;

/// The only field a `matchFields` requirement may name.
const OBJECT_NAME_FIELD: &str = "metadata.name";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn parse(r: &NodeSelectorRequirement, field: bool) -> Result<Self, String> {
        let values = r.values.as_deref().unwrap_or_default();
        let bad = |why: &str| {
            Err(format!(
                "{} requirement on {:?}: {why}",
                if field { "field" } else { "label" },
                r.key
            ))
        };
        if field && r.key != OBJECT_NAME_FIELD {
            return bad("not a supported field selector key");
        }
        let op = match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return bad("operator In/NotIn needs at least one value");
            }
            "In" | "NotIn" if field && values.len() != 1 => {
                return bad("field selector operators take exactly one value");
            }
            "In" => Op::In(values.to_vec()),
            "NotIn" => Op::NotIn(values.to_vec()),
            _ if field => return bad("only In and NotIn are supported for fields"),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return bad("operator Exists/DoesNotExist takes no values");
            }
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" | "Lt" => {
                let [v] = values else {
                    return bad("operator Gt/Lt takes exactly one value");
                };
                let Ok(n) = v.parse::<i64>() else {
                    return bad("operator Gt/Lt needs an integer value");
                };
                if r.operator == "Gt" {
                    Op::Gt(n)
                } else {
                    Op::Lt(n)
                }
            }
            other => return bad(&format!("{other:?} is not a valid operator")),
        };
        Ok(Self {
            key: r.key.clone(),
            op,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), Some(v)) => !vs.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// One parsed term: label requirements and field requirements, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Term {
    /// `None` for an empty term (it matches nothing, as upstream).
    fn parse(t: &NodeSelectorTerm) -> Option<Result<Self, String>> {
        let exprs = t.match_expressions.as_deref().unwrap_or_default();
        let fields = t.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let parse = |rs: &[NodeSelectorRequirement], field| -> Result<Vec<Requirement>, String> {
            rs.iter().map(|r| Requirement::parse(r, field)).collect()
        };
        Some(parse(exprs, false).and_then(|labels| {
            Ok(Self {
                labels,
                fields: parse(fields, true)?,
            })
        }))
    }

    fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        self.labels
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(name)))
    }
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// A parsed `NodeSelector`: terms are ORed. A term that does not parse never matches, but the
/// others still count (upstream's "lazy error" selector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelectorMatcher {
    terms: Vec<Result<Term, String>>,
}

impl NodeSelectorMatcher {
    /// Parses every term.
    pub fn new(selector: &NodeSelector) -> Self {
        Self {
            terms: selector
                .node_selector_terms
                .iter()
                .filter_map(Term::parse)
                .collect(),
        }
    }

    /// Whether any valid term matches the node.
    pub fn matches(&self, node: &Node) -> bool {
        let (labels, name) = (node_labels(node), node_name(node));
        self.terms
            .iter()
            .any(|t| t.as_ref().is_ok_and(|t| t.matches(labels, name)))
    }

    /// Why terms failed to parse.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.terms
            .iter()
            .filter_map(|t| t.as_ref().err().map(String::as_str))
    }
}

/// A pod's `nodeSelector` and required node affinity together (upstream
/// `nodeaffinity.RequiredNodeAffinity`): both must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    labels: Option<BTreeMap<String, String>>,
    affinity: Option<NodeSelectorMatcher>,
}

impl RequiredNodeAffinity {
    /// The pod's required node selection.
    pub fn of_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let labels = spec
            .and_then(|s| s.node_selector.clone())
            .filter(|l| !l.is_empty());
        let affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeSelectorMatcher::new);
        Self { labels, affinity }
    }

    /// Whether the node satisfies both.
    pub fn matches(&self, node: &Node) -> bool {
        if let Some(want) = &self.labels {
            let have = node_labels(node);
            if !want.iter().all(|(k, v)| have.get(k) == Some(v)) {
                return false;
            }
        }
        self.affinity.as_ref().is_none_or(|a| a.matches(node))
    }

    /// No `nodeSelector` and no required node affinity.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.affinity.is_none()
    }
}

/// Parsed preferred scheduling terms with their weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferredSchedulingTerms {
    terms: Vec<(Term, i64)>,
}

impl PreferredSchedulingTerms {
    /// Parses the terms; terms with weight 0 or no requirements are left out.
    ///
    /// # Errors
    /// The first term that does not parse.
    pub fn new(terms: &[PreferredSchedulingTerm]) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            if t.weight == 0 {
                continue;
            }
            match Term::parse(&t.preference) {
                None => {}
                Some(Ok(term)) => parsed.push((term, i64::from(t.weight))),
                Some(Err(e)) => {
                    return Err(format!(
                        "preferredDuringSchedulingIgnoredDuringExecution[{i}]: {e}"
                    ));
                }
            }
        }
        Ok(Self { terms: parsed })
    }

    /// Sum of the weights of the terms the node matches.
    pub fn score(&self, node: &Node) -> i64 {
        let (labels, name) = (node_labels(node), node_name(node));
        self.terms
            .iter()
            .filter(|(t, _)| t.matches(labels, name))
            .map(|(_, w)| w)
            .sum()
    }

    /// No term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Appends other terms (the plugin's `addedAffinity` preferred terms).
    pub fn extend(&mut self, other: Self) {
        self.terms.extend(other.terms);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn selector(
        terms: Vec<(Vec<NodeSelectorRequirement>, Vec<NodeSelectorRequirement>)>,
    ) -> NodeSelectorMatcher {
        NodeSelectorMatcher::new(&NodeSelector {
            node_selector_terms: terms
                .into_iter()
                .map(|(e, f)| NodeSelectorTerm {
                    match_expressions: Some(e),
                    match_fields: Some(f),
                })
                .collect(),
        })
    }

    #[test]
    fn operators() {
        let n = node("n1", &[("zone", "a"), ("gen", "5")]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("missing", "In", &["a"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("missing", "NotIn", &["a"]), true),
            (req("zone", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("zone", "DoesNotExist", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("gen", "Gt", &["4"]), true),
            (req("gen", "Gt", &["5"]), false),
            (req("gen", "Lt", &["6"]), true),
            (req("gen", "Lt", &["5"]), false),
            (req("zone", "Gt", &["1"]), false),
            (req("missing", "Lt", &["1"]), false),
        ];
        for (i, (r, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                selector(vec![(vec![r.clone()], vec![])]).matches(&n),
                want,
                "case {i}: {r:?}"
            );
        }
    }

    #[test]
    fn terms_or_requirements_and() {
        let n = node("n1", &[("zone", "a"), ("disk", "ssd")]);
        let and = selector(vec![(
            vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])],
            vec![],
        )]);
        assert!(!and.matches(&n));
        let or = selector(vec![
            (
                vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])],
                vec![],
            ),
            (vec![req("disk", "In", &["ssd"])], vec![]),
        ]);
        assert!(or.matches(&n));
        // An empty term matches nothing; an invalid term is skipped but others still count.
        assert!(!selector(vec![(vec![], vec![])]).matches(&n));
        let lazy = selector(vec![
            (vec![req("zone", "Bogus", &[])], vec![]),
            (vec![req("zone", "Exists", &[])], vec![]),
        ]);
        assert!(lazy.matches(&n));
        assert_eq!(lazy.errors().count(), 1);
        let fields = selector(vec![(vec![], vec![req("metadata.name", "In", &["n1"])])]);
        assert!(fields.matches(&n));
        assert!(!fields.matches(&node("n2", &[])));
        let bad_field = selector(vec![(vec![], vec![req("metadata.uid", "In", &["x"])])]);
        assert!(!bad_field.matches(&n));
    }

    #[test]
    fn preferred_weights() {
        let n = node("n1", &[("zone", "a")]);
        let terms = [
            PreferredSchedulingTerm {
                weight: 5,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![req("zone", "In", &["a"])]),
                    match_fields: None,
                },
            },
            PreferredSchedulingTerm {
                weight: 7,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![req("zone", "Exists", &[])]),
                    match_fields: None,
                },
            },
            PreferredSchedulingTerm {
                weight: 9,
                preference: NodeSelectorTerm::default(),
            },
            PreferredSchedulingTerm {
                weight: 3,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![req("zone", "In", &["b"])]),
                    match_fields: None,
                },
            },
        ];
        assert_eq!(PreferredSchedulingTerms::new(&terms).unwrap().score(&n), 12);
        let bad = [PreferredSchedulingTerm {
            weight: 1,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![req("zone", "Gt", &["x"])]),
                match_fields: None,
            },
        }];
        assert!(PreferredSchedulingTerms::new(&bad).is_err());
    }
}
