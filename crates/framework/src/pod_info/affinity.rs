//! [`AffinityTerm`]: a pod (anti-)affinity term with its selectors parsed, as InterPodAffinity
//! reads it (upstream `fwk.AffinityTerm`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use super::label_selector::{LabelSelector, SelectorError};

/// A pod (anti-)affinity term, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    /// Namespaces the term applies to: the term's `namespaces`, or the pod's own namespace when
    /// neither `namespaces` nor `namespaceSelector` is given.
    pub namespaces: BTreeSet<String>,
    /// Which pods the term selects.
    pub selector: LabelSelector,
    /// The topology domain label.
    pub topology_key: String,
    /// Namespaces selected by their labels, in addition to [`AffinityTerm::namespaces`]
    /// (matches nothing when absent, every namespace when empty).
    pub namespace_selector: LabelSelector,
}

/// An [`AffinityTerm`] of a preferred (scoring) rule, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedAffinityTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight (1–100).
    pub weight: i32,
}

impl AffinityTerm {
    /// Parses `term` of `pod` (upstream `newAffinityTerm`).
    ///
    /// # Errors
    /// [`SelectorError`] when the label or namespace selector is invalid.
    pub fn new(pod: &Pod, term: &PodAffinityTerm) -> Result<Self, SelectorError> {
        let selector = LabelSelector::parse(term.label_selector.as_ref())?;
        let namespace_selector = LabelSelector::parse(term.namespace_selector.as_ref())?;
        let explicit = term.namespaces.as_deref().unwrap_or_default();
        let namespaces = if explicit.is_empty() && term.namespace_selector.is_none() {
            [pod.metadata.namespace.clone().unwrap_or_default()].into()
        } else {
            explicit.iter().cloned().collect()
        };
        Ok(Self {
            namespaces,
            selector,
            topology_key: term.topology_key.clone(),
            namespace_selector,
        })
    }

    /// Whether `pod` (in a namespace labelled `namespace_labels`) is selected by the term
    /// (upstream `AffinityTerm.Matches`).
    #[must_use]
    pub fn matches(&self, pod: &Pod, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let empty = BTreeMap::new();
        let in_namespace = self.namespaces.contains(ns)
            || self
                .namespace_selector
                .matches(namespace_labels.unwrap_or(&empty));
        in_namespace
            && self
                .selector
                .matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
    }
}

impl WeightedAffinityTerm {
    /// Parses a weighted term of `pod`.
    ///
    /// # Errors
    /// [`SelectorError`] when the label or namespace selector is invalid.
    pub fn new(pod: &Pod, term: &WeightedPodAffinityTerm) -> Result<Self, SelectorError> {
        Ok(Self {
            term: AffinityTerm::new(pod, &term.pod_affinity_term)?,
            weight: term.weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector as MetaSelector, ObjectMeta,
    };

    use super::*;

    fn pod(ns: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some("p".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn selector(app: &str) -> Option<MetaSelector> {
        Some(MetaSelector {
            match_labels: Some([("app".to_owned(), app.to_owned())].into()),
            match_expressions: None,
        })
    }

    #[test]
    fn defaults_to_the_pods_namespace() {
        let owner = pod("team-a", &[]);
        let term = PodAffinityTerm {
            label_selector: selector("web"),
            topology_key: "zone".into(),
            ..Default::default()
        };
        let t = AffinityTerm::new(&owner, &term).unwrap();
        assert_eq!(t.namespaces, ["team-a".to_owned()].into());
        assert!(t.matches(&pod("team-a", &[("app", "web")]), None));
        assert!(!t.matches(&pod("team-b", &[("app", "web")]), None));
        assert!(!t.matches(&pod("team-a", &[("app", "db")]), None));
    }

    #[test]
    fn namespace_selector() {
        let owner = pod("team-a", &[]);
        let term = PodAffinityTerm {
            label_selector: selector("web"),
            namespace_selector: Some(MetaSelector::default()),
            topology_key: "zone".into(),
            ..Default::default()
        };
        let t = AffinityTerm::new(&owner, &term).unwrap();
        assert!(t.namespaces.is_empty());
        // An empty namespace selector selects every namespace.
        assert!(t.matches(&pod("anything", &[("app", "web")]), None));
    }
}
