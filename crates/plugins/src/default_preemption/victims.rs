//! Choosing victims on one node (upstream `SelectVictimsOnNode`) and choosing the node
//! (upstream `pickOneNodeForPreemption`).

use std::sync::Arc;

use k8s_openapi::{
    api::{core::v1::Pod, policy::v1::PodDisruptionBudget},
    jiff::Timestamp,
};
use ksched_framework::{
    CycleState, Framework, LabelSelector, NodeInfo, PodInfo, Status, pod_priority,
};

use crate::helper::{pod_labels, pod_namespace};

/// A node where preemption makes room, with its victims (most important first).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to evict, highest priority first.
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims' evictions violate a PodDisruptionBudget.
    pub num_pdb_violations: usize,
}

/// When the pod started; one that has not started counts as starting `now` (upstream
/// `GetPodStartTime`). `now` is fixed per call site so that comparisons stay consistent.
fn start_time(p: &Pod, now: Timestamp) -> Timestamp {
    p.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now, |t| t.0)
}

/// Sorts higher priority first; equal priorities: the one that started earlier (upstream
/// `MoreImportantPod`).
fn sort_more_important_first(pods: &mut [Arc<PodInfo>]) {
    let now = Timestamp::now();
    pods.sort_by(|a, b| {
        pod_priority(b.pod())
            .cmp(&pod_priority(a.pod()))
            .then_with(|| start_time(a.pod(), now).cmp(&start_time(b.pod(), now)))
    });
}

/// Splits pods into those whose eviction would exceed a PDB's allowed disruptions and the rest
/// (upstream `filterPodsWithPDBViolation`), keeping the order.
fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[PodDisruptionBudget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.disruptions_allowed)
                .unwrap_or(0)
        })
        .collect();
    let selectors: Vec<Option<LabelSelector>> = pdbs
        .iter()
        .map(|p| {
            LabelSelector::parse(p.spec.as_ref().and_then(|s| s.selector.as_ref()))
                .ok()
                .filter(|s| !s.is_everything())
        })
        .collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for pi in pods {
        let pod = pi.pod();
        let labels = pod_labels(pod);
        let mut violated = false;
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref().unwrap_or_default() != pod_namespace(pod) {
                    continue;
                }
                // A PDB with a nil or empty selector matches nothing.
                let Some(Some(sel)) = selectors.get(i) else {
                    continue;
                };
                if !sel.matches(labels) {
                    continue;
                }
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(name));
                if disrupted {
                    continue;
                }
                if let Some(a) = allowed.get_mut(i) {
                    *a -= 1;
                    if *a < 0 {
                        violated = true;
                    }
                }
            }
        }
        if violated {
            violating.push(pi)
        } else {
            ok.push(pi)
        }
    }
    (violating, ok)
}

/// The fewest, least important pods to evict from `node` for `pod` to fit, in a dry run on
/// copies of the node and the cycle state.
pub(super) fn select_victims_on_node(
    fw: &Framework,
    state: &CycleState,
    pod: &Pod,
    node: &NodeInfo,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, Status> {
    let mut state = state.clone();
    let mut node = node.clone();
    let prio = pod_priority(pod);
    let lower: Vec<Arc<PodInfo>> = node
        .pods()
        .iter()
        .filter(|p| pod_priority(p.pod()) < prio)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable(
            "No preemption victims found for incoming pod",
        ));
    }
    for p in &lower {
        node.remove_pod(p.key());
        let s = fw.run_pre_filter_extension_remove_pod(&mut state, pod, p, &node);
        if !s.is_success() {
            return Err(s);
        }
    }
    // Even without every lower-priority pod the pod does not fit: not a candidate.
    let s = fw.run_filter_plugins_with_nominated_pods(&state, pod, &node);
    if !s.is_success() {
        return Err(s);
    }
    let mut potential = lower;
    sort_more_important_first(&mut potential);
    let (violating, non_violating) = split_by_pdb(potential, pdbs);
    let mixed = !violating.is_empty() && !non_violating.is_empty();
    let mut victims = Vec::new();
    let mut num_pdb_violations = 0;
    // Give back as many pods as possible: PDB-violating ones first.
    for (is_violating, p) in violating
        .into_iter()
        .map(|p| (true, p))
        .chain(non_violating.into_iter().map(|p| (false, p)))
    {
        node.add_pod(p.clone());
        let s = fw.run_pre_filter_extension_add_pod(&mut state, pod, &p, &node);
        if !s.is_success() {
            return Err(s);
        }
        if !fw
            .run_filter_plugins_with_nominated_pods(&state, pod, &node)
            .is_success()
        {
            node.remove_pod(p.key());
            let s = fw.run_pre_filter_extension_remove_pod(&mut state, pod, &p, &node);
            if !s.is_success() {
                return Err(s);
            }
            if is_violating {
                num_pdb_violations += 1;
            }
            victims.push(p);
        }
    }
    if mixed {
        sort_more_important_first(&mut victims);
    }
    Ok(Candidate {
        node: node.node_name().to_owned(),
        victims,
        num_pdb_violations,
    })
}

/// Keeps the candidates with the best `key` (highest).
fn keep_best<K: Ord>(candidates: Vec<Candidate>, key: impl Fn(&Candidate) -> K) -> Vec<Candidate> {
    let mut keyed: Vec<(K, Candidate)> = candidates.into_iter().map(|c| (key(&c), c)).collect();
    // Stable: equally good candidates keep their order.
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    let mut it = keyed.into_iter();
    let Some((best, first)) = it.next() else {
        return Vec::new();
    };
    let mut out = vec![first];
    out.extend(it.take_while(|(k, _)| *k == best).map(|(_, c)| c));
    out
}

/// The node to preempt on (upstream `pickOneNodeForPreemption`).
pub(super) fn pick_one_node(candidates: Vec<Candidate>) -> Option<Candidate> {
    let prio = |p: &Arc<PodInfo>| i64::from(pod_priority(p.pod()));
    let mut c = keep_best(candidates, |c| std::cmp::Reverse(c.num_pdb_violations));
    c = keep_best(c, |c| {
        std::cmp::Reverse(c.victims.first().map_or(i64::MIN, prio))
    });
    // Priorities shifted to be non-negative, so a node with fewer negative-priority victims wins.
    c = keep_best(c, |c| {
        std::cmp::Reverse(
            c.victims
                .iter()
                .map(|v| prio(v) + i64::from(i32::MAX) + 1)
                .sum::<i64>(),
        )
    });
    c = keep_best(c, |c| std::cmp::Reverse(c.victims.len()));
    // Latest start among the highest-priority victims: evict what ran the shortest.
    let now = Timestamp::now();
    c = keep_best(c, |c| {
        let top = c.victims.first().map_or(i64::MIN, prio);
        c.victims
            .iter()
            .filter(|v| prio(v) == top)
            .map(|v| start_time(v.pod(), now))
            .min()
    });
    c.into_iter().next()
}
