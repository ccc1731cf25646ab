//! What a pod update means for scheduling: the events it raises (upstream
//! `PodSchedulingPropertiesChange`) and whether it changed anything at all (`isPodUpdated`).

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{ActionType, ClusterEvent, EventResource, PodResource, Resource};

/// The events an update of a pod raises: `AssignedPod` or `UnschedulablePod` (by whether the
/// new pod has a node) with one action per kind of change — label change, requests scaled
/// down, scheduling gates all removed, tolerations added, generated resource claims changed —
/// or, when none of those changed, a generic update that only plugins registered for any pod
/// update receive.
///
/// ```
/// use k8s_openapi::api::core::v1::Pod;
/// use ksched_framework::{ActionType, EventResource};
/// use ksched_queue::pod_scheduling_properties_change;
///
/// let old = Pod::default();
/// let mut new = Pod::default();
/// new.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
/// let events = pod_scheduling_properties_change(&new, &old);
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].resource, EventResource::UnschedulablePod);
/// assert_eq!(events[0].action, ActionType::UPDATE_POD_LABEL);
/// ```
#[must_use]
pub fn pod_scheduling_properties_change(new: &Pod, old: &Pod) -> Vec<ClusterEvent> {
    let assigned = new
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let resource = if assigned {
        EventResource::AssignedPod
    } else {
        EventResource::UnschedulablePod
    };
    let mut events: Vec<ClusterEvent> = [
        (labels_changed(new, old), ActionType::UPDATE_POD_LABEL),
        (scaled_down(new, old), ActionType::UPDATE_POD_SCALE_DOWN),
        (
            gates_eliminated(new, old),
            ActionType::UPDATE_POD_SCHEDULING_GATES_ELIMINATED,
        ),
        (
            tolerations_changed(new, old),
            ActionType::UPDATE_POD_TOLERATION,
        ),
        (
            resource_claims_changed(new, old),
            ActionType::UPDATE_POD_GENERATED_RESOURCE_CLAIM,
        ),
    ]
    .into_iter()
    .filter(|(changed, _)| *changed)
    .map(|(_, action)| ClusterEvent::new(resource.clone(), action))
    .collect();
    if events.is_empty() {
        // Upstream's unexported `updatePodOther`: the framework has no bit for it, so the
        // generic Update stands in; the queue's matching (`incoming ⊆ registered`) then
        // reaches exactly the plugins registered for every kind of pod update, as upstream.
        events.push(ClusterEvent::new(resource, ActionType::UPDATE));
    }
    events
}

/// Whether `new` differs from `old` in a way that may change scheduling: anything but status
/// (except resource claim statuses), resource version, generation, managed fields and
/// finalizers (upstream `isPodUpdated`).
#[must_use]
pub fn is_pod_updated(old: &Pod, new: &Pod) -> bool {
    if old.spec != new.spec || claim_statuses(old) != claim_statuses(new) {
        return true;
    }
    let strip = |pod: &Pod| {
        let mut meta = pod.metadata.clone();
        meta.resource_version = None;
        meta.generation = None;
        meta.managed_fields = None;
        meta.finalizers = None;
        meta
    };
    strip(old) != strip(new)
}

type ClaimStatuses<'a> = (
    Option<&'a Vec<k8s_openapi::api::core::v1::PodResourceClaimStatus>>,
    Option<&'a k8s_openapi::api::core::v1::PodExtendedResourceClaimStatus>,
);

fn claim_statuses(pod: &Pod) -> ClaimStatuses<'_> {
    let status = pod.status.as_ref();
    (
        status.and_then(|s| s.resource_claim_statuses.as_ref()),
        status.and_then(|s| s.extended_resource_claim_status.as_ref()),
    )
}

fn labels_changed(new: &Pod, old: &Pod) -> bool {
    fn labels(p: &Pod) -> Option<&std::collections::BTreeMap<String, String>> {
        p.metadata.labels.as_ref().filter(|l| !l.is_empty())
    }
    labels(new) != labels(old)
}

fn tolerations_changed(new: &Pod, old: &Pod) -> bool {
    // The API only lets tolerations be added, so a different count is a change.
    let count = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .map_or(0, Vec::len)
    };
    count(new) != count(old)
}

fn gates_eliminated(new: &Pod, old: &Pod) -> bool {
    let count = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .map_or(0, Vec::len)
    };
    count(new) == 0 && count(old) != 0
}

fn resource_claims_changed(new: &Pod, old: &Pod) -> bool {
    fn claims(p: &Pod) -> Option<&Vec<k8s_openapi::api::core::v1::PodResourceClaimStatus>> {
        p.status
            .as_ref()
            .and_then(|s| s.resource_claim_statuses.as_ref())
            .filter(|c| !c.is_empty())
    }
    claims(new) != claims(old)
}

/// Some request went down or disappeared (an in-place resize that may let the pod fit).
fn scaled_down(new: &Pod, old: &Pod) -> bool {
    if new
        .spec
        .as_ref()
        .map(|s| (&s.containers, &s.init_containers, &s.overhead, &s.resources))
        == old
            .spec
            .as_ref()
            .map(|s| (&s.containers, &s.init_containers, &s.overhead, &s.resources))
        && new.status.as_ref().map(|s| &s.container_statuses)
            == old.status.as_ref().map(|s| &s.container_statuses)
    {
        return false;
    }
    let requests = |p: &Pod| PodResource::of_pod(p).0.requests;
    let (new, old): (Resource, Resource) = (requests(new), requests(old));
    old.milli_cpu > new.milli_cpu
        || old.memory > new.memory
        || old.ephemeral_storage > new.ephemeral_storage
        || old
            .scalar_resources
            .iter()
            .any(|(name, v)| *v > new.scalar(name))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::core::v1::{
            Container, PodSchedulingGate, PodSpec, PodStatus, ResourceRequirements, Toleration,
        },
        apimachinery::pkg::api::resource::Quantity,
    };

    use super::*;

    fn with_cpu(cpu: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "cpu".to_owned(),
                            Quantity(cpu.to_owned()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn actions(new: &Pod, old: &Pod) -> Vec<ActionType> {
        pod_scheduling_properties_change(new, old)
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    #[test]
    fn derives_each_kind_of_change() {
        assert_eq!(
            actions(&with_cpu("500m"), &with_cpu("1")),
            [ActionType::UPDATE_POD_SCALE_DOWN]
        );
        assert_eq!(
            actions(&with_cpu("2"), &with_cpu("1")),
            [ActionType::UPDATE]
        );

        let mut gated = Pod::default();
        gated.spec.get_or_insert_default().scheduling_gates =
            Some(vec![PodSchedulingGate { name: "g".into() }]);
        let mut open = gated.clone();
        open.spec.as_mut().unwrap().scheduling_gates = Some(vec![]);
        assert_eq!(
            actions(&open, &gated),
            [ActionType::UPDATE_POD_SCHEDULING_GATES_ELIMINATED]
        );

        let mut tolerating = Pod::default();
        tolerating.spec.get_or_insert_default().tolerations = Some(vec![Toleration::default()]);
        let mut labelled = tolerating.clone();
        labelled.metadata.labels = Some(BTreeMap::from([("a".to_owned(), "b".to_owned())]));
        assert_eq!(
            actions(&tolerating, &Pod::default()),
            [ActionType::UPDATE_POD_TOLERATION]
        );
        assert_eq!(
            actions(&labelled, &Pod::default()),
            [
                ActionType::UPDATE_POD_LABEL,
                ActionType::UPDATE_POD_TOLERATION
            ]
        );

        let mut assigned = Pod::default();
        assigned.spec.get_or_insert_default().node_name = Some("n".into());
        let events = pod_scheduling_properties_change(&assigned, &assigned);
        assert_eq!(events[0].resource, EventResource::AssignedPod);
    }

    #[test]
    fn status_and_bookkeeping_are_not_updates() {
        let old = with_cpu("1");
        let mut new = old.clone();
        new.metadata.resource_version = Some("42".into());
        new.metadata.generation = Some(3);
        new.metadata.finalizers = Some(vec!["f".into()]);
        new.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        assert!(!is_pod_updated(&old, &new));
        new.metadata.annotations = Some(BTreeMap::from([("a".to_owned(), "b".to_owned())]));
        assert!(is_pod_updated(&old, &new));
        let mut resized = old.clone();
        resized.spec = with_cpu("2").spec;
        assert!(is_pod_updated(&old, &resized));
    }
}
