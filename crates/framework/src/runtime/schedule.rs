//! The scheduling algorithm of one cycle (upstream `schedulePod`): PreFilter, Filter across
//! nodes in parallel until enough feasible nodes are found, PreScore, Score, NormalizeScore,
//! weights, and a host chosen among the best with a uniform random tie-break.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

use super::{Framework, num_feasible_nodes_to_find, run::Timing};
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

/// Nodes one thread evaluated in the Filter phase, by offset from the start index. Only
/// rejections carry a status: a feasible node costs one `usize`.
#[derive(Default)]
struct FilterPart<'a, 'n> {
    feasible: Vec<usize>,
    rejected: Vec<(usize, Status)>,
    failed: Option<(usize, Status)>,
    /// Plugin durations of a sampled cycle.
    timings: Vec<Timing<'a>>,
    /// The current chunk's nodes that every plugin so far passed, and their offsets.
    live: Vec<&'n NodeInfo>,
    live_at: Vec<usize>,
    /// One plugin's rejections of the current chunk.
    out: Vec<(usize, Status)>,
}

impl<'a, 'n> FilterPart<'a, 'n> {
    /// Records the status of the node at offset `i` (not Success).
    fn reject(&mut self, i: usize, s: Status) {
        if s.is_error() {
            if self.failed.as_ref().is_none_or(|(j, _)| i < *j) {
                self.failed = Some((i, s));
            }
        } else {
            self.rejected.push((i, s));
        }
    }
}

/// What one thread of the Score phase reports besides the scores.
#[derive(Default)]
struct ScorePart<'a> {
    failed: Option<(usize, Status)>,
    timings: Vec<Timing<'a>>,
    /// One plugin's scores of the current chunk.
    chunk_scores: Vec<i64>,
}

/// At most this many nodes per Filter chunk: the last chunk of a search that stops early is
/// evaluated in full, so smaller chunks waste less; a chunk costs one atomic add.
const MAX_FILTER_CHUNK: usize = 32;

/// Marks a node of a Filter chunk that a plugin rejected (no offset is this large).
const DROPPED: usize = usize::MAX;

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
        // Totals by feasible-node position: a node's name is only copied for the chosen host.
        let totals = if self.has_score_plugins() {
            let s = self.run_pre_score_plugins(state, pod, &feasible).await;
            if !s.is_success() {
                return Err(ScheduleError::Internal(s));
            }
            self.score_totals(state, pod, &feasible)
                .map_err(ScheduleError::Internal)?
        } else {
            vec![1; feasible.len()]
        };
        let best = match self.tie_break.lock().as_mut() {
            Some(rng) => select_index(totals.iter().copied(), rng),
            None => select_index(totals.iter().copied(), &mut rand::rng()),
        };
        let host = best
            .and_then(|i| feasible.get(i))
            .ok_or_else(|| ScheduleError::Internal(Status::error("empty priority list")))?;
        Ok(ScheduleResult {
            suggested_host: host.node_name().to_owned(),
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
        let filters = self.active_filter_plugins(state);
        let record = state.should_record_plugin_metrics();
        let found = AtomicUsize::new(0);
        let chunk = self.parallelizer.chunk_size(n).min(MAX_FILTER_CHUNK);
        // Chunks are handed out in order and every claimed chunk is finished, so the nodes
        // evaluated are a prefix of the rotation: the result below is exactly what a sequential
        // scan (upstream with one goroutine) gives, whatever the threads' timing.
        let parts = self.parallelizer.until(
            n,
            chunk,
            FilterPart::default,
            |part: &mut FilterPart<'_, '_>, range: std::ops::Range<usize>, _solo: bool| {
                let before = part.feasible.len();
                self.filter_chunk(part, &filters, state, pod, nodes, start, range, record);
                if part.failed.is_some() {
                    return false;
                }
                // The whole chunk is evaluated even past the nodes wanted; the cutoff below
                // drops what a sequential scan would not have looked at.
                let added = part.feasible.len() - before;
                found.fetch_add(added, Ordering::Relaxed) + added <= to_find
            },
            // Nodes still to evaluate, from the share of feasible nodes in the first chunk.
            |part: &FilterPart| {
                let evaluated = chunk.min(n);
                match part.feasible.len() {
                    0 => n,
                    f => (to_find + 1).saturating_sub(f) * evaluated / f,
                }
            },
        );
        let mut feasible_at: Vec<usize> = parts
            .iter()
            .flat_map(|p| p.feasible.iter().copied())
            .collect();
        feasible_at.sort_unstable();
        // The first node past the ones wanted ends the scan: it and everything after it count
        // as not evaluated.
        let cutoff = feasible_at.get(to_find).copied().unwrap_or(usize::MAX);
        feasible_at.truncate(to_find);
        let feasible: Vec<Arc<NodeInfo>> = feasible_at
            .iter()
            .map(|&i| nodes[(start + i) % n].clone())
            .collect();
        if record {
            for part in &parts {
                self.observe_plugin_batch("Filter", &part.timings);
            }
        }
        let mut failure: Option<(usize, Status)> = None;
        let mut rejected = Vec::new();
        for part in parts {
            rejected.push(part.rejected);
            if let Some((i, s)) = part.failed
                && i < cutoff
                && failure.as_ref().is_none_or(|(j, _)| i < *j)
            {
                failure = Some((i, s));
            }
        }
        // A sequential scan stops at the first failure as well.
        let cutoff = failure.as_ref().map_or(cutoff, |(i, _)| cutoff.min(*i));
        for (i, s) in rejected.into_iter().flatten() {
            if i < cutoff {
                diagnosis.add_plugin_status(&s);
                diagnosis
                    .node_to_status
                    .set(nodes[(start + i) % n].node_name(), s);
            }
        }
        self.advance_start(
            feasible.len() + diagnosis.node_to_status.len(),
            num_all_nodes,
        );
        match failure {
            Some((_, s)) => Err(s),
            None => Ok(feasible),
        }
    }

    /// Filters the nodes at offsets `range` (from `start`, rotating) into `part`: plugin by
    /// plugin over the chunk ([`crate::FilterPlugin::filter_nodes`]), each plugin seeing only
    /// the nodes the earlier ones passed, so a node's status is its first non-success, as a
    /// node-by-node loop gives. Nodes with nominated pods take the node-by-node path.
    #[allow(clippy::too_many_arguments)]
    fn filter_chunk<'a, 'n>(
        &'a self,
        part: &mut FilterPart<'a, 'n>,
        filters: &[&'a super::Enabled],
        state: &CycleState,
        pod: &Pod,
        nodes: &'n [Arc<NodeInfo>],
        start: usize,
        range: std::ops::Range<usize>,
        record: bool,
    ) {
        let n = nodes.len();
        part.live.clear();
        part.live_at.clear();
        for i in range {
            let node: &NodeInfo = &nodes[(start + i) % n];
            if !self
                .handle
                .nominated_pods_for_node(node.node_name())
                .is_empty()
            {
                let timings = record.then_some(&mut part.timings);
                let s = self.filter_node(Some(filters), state, pod, node, timings);
                if s.is_success() {
                    part.feasible.push(i);
                } else {
                    part.reject(i, s);
                }
            } else {
                part.live.push(node);
                part.live_at.push(i);
            }
        }
        for e in filters {
            if part.live.is_empty() {
                break;
            }
            let Some(p) = e.plugin.as_filter() else {
                continue;
            };
            part.out.clear();
            let t = record.then(Instant::now);
            p.filter_nodes(state, pod, &part.live, &mut part.out);
            if let Some(t) = t {
                record_filter_timings(&mut part.timings, e.name(), part.live.len(), &part.out, t);
            }
            if part.out.is_empty() {
                continue;
            }
            // A node reported twice counts with its first status; Success reports nothing.
            let mut out = std::mem::take(&mut part.out);
            out.retain(|(k, s)| !s.is_success() && *k < part.live.len());
            out.sort_by_key(|(k, _)| *k);
            out.dedup_by_key(|(k, _)| *k);
            for (k, s) in out.drain(..) {
                let i = std::mem::replace(&mut part.live_at[k], DROPPED);
                part.reject(i, super::run::filter_outcome(e.name(), s));
            }
            // Drop the rejected nodes from the live list, keeping its order.
            let mut kept = 0;
            for k in 0..part.live.len() {
                if part.live_at[k] != DROPPED {
                    part.live[kept] = part.live[k];
                    part.live_at[kept] = part.live_at[k];
                    kept += 1;
                }
            }
            part.live.truncate(kept);
            part.live_at.truncate(kept);
            part.out = out;
        }
        part.feasible.extend_from_slice(&part.live_at);
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
        let totals = self.score_totals(state, pod, nodes)?;
        Ok(nodes
            .iter()
            .zip(totals)
            .map(|(n, total_score)| NodePluginScores {
                name: n.node_name().to_owned(),
                scores: Vec::new(),
                total_score,
            })
            .collect())
    }

    /// Score, NormalizeScore, the range check and weights; the weighted total of each node, by
    /// position in `nodes`. Raw scores live in one node-major buffer; only plugins that
    /// normalize get the per-node `NodeScore` list NormalizeScore takes.
    pub(crate) fn score_totals(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let start = Instant::now();
        let plugins: Vec<(&super::Enabled, &dyn crate::ScorePlugin)> = self
            .active_score_plugins(state)
            .into_iter()
            .filter_map(|e| e.plugin.as_score().map(|p| (e, p)))
            .collect();
        let width = plugins.len();
        let n = nodes.len();
        let record = state.should_record_plugin_metrics();
        // Written by whichever thread scores the node; plain stores on x86.
        let raw: Vec<AtomicI64> = (0..n * width).map(|_| AtomicI64::new(0)).collect();
        let parts = self.parallelizer.until(
            n,
            self.parallelizer.chunk_size(n),
            ScorePart::default,
            |part: &mut ScorePart<'_>, range: std::ops::Range<usize>, _solo: bool| {
                // Plugin by plugin over the chunk: each reads its cycle state once per chunk,
                // and the chunk's nodes stay in cache between plugins.
                let chunk = &nodes[range.clone()];
                part.chunk_scores.resize(chunk.len(), 0);
                // The first failure in node-major order (node, then plugin), as a node-by-node
                // loop would meet it.
                let mut failed: Option<(usize, usize, Status)> = None;
                for (j, (e, p)) in plugins.iter().enumerate() {
                    // Nodes from an earlier plugin's failure on cannot fail first.
                    let upto = failed.as_ref().map_or(chunk.len(), |(k, _, _)| *k);
                    if upto == 0 {
                        break;
                    }
                    let scores = &mut part.chunk_scores[..upto];
                    let t = record.then(Instant::now);
                    let r = p.score_nodes(state, pod, &chunk[..upto], scores);
                    if let Some(t) = t {
                        record_chunk_timings(&mut part.timings, e.name(), &r, upto, t);
                    }
                    if let Err((k, s)) = r {
                        failed = Some((k.min(upto - 1), j, s));
                    }
                    let done = failed.as_ref().map_or(upto, |(k, _, _)| (*k).min(upto));
                    for (k, v) in part.chunk_scores[..done].iter().enumerate() {
                        raw[(range.start + k) * width + j].store(*v, Ordering::Relaxed);
                    }
                }
                match failed {
                    Some((k, j, s)) => {
                        part.failed = Some((range.start + k, score_error(plugins[j].0.name(), &s)));
                        false
                    }
                    None => true,
                }
            },
            |_| n,
        );
        if record {
            for part in &parts {
                self.observe_plugin_batch("Score", &part.timings);
            }
        }
        if let Some((_, s)) = parts
            .into_iter()
            .filter_map(|p| p.failed)
            .min_by_key(|(i, _)| *i)
        {
            self.observe_point("Score", &s, start);
            return Err(s);
        }
        let mut raw: Vec<i64> = raw.into_iter().map(AtomicI64::into_inner).collect();
        // Taken out of the framework for the cycle (a concurrent cycle gets an empty one).
        let mut list: Vec<NodeScore> = std::mem::take(&mut *self.normalize_scratch.lock());
        let result =
            self.normalize_and_check(state, pod, nodes, &plugins, &mut raw, &mut list, start);
        *self.normalize_scratch.lock() = list;
        result?;
        let totals: Vec<i64> = raw
            .chunks(width.max(1))
            .map(|row| {
                row.iter()
                    .zip(&plugins)
                    .map(|(v, (e, _))| v * e.weight)
                    .sum()
            })
            .take(n)
            .collect();
        let totals = if width == 0 { vec![0; n] } else { totals };
        // The per-plugin breakdown is only for debugging: built under trace logging only.
        if tracing::enabled!(target: "ksched_framework::score", tracing::Level::TRACE) {
            for (i, node) in nodes.iter().enumerate() {
                let scores: Vec<PluginScore> = plugins
                    .iter()
                    .enumerate()
                    .map(|(j, (e, _))| PluginScore {
                        name: e.name().to_owned(),
                        score: raw[i * width + j] * e.weight,
                    })
                    .collect();
                tracing::trace!(target: "ksched_framework::score", node = %node.node_name(), total = totals[i], scores = ?scores);
            }
        }
        self.observe_point("Score", &Status::success(), start);
        Ok(totals)
    }

    /// NormalizeScore of the plugins that have one, then the range check of every plugin's
    /// column of `raw` (node-major, one column per plugin). `list` is the reused `NodeScore`
    /// list NormalizeScore gets.
    #[allow(clippy::too_many_arguments)]
    fn normalize_and_check(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        plugins: &[(&super::Enabled, &dyn crate::ScorePlugin)],
        raw: &mut [i64],
        list: &mut Vec<NodeScore>,
        start: Instant,
    ) -> Result<(), Status> {
        let width = plugins.len();
        let n = nodes.len();
        for (j, (e, p)) in plugins.iter().enumerate() {
            if p.has_normalize_score() {
                // Names are overwritten in place (no allocation once the strings have grown
                // to node-name size); a plugin may have changed them, so every time.
                list.truncate(n);
                for (slot, node) in list.iter_mut().zip(nodes) {
                    slot.name.clear();
                    slot.name.push_str(node.node_name());
                }
                for node in &nodes[list.len()..] {
                    list.push(NodeScore {
                        name: node.node_name().to_owned(),
                        score: 0,
                    });
                }
                for (i, slot) in list.iter_mut().enumerate() {
                    slot.score = raw[i * width + j];
                }
                let t = Instant::now();
                let s = p.normalize_score(state, pod, list);
                if !s.is_success() {
                    self.observe_plugin(state, e.name(), "ScoreExtensionNormalize", &s, t);
                    let s = Status::error(format!(
                        "running Normalize on Score plugin {:?}: {}",
                        e.name(),
                        s.message()
                    ))
                    .with_plugin(e.name());
                    self.observe_point("Score", &s, start);
                    return Err(s);
                }
                for (i, ns) in list.iter().enumerate() {
                    raw[i * width + j] = ns.score;
                }
                self.observe_plugin(state, e.name(), "ScoreExtensionNormalize", &s, t);
            }
            if let Some(bad) = (0..n)
                .map(|i| raw[i * width + j])
                .find(|v| !(MIN_NODE_SCORE..=MAX_NODE_SCORE).contains(v))
            {
                let s = Status::error(format!(
                    "plugin {:?} returns an invalid score {}, it should in the range of [{MIN_NODE_SCORE}, {MAX_NODE_SCORE}] after normalizing",
                    e.name(),
                    bad
                ))
                .with_plugin(e.name());
                self.observe_point("Score", &s, start);
                return Err(s);
            }
        }
        Ok(())
    }
}

/// The plugin durations of one `score_nodes` call over `scored` nodes in a sampled cycle:
/// one observation per node, as upstream observes each Score call, each the call's mean
/// per node. Timing the chunk instead of every node saves two clock reads per node and
/// plugin (a clock read costs about as much as a resource score); the count and sum of the
/// histogram are unchanged, only its spread within a chunk is averaged out. Nodes after a
/// failure were not scored; the failed node carries the status code.
fn record_chunk_timings<'a>(
    timings: &mut Vec<Timing<'a>>,
    plugin: &'a str,
    result: &Result<(), (usize, Status)>,
    scored: usize,
    start: Instant,
) {
    let (ok, failed) = match result {
        Ok(()) => (scored, None),
        Err((k, s)) => ((*k).min(scored.saturating_sub(1)), Some(s.code())),
    };
    let calls = ok + usize::from(failed.is_some());
    if calls == 0 {
        return;
    }
    #[allow(clippy::cast_precision_loss)] // a chunk holds a few dozen nodes
    let each = start.elapsed().as_secs_f64() / calls as f64;
    timings.extend(std::iter::repeat_n((plugin, Code::Success, each), ok));
    if let Some(code) = failed {
        timings.push((plugin, code, each));
    }
}

/// The plugin durations of one `filter_nodes` call over `evaluated` nodes in a sampled cycle,
/// one observation per node with the call's mean duration (see [`record_chunk_timings`]):
/// Success for the nodes that passed, the status code for the others.
fn record_filter_timings<'a>(
    timings: &mut Vec<Timing<'a>>,
    plugin: &'a str,
    evaluated: usize,
    rejected: &[(usize, Status)],
    start: Instant,
) {
    if evaluated == 0 {
        return;
    }
    #[allow(clippy::cast_precision_loss)] // a chunk holds a few dozen nodes
    let each = start.elapsed().as_secs_f64() / evaluated as f64;
    let failed = rejected.iter().filter(|(_, s)| !s.is_success()).count();
    timings.extend(std::iter::repeat_n(
        (plugin, Code::Success, each),
        evaluated.saturating_sub(failed),
    ));
    timings.extend(
        rejected
            .iter()
            .filter(|(_, s)| !s.is_success())
            .map(|(_, s)| (plugin, s.code(), each)),
    );
}

/// A Score failure as upstream words it.
fn score_error(plugin: &str, s: &Status) -> Status {
    Status::error(format!(
        "plugin {plugin:?} failed with: {}",
        if s.message().is_empty() {
            s.code().to_string()
        } else {
            s.message()
        }
    ))
    .with_plugin(plugin)
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
    select_index(scores.iter().map(|s| s.total_score), rng).map(|i| scores[i].name.clone())
}

/// The position of the highest total; ties are broken by reservoir sampling, drawing from
/// `rng` once per tie in order.
fn select_index<R: Rng + ?Sized>(totals: impl Iterator<Item = i64>, rng: &mut R) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut ties = 0u32;
    for (i, total) in totals.enumerate() {
        match best {
            Some((_, b)) if total < b => {}
            Some((_, b)) if total == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((i, total));
                }
            }
            _ => {
                best = Some((i, total));
                ties = 1;
            }
        }
    }
    best.map(|(i, _)| i)
}
