//! `DefaultPreemption` (PostFilter): when no node fits, find nodes where evicting pods of
//! lower priority would make room, pick the one where that hurts least, evict those pods and
//! nominate the node for the preemptor.
//!
//! Upstream's algorithm (`pkg/scheduler/framework/preemption`, `defaultpreemption`):
//! - only nodes rejected as Unschedulable (not UnschedulableAndUnresolvable) are candidates;
//! - per node, in a dry run on a copy of the node and of the cycle state: remove every pod of
//!   lower priority, check the pod fits (Filter with nominated pods), then add pods back, most
//!   important first — PDB-violating ones before the others — keeping each that still lets the
//!   pod fit; the rest are the victims;
//! - candidates are looked for from a random offset until `max(minCandidateNodesPercentage %
//!   of the nodes, minCandidateNodesAbsolute)` are found (at least one without PDB violation);
//! - the node is chosen by fewest PDB violations, then lowest highest-victim priority, then
//!   smallest sum of priorities, then fewest victims, then latest start of the highest-priority
//!   victims, then the first;
//! - victims get a `DisruptionTarget` condition, are deleted (their own grace period) and get
//!   a `Preempted` event; lower-priority pods nominated to that node lose their nomination.
//!
//! Victims are deleted within the PostFilter call rather than asynchronously (upstream's
//! `SchedulerAsyncPreemption`): the cycle ends once the deletions are accepted.

mod victims;

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::{core::v1::Pod, policy::v1::PodDisruptionBudget};
use ksched_framework::{
    Code, CycleState, Framework, Handle, NodeInfo, NodeToStatus, NominatingInfo, NominatingMode,
    Plugin, PluginArgs, PluginError, PostFilterPlugin, PostFilterResult, Status,
    runtime::{Diagnosis, FitError},
};
use kube::{Api, api::ListParams};
use rand::Rng;
use serde::Deserialize;

pub use self::victims::Candidate;
use self::victims::{pick_one_node, select_victims_on_node};
use crate::{
    helper::{par_map, pod_uid},
    names,
};

/// Reason when every candidate node was excluded.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// `DefaultPreemptionArgs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultPreemptionArgs {
    /// Candidates looked for, as a percentage of the nodes (0–100, default 10).
    #[serde(default = "ten")]
    pub min_candidate_nodes_percentage: i32,
    /// Candidates looked for at least (default 100).
    #[serde(default = "hundred")]
    pub min_candidate_nodes_absolute: i32,
}

fn ten() -> i32 {
    10
}
fn hundred() -> i32 {
    100
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        Self {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

/// Upstream's DefaultPreemption plugin.
#[derive(Debug, Clone)]
pub struct DefaultPreemption {
    handle: Arc<Handle>,
    args: DefaultPreemptionArgs,
}

/// Factory.
///
/// # Errors
/// Args that do not decode or fail upstream's validation.
pub fn new(args: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: DefaultPreemptionArgs = args.decode()?;
    if !(0..=100).contains(&args.min_candidate_nodes_percentage) {
        return Err(PluginError::invalid_arg(
            "minCandidateNodesPercentage",
            "not in valid range [0, 100]",
        ));
    }
    if args.min_candidate_nodes_absolute < 0 {
        return Err(PluginError::invalid_arg(
            "minCandidateNodesAbsolute",
            "not in valid range [0, inf)",
        ));
    }
    if args.min_candidate_nodes_percentage == 0 && args.min_candidate_nodes_absolute == 0 {
        return Err(PluginError::invalid_arg(
            "minCandidateNodesPercentage",
            "cannot be zero at the same time as minCandidateNodesAbsolute",
        ));
    }
    Ok(Arc::new(DefaultPreemption {
        handle: handle.clone(),
        args,
    }))
}

fn override_nomination(node: &str) -> Option<PostFilterResult> {
    Some(PostFilterResult {
        nominating_info: Some(NominatingInfo {
            nominated_node_name: node.to_owned(),
            mode: NominatingMode::Override,
        }),
    })
}

/// A victim being evicted by this scheduler: terminating with a `DisruptionTarget` condition
/// set by preemption (upstream `podTerminatingByPreemption`).
fn terminating_by_preemption(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
        && p.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
}

impl DefaultPreemption {
    /// The plugin with `args` (tests, simulators).
    #[must_use]
    pub fn with_args(handle: Arc<Handle>, args: DefaultPreemptionArgs) -> Self {
        Self { handle, args }
    }

    /// How many candidates to look for among `n` potential nodes.
    fn num_candidates(&self, n: usize) -> usize {
        let pct = usize::try_from(self.args.min_candidate_nodes_percentage).unwrap_or(0);
        let abs = usize::try_from(self.args.min_candidate_nodes_absolute).unwrap_or(0);
        (n * pct / 100).max(abs).min(n)
    }

    /// Whether the pod may preempt (upstream `PodEligibleToPreemptOthers`).
    fn eligible(&self, pod: &Pod, statuses: &NodeToStatus) -> Result<(), Status> {
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never")
        {
            return Err(Status::unresolvable(
                "Preemptor couldn't preempt other victims because of preemptionPolicy: never",
            ));
        }
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .unwrap_or_default();
        if nominated.is_empty()
            || statuses.get(nominated).code() == Code::UnschedulableAndUnresolvable
        {
            return Ok(());
        }
        // Victims of an earlier preemption are still going away: wait for them.
        let prio = ksched_framework::pod_priority(pod);
        if let Some(ni) = self.handle.snapshot().get(nominated)
            && ni.pods().iter().any(|p| {
                ksched_framework::pod_priority(p.pod()) < prio && terminating_by_preemption(p.pod())
            })
        {
            return Err(Status::unschedulable(
                "not eligible due to a terminating pod on the nominated node.",
            ));
        }
        Ok(())
    }

    async fn list_pdbs(&self) -> Result<Vec<PodDisruptionBudget>, Status> {
        let Some(client) = self.handle.client() else {
            return Ok(Vec::new());
        };
        Api::<PodDisruptionBudget>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| Status::error(format!("listing PodDisruptionBudgets: {e}")))
    }

    /// Finds the best candidate without evicting anything (the dry run of preemption).
    ///
    /// # Errors
    /// A status to return from PostFilter when there is no candidate (with the nomination to
    /// clear, if any) or a plugin failed.
    pub fn find_candidate(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &Pod,
        statuses: &NodeToStatus,
        pdbs: &[PodDisruptionBudget],
    ) -> Result<Candidate, (Option<PostFilterResult>, Status)> {
        self.eligible(pod, statuses).map_err(|s| (None, s))?;
        let snapshot = self.handle.snapshot();
        let all = snapshot.list();
        if all.is_empty() {
            return Err((None, Status::error("no nodes available")));
        }
        let potential: Vec<Arc<NodeInfo>> = all
            .iter()
            .filter(|n| statuses.get(n.node_name()).code() == Code::Unschedulable)
            .cloned()
            .collect();
        let mut failures = NodeToStatus::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        if !potential.is_empty() {
            let n = potential.len();
            let offset = rand::rng().random_range(0..n);
            let wanted = self.num_candidates(n);
            let batch = fw.parallelizer().parallelism().max(1) * 4;
            let order: Vec<Arc<NodeInfo>> = (0..n)
                .filter_map(|i| potential.get((offset + i) % n).cloned())
                .collect();
            for chunk in order.chunks(batch) {
                let results = par_map(&self.handle, chunk, |ni| {
                    select_victims_on_node(fw, state, pod, ni, pdbs)
                        .map_err(|s| (ni.node_name().to_owned(), s))
                });
                for r in results {
                    match r {
                        Ok(c) => candidates.push(c),
                        Err((node, s)) => failures.set(node, s),
                    }
                }
                let non_violating = candidates
                    .iter()
                    .filter(|c| c.num_pdb_violations == 0)
                    .count();
                if non_violating > 0 && candidates.len() >= wanted {
                    break;
                }
            }
        }
        if candidates.is_empty() {
            failures.set_absent_status(Status::unresolvable(PREEMPTION_NOT_HELPFUL));
            let fit = FitError {
                pod: ksched_framework::pod_key(pod),
                num_all_nodes: all.len(),
                diagnosis: Diagnosis {
                    node_to_status: failures,
                    ..Diagnosis::default()
                },
            };
            return Err((
                override_nomination(""),
                Status::unschedulable(fit.to_string()),
            ));
        }
        // Candidates without PDB violations first (upstream lists them first).
        candidates.sort_by_key(|c| c.num_pdb_violations > 0);
        pick_one_node(candidates).ok_or_else(|| {
            (
                None,
                Status::unschedulable("no candidate node for preemption"),
            )
        })
    }

    /// Evicts the candidate's victims and clears lower-priority nominations on its node
    /// (upstream `prepareCandidate`).
    async fn prepare_candidate(&self, c: &Candidate, pod: &Pod) -> Status {
        let prio = ksched_framework::pod_priority(pod);
        let note = format!("Preempted by pod {} on node {}", pod_uid(pod), c.node);
        for v in &c.victims {
            let victim = v.pod();
            // A victim waiting at Permit is simply rejected.
            if self.handle.waiting_pods().reject(
                pod_uid(victim),
                names::DEFAULT_PREEMPTION,
                "preempted",
            ) {
                continue;
            }
            if let Some(client) = self.handle.client() {
                let ns = victim.metadata.namespace.as_deref().unwrap_or_default();
                let name = victim.metadata.name.as_deref().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let condition = serde_json::json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{}: preempting to accommodate a higher priority pod", self.handle.profile_name()),
                    "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                }]}});
                let patch = kube::api::Patch::Strategic(condition);
                if let Err(e) = api
                    .patch_status(name, &kube::api::PatchParams::default(), &patch)
                    .await
                    && !is_not_found(&e)
                {
                    return Status::error(format!(
                        "adding DisruptionTarget to victim {ns}/{name}: {e}"
                    ));
                }
                match api.delete(name, &kube::api::DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Status::error(format!("deleting victim {ns}/{name}: {e}")),
                }
            }
            self.handle.event_recorder().record(
                victim,
                ksched_framework::EventType::Normal,
                "Preempted",
                "Preempting",
                &note,
            );
        }
        // Lower-priority pods nominated to this node would not fit anymore.
        if let Some(client) = self.handle.client() {
            for np in self.handle.nominated_pods_for_node(&c.node) {
                if ksched_framework::pod_priority(np.pod()) >= prio {
                    continue;
                }
                let p = np.pod();
                let api: Api<Pod> = Api::namespaced(
                    client.clone(),
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                );
                let patch = kube::api::Patch::Merge(
                    serde_json::json!({"status": {"nominatedNodeName": null}}),
                );
                let _ = api
                    .patch_status(
                        p.metadata.name.as_deref().unwrap_or_default(),
                        &kube::api::PatchParams::default(),
                        &patch,
                    )
                    .await;
            }
        }
        Status::success()
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &str {
        names::DEFAULT_PREEMPTION
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
}

#[async_trait]
impl PostFilterPlugin for DefaultPreemption {
    async fn post_filter(
        &self,
        state: &CycleState,
        pod: &Pod,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let Some(fw) = self.handle.framework() else {
            return (
                None,
                Status::error("the profile's framework is not available for preemption"),
            );
        };
        let pdbs = match self.list_pdbs().await {
            Ok(p) => p,
            Err(s) => return (None, s),
        };
        let candidate = match self.find_candidate(&fw, state, pod, statuses, &pdbs) {
            Ok(c) => c,
            Err((r, s)) => {
                // Upstream prefixes PostFilter messages of this plugin.
                let msg = s.message();
                let s = if msg.is_empty() {
                    s
                } else {
                    Status::with_reason(s.code(), format!("preemption: {msg}"))
                };
                return (r, s);
            }
        };
        let s = self.prepare_candidate(&candidate, pod).await;
        if !s.is_success() {
            return (None, s);
        }
        (override_nomination(&candidate.node), Status::success())
    }
}

#[cfg(test)]
mod tests;
