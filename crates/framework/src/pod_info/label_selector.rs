//! [`LabelSelector`]: a `metav1.LabelSelector` checked once and matched many times.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

/// A parsed label selector (upstream `metav1.LabelSelectorAsSelector`).
///
/// An absent selector matches nothing; a present but empty one matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSelector {
    /// Matches no label set (the selector was absent).
    Nothing,
    /// Requirements that must all hold; empty matches every label set.
    Requirements(Vec<LabelRequirement>),
}

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// What the label must satisfy.
    pub operator: LabelOperator,
}

/// A label requirement's operator with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOperator {
    /// The label exists and its value is one of these (`matchLabels` gives a single value).
    In(BTreeSet<String>),
    /// The label is absent, or its value is none of these.
    NotIn(BTreeSet<String>),
    /// The label exists.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A label selector the API should have rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `In`/`NotIn` without values.
    #[error("label selector requirement on {key:?}: operator {operator} needs at least one value")]
    MissingValues {
        /// The label key.
        key: String,
        /// The operator.
        operator: String,
    },
    /// `Exists`/`DoesNotExist` with values.
    #[error("label selector requirement on {key:?}: operator {operator} takes no values")]
    UnexpectedValues {
        /// The label key.
        key: String,
        /// The operator.
        operator: String,
    },
    /// An operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("label selector requirement on {key:?}: {operator:?} is not a valid operator")]
    InvalidOperator {
        /// The label key.
        key: String,
        /// The operator.
        operator: String,
    },
}

impl LabelSelector {
    /// Parses a selector; `None` matches nothing.
    ///
    /// # Errors
    /// [`SelectorError`] for a requirement with a wrong operator or value count.
    pub fn parse(selector: Option<&metav1::LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::Nothing);
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(LabelRequirement {
                key: key.clone(),
                operator: LabelOperator::In([value.clone()].into()),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            let operator = expr.operator.clone();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues { key, operator });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { key, operator });
                }
                "In" => LabelOperator::In(values),
                "NotIn" => LabelOperator::NotIn(values),
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                _ => return Err(SelectorError::InvalidOperator { key, operator }),
            };
            requirements.push(LabelRequirement {
                key: expr.key.clone(),
                operator: op,
            });
        }
        Ok(Self::Requirements(requirements))
    }

    /// A selector matching every label set.
    #[must_use]
    pub fn everything() -> Self {
        Self::Requirements(Vec::new())
    }

    /// Whether the selector matches every label set.
    #[must_use]
    pub fn is_everything(&self) -> bool {
        matches!(self, Self::Requirements(r) if r.is_empty())
    }

    /// Whether `labels` satisfy the selector.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Nothing => false,
            Self::Requirements(requirements) => requirements.iter().all(|r| r.matches(labels)),
        }
    }
}

impl LabelRequirement {
    /// Whether `labels` satisfy this requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            LabelOperator::In(values) => value.is_some_and(|v| values.contains(v)),
            LabelOperator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use metav1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn absent_matches_nothing_empty_matches_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!LabelSelector::parse(None).unwrap().matches(&l));
        let empty = LabelSelector::parse(Some(&metav1::LabelSelector::default())).unwrap();
        assert!(empty.is_everything());
        assert!(empty.matches(&l));
        assert!(empty.matches(&BTreeMap::new()));
    }

    #[test]
    fn operators() {
        let sel = metav1::LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["prod"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let s = LabelSelector::parse(Some(&sel)).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("team", "x")])));
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", "x"),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "a"), ("team", "x")])));
    }

    #[test]
    fn invalid_requirements() {
        let parse = |e| {
            LabelSelector::parse(Some(&metav1::LabelSelector {
                match_expressions: Some(vec![e]),
                match_labels: None,
            }))
        };
        assert!(matches!(
            parse(expr("a", "In", &[])),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            parse(expr("a", "Exists", &["x"])),
            Err(SelectorError::UnexpectedValues { .. })
        ));
        assert!(matches!(
            parse(expr("a", "Gt", &["1"])),
            Err(SelectorError::InvalidOperator { .. })
        ));
    }
}
