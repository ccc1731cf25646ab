//! The scheduling algorithm of one cycle (upstream `schedulePod`): PreFilter, Filter across
//! nodes in parallel until enough feasible nodes are found, PreScore, Score, NormalizeScore,
//! weights, and a host chosen among the best with a uniform random tie-break.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;
use rayon::prelude::*;

use super::{Framework, num_feasible_nodes_to_find};
use crate::{
    Code, CycleState, MAX_NODE_SCORE, MIN_NODE_SCORE, NodeInfo, NodePluginScores, NodeScore,
    NodeToStatus, PluginScore, Status, pod_key,
};

/// Where a pod should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub suggested_host: String,
    /// Nodes Filter looked at (feasible + rejected).
    pub evaluated_nodes: usize,
    /// Nodes that passed Filter.
    pub feasible_nodes: usize,
}

/// Why no node fits: per-node statuses and the plugins that rejected the pod.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Rejection per node (nodes not listed read as the absent status).
    pub node_to_status: NodeToStatus,
    /// Plugins that returned Unschedulable(AndUnresolvable): the events they registered may
    /// requeue the pod.
    pub unschedulable_plugins: BTreeSet<String>,
    /// Plugins that returned Pending.
    pub pending_plugins: BTreeSet<String>,
    /// The PreFilter rejection message, when PreFilter rejected the pod.
    pub pre_filter_msg: Option<String>,
    /// What PostFilter (preemption) reported.
    pub post_filter_msg: Option<String>,
}

impl Diagnosis {
    fn add_plugin_status(&mut self, s: &Status) {
        let Some(p) = s.plugin() else { return };
        match s.code() {
            Code::Pending => {
                self.pending_plugins.insert(p.to_owned());
            }
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                self.unschedulable_plugins.insert(p.to_owned());
            }
            _ => {}
        }
    }
}

/// No node fits the pod.
#[derive(Debug, Clone)]
pub struct FitError {
    /// `namespace/name`.
    pub pod: String,
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// The reasons.
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    /// Upstream's message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
    /// untolerated taint {k: v}. preemption: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if let Some(msg) = d.pre_filter_msg.as_deref().filter(|m| !m.is_empty()) {
            write!(f, " {msg}.")?;
        } else {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, s) in d.node_to_status.iter() {
                for r in s.reasons() {
                    *reasons.entry(r).or_default() += 1;
                }
            }
            let listed = d.node_to_status.len();
            if listed < self.num_all_nodes {
                for r in d.node_to_status.absent_status().reasons() {
                    *reasons.entry(r).or_default() += self.num_all_nodes - listed;
                }
            }
            let mut lines: Vec<String> = reasons
                .into_iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            lines.sort();
            if !lines.is_empty() {
                write!(f, " {}.", lines.join(", "))?;
            }
        }
        if let Some(msg) = d.post_filter_msg.as_deref().filter(|m| !m.is_empty()) {
            write!(f, " {msg}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Why a scheduling cycle found no host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    /// The cluster has no nodes.
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    /// No node fits.
    #[error(transparent)]
    Fit(Box<FitError>),
    /// A plugin failed (Error status).
    #[error("{0}")]
    Internal(Status),
}

enum Outcome {
    NotRun,
    Feasible,
    Rejected(Status),
    Failed(Status),
}

impl Framework {
    /// Runs the scheduling algorithm for `pod` on the snapshot installed in the handle
    /// ([`crate::Handle::set_snapshot`]): PreFilter → Filter (with nominated pods) →
    /// PreScore → Score → NormalizeScore → host selection. PostFilter is the caller's, on
    /// [`ScheduleError::Fit`].
    ///
    /// # Errors
    /// [`ScheduleError::NoNodesAvailable`], [`ScheduleError::Fit`] with the diagnosis, or
    /// [`ScheduleError::Internal`] when a plugin failed.
    pub async fn schedule_pod(
        &self,
        state: &mut CycleState,
        pod: &Pod,
    ) -> Result<ScheduleResult, ScheduleError> {
        let snapshot = self.handle.snapshot();
        let all_nodes = snapshot.list();
        if all_nodes.is_empty() {
            return Err(ScheduleError::NoNodesAvailable);
        }
        let mut diagnosis = Diagnosis::default();
        let (pre_res, s, rejectors) = self.run_pre_filter_plugins(state, pod, all_nodes).await;
        diagnosis.unschedulable_plugins = rejectors;
        if !s.is_success() {
            if !s.is_rejected() {
                return Err(ScheduleError::Internal(s));
            }
            if s.code() == Code::Pending
                && let Some(p) = s.plugin()
            {
                diagnosis.unschedulable_plugins.remove(p);
                diagnosis.pending_plugins.insert(p.to_owned());
            }
            diagnosis.pre_filter_msg = Some(s.message());
            diagnosis.node_to_status.set_absent_status(s);
            return Err(fit_error(pod, all_nodes.len(), diagnosis));
        }

        // A pod that preemption nominated to a node tries that node first.
        if let Some(nominated) = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            && !nominated.is_empty()
            && let Some(ni) = snapshot.get(nominated)
        {
            let s = self.run_filter_plugins_with_nominated_pods(state, pod, ni);
            if s.is_success() {
                return Ok(ScheduleResult {
                    suggested_host: nominated.to_owned(),
                    evaluated_nodes: 1,
                    feasible_nodes: 1,
                });
            }
            if s.is_error() {
                return Err(ScheduleError::Internal(s));
            }
        }

        let restricted: Vec<Arc<NodeInfo>>;
        let nodes: &[Arc<NodeInfo>] = match pre_res.as_ref().and_then(|r| r.node_names.as_ref()) {
            None => all_nodes,
            Some(names) => {
                restricted = names
                    .iter()
                    .filter_map(|n| snapshot.get(n).cloned())
                    .collect();
                &restricted
            }
        };
        let filter_start = Instant::now();
        let feasible =
            self.find_nodes_that_pass_filters(state, pod, &mut diagnosis, nodes, all_nodes.len());
        let feasible = match feasible {
            Ok(f) => {
                self.observe_point("Filter", &Status::success(), filter_start);
                f
            }
            Err(s) => {
                self.observe_point("Filter", &s, filter_start);
                return Err(ScheduleError::Internal(s));
            }
        };
        if feasible.is_empty() {
            return Err(fit_error(pod, all_nodes.len(), diagnosis));
        }
        let evaluated_nodes = feasible.len() + diagnosis.node_to_status.len();
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                suggested_host: feasible[0].node_name().to_owned(),
                evaluated_nodes,
                feasible_nodes: 1,
            });
        }
        let scores = self
            .prioritize_nodes(state, pod, &feasible)
            .await
            .map_err(ScheduleError::Internal)?;
        let host = match self.tie_break.lock().as_mut() {
            Some(rng) => select_host_with(&scores, rng),
            None => select_host(&scores),
        };
        let host =
            host.ok_or_else(|| ScheduleError::Internal(Status::error("empty priority list")))?;
        Ok(ScheduleResult {
            suggested_host: host,
            evaluated_nodes,
            feasible_nodes: feasible.len(),
        })
    }

    /// Filters `nodes` in parallel from a start index that rotates between cycles, stopping
    /// once enough feasible nodes are found. Rejections are recorded in `diagnosis`.
    ///
    /// # Errors
    /// The first Error status of a Filter plugin.
    pub fn find_nodes_that_pass_filters(
        &self,
        state: &CycleState,
        pod: &Pod,
        diagnosis: &mut Diagnosis,
        nodes: &[Arc<NodeInfo>],
        num_all_nodes: usize,
    ) -> Result<Vec<Arc<NodeInfo>>, Status> {
        let n = nodes.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let to_find = if self.has_score_plugins() {
            num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n)
        } else {
            1
        };
        let start = self.next_start_node_index.load(Ordering::Relaxed) % n;
        if !self.has_filter_plugins() {
            let feasible: Vec<_> = (0..to_find.min(n))
                .map(|i| nodes[(start + i) % n].clone())
                .collect();
            self.advance_start(feasible.len(), num_all_nodes);
            return Ok(feasible);
        }
        let found = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let check = |i: usize| -> Outcome {
            if stop.load(Ordering::Relaxed) {
                return Outcome::NotRun;
            }
            let node = &nodes[(start + i) % n];
            let s = self.run_filter_plugins_with_nominated_pods(state, pod, node);
            if s.is_success() {
                if found.fetch_add(1, Ordering::AcqRel) >= to_find {
                    stop.store(true, Ordering::Relaxed);
                    return Outcome::NotRun;
                }
                Outcome::Feasible
            } else if s.is_error() {
                stop.store(true, Ordering::Relaxed);
                Outcome::Failed(s)
            } else {
                Outcome::Rejected(s)
            }
        };
        let outcomes: Vec<Outcome> = if n < 32 {
            // Not worth waking the pool for a handful of nodes.
            (0..n).map(check).collect()
        } else {
            let chunk = self.parallelizer.chunk_size(n);
            self.parallelizer.install(|| {
                (0..n)
                    .into_par_iter()
                    .with_min_len(chunk)
                    .map(check)
                    .collect()
            })
        };
        let mut feasible = Vec::with_capacity(to_find.min(n));
        let mut failure = None;
        for (i, o) in outcomes.into_iter().enumerate() {
            let node = &nodes[(start + i) % n];
            match o {
                Outcome::NotRun => {}
                Outcome::Feasible => feasible.push(node.clone()),
                Outcome::Rejected(s) => {
                    diagnosis.add_plugin_status(&s);
                    diagnosis.node_to_status.set(node.node_name(), s);
                }
                Outcome::Failed(s) => {
                    failure.get_or_insert(s);
                }
            }
        }
        self.advance_start(
            feasible.len() + diagnosis.node_to_status.len(),
            num_all_nodes,
        );
        match failure {
            Some(s) => Err(s),
            None => Ok(feasible),
        }
    }

    fn advance_start(&self, processed: usize, num_all_nodes: usize) {
        if num_all_nodes == 0 {
            return;
        }
        let cur = self.next_start_node_index.load(Ordering::Relaxed);
        self.next_start_node_index
            .store((cur + processed) % num_all_nodes, Ordering::Relaxed);
    }

    /// PreScore, Score, NormalizeScore and weights over the feasible nodes. Without Score
    /// plugins every node scores 1.
    ///
    /// # Errors
    /// An Error status from PreScore or Score, or a normalized score outside [0, 100].
    pub async fn prioritize_nodes(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<NodePluginScores>, Status> {
        if !self.has_score_plugins() {
            return Ok(nodes
                .iter()
                .map(|n| NodePluginScores {
                    name: n.node_name().to_owned(),
                    scores: Vec::new(),
                    total_score: 1,
                })
                .collect());
        }
        let s = self.run_pre_score_plugins(state, pod, nodes).await;
        if !s.is_success() {
            return Err(s);
        }
        self.run_score_plugins(state, pod, nodes)
    }

    /// Runs Score plugins over `nodes` in parallel, then each plugin's NormalizeScore, then
    /// checks the range and applies weights.
    ///
    /// # Errors
    /// A plugin's Score error, or a score outside [0, 100] after normalization.
    pub fn run_score_plugins(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<NodePluginScores>, Status> {
        let start = Instant::now();
        let plugins = self.active_score_plugins(state);
        let score_node = |node: &Arc<NodeInfo>| -> Result<Vec<i64>, Status> {
            let mut out = Vec::with_capacity(plugins.len());
            for e in &plugins {
                let Some(p) = e.plugin.as_score() else {
                    out.push(0);
                    continue;
                };
                let t = state.should_record_plugin_metrics().then(Instant::now);
                let r = p.score(state, pod, node);
                if let Some(t) = t {
                    let st = r.as_ref().err().cloned().unwrap_or_default();
                    self.observe_plugin(state, e.name(), "Score", &st, t);
                }
                match r {
                    Ok(v) => out.push(v),
                    Err(s) => {
                        return Err(Status::error(format!(
                            "plugin {:?} failed with: {}",
                            e.name(),
                            if s.message().is_empty() {
                                s.code().to_string()
                            } else {
                                s.message()
                            }
                        ))
                        .with_plugin(e.name()));
                    }
                }
            }
            Ok(out)
        };
        let per_node: Result<Vec<Vec<i64>>, Status> = if nodes.len() < 32 {
            nodes.iter().map(score_node).collect()
        } else {
            let chunk = self.parallelizer.chunk_size(nodes.len());
            self.parallelizer.install(|| {
                nodes
                    .par_iter()
                    .with_min_len(chunk)
                    .map(score_node)
                    .collect()
            })
        };
        let per_node = match per_node {
            Ok(v) => v,
            Err(s) => {
                self.observe_point("Score", &s, start);
                return Err(s);
            }
        };
        // Per plugin: normalize, check the range.
        let mut per_plugin: Vec<Vec<NodeScore>> = (0..plugins.len())
            .map(|j| {
                nodes
                    .iter()
                    .zip(&per_node)
                    .map(|(n, s)| NodeScore {
                        name: n.node_name().to_owned(),
                        score: s[j],
                    })
                    .collect()
            })
            .collect();
        for (j, e) in plugins.iter().enumerate() {
            let Some(p) = e.plugin.as_score() else {
                continue;
            };
            let t = Instant::now();
            let s = p.normalize_score(state, pod, &mut per_plugin[j]);
            self.observe_plugin(state, e.name(), "ScoreExtensionNormalize", &s, t);
            if !s.is_success() {
                let s = Status::error(format!(
                    "running Normalize on Score plugin {:?}: {}",
                    e.name(),
                    s.message()
                ))
                .with_plugin(e.name());
                self.observe_point("Score", &s, start);
                return Err(s);
            }
            if let Some(bad) = per_plugin[j]
                .iter()
                .find(|ns| !(MIN_NODE_SCORE..=MAX_NODE_SCORE).contains(&ns.score))
            {
                let s = Status::error(format!(
                    "plugin {:?} returns an invalid score {}, it should in the range of [{MIN_NODE_SCORE}, {MAX_NODE_SCORE}] after normalizing",
                    e.name(),
                    bad.score
                ))
                .with_plugin(e.name());
                self.observe_point("Score", &s, start);
                return Err(s);
            }
        }
        // The per-plugin breakdown costs a String and a Vec per node per cycle; it is only
        // for debugging, so it is kept when trace logging of the framework is on.
        let breakdown = tracing::enabled!(target: "ksched_framework::score", tracing::Level::TRACE);
        let result = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let weighted = |j: usize, e: &&super::Enabled| per_plugin[j][i].score * e.weight;
                let total_score = plugins
                    .iter()
                    .enumerate()
                    .map(|(j, e)| weighted(j, e))
                    .sum();
                let scores = if breakdown {
                    plugins
                        .iter()
                        .enumerate()
                        .map(|(j, e)| PluginScore {
                            name: e.name().to_owned(),
                            score: weighted(j, e),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                NodePluginScores {
                    name: n.node_name().to_owned(),
                    scores,
                    total_score,
                }
            })
            .collect::<Vec<_>>();
        if breakdown {
            for r in &result {
                tracing::trace!(target: "ksched_framework::score", node = %r.name, total = r.total_score, scores = ?r.scores);
            }
        }
        self.observe_point("Score", &Status::success(), start);
        Ok(result)
    }
}

fn fit_error(pod: &Pod, num_all_nodes: usize, diagnosis: Diagnosis) -> ScheduleError {
    ScheduleError::Fit(Box::new(FitError {
        pod: pod_key(pod),
        num_all_nodes,
        diagnosis,
    }))
}

/// The node with the highest total; among equal totals each is chosen with the same
/// probability (reservoir sampling), so equal nodes share the load.
#[must_use]
pub fn select_host(scores: &[NodePluginScores]) -> Option<String> {
    select_host_with(scores, &mut rand::rng())
}

/// [`select_host`] with a given random source (a seeded one makes runs reproducible).
#[must_use]
pub fn select_host_with<R: Rng + ?Sized>(
    scores: &[NodePluginScores],
    rng: &mut R,
) -> Option<String> {
    let mut best: Option<&NodePluginScores> = None;
    let mut ties = 0u32;
    for s in scores {
        match best {
            Some(b) if s.total_score < b.total_score => {}
            Some(b) if s.total_score == b.total_score => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some(s);
                }
            }
            _ => {
                best = Some(s);
                ties = 1;
            }
        }
    }
    best.map(|b| b.name.clone())
}
