//! The resource scoring shared by NodeResourcesFit's strategies and
//! NodeResourcesBalancedAllocation (upstream `noderesources/resource_allocation.go`,
//! `least_allocated.go`, `most_allocated.go`, `requested_to_capacity_ratio.go`,
//! `balanced_allocation.go`).

use std::{borrow::Cow, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, PodResource,
    resource::{
        RESOURCE_CPU, RESOURCE_EPHEMERAL_STORAGE, RESOURCE_MEMORY, is_scalar_resource_name,
    },
};
use serde::Deserialize;

/// A resource and its weight in a score.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    /// Resource name (`cpu`, `memory`, `example.com/gpu`, …).
    pub name: String,
    /// Weight (0 means 1).
    #[serde(default)]
    pub weight: i64,
}

/// CPU and memory, weight 1 each: upstream's default for every resource scorer.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: RESOURCE_CPU.into(),
            weight: 1,
        },
        ResourceSpec {
            name: RESOURCE_MEMORY.into(),
            weight: 1,
        },
    ]
}

/// Utilization above which the RequestedToCapacityRatio shape is read at its last point.
const MAX_UTILIZATION: i64 = 100;

/// How requested/allocatable become a score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Prefers free nodes: `(allocatable − requested) · 100 / allocatable`, weighted mean.
    LeastAllocated,
    /// Prefers full nodes: `requested · 100 / allocatable`, weighted mean.
    MostAllocated,
    /// A broken-linear function of utilization, points `(utilization %, score 0–100)`.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
    /// How much placing the pod improves the node's balance, where balance is
    /// `(1 − std dev of the utilization fractions) · 100` (upstream since 1.36,
    /// kubernetes/kubernetes#135573): 75 for no change, towards 100 when the pod evens the
    /// node out, towards 50 when it skews it.
    Balanced,
}

/// Scores nodes for a list of resources with one [`Strategy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScorer {
    resources: Vec<ResourceSpec>,
    /// What each of `resources` is, decided once: scoring runs per node per pod, and matching
    /// the names there was a string comparison per resource per node.
    kinds: Vec<Kind>,
    /// Count the node's and pod's actual requests for CPU and memory (BalancedAllocation)
    /// instead of the non-zero defaults for request-less containers.
    use_requested: bool,
    strategy: Strategy,
}

/// A scored resource by where its figures live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cpu,
    Memory,
    EphemeralStorage,
    /// Any other name, read from the scalar resources; `scalar` when
    /// [`is_scalar_resource_name`] (then it counts only if the pod asks for it).
    Named {
        scalar: bool,
    },
}

impl Kind {
    fn of(name: &str) -> Self {
        match name {
            RESOURCE_CPU => Self::Cpu,
            RESOURCE_MEMORY => Self::Memory,
            RESOURCE_EPHEMERAL_STORAGE => Self::EphemeralStorage,
            _ => Self::Named {
                scalar: is_scalar_resource_name(name),
            },
        }
    }
}

impl ResourceScorer {
    /// A scorer; weights of 0 become 1.
    pub fn new(mut resources: Vec<ResourceSpec>, use_requested: bool, strategy: Strategy) -> Self {
        for r in &mut resources {
            if r.weight == 0 {
                r.weight = 1;
            }
        }
        Self {
            kinds: resources.iter().map(|r| Kind::of(&r.name)).collect(),
            resources,
            use_requested,
            strategy,
        }
    }

    /// What the pod requests of each scored resource, in order.
    pub fn pod_requests(&self, pod: &PodResource) -> Vec<i64> {
        self.resources
            .iter()
            .map(|r| match r.name.as_str() {
                RESOURCE_CPU if !self.use_requested => pod.non_zero_milli_cpu,
                RESOURCE_MEMORY if !self.use_requested => pod.non_zero_memory,
                RESOURCE_CPU => pod.requests.milli_cpu,
                RESOURCE_MEMORY => pod.requests.memory,
                RESOURCE_EPHEMERAL_STORAGE => pod.requests.ephemeral_storage,
                name => pod.requests.scalar(name),
            })
            .collect()
    }

    /// (allocatable, requested with the pod) of one resource; (0, 0) leaves it out of the score.
    fn allocatable_and_requested(
        &self,
        node: &NodeInfo,
        name: &str,
        kind: Kind,
        pod_request: i64,
    ) -> (i64, i64) {
        let requested = if self.use_requested {
            node.requested()
        } else {
            node.non_zero_requested()
        };
        let alloc = node.allocatable();
        match kind {
            Kind::Cpu => (
                alloc.milli_cpu,
                requested.milli_cpu.saturating_add(pod_request),
            ),
            Kind::Memory => (alloc.memory, requested.memory.saturating_add(pod_request)),
            Kind::EphemeralStorage => (
                alloc.ephemeral_storage,
                node.requested()
                    .ephemeral_storage
                    .saturating_add(pod_request),
            ),
            // An extended resource the pod does not ask for does not count.
            Kind::Named { scalar: true } if pod_request == 0 => (0, 0),
            Kind::Named { .. } => match alloc.scalar_resources.get(name) {
                Some(&a) => (a, node.requested().scalar(name).saturating_add(pod_request)),
                None => (0, 0),
            },
        }
    }

    /// The pod's requests as the plugin's PreScore stored them under `key` (from
    /// [`ResourceScorer::pod_requests`]), or computed from the pod when PreScore did not run
    /// (a caller of Score alone).
    pub fn requests_in<'a>(&self, state: &'a CycleState, key: &str, pod: &Pod) -> Cow<'a, [i64]> {
        match state.read::<Arc<Vec<i64>>>(key) {
            Ok(r) => Cow::Borrowed(r.as_slice()),
            Err(_) => Cow::Owned(self.pod_requests(&PodResource::of_pod(pod).0)),
        }
    }

    /// [`ResourceScorer::score`] for each node of a chunk (`ScorePlugin::score_nodes`).
    pub fn score_all(&self, nodes: &[Arc<NodeInfo>], pod_requests: &[i64], scores: &mut [i64]) {
        for (node, out) in nodes.iter().zip(scores) {
            *out = self.score(node, pod_requests);
        }
    }

    /// The node's score in [0, 100] for a pod requesting `pod_requests` (from
    /// [`ResourceScorer::pod_requests`]).
    pub fn score(&self, node: &NodeInfo, pod_requests: &[i64]) -> i64 {
        // Runs once per node per pod: the per-resource figures live on the stack for the
        // usual handful of resources.
        const INLINE: usize = 8;
        let k = self.resources.len();
        if k <= INLINE {
            let mut buf = [[0i64; INLINE]; 3];
            let [requested, allocatable, without] = &mut buf;
            self.score_with(
                node,
                pod_requests,
                &mut requested[..k],
                &mut allocatable[..k],
                &mut without[..k],
            )
        } else {
            self.score_with(
                node,
                pod_requests,
                &mut vec![0; k],
                &mut vec![0; k],
                &mut vec![0; k],
            )
        }
    }

    fn score_with(
        &self,
        node: &NodeInfo,
        pod_requests: &[i64],
        requested: &mut [i64],
        allocatable: &mut [i64],
        without: &mut [i64],
    ) -> i64 {
        for (i, ((r, &kind), &pod_request)) in self
            .resources
            .iter()
            .zip(&self.kinds)
            .zip(pod_requests)
            .enumerate()
        {
            let (a, q) = self.allocatable_and_requested(node, &r.name, kind, pod_request);
            allocatable[i] = a;
            requested[i] = if a == 0 { 0 } else { q };
        }
        match &self.strategy {
            Strategy::LeastAllocated => {
                self.weighted_mean(requested, allocatable, least_requested_score)
            }
            Strategy::MostAllocated => {
                self.weighted_mean(requested, allocatable, most_requested_score)
            }
            Strategy::RequestedToCapacityRatio(shape) => {
                self.ratio_score(requested, allocatable, shape)
            }
            Strategy::Balanced => {
                for (((w, &q), &p), &a) in without
                    .iter_mut()
                    .zip(requested.iter())
                    .zip(pod_requests)
                    .zip(allocatable.iter())
                {
                    *w = if a == 0 { 0 } else { q.saturating_sub(p) };
                }
                let with_pod = balanced_score(requested, allocatable);
                let without_pod = balanced_score(without, allocatable);
                // Both lie in [50, 100] (a standard deviation of fractions is at most 0.5), so
                // the difference is brought back into [50, 100] around 75.
                MAX_NODE_SCORE / 2 + (MAX_NODE_SCORE / 2 + with_pod - without_pod) / 2
            }
        }
    }

    fn weighted_mean(&self, requested: &[i64], allocatable: &[i64], f: fn(i64, i64) -> i64) -> i64 {
        let (mut sum, mut weights) = (0i64, 0i64);
        for ((r, &q), &a) in self.resources.iter().zip(requested).zip(allocatable) {
            if a == 0 {
                continue;
            }
            sum = sum.saturating_add(f(q, a).saturating_mul(r.weight));
            weights += r.weight;
        }
        if weights == 0 { 0 } else { sum / weights }
    }

    fn ratio_score(&self, requested: &[i64], allocatable: &[i64], shape: &[(i64, i64)]) -> i64 {
        let (mut sum, mut weights) = (0i64, 0i64);
        for ((r, &q), &a) in self.resources.iter().zip(requested).zip(allocatable) {
            if a == 0 {
                continue;
            }
            let utilization = if q > a {
                MAX_UTILIZATION
            } else {
                q.saturating_mul(MAX_UTILIZATION) / a
            };
            let s = broken_linear(shape, utilization);
            // Resources scoring 0 do not pull the mean down (upstream).
            if s > 0 {
                sum = sum.saturating_add(s.saturating_mul(r.weight));
                weights += r.weight;
            }
        }
        if weights == 0 {
            return 0;
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let mean = (sum as f64 / weights as f64).round() as i64;
        mean
    }
}

fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested).saturating_mul(MAX_NODE_SCORE) / capacity
}

fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity).saturating_mul(MAX_NODE_SCORE) / capacity
}

/// Upstream `helper.BuildBrokenLinearFunction`: linear between the points, flat outside.
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            let Some(&(u0, s0)) = i.checked_sub(1).and_then(|j| shape.get(j)) else {
                return s;
            };
            return s0 + (s - s0) * (p - u0) / (u - u0).max(1);
        }
    }
    shape.last().map_or(0, |&(_, s)| s)
}

#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(&q, &a)| (q as f64 / a as f64).min(1.0));
    // On the stack for the usual handful of resources (this runs per node per pod).
    let mut inline = [0f64; 8];
    let mut n = 0;
    let heap: Vec<f64>;
    let fractions: &[f64] = if requested.len() <= inline.len() {
        for f in fractions {
            inline[n] = f;
            n += 1;
        }
        &inline[..n]
    } else {
        heap = fractions.collect();
        &heap
    };
    let std = match fractions {
        [a, b] => ((a - b) / 2.0).abs(),
        f if f.len() > 2 => {
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            (f.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / f.len() as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder};

    fn pod_res(p: &PodBuilder) -> PodResource {
        p.info().resource().clone()
    }

    #[test]
    fn least_and_most_allocated() {
        // 4 CPUs / 8Gi; 1 CPU + 2Gi in use; the pod asks 1 CPU + 2Gi.
        let node = NodeBuilder::new("n")
            .pod(PodBuilder::new("x").req("cpu", "1").req("memory", "2Gi"))
            .info();
        let pod = PodBuilder::new("p").req("cpu", "1").req("memory", "2Gi");
        let least = ResourceScorer::new(default_resources(), false, Strategy::LeastAllocated);
        assert_eq!(least.score(&node, &least.pod_requests(&pod_res(&pod))), 50);
        let most = ResourceScorer::new(default_resources(), false, Strategy::MostAllocated);
        assert_eq!(most.score(&node, &most.pod_requests(&pod_res(&pod))), 50);
        // CPU weighted 3: cpu (4-3)/4 = 25, memory (8-4)/8 = 50 → (75 + 50) / 4 = 31.
        let weighted = ResourceScorer::new(
            vec![
                ResourceSpec {
                    name: "cpu".into(),
                    weight: 3,
                },
                ResourceSpec {
                    name: "memory".into(),
                    weight: 1,
                },
            ],
            false,
            Strategy::LeastAllocated,
        );
        let pod = PodBuilder::new("p").req("cpu", "2").req("memory", "2Gi");
        assert_eq!(
            weighted.score(&node, &weighted.pod_requests(&pod_res(&pod))),
            31
        );
        // Request-less pods count 100m / 200Mi.
        let empty = NodeBuilder::new("e").info();
        let none = PodBuilder::new("p");
        assert_eq!(least.pod_requests(&pod_res(&none)), [100, 200 << 20]);
        assert_eq!(
            least.score(&empty, &least.pod_requests(&pod_res(&none))),
            (97 + 97) / 2
        );
    }

    #[test]
    fn requested_to_capacity_ratio_shape() {
        let shape = vec![(0, 0), (100, 100)];
        let s = ResourceScorer::new(
            default_resources(),
            false,
            Strategy::RequestedToCapacityRatio(shape),
        );
        let node = NodeBuilder::new("n").info();
        let pod = PodBuilder::new("p").req("cpu", "2").req("memory", "4Gi");
        assert_eq!(s.score(&node, &s.pod_requests(&pod_res(&pod))), 50);
        assert_eq!(broken_linear(&[(10, 20), (50, 100)], 5), 20);
        assert_eq!(broken_linear(&[(10, 20), (50, 100)], 30), 60);
        assert_eq!(broken_linear(&[(10, 20), (50, 100)], 80), 100);
    }

    #[test]
    fn balanced() {
        let s = ResourceScorer::new(default_resources(), true, Strategy::Balanced);
        let node = NodeBuilder::new("n").info();
        // Empty node: balance 100 before; cpu 2/4 = 0.5, memory 2/8 = 0.25 after: std 0.125 →
        // 87; 50 + (50 + 87 − 100) / 2 = 68.
        let pod = PodBuilder::new("p").req("cpu", "2").req("memory", "2Gi");
        assert_eq!(s.score(&node, &s.pod_requests(&pod_res(&pod))), 68);
        // Balance unchanged: 75.
        let pod = PodBuilder::new("p").req("cpu", "2").req("memory", "4Gi");
        assert_eq!(s.score(&node, &s.pod_requests(&pod_res(&pod))), 75);
        assert_eq!(balanced_score(&[3, 1], &[4, 4]), 75);
        assert_eq!(balanced_score(&[2, 2], &[4, 4]), 100);
    }
}
