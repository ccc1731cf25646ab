//! [`PodInfo`]: a pod plus what plugins would otherwise recompute on every node.

mod affinity;
mod label_selector;

use std::{
    hash::BuildHasher,
    sync::{Arc, LazyLock},
};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

pub use self::{
    affinity::{AffinityTerm, WeightedAffinityTerm},
    label_selector::{LabelOperator, LabelRequirement, LabelSelector, SelectorError},
};
use crate::resource::{PodResource, ResourceError};

/// A pod shared by the queue, the cache and plugins, with data derived from its spec once:
/// parsed (anti-)affinity terms and resource requests.
///
/// Building one never fails: what cannot be parsed is recorded in
/// [`PodInfo::parse_errors`] (a plugin turns it into an UnschedulableAndUnresolvable
/// status, surfaced as a FailedScheduling reason) and left out of the derived data.
///
/// `repr(C)` keeps the fields the scheduling queue reads on every add, pop and done (the key,
/// the hashes, the priority) first, on the cache lines next to the `Arc`'s reference counts,
/// which the queue touches anyway: with 100k pods pending each one is a cache miss otherwise.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct PodInfo {
    /// `namespace/name`, then the UID, then `spec.schedulerName`, in one allocation so that
    /// the queue finds all three on one or two cache lines without reading the pod.
    key: String,
    pod: Arc<Pod>,
    /// What the scheduling queue reads on every add, pop and done, computed once here so that
    /// it never has to read the (cold, ~2 KB) pod on its hot path.
    key_hash: u64,
    uid_hash: u64,
    key_len: u32,
    uid_len: u32,
    priority: i32,
    has_nominated_node_name: bool,
    required_affinity_terms: Vec<AffinityTerm>,
    required_anti_affinity_terms: Vec<AffinityTerm>,
    preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    resource: PodResource,
    parse_errors: Vec<PodInfoError>,
}

/// Something in a pod's spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodInfoError {
    /// A malformed resource quantity.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// An invalid label selector in a pod (anti-)affinity term; upstream drops all terms of that
    /// kind, and so does [`PodInfo`].
    #[error("{field}: {source}")]
    Affinity {
        /// Which terms, e.g. `spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
        field: String,
        /// What is wrong.
        #[source]
        source: SelectorError,
    },
}

impl PodInfo {
    /// Wraps a pod, parsing its affinity terms and computing its requests.
    #[must_use]
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut key = pod_key(&pod);
        let key_len = key.len();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let scheduler_name = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or_default();
        let key_hash = pod_hash(&key);
        let uid_hash = pod_hash(uid);
        // Kubernetes names and UIDs are far below 4 GiB.
        let uid_len = u32::try_from(uid.len()).unwrap_or(u32::MAX);
        key.reserve_exact(uid.len() + scheduler_name.len());
        key.push_str(uid);
        key.push_str(scheduler_name);
        let has_nominated_node_name = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let (resource, resource_errors) = PodResource::of_pod(&pod);
        let mut parse_errors: Vec<PodInfoError> = resource_errors
            .into_iter()
            .map(PodInfoError::from)
            .collect();

        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
        const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
        let mut required = |terms: Option<&Vec<PodAffinityTerm>>, field: &str| {
            collect_terms(
                terms,
                |t| AffinityTerm::new(&pod, t),
                field,
                &mut parse_errors,
            )
        };
        let required_affinity_terms = required(
            pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &format!("spec.affinity.podAffinity.{REQUIRED}"),
        );
        let required_anti_affinity_terms = required(
            pod_anti_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &format!("spec.affinity.podAntiAffinity.{REQUIRED}"),
        );
        let mut preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>, field: &str| {
            collect_terms(
                terms,
                |t| WeightedAffinityTerm::new(&pod, t),
                field,
                &mut parse_errors,
            )
        };
        let preferred_affinity_terms = preferred(
            pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &format!("spec.affinity.podAffinity.{PREFERRED}"),
        );
        let preferred_anti_affinity_terms = preferred(
            pod_anti_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &format!("spec.affinity.podAntiAffinity.{PREFERRED}"),
        );

        Self {
            priority: pod_priority(&pod),
            pod,
            key_len: u32::try_from(key_len).unwrap_or(u32::MAX),
            uid_len,
            key,
            key_hash,
            uid_hash,
            has_nominated_node_name,
            required_affinity_terms,
            required_anti_affinity_terms,
            preferred_affinity_terms,
            preferred_anti_affinity_terms,
            resource,
            parse_errors,
        }
    }

    /// The pod as the scheduler assumes it on `node`: a copy with `spec.nodeName` set (upstream
    /// deep-copies the queued pod and sets the name), keeping what was derived from it here —
    /// none of which depends on `spec.nodeName` — instead of parsing the copy again.
    #[must_use]
    pub fn with_node_name(&self, node: &str) -> Self {
        let mut pod = Pod::clone(&self.pod);
        pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_owned());
        Self {
            pod: Arc::new(pod),
            ..self.clone()
        }
    }

    /// The pod.
    #[must_use]
    #[inline]
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// `namespace/name`, the key the queue and cache use.
    #[must_use]
    #[inline]
    pub fn key(&self) -> &str {
        self.key.get(..self.key_len as usize).unwrap_or_default()
    }

    /// `metadata.uid`, empty when unset.
    #[must_use]
    #[inline]
    pub fn uid(&self) -> &str {
        let start = self.key_len as usize;
        self.key
            .get(start..start + self.uid_len as usize)
            .unwrap_or_default()
    }

    /// `spec.schedulerName`, empty when unset (the apiserver defaults it to
    /// `default-scheduler`).
    #[must_use]
    #[inline]
    pub fn scheduler_name(&self) -> &str {
        let start = self.key_len as usize + self.uid_len as usize;
        self.key.get(start..).unwrap_or_default()
    }

    /// [`pod_hash`] of [`PodInfo::key`], computed once.
    #[must_use]
    #[inline]
    pub fn key_hash(&self) -> u64 {
        self.key_hash
    }

    /// [`pod_hash`] of [`PodInfo::uid`], computed once.
    #[must_use]
    #[inline]
    pub fn uid_hash(&self) -> u64 {
        self.uid_hash
    }

    /// `spec.priority` (0 when unset), as [`pod_priority`] reads it.
    #[must_use]
    #[inline]
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Whether `status.nominatedNodeName` names a node.
    #[must_use]
    #[inline]
    pub fn has_nominated_node_name(&self) -> bool {
        self.has_nominated_node_name
    }

    /// `spec.nodeName`, if the pod is bound or assumed.
    #[must_use]
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// Required pod affinity terms.
    #[must_use]
    pub fn required_affinity_terms(&self) -> &[AffinityTerm] {
        &self.required_affinity_terms
    }

    /// Required pod anti-affinity terms.
    #[must_use]
    pub fn required_anti_affinity_terms(&self) -> &[AffinityTerm] {
        &self.required_anti_affinity_terms
    }

    /// Preferred pod affinity terms.
    #[must_use]
    pub fn preferred_affinity_terms(&self) -> &[WeightedAffinityTerm] {
        &self.preferred_affinity_terms
    }

    /// Preferred pod anti-affinity terms.
    #[must_use]
    pub fn preferred_anti_affinity_terms(&self) -> &[WeightedAffinityTerm] {
        &self.preferred_anti_affinity_terms
    }

    /// What the pod adds to a node (upstream `PodInfo.CalculateResource()`).
    #[must_use]
    pub fn resource(&self) -> &PodResource {
        &self.resource
    }

    /// Everything in the spec that could not be parsed.
    #[must_use]
    pub fn parse_errors(&self) -> &[PodInfoError] {
        &self.parse_errors
    }

    /// The first parse error, if any.
    #[must_use]
    pub fn parse_error(&self) -> Option<&PodInfoError> {
        self.parse_errors.first()
    }

    /// The pod declares pod affinity or anti-affinity (upstream `podWithAffinity`: the
    /// NodeInfo lists such pods for InterPodAffinity).
    #[must_use]
    pub fn has_affinity(&self) -> bool {
        let affinity = self.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }

    /// The pod declares required anti-affinity terms (upstream `podWithRequiredAntiAffinity`).
    #[must_use]
    pub fn has_required_anti_affinity(&self) -> bool {
        let affinity = self.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|terms| !terms.is_empty())
    }
}

/// Parses every term; on the first error records it and keeps none (upstream
/// `GetAffinityTerms` returns nil with the error).
fn collect_terms<T, U>(
    terms: Option<&Vec<T>>,
    parse: impl Fn(&T) -> Result<U, SelectorError>,
    field: &str,
    errors: &mut Vec<PodInfoError>,
) -> Vec<U> {
    let parsed: Result<Vec<U>, SelectorError> = terms.into_iter().flatten().map(parse).collect();
    parsed.unwrap_or_else(|source| {
        errors.push(PodInfoError::Affinity {
            field: field.to_owned(),
            source,
        });
        Vec::new()
    })
}

/// The process-wide hasher behind [`pod_hash`]: foldhash, seeded at random once per process.
static POD_HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// Hashes a pod key or UID for hash tables keyed by pods (the queue's index and in-flight
/// table; [`PodInfo::key_hash`] and [`PodInfo::uid_hash`] are this, precomputed).
///
/// foldhash with a random per-process seed: several times faster than std's SipHash on short
/// keys, and only "minimally" HashDoS-resistant: pod names are chosen by users, but an
/// attacker cannot observe the hashes, and the seed differs in every process, so colliding
/// names cannot be prepared in advance. Not stable across processes or versions: never
/// persist it.
#[must_use]
pub fn pod_hash(s: &str) -> u64 {
    POD_HASHER.hash_one(s)
}

/// `namespace/name` of a pod (upstream `MetaNamespaceKeyFunc`).
#[must_use]
pub fn pod_key(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut key = String::with_capacity(ns.len() + name.len() + 1);
    key.push_str(ns);
    key.push('/');
    key.push_str(name);
    key
}

/// The pod's priority (`spec.priority`, 0 when unset), as PrioritySort and preemption read it.
#[must_use]
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Affinity, Container, PodAntiAffinity, PodSpec, ResourceRequirements},
        apimachinery::pkg::{
            api::resource::Quantity,
            apis::meta::v1::{LabelSelector as MetaSelector, LabelSelectorRequirement, ObjectMeta},
        },
    };

    use super::*;

    fn pod_with(spec: PodSpec) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        })
    }

    fn anti_affinity(selector: MetaSelector) -> Affinity {
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(selector),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn key_and_flags() {
        let info = PodInfo::new(pod_with(PodSpec::default()));
        assert_eq!(info.key(), "ns/p");
        assert_eq!((info.uid(), info.scheduler_name()), ("", ""));
        assert_eq!(info.key_hash(), pod_hash("ns/p"));
        assert_eq!(info.priority(), 0);
        assert!(!info.has_nominated_node_name());
        assert!(!info.has_affinity());
        assert!(!info.has_required_anti_affinity());
        assert!(info.parse_error().is_none());
        assert_eq!(info.node_name(), None);
    }

    #[test]
    fn uid_scheduler_name_priority_and_nomination_are_kept() {
        let mut pod = Pod::clone(&pod_with(PodSpec {
            priority: Some(7),
            scheduler_name: Some("my-scheduler".into()),
            ..Default::default()
        }));
        pod.metadata.uid = Some("u-1".into());
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            nominated_node_name: Some("n1".into()),
            ..Default::default()
        });
        let info = PodInfo::new(Arc::new(pod));
        assert_eq!(
            (info.key(), info.uid(), info.scheduler_name()),
            ("ns/p", "u-1", "my-scheduler")
        );
        assert_eq!(info.uid_hash(), pod_hash("u-1"));
        assert_eq!(info.priority(), 7);
        assert!(info.has_nominated_node_name());
    }

    #[test]
    fn parses_anti_affinity_terms() {
        let selector = MetaSelector {
            match_labels: Some([("app".into(), "web".into())].into()),
            ..Default::default()
        };
        let info = PodInfo::new(pod_with(PodSpec {
            affinity: Some(anti_affinity(selector)),
            ..Default::default()
        }));
        assert!(info.has_affinity());
        assert!(info.has_required_anti_affinity());
        assert_eq!(info.required_anti_affinity_terms().len(), 1);
        assert_eq!(
            info.required_anti_affinity_terms()[0].namespaces,
            ["ns".to_owned()].into()
        );
        assert!(info.required_affinity_terms().is_empty());
    }

    #[test]
    fn records_selector_and_quantity_errors() {
        let selector = MetaSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some([("memory".to_owned(), Quantity("12Q".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::new(pod_with(PodSpec {
            affinity: Some(anti_affinity(selector)),
            containers: vec![container],
            ..Default::default()
        }));
        assert!(info.required_anti_affinity_terms().is_empty());
        assert_eq!(info.parse_errors().len(), 2);
        let first = info.parse_error().unwrap().to_string();
        assert!(first.contains("\"12Q\""), "{first}");
        let second = info.parse_errors()[1].to_string();
        assert!(
            second.starts_with("spec.affinity.podAntiAffinity.requiredDuringScheduling"),
            "{second}"
        );
    }

    #[test]
    fn with_node_name_keeps_what_parsing_the_copy_gives() {
        let mut pod = Pod::clone(&pod_with(PodSpec {
            priority: Some(3),
            scheduler_name: Some("s".into()),
            affinity: Some(anti_affinity(MetaSelector {
                match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            })),
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        [
                            ("cpu".to_owned(), Quantity("250m".into())),
                            ("memory".to_owned(), Quantity("1x".into())),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }));
        pod.metadata.uid = Some("u-2".into());
        let queued = PodInfo::new(Arc::new(pod));
        let assumed = queued.with_node_name("n1");
        let parsed = PodInfo::new(assumed.pod().clone());
        assert_eq!(assumed.node_name(), Some("n1"));
        assert_eq!(queued.node_name(), None, "the queued pod is not touched");
        assert_eq!(
            (assumed.key(), assumed.uid(), assumed.scheduler_name()),
            (parsed.key(), parsed.uid(), parsed.scheduler_name())
        );
        assert_eq!(
            (assumed.key_hash(), assumed.uid_hash(), assumed.priority()),
            (parsed.key_hash(), parsed.uid_hash(), parsed.priority())
        );
        assert_eq!(assumed.resource(), parsed.resource());
        assert_eq!(
            assumed.required_anti_affinity_terms(),
            parsed.required_anti_affinity_terms()
        );
        assert_eq!(assumed.parse_errors(), parsed.parse_errors());
        assert_eq!(
            assumed.parse_errors().len(),
            1,
            "the malformed memory request"
        );
    }
}
