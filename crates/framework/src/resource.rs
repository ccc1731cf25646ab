//! [`Resource`]: compute resources as the scheduler counts them, and a pod's requests.
//!
//! A pod's requests follow upstream `component-helpers/resource.PodRequests` with the options
//! kube-scheduler passes (in-place vertical scaling and pod-level resources on, their default
//! since 1.33/1.34):
//! - regular containers add up;
//! - an init container runs alone, but next to the restartable (sidecar) init containers
//!   declared before it, and sidecars keep running next to the regular containers; the pod needs
//!   the larger of "all regular containers + all sidecars" and the largest init step;
//! - a container's request is the largest of its spec, its allocated and its actuated resources
//!   (`status.containerStatuses[].allocatedResources` / `.resources.requests`) while a resize is
//!   in flight; when the resize is infeasible, the spec is ignored;
//! - pod-level `spec.resources.requests` (CPU, memory, huge pages) replace the container sum;
//! - `spec.overhead` is added.
//!
//! Quantities are added exactly (in nano units) and only then rounded up to millis or units, as
//! upstream adds `resource.Quantity` values before calling `MilliValue()`.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Container, ContainerStatus, Pod},
    apimachinery::pkg::api::resource::Quantity,
};

use crate::quantity::{ParsedQuantity, QuantityError, parse_quantity};

/// `cpu`.
pub const RESOURCE_CPU: &str = "cpu";
/// `memory`.
pub const RESOURCE_MEMORY: &str = "memory";
/// `ephemeral-storage`.
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// `pods`: how many pods a node accepts.
pub const RESOURCE_PODS: &str = "pods";

/// CPU (millis) counted for a container that requests none, so that many request-less pods do
/// not pile onto one node (upstream `schedutil.DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory (bytes) counted for a container that requests none (upstream
/// `schedutil.DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The largest value one pod contributes for any resource (2^51: 2 PiB of memory, 2.2·10^12
/// CPUs). A larger request is capped at it: still far beyond any node, and the sum over a node
/// can then never overflow, so that removing a pod always undoes adding it exactly.
pub const MAX_POD_RESOURCE_VALUE: i64 = 1 << 51;

/// Compute resources: requested by pods, or allocatable on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// How many pods fit (allocatable only; requests leave it 0, the pod count is
    /// `NodeInfo::pods().len()`).
    pub allowed_pod_number: i64,
    /// Extended resources, huge pages, attachable volumes and other scalar resources, by name.
    pub scalar_resources: BTreeMap<String, i64>,
}

impl Resource {
    /// The resources of a resource list (e.g. `node.status.allocatable`), with an error for
    /// each malformed quantity; those count as absent. `field` names the list in errors.
    #[must_use]
    pub fn from_resource_list(
        list: &BTreeMap<String, Quantity>,
        field: &str,
    ) -> (Self, Vec<ResourceError>) {
        let mut errors = Vec::new();
        let amounts = parse_list(list, &mut errors, || field.to_owned());
        (Self::from_amounts(&amounts), errors)
    }

    fn from_amounts(amounts: &Amounts) -> Self {
        let mut r = Self::default();
        for (name, q) in amounts {
            match name.as_str() {
                RESOURCE_CPU => r.milli_cpu = q.milli_value(),
                RESOURCE_MEMORY => r.memory = q.value(),
                RESOURCE_EPHEMERAL_STORAGE => r.ephemeral_storage = q.value(),
                RESOURCE_PODS => r.allowed_pod_number = q.value(),
                _ if is_scalar_resource_name(name) => {
                    r.scalar_resources.insert(name.clone(), q.value());
                }
                // Upstream ignores other names too (e.g. an unprefixed unknown resource).
                _ => {}
            }
        }
        r
    }

    /// The value of a scalar resource (0 when absent).
    #[must_use]
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar_resources.get(name).copied().unwrap_or(0)
    }

    /// Adds `other` (wrapping, so that [`Resource::sub`] undoes it exactly).
    pub fn add(&mut self, other: &Self) {
        self.combine(other, i64::wrapping_add);
    }

    /// Subtracts `other` (wrapping, so that it undoes [`Resource::add`] exactly).
    pub fn sub(&mut self, other: &Self) {
        self.combine(other, i64::wrapping_sub);
    }

    fn combine(&mut self, other: &Self, op: fn(i64, i64) -> i64) {
        self.milli_cpu = op(self.milli_cpu, other.milli_cpu);
        self.memory = op(self.memory, other.memory);
        self.ephemeral_storage = op(self.ephemeral_storage, other.ephemeral_storage);
        self.allowed_pod_number = op(self.allowed_pod_number, other.allowed_pod_number);
        for (name, v) in &other.scalar_resources {
            let entry = self.scalar_resources.entry(name.clone()).or_insert(0);
            *entry = op(*entry, *v);
        }
        // A scalar resource at 0 is dropped, so that the map after adding and removing pods
        // does not depend on their order.
        self.scalar_resources.retain(|_, v| *v != 0);
    }

    /// Whether every value is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.allowed_pod_number == 0
            && self.scalar_resources.values().all(|v| *v == 0)
    }

    fn capped_for_pod(mut self) -> Self {
        let cap = |v: &mut i64| *v = (*v).clamp(-MAX_POD_RESOURCE_VALUE, MAX_POD_RESOURCE_VALUE);
        cap(&mut self.milli_cpu);
        cap(&mut self.memory);
        cap(&mut self.ephemeral_storage);
        cap(&mut self.allowed_pod_number);
        self.scalar_resources.values_mut().for_each(cap);
        self
    }
}

/// What a pod adds to a node: its requests and the CPU and memory counted with defaults for
/// containers that request none (upstream `fwk.PodResource`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodResource {
    /// The pod's effective requests.
    pub requests: Resource,
    /// CPU (millis) with [`DEFAULT_MILLI_CPU_REQUEST`] for each container without a CPU request.
    pub non_zero_milli_cpu: i64,
    /// Memory (bytes) with [`DEFAULT_MEMORY_REQUEST`] for each container without a memory
    /// request.
    pub non_zero_memory: i64,
}

impl PodResource {
    /// The pod's requests (see the module documentation), with an error for each malformed
    /// quantity; those count as absent.
    #[must_use]
    pub fn of_pod(pod: &Pod) -> (Self, Vec<ResourceError>) {
        let mut errors = Vec::new();
        let parsed = ParsedPod::new(pod, &mut errors);
        let requests = parsed.requests(None);
        let non_missing = parsed.non_missing_defaults(&requests);
        let non_zero = if non_missing.is_empty() {
            None
        } else {
            Some(parsed.requests(Some(&non_missing)))
        };
        let non_zero = non_zero.as_ref().unwrap_or(&requests);
        let get = |name: &str| non_zero.get(name).copied().unwrap_or_default();
        let cap = |v: i64| v.clamp(-MAX_POD_RESOURCE_VALUE, MAX_POD_RESOURCE_VALUE);
        let resource = Self {
            requests: Resource::from_amounts(&requests).capped_for_pod(),
            non_zero_milli_cpu: cap(get(RESOURCE_CPU).milli_value()),
            non_zero_memory: cap(get(RESOURCE_MEMORY).value()),
        };
        (resource, errors)
    }
}

/// A malformed quantity in a pod or node, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct ResourceError {
    /// Where the quantity is, e.g. `spec.containers[app].resources.requests[cpu]`.
    pub field: String,
    /// The quantity and what is wrong with it.
    #[source]
    pub source: QuantityError,
}

/// Whether `name` is a scalar resource the scheduler counts in
/// [`Resource::scalar_resources`]: an extended resource (`example.com/gpu`), huge pages
/// (`hugepages-2Mi`), a `kubernetes.io/`-prefixed native resource or attachable volumes
/// (upstream `schedutil.IsScalarResourceName`).
#[must_use]
pub fn is_scalar_resource_name(name: &str) -> bool {
    is_extended_resource_name(name)
        || name.starts_with("hugepages-")
        || is_prefixed_native_resource(name)
        || name.starts_with("attachable-volumes-")
}

/// `kubernetes.io/…` or `*.kubernetes.io/…`.
fn is_prefixed_native_resource(name: &str) -> bool {
    name.contains("kubernetes.io/")
}

/// A resource outside the `kubernetes.io` domain whose `requests.<name>` form is a valid
/// qualified name (upstream `v1helper.IsExtendedResourceName`).
fn is_extended_resource_name(name: &str) -> bool {
    let native = !name.contains('/') || is_prefixed_native_resource(name);
    if native || name.starts_with("requests.") {
        return false;
    }
    is_qualified_name(&format!("requests.{name}"))
}

/// `prefix/name` with a DNS subdomain prefix and a name of up to 63 alphanumerics, `-`, `_`, `.`
/// that starts and ends alphanumeric.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric);
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

/// Whether pod-level resources apply to `name` (upstream `IsSupportedPodLevelResource`).
fn is_supported_pod_level_resource(name: &str) -> bool {
    name == RESOURCE_CPU || name == RESOURCE_MEMORY || name.starts_with("hugepages-")
}

/// Exact amounts by resource name; a key present with 0 differs from an absent one (an explicit
/// zero request gets no default).
type Amounts = BTreeMap<String, ParsedQuantity>;

fn parse_list(
    list: &BTreeMap<String, Quantity>,
    errors: &mut Vec<ResourceError>,
    field: impl Fn() -> String,
) -> Amounts {
    let mut out = Amounts::new();
    for (name, quantity) in list {
        match parse_quantity(&quantity.0) {
            Ok(q) => {
                out.insert(name.clone(), q);
            }
            Err(source) => errors.push(ResourceError {
                field: format!("{}[{name}]", field()),
                source,
            }),
        }
    }
    out
}

fn add_into(acc: &mut Amounts, other: &Amounts) {
    for (name, q) in other {
        let entry = acc.entry(name.clone()).or_default();
        *entry = entry.saturating_add(*q);
    }
}

fn max_into(acc: &mut Amounts, other: &Amounts) {
    for (name, q) in other {
        let entry = acc.entry(name.clone()).or_insert(*q);
        *entry = (*entry).max(*q);
    }
}

/// One container's request sources, each parsed once.
struct ParsedContainer {
    restartable: bool,
    spec: Option<Amounts>,
    /// Upstream `containerAllocatedRequests`.
    allocated: Option<Amounts>,
    /// Upstream `containerActuatedRequests`.
    actuated: Option<Amounts>,
}

/// A pod's request sources, parsed once; every malformed quantity is reported once.
struct ParsedPod {
    containers: Vec<ParsedContainer>,
    init_containers: Vec<ParsedContainer>,
    resize_infeasible: bool,
    pod_level: Option<Amounts>,
    overhead: Option<Amounts>,
}

impl ParsedPod {
    fn new(pod: &Pod, errors: &mut Vec<ResourceError>) -> Self {
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let resize_infeasible = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodResizePending"))
            .is_some_and(|c| c.reason.as_deref() == Some("Infeasible"));
        let statuses: Vec<&ContainerStatus> = status
            .into_iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .collect();
        let mut parse_containers =
            |list: Option<&Vec<Container>>, kind: &str| -> Vec<ParsedContainer> {
                list.into_iter()
                    .flatten()
                    .map(|c| {
                        let status = statuses.iter().find(|s| s.name == c.name).copied();
                        parse_container(c, status, resize_infeasible, kind, errors)
                    })
                    .collect()
            };
        let containers = parse_containers(spec.map(|s| &s.containers), "containers");
        let init_containers = parse_containers(
            spec.and_then(|s| s.init_containers.as_ref()),
            "initContainers",
        );
        let pod_level = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .filter(|reqs| {
                reqs.keys()
                    .any(|name| is_supported_pod_level_resource(name))
            })
            .map(|reqs| parse_list(reqs, errors, || "spec.resources.requests".to_owned()));
        let overhead = spec
            .and_then(|s| s.overhead.as_ref())
            .map(|o| parse_list(o, errors, || "spec.overhead".to_owned()));
        Self {
            containers,
            init_containers,
            resize_infeasible,
            pod_level,
            overhead,
        }
    }

    /// Upstream `PodRequests` with `NonMissingContainerRequests = non_missing`.
    fn requests(&self, non_missing: Option<&Amounts>) -> Amounts {
        let spec = self.aggregate(|c| c.spec.as_ref(), non_missing);
        let allocated = self.aggregate(|c| c.allocated.as_ref(), non_missing);
        let actuated = self.aggregate(|c| c.actuated.as_ref(), non_missing);
        let mut reqs = if self.resize_infeasible {
            actuated
        } else {
            let mut r = spec;
            max_into(&mut r, &actuated);
            r
        };
        max_into(&mut reqs, &allocated);
        if let Some(pod_level) = &self.pod_level {
            for (name, q) in pod_level {
                if is_supported_pod_level_resource(name) {
                    reqs.insert(name.clone(), *q);
                }
            }
        }
        if let Some(overhead) = &self.overhead {
            add_into(&mut reqs, overhead);
        }
        reqs
    }

    /// Upstream `aggregateContainerResourcesByFn`.
    fn aggregate<'a>(
        &'a self,
        source: impl Fn(&'a ParsedContainer) -> Option<&'a Amounts>,
        non_missing: Option<&Amounts>,
    ) -> Amounts {
        let with_defaults = |c: &'a ParsedContainer| -> Amounts {
            let mut amounts = source(c).cloned().unwrap_or_default();
            if let Some(defaults) = non_missing {
                for (name, q) in defaults {
                    amounts.entry(name.clone()).or_insert(*q);
                }
            }
            amounts
        };
        let mut result = Amounts::new();
        for c in &self.containers {
            add_into(&mut result, &with_defaults(c));
        }
        let mut sidecars = Amounts::new();
        let mut init_peak = Amounts::new();
        for c in &self.init_containers {
            let own = with_defaults(c);
            let step = if c.restartable {
                add_into(&mut result, &own);
                add_into(&mut sidecars, &own);
                sidecars.clone()
            } else {
                let mut combined = own;
                add_into(&mut combined, &sidecars);
                combined
            };
            max_into(&mut init_peak, &step);
        }
        max_into(&mut result, &init_peak);
        result
    }

    /// Upstream `getNonMissingContainerRequests`: the defaults for containers without a CPU or
    /// memory request; with pod-level requests, only for what neither level sets.
    fn non_missing_defaults(&self, requests: &Amounts) -> Amounts {
        let mut defaults = Amounts::new();
        if self.pod_level.is_none() || !requests.contains_key(RESOURCE_CPU) {
            defaults.insert(
                RESOURCE_CPU.to_owned(),
                ParsedQuantity::from_milli(DEFAULT_MILLI_CPU_REQUEST),
            );
        }
        if self.pod_level.is_none() || !requests.contains_key(RESOURCE_MEMORY) {
            defaults.insert(
                RESOURCE_MEMORY.to_owned(),
                ParsedQuantity::from_value(DEFAULT_MEMORY_REQUEST),
            );
        }
        defaults
    }
}

fn parse_container(
    c: &Container,
    status: Option<&ContainerStatus>,
    resize_infeasible: bool,
    kind: &str,
    errors: &mut Vec<ResourceError>,
) -> ParsedContainer {
    let restartable = c.restart_policy.as_deref() == Some("Always");
    let spec = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|r| {
            parse_list(r, errors, || {
                format!("spec.{kind}[{}].resources.requests", c.name)
            })
        });
    let status_field = if kind == "containers" {
        "containerStatuses"
    } else {
        "initContainerStatuses"
    };
    let allocated_status = status
        .and_then(|s| s.allocated_resources.as_ref())
        .map(|r| {
            parse_list(r, errors, || {
                format!("status.{status_field}[{}].allocatedResources", c.name)
            })
        });
    let actuated_status = status
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|r| {
            parse_list(r, errors, || {
                format!("status.{status_field}[{}].resources.requests", c.name)
            })
        });
    // When a resize is infeasible the spec is not what runs: fall back to nothing.
    let spec_fallback = if resize_infeasible {
        None
    } else {
        spec.clone()
    };
    let allocated = allocated_status.clone().or_else(|| spec_fallback.clone());
    let actuated = actuated_status.or(allocated_status).or(spec_fallback);
    ParsedContainer {
        restartable,
        spec,
        allocated,
        actuated,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerStatus, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };

    use super::*;

    fn list(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    }

    fn container(name: &str, requests: &[(&str, &str)]) -> Container {
        Container {
            name: name.to_owned(),
            resources: (!requests.is_empty()).then(|| ResourceRequirements {
                requests: Some(list(requests)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sidecar(name: &str, requests: &[(&str, &str)]) -> Container {
        Container {
            restart_policy: Some("Always".to_owned()),
            ..container(name, requests)
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn of(pod: &Pod) -> PodResource {
        let (r, errors) = PodResource::of_pod(pod);
        assert!(errors.is_empty(), "{errors:?}");
        r
    }

    #[test]
    fn regular_containers_add_up() {
        let p = pod(
            vec![
                container("a", &[("cpu", "100m"), ("memory", "1Gi")]),
                container(
                    "b",
                    &[
                        ("cpu", "0.5"),
                        ("memory", "512Mi"),
                        ("ephemeral-storage", "1G"),
                    ],
                ),
            ],
            vec![],
        );
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 600);
        assert_eq!(r.requests.memory, (1 << 30) + (512 << 20));
        assert_eq!(r.requests.ephemeral_storage, 1_000_000_000);
        assert_eq!(r.non_zero_milli_cpu, 600);
        assert_eq!(r.non_zero_memory, (1 << 30) + (512 << 20));
    }

    #[test]
    fn quantities_add_exactly_before_rounding() {
        let p = pod(
            vec![
                container("a", &[("cpu", "0.5m")]),
                container("b", &[("cpu", "0.5m")]),
            ],
            vec![],
        );
        assert_eq!(of(&p).requests.milli_cpu, 1);
    }

    #[test]
    fn non_zero_defaults_per_container_without_request() {
        let p = pod(
            vec![container("a", &[]), container("b", &[("cpu", "250m")])],
            vec![],
        );
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 250);
        assert_eq!(r.requests.memory, 0);
        assert_eq!(r.non_zero_milli_cpu, 250 + DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn explicit_zero_request_gets_no_default() {
        let p = pod(
            vec![container("a", &[("cpu", "0"), ("memory", "0")])],
            vec![],
        );
        let r = of(&p);
        assert_eq!(r.non_zero_milli_cpu, 0);
        assert_eq!(r.non_zero_memory, 0);
    }

    #[test]
    fn init_containers_take_the_max() {
        let p = pod(
            vec![container("app", &[("cpu", "1"), ("memory", "1Gi")])],
            vec![
                container("init1", &[("cpu", "2"), ("memory", "512Mi")]),
                container("init2", &[("cpu", "500m")]),
            ],
        );
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 2000);
        assert_eq!(r.requests.memory, 1 << 30);
    }

    #[test]
    fn sidecars_run_next_to_later_init_containers_and_the_app() {
        // KEP-753 example: sidecar 1 CPU, then init 2 CPU (runs with the sidecar: 3), app 1 CPU
        // (runs with the sidecar: 2) → 3.
        let p = pod(
            vec![container("app", &[("cpu", "1")])],
            vec![
                sidecar("proxy", &[("cpu", "1")]),
                container("migrate", &[("cpu", "2")]),
            ],
        );
        assert_eq!(of(&p).requests.milli_cpu, 3000);
        // An init container before the sidecar does not run with it.
        let p = pod(
            vec![container("app", &[("cpu", "1")])],
            vec![
                container("migrate", &[("cpu", "2")]),
                sidecar("proxy", &[("cpu", "1")]),
            ],
        );
        assert_eq!(of(&p).requests.milli_cpu, 2000);
        // Sidecars add to the app.
        let p = pod(
            vec![container("app", &[("cpu", "3")])],
            vec![sidecar("proxy", &[("cpu", "1")])],
        );
        assert_eq!(of(&p).requests.milli_cpu, 4000);
    }

    #[test]
    fn non_zero_defaults_apply_to_init_containers_and_sidecars() {
        let p = pod(
            vec![container("app", &[])],
            vec![sidecar("proxy", &[]), container("init", &[])],
        );
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 0);
        // app + proxy = 200m; init step = init + proxy = 200m.
        assert_eq!(r.non_zero_milli_cpu, 2 * DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn overhead_is_added_to_both() {
        let mut p = pod(vec![container("app", &[("cpu", "1")])], vec![]);
        p.spec.as_mut().unwrap().overhead = Some(list(&[("cpu", "250m"), ("memory", "120Mi")]));
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 1250);
        assert_eq!(r.requests.memory, 120 << 20);
        assert_eq!(r.non_zero_milli_cpu, 1250);
        assert_eq!(r.non_zero_memory, DEFAULT_MEMORY_REQUEST + (120 << 20));
    }

    #[test]
    fn pod_level_requests_replace_container_sums() {
        let mut p = pod(
            vec![
                container("a", &[("cpu", "1"), ("example.com/gpu", "1")]),
                container("b", &[]),
            ],
            vec![],
        );
        p.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
            requests: Some(list(&[("cpu", "3")])),
            ..Default::default()
        });
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, 3000);
        assert_eq!(r.requests.scalar("example.com/gpu"), 1);
        // CPU is set at pod level: no default; memory is set nowhere: defaults per container.
        assert_eq!(r.non_zero_milli_cpu, 3000);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn resize_in_flight_counts_the_larger_of_spec_and_status() {
        let mut p = pod(vec![container("app", &[("cpu", "1")])], vec![]);
        p.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                allocated_resources: Some(list(&[("cpu", "2")])),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(of(&p).requests.milli_cpu, 2000);
        // Infeasible resize: the spec is ignored, the allocated value counts.
        p.spec.as_mut().unwrap().containers[0] = container("app", &[("cpu", "4")]);
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "PodResizePending".into(),
            reason: Some("Infeasible".into()),
            status: "True".into(),
            ..Default::default()
        }]);
        assert_eq!(of(&p).requests.milli_cpu, 2000);
    }

    #[test]
    fn scalar_resources_and_ignored_names() {
        let p = pod(
            vec![container(
                "a",
                &[
                    ("nvidia.com/gpu", "2"),
                    ("hugepages-2Mi", "4Mi"),
                    ("unknown", "5"),
                    ("requests.foo/bar", "1"),
                ],
            )],
            vec![],
        );
        let r = of(&p);
        assert_eq!(r.requests.scalar("nvidia.com/gpu"), 2);
        assert_eq!(r.requests.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.requests.scalar_resources.len(), 2, "{:?}", r.requests);
    }

    #[test]
    fn malformed_quantities_are_reported_with_their_place() {
        let mut p = pod(
            vec![container("app", &[("cpu", "1x"), ("memory", "1Gi")])],
            vec![],
        );
        p.spec.as_mut().unwrap().overhead = Some(list(&[("memory", "lots")]));
        let (r, errors) = PodResource::of_pod(&p);
        assert_eq!(r.requests.memory, 1 << 30);
        assert_eq!(r.requests.milli_cpu, 0);
        let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "spec.containers[app].resources.requests[cpu]: quantity \"1x\" is malformed: unknown suffix \"x\" \
                 (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei, or e<exponent>)",
                "spec.overhead[memory]: quantity \"lots\" is malformed: it has no digits",
            ]
        );
    }

    #[test]
    fn huge_requests_are_capped() {
        let p = pod(
            vec![container("a", &[("cpu", "1E"), ("memory", "8Ei")])],
            vec![],
        );
        let r = of(&p);
        assert_eq!(r.requests.milli_cpu, MAX_POD_RESOURCE_VALUE);
        assert_eq!(r.requests.memory, MAX_POD_RESOURCE_VALUE);
    }

    #[test]
    fn allocatable_from_a_resource_list() {
        let (r, errors) = Resource::from_resource_list(
            &list(&[
                ("cpu", "3800m"),
                ("memory", "15Gi"),
                ("pods", "110"),
                ("example.com/fpga", "2"),
                ("bad", "?"),
            ]),
            "status.allocatable",
        );
        assert_eq!(r.milli_cpu, 3800);
        assert_eq!(r.memory, 15 << 30);
        assert_eq!(r.allowed_pod_number, 110);
        assert_eq!(r.scalar("example.com/fpga"), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "status.allocatable[bad]");
    }

    #[test]
    fn add_then_sub_restores_exactly() {
        let mut a = Resource {
            milli_cpu: 5,
            ..Default::default()
        };
        let b = Resource {
            milli_cpu: i64::MAX,
            memory: 7,
            scalar_resources: [("x.io/y".to_owned(), 3)].into(),
            ..Default::default()
        };
        let before = a.clone();
        a.add(&b);
        a.sub(&b);
        assert_eq!(a, before);
    }

    #[test]
    fn scalar_resource_names() {
        for name in [
            "example.com/gpu",
            "nvidia.com/gpu",
            "hugepages-1Gi",
            "kubernetes.io/foo",
            "attachable-volumes-aws-ebs",
        ] {
            assert!(is_scalar_resource_name(name), "{name}");
        }
        for name in [
            "cpu",
            "memory",
            "pods",
            "foo",
            "requests.example.com/gpu",
            "Example.com/gpu",
            "example.com/-x",
        ] {
            assert!(!is_scalar_resource_name(name), "{name}");
        }
    }
}
