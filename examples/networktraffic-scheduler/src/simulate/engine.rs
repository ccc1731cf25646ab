//! One simulated run: the real `OfflineScheduler` (framework, queue, cache, plugins) against
//! the scenario's nodes and pods, with simulated time on a `FakeClock` and the in-memory
//! traffic source feeding NetworkTraffic.
//!
//! Time moves from event to event — pod arrivals, traffic refreshes, backoff ticks — and
//! never while a pod is being scheduled: scheduling takes no simulated time, so placements
//! depend only on the scenario and the seed, never on how fast this machine is. Wall-clock
//! time is measured separately (per attempt, and the scheduler's busy time behind each
//! pod's latency).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use indicatif::ProgressBar;
use k8s_openapi::{
    api::core::v1::{
        Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint,
        Toleration,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use ksched::{Scheduler, offline::MemoryBinder};
use ksched_framework::{
    EventRecorder, EventType, Handle, Plugin, PluginArgs, PluginError, pod_key,
};
use ksched_networktraffic::{EXPECTED_BANDWIDTH_ANNOTATION, NetworkTraffic, NetworkTrafficArgs};
use ksched_queue::{Clock, FakeClock};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use super::{
    scenario::{Arrival, ProfileKind, Scenario, group_names},
    traffic::{Balance, NodeLink, Placement, TrafficSource, sim_unix},
};

/// The profile's `schedulerName` in the generated configuration.
const SCHEDULER_NAME: &str = "ksched-sim";
/// The namespace of the simulated pods.
const NAMESPACE: &str = "sim";
/// How often the queue's own loop flushes unschedulable pods (upstream's 30 s).
const LEFTOVER_FLUSH: Duration = Duration::from_secs(30);
/// Simulated time after the last arrival when a run stops even if pods still wait in backoff
/// (a scheduler error on every attempt would otherwise retry forever).
const SETTLE_LIMIT: Duration = Duration::from_secs(3600);

/// What a run found for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodOutcome {
    /// Pod name.
    pub name: String,
    /// Index of its group in the scenario.
    pub group: usize,
    /// Simulated arrival time.
    pub arrival: Duration,
    /// Expected bandwidth, bytes/s.
    pub bandwidth: f64,
    /// The node it was bound to.
    pub node: Option<String>,
    /// Simulated time of the binding.
    pub bound_at: Option<Duration>,
    /// Scheduling attempts (1 for a pod bound at the first try).
    pub attempts: u32,
    /// Arrival → bound: simulated waiting (queue, backoff) plus the scheduler's wall-clock busy
    /// time in between (the pods ahead of it in a burst).
    pub latency: Option<Duration>,
    /// The last FailedScheduling message.
    pub last_failure: Option<String>,
    /// Deleted by preemption after it was bound (`node` keeps where it ran).
    pub preempted: bool,
}

/// What a run found for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    /// Node name.
    pub name: String,
    /// Bytes/s before any simulated pod.
    pub baseline: f64,
    /// Bytes/s with every pod placed on it visible.
    pub after: f64,
    /// Link capacity, bytes/s.
    pub capacity: Option<f64>,
    /// Simulated pods bound to it.
    pub pods: usize,
}

/// A point of the traffic timeline: at simulated time `t`, the balance of what nodes really
/// carry (every pod placed so far) and of what the plugin last saw (the latest refresh, which
/// lags by the metric lag).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelinePoint {
    /// Simulated seconds.
    pub t: f64,
    /// Coefficient of variation of actual traffic.
    pub actual_cv: f64,
    /// Coefficient of variation of measured traffic.
    pub measured_cv: f64,
}

/// Everything one run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The profile.
    pub profile: ProfileKind,
    /// Per pod, in scenario order.
    pub pods: Vec<PodOutcome>,
    /// Per node, in scenario order.
    pub nodes: Vec<NodeOutcome>,
    /// Wall-clock time of each scheduling attempt (`schedule_one`'s scheduling cycle).
    pub attempt_wall: Vec<Duration>,
    /// Wall-clock time the scheduler was busy: attempts, bindings, informer updates.
    pub busy_wall: Duration,
    /// Simulated time at the end.
    pub sim_end: Duration,
    /// Balance over time, from 0 until every placed pod is visible in a refresh.
    pub timeline: Vec<TimelinePoint>,
}

impl RunResult {
    /// Pods bound (and not preempted since).
    #[must_use]
    pub fn bound(&self) -> usize {
        self.pods
            .iter()
            .filter(|p| p.node.is_some() && !p.preempted)
            .count()
    }

    /// Pods bound, then deleted by preemption.
    #[must_use]
    pub fn preempted(&self) -> usize {
        self.pods.iter().filter(|p| p.preempted).count()
    }

    /// Pods never bound.
    #[must_use]
    pub fn unschedulable(&self) -> usize {
        self.pods.iter().filter(|p| p.node.is_none()).count()
    }

    /// `(pod, node)` pairs: what determinism is about.
    #[cfg(test)]
    #[must_use]
    pub fn placements(&self) -> Vec<(String, Option<String>)> {
        self.pods
            .iter()
            .map(|p| (p.name.clone(), p.node.clone()))
            .collect()
    }
}

/// A run that could not start (a bad configuration built from the scenario).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Counts attempts (one event per attempt: `Scheduled` or `FailedScheduling`) and keeps the
/// last failure message, per pod key; collects the victims DefaultPreemption picked (without
/// an apiserver it only records `Preempted`, so the engine deletes them).
#[derive(Default)]
struct SimRecorder {
    attempts: Mutex<HashMap<String, (u32, Option<String>)>>,
    preempted: Mutex<Vec<String>>,
}

impl EventRecorder for SimRecorder {
    fn record(&self, pod: &Pod, _: EventType, reason: &str, _: &str, note: &str) {
        match reason {
            "Scheduled" | "FailedScheduling" => {
                let mut m = self.attempts.lock();
                let e = m.entry(pod_key(pod)).or_default();
                e.0 += 1;
                if reason == "FailedScheduling" {
                    e.1 = Some(note.to_owned());
                }
            }
            "Preempted" => self.preempted.lock().push(pod_key(pod)),
            _ => {}
        }
    }
}

/// The scenario expanded into Kubernetes objects and a time-ordered arrival list.
pub struct Prepared {
    nodes: Vec<Arc<Node>>,
    links: Vec<NodeLink>,
    pods: Vec<Arc<Pod>>,
    outcome_templates: Vec<PodOutcome>,
    /// `(time, pod index)` sorted by time, then scenario order.
    arrivals: Vec<(Duration, usize)>,
}

impl Prepared {
    /// Expands `scenario` (arrival times of Poisson groups drawn from its seed).
    #[must_use]
    pub fn new(scenario: &Scenario) -> Self {
        let mut nodes = Vec::new();
        let mut links = Vec::new();
        for g in &scenario.nodes {
            for name in group_names(&g.name, g.count) {
                nodes.push(Arc::new(build_node(&name, g)));
                links.push(NodeLink {
                    name,
                    baseline: g
                        .baseline_traffic
                        .as_ref()
                        .map_or(0.0, super::scenario::Qty::value),
                    capacity: g.link_capacity.as_ref().map(super::scenario::Qty::value),
                });
            }
        }
        let mut pods = Vec::new();
        let mut outcome_templates = Vec::new();
        let mut arrivals = Vec::new();
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        for (gi, g) in scenario.pods.iter().enumerate() {
            let names = group_names(&g.name, g.pod_count());
            let times = arrival_times(&g.arrival, names.len(), &mut rng);
            for (name, at) in names.into_iter().zip(times) {
                let bandwidth = g
                    .expected_bandwidth
                    .as_ref()
                    .map_or(0.0, super::scenario::Qty::value);
                arrivals.push((at, pods.len()));
                pods.push(Arc::new(build_pod(&name, g)));
                outcome_templates.push(PodOutcome {
                    name,
                    group: gi,
                    arrival: at,
                    bandwidth,
                    node: None,
                    bound_at: None,
                    attempts: 0,
                    latency: None,
                    last_failure: None,
                    preempted: false,
                });
            }
        }
        arrivals.sort_by_key(|&(t, i)| (t, i));
        Self {
            nodes,
            links,
            pods,
            outcome_templates,
            arrivals,
        }
    }
}

fn arrival_times(arrival: &Arrival, n: usize, rng: &mut StdRng) -> Vec<Duration> {
    match arrival {
        Arrival::At { at } => vec![at.get(); n],
        Arrival::Times { times } => {
            let last = times
                .last()
                .map_or(Duration::ZERO, super::scenario::Dur::get);
            (0..n)
                .map(|i| times.get(i).map_or(last, super::scenario::Dur::get))
                .collect()
        }
        Arrival::Rate {
            start,
            rate,
            poisson,
        } => {
            let mut t = start.get().as_secs_f64();
            (0..n)
                .map(|i| {
                    if *poisson {
                        // Exponential gap: -ln(U)/rate with U in (0, 1].
                        let u: f64 = 1.0 - rng.random::<f64>();
                        if i > 0 {
                            t += -u.ln() / rate;
                        }
                    } else if i > 0 {
                        t += 1.0 / rate;
                    }
                    Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX)
                })
                .collect()
        }
    }
}

fn quantities(m: &BTreeMap<String, super::scenario::Qty>) -> BTreeMap<String, Quantity> {
    m.iter()
        .map(|(k, v)| (k.clone(), Quantity(v.text().to_owned())))
        .collect()
}

fn build_node(name: &str, g: &super::scenario::NodeGroup) -> Node {
    let mut allocatable = quantities(&g.capacity);
    // Real nodes always report a pod limit; without one NodeResourcesFit allows none.
    allocatable
        .entry("pods".into())
        .or_insert_with(|| Quantity("110".into()));
    let mut labels = g.labels.clone();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| name.to_owned());
    let taints: Vec<Taint> = g
        .taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: (!t.value.is_empty()).then(|| t.value.clone()),
            effect: t.effect.as_str().to_owned(),
            time_added: None,
        })
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            uid: Some(format!("node-uid-{name}")),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(allocatable.clone()),
            allocatable: Some(allocatable),
            ..NodeStatus::default()
        }),
    }
}

fn build_pod(name: &str, g: &super::scenario::PodGroup) -> Pod {
    let annotations = g.expected_bandwidth.as_ref().map(|b| {
        BTreeMap::from([(
            EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
            b.text().to_owned(),
        )])
    });
    let tolerations: Vec<Toleration> = g
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: (!t.key.is_empty()).then(|| t.key.clone()),
            operator: t.operator.map(|o| format!("{o:?}")),
            value: (!t.value.is_empty()).then(|| t.value.clone()),
            effect: t.effect.map(|e| e.as_str().to_owned()),
            toleration_seconds: None,
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("pod-uid-{name}")),
            labels: (!g.labels.is_empty()).then(|| g.labels.clone()),
            annotations,
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some(SCHEDULER_NAME.into()),
            priority: g.priority,
            node_selector: (!g.node_selector.is_empty()).then(|| g.node_selector.clone()),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: (!g.requests.is_empty()).then(|| ResourceRequirements {
                    requests: Some(quantities(&g.requests)),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The KubeSchedulerConfiguration of a run, as JSON (a subset of YAML).
fn config_json(scenario: &Scenario, profile: ProfileKind) -> serde_json::Value {
    let mut plugins = json!({
        "bind": {"disabled": [{"name": "DefaultBinder"}], "enabled": [{"name": MemoryBinder::NAME}]},
    });
    let mut profile_json = json!({"schedulerName": SCHEDULER_NAME});
    if profile.uses_network_traffic() {
        plugins["multiPoint"] = json!({"enabled": [{"name": ksched_networktraffic::NAME, "weight": scenario.network_traffic.weight}]});
        if profile == ProfileKind::NoCompensation {
            // Score only: no Reserve, so nothing covers the time until the metrics catch up.
            plugins["reserve"] = json!({"disabled": [{"name": ksched_networktraffic::NAME}]});
        }
        profile_json["pluginConfig"] =
            json!([{"name": ksched_networktraffic::NAME, "args": plugin_args(scenario)}]);
    }
    profile_json["plugins"] = plugins;
    let mut config = json!({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        // One Filter/Score thread: the tie-break draws from the seeded generator in a fixed
        // order, so a run is reproducible.
        "parallelism": 1,
        "profiles": [profile_json],
    });
    if let Some(p) = scenario.percentage_of_nodes_to_score {
        config["percentageOfNodesToScore"] = json!(p);
    }
    config
}

/// NetworkTraffic's args: the scenario's, plus a placeholder address (never contacted) and
/// capacity mode when every node has a link capacity.
fn plugin_args(scenario: &Scenario) -> serde_json::Value {
    let mut args: serde_json::Map<String, serde_json::Value> = scenario
        .network_traffic
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    args.entry("prometheusAddress")
        .or_insert_with(|| json!("http://simulated.invalid:9090"));
    // The simulated source is keyed by node name.
    args.entry("nodeMapping").or_insert_with(|| json!("Label"));
    args.entry("nodeLabel").or_insert_with(|| json!("node"));
    if scenario.nodes.iter().all(|n| n.link_capacity.is_some()) {
        args.entry("linkCapacityFromMetric")
            .or_insert_with(|| json!(true));
    }
    serde_json::Value::Object(args)
}

/// Checks that the scenario's NetworkTraffic args are valid (before any run starts).
///
/// # Errors
/// The plugin's message naming the field.
pub fn check_plugin_args(scenario: &Scenario) -> Result<(), EngineError> {
    let args: NetworkTrafficArgs = PluginArgs::from_value(plugin_args(scenario))
        .decode()
        .map_err(|e| EngineError(format!("networkTraffic.args: {e}")))?;
    args.validate()
        .map_err(|e| EngineError(format!("networkTraffic.args: {e}")))?;
    Ok(())
}

/// Points of the timeline: evenly spaced samples from 0 until the last placement has shown up
/// in a refresh (and at least until `end`).
fn timeline(source: &TrafficSource, refresh: Duration, end: Duration) -> Vec<TimelinePoint> {
    const SAMPLES: u32 = 240;
    let until = source.last_placement().map_or(end, |last| {
        // The first refresh at or after last + lag.
        let visible = last + source.lag();
        let ticks = visible.as_nanos().div_ceil(refresh.as_nanos().max(1));
        let tick = refresh.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
        (tick + refresh / 2).max(end)
    });
    let last_refresh = |t: Duration| {
        let n = t.as_nanos() / refresh.as_nanos().max(1);
        refresh.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
    };
    (0..=SAMPLES)
        .map(|i| {
            let t = until * i / SAMPLES;
            TimelinePoint {
                t: t.as_secs_f64(),
                actual_cv: Balance::of(&source.actual_at(t)).cv,
                measured_cv: Balance::of(&source.measured(last_refresh(t))).cv,
            }
        })
        .collect()
}

type PluginSlot = Arc<Mutex<Option<Arc<NetworkTraffic>>>>;

/// Runs `scenario` under `profile`.
///
/// # Errors
/// [`EngineError`] when the scheduler cannot be built (e.g. bad plugin args).
#[allow(clippy::too_many_lines)]
pub async fn run(
    scenario: &Scenario,
    prepared: &Prepared,
    profile: ProfileKind,
    progress: &ProgressBar,
) -> Result<RunResult, EngineError> {
    let clock = Arc::new(FakeClock::new());
    let start = clock.now();
    let sim_now = Arc::new(Mutex::new(Duration::ZERO));
    let binder = MemoryBinder::new();
    let recorder = Arc::new(SimRecorder::default());
    let slot: PluginSlot = Arc::default();

    let mut builder = Scheduler::builder()
        .with_clock(clock.clone())
        .with_event_recorder(recorder.clone())
        .with_plugin(MemoryBinder::NAME, binder.factory());
    if profile.uses_network_traffic() {
        let slot = slot.clone();
        let sim_now = sim_now.clone();
        builder = builder.with_plugin(
            ksched_networktraffic::NAME,
            move |args: &PluginArgs, _: &Arc<Handle>| {
                let args: NetworkTrafficArgs = args.decode()?;
                let sim_now = sim_now.clone();
                let plugin = NetworkTraffic::without_refresher(&args)
                    .map_err(|e| PluginError::Other(Box::new(e)))?
                    .with_clock(Arc::new(move || sim_unix(*sim_now.lock())));
                let plugin = Arc::new(plugin);
                *slot.lock() = Some(plugin.clone());
                Ok(plugin as Arc<dyn Plugin>)
            },
        );
    }
    let sched = builder
        .with_config_yaml(config_json(scenario, profile).to_string())
        .build_offline()
        .map_err(|e| EngineError(e.to_string()))?;
    if let Some(fw) = sched.framework(SCHEDULER_NAME) {
        fw.set_tie_break_seed(scenario.seed);
    }
    for n in &prepared.nodes {
        sched.add_node(n.clone());
    }
    let plugin = slot.lock().clone();

    let node_index: HashMap<&str, usize> = prepared
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let pod_index: HashMap<String, usize> = prepared
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (pod_key(p), i))
        .collect();
    let mut source = TrafficSource::new(prepared.links.clone(), scenario.metric_lag.get());
    let mut outcomes = prepared.outcome_templates.clone();
    // The scheduler's accumulated busy time when each pod arrived.
    let mut busy_at_arrival = vec![Duration::ZERO; prepared.pods.len()];
    let mut current: Vec<Arc<Pod>> = prepared.pods.clone();
    let mut attempt_wall = Vec::with_capacity(prepared.pods.len());
    let mut busy = Duration::ZERO;

    let refresh = scenario.refresh_interval.get();
    let last_arrival = prepared.arrivals.last().map_or(Duration::ZERO, |a| a.0);
    let mut next_arrival = 0;
    let mut next_refresh = Duration::ZERO;
    let mut next_leftover = LEFTOVER_FLUSH;
    let mut t = Duration::ZERO;
    let mut bound_total = 0u64;
    // A guard against a pod that fails and is re-activated forever within one step.
    let max_attempts_per_step = 10 * prepared.pods.len() + 1000;

    loop {
        clock.set(start + t);
        *sim_now.lock() = t;
        if t >= next_refresh {
            if let Some(p) = &plugin {
                p.install_snapshot(source.snapshot(t));
            }
            while next_refresh <= t {
                next_refresh += refresh;
            }
        }
        while next_arrival < prepared.arrivals.len() && prepared.arrivals[next_arrival].0 <= t {
            let i = prepared.arrivals[next_arrival].1;
            busy_at_arrival[i] = busy;
            sched.apply_pod(None, prepared.pods[i].clone());
            next_arrival += 1;
        }
        sched.queue().flush_backoff_q_completed();
        if t >= next_leftover {
            sched.queue().flush_unschedulable_pods_leftover();
            while next_leftover <= t {
                next_leftover += LEFTOVER_FLUSH;
            }
        }

        // Schedule whatever is ready; bindings report back and may wake more pods, so repeat
        // until neither happens.
        let step_start = Instant::now();
        loop {
            let mut attempts = 0;
            while attempts < max_attempts_per_step {
                let a0 = Instant::now();
                if !sched.schedule_next().await {
                    break;
                }
                attempt_wall.push(a0.elapsed());
                attempts += 1;
                // Let the binding task run now, as it would beside the scheduling loop, so
                // its bind time is right.
                tokio::task::yield_now().await;
            }
            sched.wait_for_bindings().await;
            // Victims of preemption are deleted, as the apiserver would on the plugin's
            // request; their traffic goes with them.
            let victims = std::mem::take(&mut *recorder.preempted.lock());
            for key in &victims {
                let Some(&i) = pod_index.get(key) else {
                    continue;
                };
                if outcomes[i].node.is_some() && !outcomes[i].preempted {
                    sched.delete_pod(&current[i]);
                    source.remove(i);
                    outcomes[i].preempted = true;
                }
            }
            let mut done = binder.take();
            if done.is_empty() && victims.is_empty() {
                break;
            }
            // Report bindings in scenario order whatever order the tasks finished in.
            done.sort_by_key(|b| pod_index.get(&b.pod).copied());
            for b in done {
                let (Some(&i), Some(&ni)) =
                    (pod_index.get(&b.pod), node_index.get(b.node.as_str()))
                else {
                    continue;
                };
                let old = current[i].clone();
                let new = Arc::new(MemoryBinder::bound(&old, &b.node));
                sched.apply_pod(Some(old), new.clone());
                current[i] = new;
                let o = &mut outcomes[i];
                let busy_then = busy + b.at.saturating_duration_since(step_start);
                o.latency = Some((t - o.arrival) + busy_then.saturating_sub(busy_at_arrival[i]));
                o.node = Some(b.node);
                o.bound_at = Some(t);
                source.place(Placement {
                    pod: i,
                    node: ni,
                    at: t,
                    bandwidth: o.bandwidth,
                });
                bound_total += 1;
                progress.inc(1);
            }
        }
        busy += step_start.elapsed();
        progress.set_message(format!(
            "{profile}: t={:.0}s, {bound_total} bound",
            t.as_secs_f64()
        ));

        let pending = sched.queue().metrics().pending;
        let more = next_arrival < prepared.arrivals.len();
        if !more && pending.active == 0 && pending.backoff == 0 {
            break;
        }
        if t > last_arrival + SETTLE_LIMIT {
            break;
        }
        let mut next = next_refresh;
        if more {
            next = next.min(prepared.arrivals[next_arrival].0);
        }
        if pending.backoff > 0 || pending.active > 0 {
            next = next.min(t + Duration::from_secs(1));
        }
        t = next.max(t);
    }

    let events = recorder.attempts.lock();
    for (i, o) in outcomes.iter_mut().enumerate() {
        if let Some((attempts, failure)) = events.get(&pod_key(&prepared.pods[i])) {
            o.attempts = *attempts;
            o.last_failure.clone_from(failure);
        }
    }
    drop(events);
    let after = source.actual();
    let mut per_node = vec![0usize; prepared.links.len()];
    for o in outcomes.iter().filter(|o| !o.preempted) {
        if let Some(&ni) = o.node.as_deref().and_then(|n| node_index.get(n)) {
            per_node[ni] += 1;
        }
    }
    let nodes = prepared
        .links
        .iter()
        .zip(after)
        .zip(per_node)
        .map(|((l, after), pods)| NodeOutcome {
            name: l.name.clone(),
            baseline: l.baseline,
            after,
            capacity: l.capacity,
            pods,
        })
        .collect();
    let timeline = timeline(&source, refresh, t);
    Ok(RunResult {
        profile,
        pods: outcomes,
        nodes,
        attempt_wall,
        busy_wall: busy,
        sim_end: t,
        timeline,
    })
}
