//! The `run_*` methods: one extension point each, with upstream's semantics.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;

use super::{Enabled, Framework};
use crate::{
    Code, CycleState, MAX_PERMIT_TIMEOUT, NodeInfo, NodeToStatus, PodInfo, PostFilterResult,
    PreFilterResult, QueuedPodInfo, Status, WaitingPod, metrics::PluginLabels, pod_priority,
};

/// One plugin call's duration in a sampled cycle: plugin, status code, seconds.
pub(crate) type Timing<'a> = (&'a str, Code, f64);

impl Framework {
    pub(crate) fn observe_point(&self, point: &'static str, status: &Status, start: Instant) {
        if let Some(m) = &self.metrics {
            m.observe_extension_point(
                &self.profile_name,
                point,
                status.code(),
                start.elapsed().as_secs_f64(),
            );
        }
    }

    pub(crate) fn observe_plugin(
        &self,
        state: &CycleState,
        plugin: &str,
        point: &'static str,
        status: &Status,
        start: Instant,
    ) {
        if !state.should_record_plugin_metrics() {
            return;
        }
        if let Some(m) = &self.metrics {
            m.plugin_execution_duration
                .get_or_create(&PluginLabels {
                    plugin: plugin.to_owned(),
                    extension_point: point,
                    status: status.code().as_str(),
                })
                .observe(start.elapsed().as_secs_f64());
        }
    }

    /// Records per-plugin durations collected during a parallel phase (Filter, Score) of a
    /// sampled cycle: one histogram lookup per plugin and code instead of one per node.
    pub(crate) fn observe_plugin_batch(&self, point: &'static str, timings: &[Timing<'_>]) {
        let Some(m) = &self.metrics else { return };
        let mut handles: Vec<(&str, Code, prometheus_client::metrics::histogram::Histogram)> =
            Vec::new();
        for &(plugin, code, secs) in timings {
            let i = match handles
                .iter()
                .position(|(p, c, _)| *p == plugin && *c == code)
            {
                Some(i) => i,
                None => {
                    let h = m
                        .plugin_execution_duration
                        .get_or_create(&PluginLabels {
                            plugin: plugin.to_owned(),
                            extension_point: point,
                            status: code.as_str(),
                        })
                        .clone();
                    handles.push((plugin, code, h));
                    handles.len() - 1
                }
            };
            handles[i].2.observe(secs);
        }
    }

    /// Runs PreEnqueue plugins; the first non-success (with its plugin set) gates the pod.
    pub fn run_pre_enqueue_plugins(&self, pod: &Pod) -> Status {
        for e in &self.pre_enqueue {
            let Some(p) = e.plugin.as_pre_enqueue() else {
                continue;
            };
            let s = p.pre_enqueue(pod);
            if !s.is_success() {
                return s.with_plugin(e.name());
            }
        }
        Status::success()
    }

    /// The QueueSort plugin's order.
    #[must_use]
    pub fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        self.queue_sort
            .plugin
            .as_queue_sort()
            .is_some_and(|q| q.less(a, b))
    }

    /// Runs PreFilter plugins in order. Skip disables the plugin's Filter; Unschedulable is
    /// remembered while the rest still run (so preemption keeps working);
    /// UnschedulableAndUnresolvable and Error stop at once. Results are intersected; an empty
    /// intersection is UnschedulableAndUnresolvable. Returns the merged result, the status and
    /// the plugins that rejected the pod.
    pub async fn run_pre_filter_plugins(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status, BTreeSet<String>) {
        let start = Instant::now();
        let mut result: Option<PreFilterResult> = None;
        let mut skip = HashSet::new();
        let mut rejectors = BTreeSet::new();
        let mut first_rejection: Option<Status> = None;
        let mut narrowing = Vec::new();
        for e in &self.pre_filter {
            let Some(p) = e.plugin.as_pre_filter() else {
                continue;
            };
            let t = Instant::now();
            let (r, s) = p.pre_filter(state, pod, nodes).await;
            self.observe_plugin(state, e.name(), "PreFilter", &s, t);
            match s.code() {
                Code::Success => {}
                Code::Skip => {
                    skip.insert(e.name().to_owned());
                    continue;
                }
                Code::UnschedulableAndUnresolvable => {
                    let s = s.with_plugin(e.name());
                    rejectors.insert(e.name().to_owned());
                    self.observe_point("PreFilter", &s, start);
                    return (None, s, rejectors);
                }
                Code::Unschedulable | Code::Pending => {
                    rejectors.insert(e.name().to_owned());
                    if first_rejection.is_none() {
                        first_rejection = Some(s.with_plugin(e.name()));
                    }
                    continue;
                }
                Code::Error | Code::Wait => {
                    let s = plugin_error("PreFilter", e.name(), &s);
                    self.observe_point("PreFilter", &s, start);
                    return (None, s, rejectors);
                }
            }
            if let Some(r) = r
                && !r.all_nodes()
            {
                narrowing.push(e.name().to_owned());
                let merged = match &result {
                    Some(prev) => prev.merge(&r),
                    None => r,
                };
                if merged.node_names.as_ref().is_some_and(BTreeSet::is_empty) {
                    let msg = if narrowing.len() == 1 {
                        format!("node(s) didn't satisfy plugin {}", narrowing[0])
                    } else {
                        format!(
                            "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                            narrowing.join(" ")
                        )
                    };
                    rejectors.extend(narrowing.iter().cloned());
                    let s = Status::unresolvable(msg).with_plugin(e.name());
                    self.observe_point("PreFilter", &s, start);
                    return (None, s, rejectors);
                }
                result = Some(merged);
            }
        }
        state.set_skip_filter_plugins(skip);
        let s = first_rejection.unwrap_or_else(Status::success);
        self.observe_point("PreFilter", &s, start);
        (result, s, rejectors)
    }

    /// Tells every PreFilter extension that `pod_to_add` is on `node` (nominated pods,
    /// preemption dry runs).
    pub fn run_pre_filter_extension_add_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &Pod,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extensions(state, "AddPod", |ext, state| {
            ext.add_pod(state, pod_to_schedule, pod_to_add, node)
        })
    }

    /// Tells every PreFilter extension that `pod_to_remove` left `node` (preemption dry runs).
    pub fn run_pre_filter_extension_remove_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &Pod,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extensions(state, "RemovePod", |ext, state| {
            ext.remove_pod(state, pod_to_schedule, pod_to_remove, node)
        })
    }

    /// Calls `call` on the extensions of every PreFilter plugin not skipped this cycle; the
    /// first failure becomes an Error naming the plugin and `what` ran.
    fn run_pre_filter_extensions(
        &self,
        state: &mut CycleState,
        what: &str,
        call: impl Fn(&dyn crate::PreFilterExtensions, &mut CycleState) -> Status,
    ) -> Status {
        for e in &self.pre_filter {
            if state.skip_filter_plugins().contains(e.name()) {
                continue;
            }
            let Some(ext) = e
                .plugin
                .as_pre_filter()
                .and_then(|p| p.pre_filter_extensions())
            else {
                continue;
            };
            let s = call(ext, state);
            if !s.is_success() {
                return Status::error(format!(
                    "running {what} on PreFilter plugin {:?}: {}",
                    e.name(),
                    s.message()
                ))
                .with_plugin(e.name());
            }
        }
        Status::success()
    }

    /// Runs Filter plugins on one node, stopping at the first that does not succeed. A code
    /// other than a rejection becomes an Error. Plugins skipped by their PreFilter do not run.
    pub fn run_filter_plugins(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        self.run_filters(None, state, pod, node, None)
    }

    /// The Filter plugins not skipped this cycle, in order (computed once per cycle instead of
    /// a skip-set lookup per plugin per node).
    pub(crate) fn active_filter_plugins(&self, state: &CycleState) -> Vec<&Enabled> {
        self.filter
            .iter()
            .filter(|e| !state.skip_filter_plugins().contains(e.name()))
            .collect()
    }

    /// [`Framework::run_filter_plugins`] over `active` (from
    /// [`Framework::active_filter_plugins`]), or over every plugin minus the skip set.
    /// With `timings`, a sampled cycle's plugin durations go there instead of straight to the
    /// histograms (the caller records them in one batch).
    fn run_filters<'a>(
        &'a self,
        active: Option<&[&'a Enabled]>,
        state: &CycleState,
        pod: &Pod,
        node: &NodeInfo,
        timings: Option<&mut Vec<Timing<'a>>>,
    ) -> Status {
        let skip = state.skip_filter_plugins();
        let all = || self.filter.iter().filter(|e| !skip.contains(e.name()));
        match active {
            Some(active) => self.run_filter_list(active.iter().copied(), state, pod, node, timings),
            None => self.run_filter_list(all(), state, pod, node, timings),
        }
    }

    fn run_filter_list<'a>(
        &'a self,
        plugins: impl Iterator<Item = &'a Enabled>,
        state: &CycleState,
        pod: &Pod,
        node: &NodeInfo,
        mut timings: Option<&mut Vec<Timing<'a>>>,
    ) -> Status {
        // In a sampled cycle, one clock read per plugin: each call's end is the next one's
        // start (two reads per call were ~5 % of the sampled cycles' time).
        let mut t = state.should_record_plugin_metrics().then(Instant::now);
        for e in plugins {
            let Some(p) = e.plugin.as_filter() else {
                continue;
            };
            let s = p.filter(state, pod, node);
            if let Some(start) = t {
                let now = Instant::now();
                match timings.as_deref_mut() {
                    Some(v) => {
                        v.push((e.name(), s.code(), now.duration_since(start).as_secs_f64()))
                    }
                    None => self.observe_plugin(state, e.name(), "Filter", &s, start),
                }
                t = Some(now);
            }
            if !s.is_success() {
                return filter_outcome(e.name(), s);
            }
        }
        Status::success()
    }

    /// Filter with nominated pods taken into account (upstream
    /// `RunFilterPluginsWithNominatedPods`): first with the nominated pods of equal or higher
    /// priority added to a copy of the node, then — if any were added and that passed —
    /// without them, so the pod fits both when they arrive and when they don't.
    pub fn run_filter_plugins_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &Pod,
        node: &NodeInfo,
    ) -> Status {
        self.filter_node(None, state, pod, node, None)
    }

    /// [`Framework::run_filter_plugins_with_nominated_pods`] with the cycle's active Filter
    /// plugins precomputed (`Some`) or looked up per call (`None`).
    pub(crate) fn filter_node<'a>(
        &'a self,
        active: Option<&[&'a Enabled]>,
        state: &CycleState,
        pod: &Pod,
        node: &NodeInfo,
        mut timings: Option<&mut Vec<Timing<'a>>>,
    ) -> Status {
        let nominated = self.handle.nominated_pods_for_node(node.node_name());
        if nominated.is_empty() {
            return self.run_filters(active, state, pod, node, timings);
        }
        let prio = pod_priority(pod);
        let uid = pod.metadata.uid.as_deref();
        let mut with_nominated: Option<(CycleState, NodeInfo)> = None;
        for np in nominated {
            if pod_priority(np.pod()) < prio
                || (uid.is_some() && np.pod().metadata.uid.as_deref() == uid)
            {
                continue;
            }
            let (st, ni) = with_nominated.get_or_insert_with(|| (state.clone(), node.clone()));
            ni.add_pod(np.clone());
            let s = self.run_pre_filter_extension_add_pod(st, pod, &np, ni);
            if !s.is_success() {
                return s;
            }
        }
        match with_nominated {
            None => self.run_filters(active, state, pod, node, timings),
            Some((st, ni)) => {
                let s = self.run_filters(active, &st, pod, &ni, timings.as_deref_mut());
                if !s.is_success() {
                    return s;
                }
                self.run_filters(active, state, pod, node, timings)
            }
        }
    }

    /// Runs PostFilter plugins (preemption) until one succeeds or fails hard.
    pub async fn run_post_filter_plugins(
        &self,
        state: &CycleState,
        pod: &Pod,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let start = Instant::now();
        let mut reasons = Vec::new();
        let mut rejector: Option<String> = None;
        let mut result: Option<PostFilterResult> = None;
        for e in &self.post_filter {
            let Some(p) = e.plugin.as_post_filter() else {
                continue;
            };
            let t = Instant::now();
            let (r, s) = p.post_filter(state, pod, statuses).await;
            self.observe_plugin(state, e.name(), "PostFilter", &s, t);
            match s.code() {
                Code::Success => {
                    let s = s.with_plugin(e.name());
                    self.observe_point("PostFilter", &s, start);
                    return (r, s);
                }
                Code::UnschedulableAndUnresolvable => {
                    let s = s.with_plugin(e.name());
                    self.observe_point("PostFilter", &s, start);
                    return (r, s);
                }
                Code::Unschedulable => {
                    reasons.extend(s.reasons().iter().cloned());
                    rejector.get_or_insert_with(|| e.name().to_owned());
                    if r.as_ref()
                        .and_then(|r| r.nominating_info.as_ref())
                        .is_some()
                    {
                        result = r;
                    }
                }
                _ => {
                    let s = plugin_error("PostFilter", e.name(), &s);
                    self.observe_point("PostFilter", &s, start);
                    return (None, s);
                }
            }
        }
        let mut s = Status::new(Code::Unschedulable, reasons);
        if let Some(r) = rejector {
            s.set_plugin(r);
        }
        self.observe_point("PostFilter", &s, start);
        (result, s)
    }

    /// Runs PreScore plugins; Skip disables the plugin's Score, anything else but success is an
    /// error.
    pub async fn run_pre_score_plugins(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let start = Instant::now();
        let mut skip = HashSet::new();
        for e in &self.pre_score {
            let Some(p) = e.plugin.as_pre_score() else {
                continue;
            };
            let t = Instant::now();
            let s = p.pre_score(state, pod, nodes).await;
            self.observe_plugin(state, e.name(), "PreScore", &s, t);
            if s.is_skip() {
                skip.insert(e.name().to_owned());
            } else if !s.is_success() {
                let s = plugin_error("PreScore", e.name(), &s);
                self.observe_point("PreScore", &s, start);
                return s;
            }
        }
        state.set_skip_score_plugins(skip);
        let s = Status::success();
        self.observe_point("PreScore", &s, start);
        s
    }

    pub(crate) fn active_score_plugins(&self, state: &CycleState) -> Vec<&Enabled> {
        self.score
            .iter()
            .filter(|e| !state.skip_score_plugins().contains(e.name()))
            .collect()
    }

    /// Runs Reserve plugins in order; on failure the caller runs Unreserve.
    pub async fn run_reserve_plugins_reserve(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        node_name: &str,
    ) -> Status {
        let start = Instant::now();
        for e in &self.reserve {
            let Some(p) = e.plugin.as_reserve() else {
                continue;
            };
            let t = Instant::now();
            let s = p.reserve(state, pod, node_name).await;
            self.observe_plugin(state, e.name(), "Reserve", &s, t);
            if !s.is_success() {
                let s = rejection_or_error("Reserve", e.name(), s);
                self.observe_point("Reserve", &s, start);
                return s;
            }
        }
        let s = Status::success();
        self.observe_point("Reserve", &s, start);
        s
    }

    /// Runs Unreserve of every Reserve plugin, in reverse order.
    pub async fn run_reserve_plugins_unreserve(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        node_name: &str,
    ) {
        let start = Instant::now();
        for e in self.reserve.iter().rev() {
            if let Some(p) = e.plugin.as_reserve() {
                let t = Instant::now();
                p.unreserve(state, pod, node_name).await;
                self.observe_plugin(state, e.name(), "Unreserve", &Status::success(), t);
            }
        }
        self.observe_point("Unreserve", &Status::success(), start);
    }

    /// Runs Permit plugins. A rejection stops at once; if any plugin says Wait (and none
    /// rejects) the pod is registered as waiting — with each plugin's timeout capped at 15 min —
    /// and `Wait` is returned: the binding task then calls [`Framework::wait_on_permit`].
    pub async fn run_permit_plugins(
        &self,
        state: &CycleState,
        pod: &Arc<Pod>,
        node_name: &str,
    ) -> Status {
        let start = Instant::now();
        let mut waits: HashMap<String, Duration> = HashMap::new();
        for e in &self.permit {
            let Some(p) = e.plugin.as_permit() else {
                continue;
            };
            let t = Instant::now();
            let (s, timeout) = p.permit(state, pod, node_name).await;
            self.observe_plugin(state, e.name(), "Permit", &s, t);
            match s.code() {
                Code::Success => {}
                Code::Wait => {
                    waits.insert(e.name().to_owned(), timeout.min(MAX_PERMIT_TIMEOUT));
                }
                _ if s.is_rejected() => {
                    let s = s.with_plugin(e.name());
                    self.observe_point("Permit", &s, start);
                    return s;
                }
                _ => {
                    let s = plugin_error("Permit", e.name(), &s);
                    self.observe_point("Permit", &s, start);
                    return s;
                }
            }
        }
        let s = if waits.is_empty() {
            Status::success()
        } else {
            self.handle
                .waiting_pods()
                .add(WaitingPod::new(pod.clone(), waits));
            Status::wait()
        };
        self.observe_point("Permit", &s, start);
        s
    }

    /// Whether the pod waits at Permit.
    #[must_use]
    pub fn will_wait_on_permit(&self, pod: &Pod) -> bool {
        pod.metadata
            .uid
            .as_deref()
            .is_some_and(|u| self.handle.waiting_pods().get(u).is_some())
    }

    /// Blocks the binding task until every waiting Permit plugin allowed the pod, one
    /// rejected it, or a timeout fired. Success immediately when the pod does not wait.
    pub async fn wait_on_permit(&self, pod: &Pod) -> Status {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return Status::success();
        };
        let Some(wp) = self.handle.waiting_pods().get(uid) else {
            return Status::success();
        };
        let s = wp.wait().await;
        self.handle.waiting_pods().remove(uid);
        s
    }

    /// Runs PreBindPreFlight of every PreBind plugin: Skip puts a plugin's PreBind out of this
    /// pod's binding cycle.
    pub async fn run_pre_bind_pre_flights(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        node_name: &str,
    ) -> Status {
        let start = Instant::now();
        let mut skip = HashSet::new();
        for e in &self.pre_bind {
            let Some(p) = e.plugin.as_pre_bind() else {
                continue;
            };
            let s = p.pre_bind_pre_flight(state, pod, node_name).await;
            match s.code() {
                Code::Success => {}
                Code::Skip => {
                    skip.insert(e.name().to_owned());
                }
                _ => {
                    let s = Status::error(format!(
                        "running PreBindPreFlight {:?}: {}",
                        e.name(),
                        s.message()
                    ))
                    .with_plugin(e.name());
                    self.observe_point("PreBindPreFlight", &s, start);
                    return s;
                }
            }
        }
        state.set_skip_pre_bind_plugins(skip);
        let s = Status::success();
        self.observe_point("PreBindPreFlight", &s, start);
        s
    }

    /// Runs PreBind plugins; the first failure fails the binding cycle.
    pub async fn run_pre_bind_plugins(
        &self,
        state: &CycleState,
        pod: &Pod,
        node_name: &str,
    ) -> Status {
        let start = Instant::now();
        for e in &self.pre_bind {
            if state.skip_pre_bind_plugins().contains(e.name()) {
                continue;
            }
            let Some(p) = e.plugin.as_pre_bind() else {
                continue;
            };
            let t = Instant::now();
            let s = p.pre_bind(state, pod, node_name).await;
            self.observe_plugin(state, e.name(), "PreBind", &s, t);
            if !s.is_success() {
                let s = rejection_or_error("PreBind", e.name(), s);
                self.observe_point("PreBind", &s, start);
                return s;
            }
        }
        let s = Status::success();
        self.observe_point("PreBind", &s, start);
        s
    }

    /// Runs Bind plugins until one does not Skip. All skipping is a Skip status (no binder
    /// took the pod), which the scheduler treats as a failure.
    pub async fn run_bind_plugins(&self, state: &CycleState, pod: &Pod, node_name: &str) -> Status {
        let start = Instant::now();
        let mut status = Status::skip();
        for e in &self.bind {
            let Some(p) = e.plugin.as_bind() else {
                continue;
            };
            let t = Instant::now();
            let s = p.bind(state, pod, node_name).await;
            self.observe_plugin(state, e.name(), "Bind", &s, t);
            if s.is_skip() {
                continue;
            }
            status = if s.is_success() || s.is_rejected() {
                s.with_plugin(e.name())
            } else {
                plugin_error("Bind", e.name(), &s)
            };
            break;
        }
        self.observe_point("Bind", &status, start);
        status
    }

    /// Runs PostBind plugins.
    pub async fn run_post_bind_plugins(&self, state: &CycleState, pod: &Pod, node_name: &str) {
        let start = Instant::now();
        for e in &self.post_bind {
            if let Some(p) = e.plugin.as_post_bind() {
                let t = Instant::now();
                p.post_bind(state, pod, node_name).await;
                self.observe_plugin(state, e.name(), "PostBind", &Status::success(), t);
            }
        }
        self.observe_point("PostBind", &Status::success(), start);
    }
}

/// A Filter plugin's non-success status as the node's status: a rejection keeps its code and
/// names the plugin, anything else becomes an Error naming it.
pub(crate) fn filter_outcome(plugin: &str, s: Status) -> Status {
    if s.is_rejected() {
        return s.with_plugin(plugin);
    }
    Status::error(format!("running {plugin:?} filter plugin: {}", s.message())).with_plugin(plugin)
}

/// A plugin's failure at `point` as an Error status naming the plugin (upstream wraps
/// non-rejection codes this way).
fn plugin_error(point: &str, plugin: &str, s: &Status) -> Status {
    Status::error(format!(
        "running {point} plugin {plugin:?}: {}",
        s.message()
    ))
    .with_plugin(plugin)
}

/// Rejections keep their code (they decide backoff and requeueing); anything else becomes an
/// Error naming the plugin.
fn rejection_or_error(point: &str, plugin: &str, s: Status) -> Status {
    if s.is_rejected() {
        s.with_plugin(plugin)
    } else {
        plugin_error(point, plugin, &s)
    }
}
