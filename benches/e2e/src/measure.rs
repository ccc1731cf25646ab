//! One control plane, the nodes, and one measured run per scheduler and node count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_testenv::{
    Babysat, ControlPlane, ControlPlaneOptions, ExecOptions, KubeScheduler, KubeSchedulerOptions,
    NodeSpec, TestPod,
};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::Serialize;

use crate::metrics::{histogram, sum};
use crate::report::{Report, machine_description};
use crate::{BenchOptions, Error, Result, SchedulerKind};

/// Node creates in flight while preparing a node count.
const NODE_CREATE_CONCURRENCY: usize = 64;

/// CPU seconds (user + system) used during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuTimes {
    /// The scheduler under test.
    pub scheduler: f64,
    /// kube-apiserver.
    pub apiserver: f64,
    /// etcd.
    pub etcd: f64,
    /// This benchmark process (pod creator and watch).
    pub bench: f64,
}

/// Figures from the scheduler's own `/metrics` after a run (upstream names on both sides),
/// seconds unless noted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedulerMetrics {
    /// Mean of `scheduler_scheduling_attempt_duration_seconds{result="scheduled"}`.
    pub attempt_mean: Option<f64>,
    /// Its p99 (from the buckets).
    pub attempt_p99: Option<f64>,
    /// Mean of `scheduler_pod_scheduling_sli_duration_seconds` (queue entry → bound).
    pub sli_mean: Option<f64>,
    /// Its p99.
    pub sli_p99: Option<f64>,
    /// Mean of `scheduler_framework_extension_point_duration_seconds{extension_point="Bind"}`.
    pub bind_mean: Option<f64>,
    /// Mean of `scheduler_framework_extension_point_duration_seconds{extension_point="Filter"}`.
    pub filter_mean: Option<f64>,
    /// `scheduler_schedule_attempts_total{result="scheduled"}` (a count).
    pub scheduled: Option<f64>,
}

/// One scheduler on one node count.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// `ours` or `upstream`.
    pub scheduler: &'static str,
    /// Fake nodes.
    pub nodes: usize,
    /// Pods created.
    pub pods: usize,
    /// Pods seen bound (equals `pods` unless the run timed out).
    pub bound: usize,
    /// The run's namespace.
    pub namespace: String,
    /// Seconds from the scheduler's start to `/readyz` = 200.
    pub startup_seconds: f64,
    /// Per-second scheduling rates (pods/s), the first and the last partial seconds left out.
    pub samples: Vec<f64>,
    /// Average of `samples` (scheduler_perf's `SchedulingThroughput` Average).
    pub rate_avg: f64,
    /// Percentiles of `samples`.
    pub rate_p50: f64,
    /// 90th percentile of `samples`.
    pub rate_p90: f64,
    /// 99th percentile of `samples`.
    pub rate_p99: f64,
    /// Pods / (last binding − first create request; backlog mode: − the scheduler's start).
    pub overall_rate: f64,
    /// Seconds from the first create request (backlog mode: the scheduler's start) to the last
    /// pod seen bound.
    pub makespan_seconds: f64,
    /// Pods / seconds the creator took to create them all.
    pub create_rate: f64,
    /// Seconds the creator took.
    pub create_seconds: f64,
    /// Per-pod latency create reply → bound seen on the watch: 50th percentile, seconds.
    pub latency_p50: f64,
    /// 90th percentile.
    pub latency_p90: f64,
    /// 99th percentile.
    pub latency_p99: f64,
    /// Maximum.
    pub latency_max: f64,
    /// Pods seen bound before their create reply arrived (latency counted as 0).
    pub bound_before_reply: usize,
    /// Peak RSS of the scheduler process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// CPU time during the measured part.
    pub cpu: CpuTimes,
    /// From the scheduler's `/metrics`.
    pub metrics: SchedulerMetrics,
    /// `/proc/loadavg` before the run.
    pub load_before: String,
    /// `/proc/loadavg` after the run.
    pub load_after: String,
    /// The scheduler's log file.
    pub log: PathBuf,
}

pub(crate) async fn run(o: &BenchOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    if o.pods == 0 || o.node_counts.is_empty() || o.schedulers.is_empty() {
        return Err(Error(
            "nothing to run: need pods, node counts and schedulers".into(),
        ));
    }
    if o.schedulers.contains(&SchedulerKind::Ours) && !o.ours_bin.is_file() {
        return Err(Error(format!(
            "the networktraffic-scheduler binary {} does not exist (cargo build --release -p networktraffic-scheduler)",
            o.ours_bin.display()
        )));
    }
    ensure_crypto_provider();
    let started_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let load_at_start = loadavg();
    let temp;
    let work_dir = match &o.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| Error(format!("creating {}: {e}", work_dir.display())))?;
    progress("starting etcd + kube-apiserver (API limits lifted: APF off, no in-flight limits)");
    let cp = ControlPlane::start(ControlPlaneOptions {
        bin_dir: o.bin_dir.clone(),
        no_api_limits: true,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client().await?;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error(format!("HTTP client: {e}")))?;
    if o.warmup_pods > 0 {
        let t = Instant::now();
        warm_up(&cp, &client, o).await?;
        progress(&format!(
            "warm-up: {} pods created and deleted ({:.1}s)",
            o.warmup_pods,
            t.elapsed().as_secs_f64()
        ));
    }
    let mut runs = Vec::new();
    let mut existing_nodes = 0;
    for &nodes in &o.node_counts {
        let t = Instant::now();
        resize_nodes(&client, o, existing_nodes, nodes).await?;
        existing_nodes = nodes;
        progress(&format!(
            "{nodes} nodes ready ({:.1}s)",
            t.elapsed().as_secs_f64()
        ));
        let capacity_per_node = pods_per_node(o);
        if (capacity_per_node as usize).saturating_mul(nodes) < o.pods {
            return Err(Error(format!(
                "{nodes} nodes hold only {} of the {} pods; raise the node capacity",
                capacity_per_node as usize * nodes,
                o.pods
            )));
        }
        for &kind in &o.schedulers {
            let r = run_one(&cp, &client, &http, o, kind, nodes, &work_dir, progress).await?;
            progress(&format!(
                "{} on {nodes} nodes: {:.0} pods/s avg (p50 {:.0}), {:.0} pods/s end to end, created at {:.0} pods/s, latency p50 {:.0} ms p99 {:.0} ms, peak RSS {:.0} MiB, {}/{} bound",
                kind.as_str(),
                r.rate_avg,
                r.rate_p50,
                r.overall_rate,
                r.create_rate,
                r.latency_p50 * 1e3,
                r.latency_p99 * 1e3,
                r.peak_rss_kib as f64 / 1024.0,
                r.bound,
                r.pods
            ));
            runs.push(r);
        }
    }
    progress("stopping the control plane");
    drop(client);
    cp.stop().await?;
    Ok(Report {
        started_at,
        machine: machine_description(),
        load_at_start,
        options: crate::report::OptionsSummary::from(o),
        runs,
    })
}

/// Creates `warmup_pods` pods for a scheduler nobody runs, the way the runs do, then deletes them.
async fn warm_up(cp: &ControlPlane, client: &Client, o: &BenchOptions) -> Result<()> {
    let ns = cp.namespace("bench-warmup").await?;
    let tracker = Tracker::new(o.warmup_pods);
    create_pods(client, ns.name(), o, o.warmup_pods, "nobody", &tracker).await?;
    delete_pods(client, ns.name()).await
}

/// Creates pods `pod-0 .. pod-<count-1>` with `create_concurrency` requests in flight and
/// records when each create returned.
async fn create_pods(
    client: &Client,
    namespace: &str,
    o: &BenchOptions,
    count: usize,
    scheduler_name: &str,
    tracker: &Tracker,
) -> Result<Instant> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let pod = TestPod::new(format!("pod-{i}"))
                .cpu(o.pod_requests.0.clone())
                .memory(o.pod_requests.1.clone())
                .scheduler_name(scheduler_name);
            ksched_testenv::create_pod(client, namespace, &pod).await?;
            tracker
                .created
                .lock()
                .unwrap_or_else(PoisonError::into_inner)[i] = Some(Instant::now());
            Ok::<(), ksched_testenv::Error>(())
        })
        .buffer_unordered(o.create_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(Instant::now())
}

/// Deletes every pod of the namespace (grace period 0) and waits until they are gone.
async fn delete_pods(client: &Client, namespace: &str) -> Result<()> {
    let pods_api = Api::<Pod>::namespaced(client.clone(), namespace);
    pods_api
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default(),
        )
        .await?;
    let t_del = Instant::now();
    while !pods_api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
    {
        if t_del.elapsed() > Duration::from_secs(300) {
            return Err(Error(format!(
                "pods of {namespace} not deleted after 300 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Pods one node holds by CPU, memory and pod count (rough: plain decimal/binary quantities).
fn pods_per_node(o: &BenchOptions) -> u64 {
    let by_cpu = milli(&o.node_capacity.0)
        .zip(milli(&o.pod_requests.0))
        .map_or(u64::MAX, |(n, p)| n / p.max(1));
    let by_mem = bytes(&o.node_capacity.1)
        .zip(bytes(&o.pod_requests.1))
        .map_or(u64::MAX, |(n, p)| n / p.max(1));
    by_cpu.min(by_mem).min(u64::from(o.node_capacity.2))
}

fn milli(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

fn bytes(q: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| n * factor);
        }
    }
    q.parse().ok()
}

fn node_name(i: usize) -> String {
    format!("bench-node-{i}")
}

/// Creates nodes `existing..wanted` or deletes `wanted..existing`.
async fn resize_nodes(
    client: &Client,
    o: &BenchOptions,
    existing: usize,
    wanted: usize,
) -> Result<()> {
    let spec = NodeSpec::new()
        .cpu(o.node_capacity.0.clone())
        .memory(o.node_capacity.1.clone())
        .pods(o.node_capacity.2)
        .label("topology.kubernetes.io/zone", "zone-a");
    futures::stream::iter(existing..wanted)
        .map(|i| {
            let spec = &spec;
            async move { ksched_testenv::create_node(client, &node_name(i), spec).await }
        })
        .buffer_unordered(NODE_CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    futures::stream::iter(wanted..existing)
        .map(|i| async move { ksched_testenv::delete_node(client, &node_name(i)).await })
        .buffer_unordered(NODE_CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let listed = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    if listed != wanted {
        return Err(Error(format!("{listed} nodes exist, wanted {wanted}")));
    }
    Ok(())
}

/// The scheduler under test.
enum Running {
    Ours(Babysat, String),
    Upstream(KubeScheduler, String),
}

impl Running {
    fn base_url(&self) -> &str {
        match self {
            Running::Ours(_, u) | Running::Upstream(_, u) => u,
        }
    }

    fn pid(&self) -> Result<u32> {
        Ok(match self {
            Running::Ours(p, _) => p.pid()?,
            Running::Upstream(p, _) => p.pid()?,
        })
    }

    fn ensure_running(&self) -> Result<()> {
        match self {
            Running::Ours(p, _) => p.ensure_running()?,
            Running::Upstream(p, _) => p.ensure_running()?,
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        match self {
            Running::Ours(p, _) => p.log_path().to_owned(),
            Running::Upstream(p, _) => p.log_path().to_owned(),
        }
    }

    async fn stop(self) -> Result<()> {
        match self {
            Running::Ours(p, _) => p.stop().await?,
            Running::Upstream(p, _) => p.stop().await?,
        }
        Ok(())
    }
}

async fn start_scheduler(
    cp: &ControlPlane,
    o: &BenchOptions,
    kind: SchedulerKind,
    dir: &Path,
) -> Result<Running> {
    let port = ksched_testenv::free_port()?;
    match kind {
        SchedulerKind::Ours => {
            let config = dir.join("config.yaml");
            let yaml = format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\n\
                 kind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {kubeconfig:?}\n  qps: {qps}\n  burst: {burst}\n\
                 leaderElection:\n  leaderElect: false\n\
                 profiles:\n- schedulerName: {name:?}\n",
                kubeconfig = cp.kubeconfig_path().display().to_string(),
                qps = o.qps,
                burst = o.burst,
                name = o.scheduler_name,
            );
            std::fs::write(&config, yaml)
                .map_err(|e| Error(format!("writing {}: {e}", config.display())))?;
            let mut exec = ExecOptions::new(
                "networktraffic-scheduler",
                &o.ours_bin,
                dir.join("networktraffic-scheduler.log"),
            )
            .args([
                format!("--config={}", config.display()),
                format!("--bind-address=127.0.0.1:{port}"),
            ]);
            exec.env_remove.push("RUST_LOG".to_owned());
            exec.env.extend(o.ours_env.iter().cloned());
            let p = cp.exec(exec)?;
            Ok(Running::Ours(p, format!("http://127.0.0.1:{port}")))
        }
        SchedulerKind::Upstream => {
            let p = cp
                .start_kube_scheduler(KubeSchedulerOptions {
                    scheduler_name: o.scheduler_name.clone(),
                    qps: o.qps,
                    burst: o.burst,
                    verbosity: o.upstream_verbosity,
                    secure_port: Some(port),
                    ..KubeSchedulerOptions::default()
                })
                .await?;
            Ok(Running::Upstream(p, format!("https://127.0.0.1:{port}")))
        }
    }
}

async fn wait_ready(s: &Running, http: &reqwest::Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let url = format!("{}/readyz", s.base_url());
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        s.ensure_running()?;
        if Instant::now() >= deadline {
            return Err(Error(format!(
                "{url} did not answer 200 within {timeout:?} (log: {})",
                s.log_path().display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creation and binding instants per pod index, and the count of bound pods.
struct Tracker {
    created: Mutex<Vec<Option<Instant>>>,
    bound: Mutex<Vec<Option<Instant>>>,
    bound_count: AtomicUsize,
}

impl Tracker {
    fn new(pods: usize) -> Self {
        Tracker {
            created: Mutex::new(vec![None; pods]),
            bound: Mutex::new(vec![None; pods]),
            bound_count: AtomicUsize::new(0),
        }
    }

    fn saw(&self, pod: &Pod, now: Instant) {
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if !bound {
            return;
        }
        let Some(i) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("pod-"))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return;
        };
        let mut b = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot @ None) = b.get_mut(i) {
            *slot = Some(now);
            self.bound_count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Watches the namespace's pods; returns once the initial list is done.
async fn start_watch(
    client: &Client,
    namespace: &str,
    tracker: Arc<Tracker>,
) -> Result<tokio::task::JoinHandle<()>> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let stream = watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    tracker.saw(&p, now);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("pod watch: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .map_err(|_| Error("the pod watch did not start within 60 s".into()))?
        .map_err(|_| Error("the pod watch ended before it started".into()))?;
    Ok(task)
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    cp: &ControlPlane,
    client: &Client,
    http: &reqwest::Client,
    o: &BenchOptions,
    kind: SchedulerKind,
    nodes: usize,
    work_dir: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<RunResult> {
    let ns = cp
        .namespace(&format!("bench-{}-{nodes}n", kind.as_str()))
        .await?;
    let dir = work_dir.join(ns.name());
    std::fs::create_dir_all(&dir).map_err(|e| Error(format!("creating {}: {e}", dir.display())))?;
    let load_before = loadavg();
    let tracker = Arc::new(Tracker::new(o.pods));
    let watch = start_watch(client, ns.name(), tracker.clone()).await?;

    progress(&format!(
        "{}: starting on {nodes} nodes (namespace {})",
        kind.as_str(),
        ns.name()
    ));
    // Backlog mode: every pod exists (pending) before the scheduler starts.
    let mut precreated = None;
    if o.precreate {
        let t = Instant::now();
        let end = create_pods(client, ns.name(), o, o.pods, &o.scheduler_name, &tracker).await?;
        precreated = Some((t, end));
        progress(&format!(
            "{}: {} pods created in {:.1}s, starting the scheduler",
            kind.as_str(),
            o.pods,
            end.duration_since(t).as_secs_f64()
        ));
    }
    let others = [cp.apiserver_pid(), cp.info().etcd_pid, std::process::id()];
    let others0 = others.map(cpu_seconds);
    let t_start = Instant::now();
    let sched = start_scheduler(cp, o, kind, &dir).await?;
    wait_ready(&sched, http, Duration::from_secs(120)).await?;
    let startup_seconds = t_start.elapsed().as_secs_f64();
    let pid = sched.pid()?;
    let pids = [pid, others[0], others[1], others[2]];
    let mut cpu0 = pids.map(cpu_seconds);
    if o.precreate {
        // The whole drain counts, from the scheduler's start.
        cpu0 = [0.0, others0[0], others0[1], others0[2]];
    }

    // Create every pod while the scheduler runs, `create_concurrency` requests in flight.
    let t0 = if o.precreate { t_start } else { Instant::now() };
    let creator = (!o.precreate).then(|| {
        let client = client.clone();
        let ns_name = ns.name().to_owned();
        let tracker = tracker.clone();
        let o = o.clone();
        tokio::spawn(async move {
            create_pods(&client, &ns_name, &o, o.pods, &o.scheduler_name, &tracker).await
        })
    });

    // Sample the bound count every second (scheduler_perf's throughput collector).
    let mut ticks: Vec<(Instant, usize)> = vec![(t0, 0)];
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::from_std(t0) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let deadline = t0 + o.run_timeout;
    let mut timed_out = false;
    loop {
        interval.tick().await;
        let now = Instant::now();
        let c = tracker.bound_count.load(Ordering::Relaxed);
        ticks.push((now, c));
        if c >= o.pods {
            break;
        }
        if now >= deadline {
            timed_out = true;
            break;
        }
        if ticks.len().is_multiple_of(10) {
            progress(&format!(
                "{}: {c}/{} bound after {:.0}s",
                kind.as_str(),
                o.pods,
                now.duration_since(t0).as_secs_f64()
            ));
        }
        sched.ensure_running()?;
    }
    let (create_start, created_all) = match (creator, precreated) {
        (Some(c), _) => (
            t0,
            c.await.map_err(|e| Error(format!("creator task: {e}")))??,
        ),
        (None, Some(p)) => p,
        (None, None) => unreachable!("pods are created before or during the run"),
    };
    let peak_rss_kib = vm_hwm_kib(pid)?;
    let cpu1 = pids.map(cpu_seconds);
    let metrics_text = match http
        .get(format!("{}/metrics", sched.base_url()))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => {
            progress(&format!("cannot read {}/metrics: {e}", sched.base_url()));
            String::new()
        }
    };
    let log = sched.log_path();
    sched.stop().await?;
    std::fs::write(dir.join("metrics.txt"), &metrics_text)
        .map_err(|e| Error(format!("writing metrics: {e}")))?;
    watch.abort();
    let load_after = loadavg();

    // Remove this run's pods so the next scheduler starts from empty nodes.
    delete_pods(client, ns.name()).await?;

    let created = std::mem::take(
        &mut *tracker
            .created
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let bound = std::mem::take(&mut *tracker.bound.lock().unwrap_or_else(PoisonError::into_inner));
    let bound_count = bound.iter().filter(|b| b.is_some()).count();
    let mut bound_before_reply = 0;
    let mut latencies: Vec<f64> = created
        .iter()
        .zip(&bound)
        .filter_map(|(c, b)| {
            let (c, b) = ((*c)?, (*b)?);
            if b < c {
                bound_before_reply += 1;
                Some(0.0)
            } else {
                Some(b.duration_since(c).as_secs_f64())
            }
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let first_bound = bound.iter().flatten().min().copied();
    let last_bound = bound.iter().flatten().max().copied();
    let samples = rate_samples(&ticks, first_bound, last_bound);
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let makespan = last_bound.map_or(0.0, |l| l.duration_since(t0).as_secs_f64());
    let create_seconds = created_all.duration_since(create_start).as_secs_f64();
    if timed_out {
        progress(&format!(
            "{}: TIMED OUT after {:?}: {bound_count}/{} bound",
            kind.as_str(),
            o.run_timeout,
            o.pods
        ));
    }
    Ok(RunResult {
        scheduler: kind.as_str(),
        nodes,
        pods: o.pods,
        bound: bound_count,
        namespace: ns.name().to_owned(),
        startup_seconds,
        rate_avg: mean(&samples),
        rate_p50: percentile(&sorted, 0.50),
        rate_p90: percentile(&sorted, 0.90),
        rate_p99: percentile(&sorted, 0.99),
        samples,
        overall_rate: if makespan > 0.0 {
            bound_count as f64 / makespan
        } else {
            0.0
        },
        makespan_seconds: makespan,
        create_rate: o.pods as f64 / create_seconds.max(1e-9),
        create_seconds,
        latency_p50: percentile(&latencies, 0.50),
        latency_p90: percentile(&latencies, 0.90),
        latency_p99: percentile(&latencies, 0.99),
        latency_max: latencies.last().copied().unwrap_or(0.0),
        bound_before_reply,
        peak_rss_kib,
        cpu: CpuTimes {
            scheduler: cpu1[0] - cpu0[0],
            apiserver: cpu1[1] - cpu0[1],
            etcd: cpu1[2] - cpu0[2],
            bench: cpu1[3] - cpu0[3],
        },
        metrics: scheduler_metrics(&metrics_text),
        load_before,
        load_after,
        log,
    })
}

/// Per-second rates between consecutive ticks, keeping only whole seconds inside
/// [first binding, last binding] (scheduler_perf skips the first sample too). Short runs with no
/// whole second inside get one sample: the rate between the first and the last binding.
fn rate_samples(
    ticks: &[(Instant, usize)],
    first: Option<Instant>,
    last: Option<Instant>,
) -> Vec<f64> {
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let samples: Vec<f64> = ticks
        .windows(2)
        .filter(|w| w[0].0 >= first && w[1].0 <= last)
        .map(|w| (w[1].1 - w[0].1) as f64 / w[1].0.duration_since(w[0].0).as_secs_f64())
        .collect();
    if !samples.is_empty() {
        return samples;
    }
    let span = last.duration_since(first).as_secs_f64();
    let n = ticks.last().map_or(0, |t| t.1);
    if span > 0.0 && n > 1 {
        vec![(n - 1) as f64 / span]
    } else {
        vec![n as f64]
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn scheduler_metrics(text: &str) -> SchedulerMetrics {
    let attempt = histogram(
        text,
        "scheduler_scheduling_attempt_duration_seconds",
        &[("result", "scheduled")],
    );
    let sli = histogram(text, "scheduler_pod_scheduling_sli_duration_seconds", &[]);
    let ext = |point| {
        histogram(
            text,
            "scheduler_framework_extension_point_duration_seconds",
            &[("extension_point", point)],
        )
        .and_then(|h| h.mean())
    };
    SchedulerMetrics {
        attempt_mean: attempt.as_ref().and_then(|h| h.mean()),
        attempt_p99: attempt.as_ref().and_then(|h| h.quantile(0.99)),
        sli_mean: sli.as_ref().and_then(|h| h.mean()),
        sli_p99: sli.as_ref().and_then(|h| h.quantile(0.99)),
        bind_mean: ext("Bind"),
        filter_mean: ext("Filter"),
        scheduled: sum(
            text,
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled")],
        ),
    }
}

/// Peak resident set size of a process (`VmHWM` in `/proc/<pid>/status`), KiB.
fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error(format!("reading /proc/{pid}/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Error(format!("no VmHWM in /proc/{pid}/status")))
}

/// User + system CPU seconds of a process so far (0 if it cannot be read). Assumes the usual
/// 100 clock ticks per second.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 (utime) and 15 (stime); `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// The three load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// reqwest has no TLS provider of its own here: install rustls' ring provider once.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ksched-bench-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error(format!("creating {}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.9), 3.0);
        assert_eq!(percentile(&[], 0.9), 0.0);
    }

    #[test]
    fn samples_keep_whole_seconds_between_first_and_last_binding() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // Bindings from 0.5 s to 3.5 s: seconds 1-2 and 2-3 are whole.
        let ticks = [(s(0), 0), (s(1), 50), (s(2), 150), (s(3), 250), (s(4), 300)];
        let first = Some(t0 + Duration::from_millis(500));
        let last = Some(t0 + Duration::from_millis(3500));
        assert_eq!(rate_samples(&ticks, first, last), vec![100.0, 100.0]);
        // Everything inside one second: one sample from first to last binding.
        let ticks = [(s(0), 0), (s(1), 11)];
        let last = Some(t0 + Duration::from_millis(600));
        let one = rate_samples(&ticks, first, last);
        assert_eq!(one.len(), 1);
        assert!((one[0] - 100.0).abs() < 1e-6);
    }

    #[test]
    fn capacity_per_node() {
        let o = BenchOptions::new(PathBuf::new());
        // 4 CPU / 100m = 40; 32Gi / 500Mi = 65; 110 pods.
        assert_eq!(pods_per_node(&o), 40);
    }
}
