//! [`Scheduler`] and its builder: configuration, profiles, queue, cache, informers, leader
//! election, HTTP, and the scheduling loop.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ksched_cache::Cache;
use ksched_framework::{
    EventRecorder, Framework, Handle, Plugin, PluginArgs, PluginError, Registry, Snapshot,
    config::{KubeSchedulerConfiguration, SchedulerConfig},
    runtime::{FrameworkOptions, Parallelizer},
};
use ksched_queue::{PriorityQueue, QueueConfig};
use kube::Client;
use parking_lot::Mutex;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry as MetricsRegistry,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    Error, Result,
    client::build_client,
    eventhandlers::{self, Handlers, PodLister},
    events::KubeEventRecorder,
    http::{self, Health},
    leader::Election,
    metrics::{CacheType, SchedulerMetrics},
    pod_status::StatusUpdates,
    schedule_one::BINDING_DRAIN_TIMEOUT,
};

/// What schedule_one and the handlers share.
pub(crate) struct Inner {
    pub(crate) profiles: Arc<HashMap<String, Arc<Framework>>>,
    pub(crate) queue: Arc<PriorityQueue>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) client: Option<Client>,
    pub(crate) metrics: SchedulerMetrics,
    pub(crate) pods: Arc<PodLister>,
    pub(crate) snapshot: Mutex<Arc<Snapshot>>,
    pub(crate) empty_snapshot: Arc<Snapshot>,
    pub(crate) bindings: TaskTracker,
    pub(crate) status_updates: StatusUpdates,
}

enum ConfigSource {
    Defaults,
    File(PathBuf),
    Yaml(String),
    Raw(Box<KubeSchedulerConfiguration>),
}

/// Builds a [`Scheduler`], like upstream's `app.NewSchedulerCommand(app.WithPlugin(...))`.
///
/// An out-of-tree Filter plugin registered next to the in-tree ones; the configuration file
/// enables it in a profile by name (`plugins.filter.enabled: [{name: NotDraining}]`):
///
/// ```no_run
/// # async fn run() -> Result<(), ksched::Error> {
/// use std::sync::Arc;
///
/// use k8s_openapi::api::core::v1::Pod;
/// use ksched::Scheduler;
/// use ksched_framework::{CycleState, FilterPlugin, NodeInfo, Plugin, Status};
/// use tokio_util::sync::CancellationToken;
///
/// /// Rejects nodes labelled `example.com/draining`.
/// struct NotDraining;
///
/// impl Plugin for NotDraining {
///     fn name(&self) -> &str {
///         "NotDraining"
///     }
///     fn as_filter(&self) -> Option<&dyn FilterPlugin> {
///         Some(self)
///     }
/// }
///
/// impl FilterPlugin for NotDraining {
///     fn filter(&self, _state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
///         let draining = node
///             .node()
///             .and_then(|n| n.metadata.labels.as_ref())
///             .is_some_and(|l| l.contains_key("example.com/draining"));
///         if draining {
///             Status::unschedulable("node is draining")
///         } else {
///             Status::success()
///         }
///     }
/// }
///
/// let scheduler = Scheduler::builder()
///     .with_plugin("NotDraining", |_args, _handle| {
///         Ok(Arc::new(NotDraining) as Arc<dyn Plugin>)
///     })
///     .with_config_file("/etc/kubernetes/scheduler-config.yaml")
///     .build()
///     .await?;
/// scheduler.run(CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
pub struct SchedulerBuilder {
    registry: Registry,
    errors: Vec<Error>,
    config: ConfigSource,
    client: Option<Client>,
    bind_address: SocketAddr,
    leader_elect: Option<bool>,
    kubeconfig: Option<PathBuf>,
    identity: Option<String>,
    recorder: Option<Arc<dyn EventRecorder>>,
    clock: Option<Arc<dyn ksched_queue::Clock>>,
    metric_hooks: Vec<MetricsHook>,
    trim_assigned_pods: bool,
}

impl SchedulerBuilder {
    fn new() -> Self {
        Self {
            registry: ksched_plugins::in_tree_registry(),
            errors: Vec::new(),
            config: ConfigSource::Defaults,
            client: None,
            bind_address: SocketAddr::from(([0, 0, 0, 0], 10259)),
            leader_elect: None,
            kubeconfig: None,
            identity: None,
            recorder: None,
            clock: None,
            metric_hooks: Vec::new(),
            trim_assigned_pods: true,
        }
    }

    /// Registers an out-of-tree plugin (upstream `app.WithPlugin`).
    #[must_use]
    pub fn with_plugin<F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&PluginArgs, &Arc<Handle>) -> std::result::Result<Arc<dyn Plugin>, PluginError>
            + Send
            + Sync
            + 'static,
    {
        if let Err(e) = self.registry.register(name, factory) {
            self.errors.push(e.into());
        }
        self
    }

    /// Reads the KubeSchedulerConfiguration from a file.
    #[must_use]
    pub fn with_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = ConfigSource::File(path.into());
        self
    }

    /// Uses KubeSchedulerConfiguration YAML text.
    #[must_use]
    pub fn with_config_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.config = ConfigSource::Yaml(yaml.into());
        self
    }

    /// Uses a KubeSchedulerConfiguration struct.
    #[must_use]
    pub fn with_config(mut self, config: KubeSchedulerConfiguration) -> Self {
        self.config = ConfigSource::Raw(Box::new(config));
        self
    }

    /// Uses this client instead of one built from `clientConnection`.
    #[must_use]
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen (default `0.0.0.0:10259`).
    #[must_use]
    pub fn with_bind_address(mut self, addr: SocketAddr) -> Self {
        self.bind_address = addr;
        self
    }

    /// Overrides `leaderElection.leaderElect`.
    #[must_use]
    pub fn with_leader_election(mut self, enabled: bool) -> Self {
        self.leader_elect = Some(enabled);
        self
    }

    /// Overrides `clientConnection.kubeconfig`.
    #[must_use]
    pub fn with_kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// The identity in the Lease (default: hostname + random suffix, as upstream).
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Whether the pod informer drops, from pods bound to a node, the fields no in-tree plugin
    /// reads of them (default `true`, a deviation from upstream that saves memory; see
    /// [`crate::eventhandlers::trim_assigned_pod`] for the list). `false` keeps bound pods
    /// whole but for `managedFields`, as upstream: for custom plugins that read, e.g., the
    /// tolerations or environment of a node's existing pods.
    #[must_use]
    pub fn with_assigned_pod_trim(mut self, enabled: bool) -> Self {
        self.trim_assigned_pods = enabled;
        self
    }

    /// Records events with this recorder instead of the events API.
    #[must_use]
    pub fn with_event_recorder(mut self, recorder: Arc<dyn EventRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Validates the configuration, builds the client, the profiles, the queue and the cache.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration (file, field path, problem),
    /// [`Error::DuplicatePlugin`], [`Error::Client`].
    pub async fn build(mut self) -> Result<Scheduler> {
        let config = self.load_config()?;
        let client = match self.client.take() {
            Some(c) => c,
            None => {
                let cc = &config.client_connection;
                build_client(cc.kubeconfig.as_deref(), cc.qps, cc.burst).await?
            }
        };
        let identity = self.identity.take().unwrap_or_else(default_identity);
        // Our own publisher is kept to be flushed at shutdown; a recorder given to the builder
        // is the caller's to flush.
        let (recorder, events): (Arc<dyn EventRecorder>, _) = match self.recorder.take() {
            Some(r) => (r, None),
            None => {
                let events = Arc::new(KubeEventRecorder::start(
                    client.clone(),
                    "ksched",
                    Some(hostname()),
                ));
                (events.clone(), Some(events))
            }
        };
        let inner = self.assemble(&config, Some(client), recorder)?;
        Ok(Scheduler {
            inner,
            config,
            bind_address: self.bind_address,
            identity,
            health: Arc::new(Health::default()),
            metric_hooks: std::mem::take(&mut self.metric_hooks),
            events,
            trim_assigned_pods: self.trim_assigned_pods,
        })
    }

    /// Builds a scheduler without an apiserver: the caller plays the informers and registers
    /// an in-memory Bind plugin (the simulator does). Same queue, cache, frameworks and
    /// `schedule_one` as [`SchedulerBuilder::build`].
    ///
    /// # Errors
    /// As [`SchedulerBuilder::build`], minus the client.
    pub fn build_offline(mut self) -> Result<crate::offline::OfflineScheduler> {
        let config = self.load_config()?;
        let recorder = self
            .recorder
            .take()
            .unwrap_or_else(|| Arc::new(ksched_framework::NoopRecorder));
        let inner = self.assemble(&config, None, recorder)?;
        Ok(crate::offline::OfflineScheduler::new(inner, config))
    }

    /// Adds metrics of an out-of-tree plugin to `/metrics`: `register` is called with the
    /// scheduler's registry when the server starts (metric names keep their own prefix).
    #[must_use]
    pub fn with_metrics<F>(mut self, register: F) -> Self
    where
        F: Fn(&mut MetricsRegistry) + Send + Sync + 'static,
    {
        self.metric_hooks.push(Arc::new(register));
        self
    }

    /// The queue's clock (default: the real one). Offline runs use a fake clock to drive
    /// backoff in simulated time.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn ksched_queue::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn load_config(&mut self) -> Result<SchedulerConfig> {
        if let Some(e) = self.errors.pop() {
            return Err(e);
        }
        let mut config = match &self.config {
            ConfigSource::Defaults => {
                SchedulerConfig::from_raw(KubeSchedulerConfiguration::default(), &self.registry)?
            }
            ConfigSource::File(p) => SchedulerConfig::from_file(p, &self.registry)?,
            ConfigSource::Yaml(y) => SchedulerConfig::from_yaml(y, None, &self.registry)?,
            ConfigSource::Raw(r) => SchedulerConfig::from_raw((**r).clone(), &self.registry)?,
        };
        if let Some(le) = self.leader_elect {
            config.leader_election.leader_elect = le;
        }
        if let Some(kc) = self.kubeconfig.take() {
            config.client_connection.kubeconfig = Some(kc);
        }
        Ok(config)
    }

    fn assemble(
        &mut self,
        config: &SchedulerConfig,
        client: Option<Client>,
        recorder: Arc<dyn EventRecorder>,
    ) -> Result<Arc<Inner>> {
        let metrics = SchedulerMetrics::default();
        let parallelizer = Parallelizer::new(config.parallelism).map_err(|e| {
            Error::Builder(format!(
                "starting {} Filter/Score threads: {e}",
                config.parallelism
            ))
        })?;
        let options = FrameworkOptions {
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            parallelizer,
            metrics: Some(metrics.framework.clone()),
        };
        let mut profiles = HashMap::new();
        let mut queue_config =
            QueueConfig::default().with_backoff(config.pod_initial_backoff, config.pod_max_backoff);
        queue_config.pod_max_in_unschedulable_pods_duration =
            config.pod_max_in_unschedulable_pods_duration;
        if let Some(clock) = self.clock.take() {
            queue_config = queue_config.with_clock(clock);
        }
        let mut first: Option<Arc<Framework>> = None;
        for p in &config.profiles {
            let handle = Arc::new(Handle::new(
                &p.scheduler_name,
                client.clone(),
                recorder.clone(),
            ));
            let fw = Framework::new(p, &self.registry, handle, options.clone())
                .map_err(|e| e.in_file(config.file.clone()))?;
            queue_config =
                queue_config.with_pre_enqueue(&p.scheduler_name, fw.pre_enqueue_plugins());
            for (plugin, events) in fw.enqueue_extensions() {
                queue_config =
                    queue_config.with_hints(&p.scheduler_name, plugin, events.iter().cloned());
            }
            first.get_or_insert_with(|| fw.clone());
            profiles.insert(p.scheduler_name.clone(), fw);
        }
        if let Some(fw) = &first
            && fw.queue_sort_plugin().name() != ksched_plugins::names::PRIORITY_SORT
        {
            let fw = fw.clone();
            queue_config = queue_config.with_less(Arc::new(move |a, b| fw.less(a, b)));
        }
        let queue = Arc::new(
            PriorityQueue::new(queue_config)
                .map_err(|e| Error::Builder(format!("building the scheduling queue: {e}")))?,
        );
        for fw in profiles.values() {
            fw.handle().set_nominator(queue.clone());
            fw.handle().set_activator(queue.clone());
        }
        Ok(Arc::new(Inner {
            profiles: Arc::new(profiles),
            queue,
            cache: Arc::new(Cache::new()),
            client,
            metrics,
            pods: Arc::new(PodLister::default()),
            snapshot: Mutex::new(Arc::new(Snapshot::default())),
            empty_snapshot: Arc::new(Snapshot::default()),
            bindings: TaskTracker::new(),
            status_updates: StatusUpdates::default(),
        }))
    }
}

/// Registers extra metrics into the scheduler's registry.
type MetricsHook = Arc<dyn Fn(&mut MetricsRegistry) + Send + Sync>;

/// This host's name (the pod's name in a Deployment), as Go's `os.Hostname`.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "ksched".into())
}

fn default_identity() -> String {
    let suffix: u32 = rand::random();
    format!("{}_{suffix:08x}", hostname())
}

/// A built scheduler; [`Scheduler::run`] runs it until shutdown.
pub struct Scheduler {
    inner: Arc<Inner>,
    config: SchedulerConfig,
    bind_address: SocketAddr,
    identity: String,
    health: Arc<Health>,
    metric_hooks: Vec<MetricsHook>,
    /// The events publisher to flush at shutdown, when it is ours.
    events: Option<Arc<KubeEventRecorder>>,
    /// [`SchedulerBuilder::with_assigned_pod_trim`].
    trim_assigned_pods: bool,
}

/// Exports the queue's counters at scrape time.
#[derive(Debug)]
struct QueueCollector(Arc<PriorityQueue>);

impl Collector for QueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let m = self.0.metrics();
        let p = m.pending;
        let mut gauge = encoder.encode_descriptor(
            "pending_pods",
            "Number of pending pods, by the queue type.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (q, v) in [
            ("active", p.active),
            ("backoff", p.backoff),
            ("unschedulable", p.unschedulable),
            ("gated", p.gated),
        ] {
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                .encode(gauge.encode_family(&[("queue", q)])?)?;
        }
        let mut counter = encoder.encode_descriptor(
            "queue_incoming_pods",
            "Number of pods added to scheduling queues by event and queue type.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for i in &m.incoming {
            ConstCounter::new(i.count).encode(
                counter
                    .encode_family(&[("queue", i.queue.as_str()), ("event", i.event.as_str())])?,
            )?;
        }
        Ok(())
    }
}

impl Scheduler {
    /// A builder with the in-tree plugins registered.
    #[must_use]
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::new()
    }

    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Profile names.
    #[must_use]
    pub fn profile_names(&self) -> Vec<String> {
        self.inner.profiles.keys().cloned().collect()
    }

    /// Runs until `shutdown` is cancelled or leadership is lost.
    ///
    /// On `shutdown`: stop popping, release the Lease while the bindings in flight get up to
    /// 30 s and then the `PodScheduled` status updates up to 5 s, stop the HTTP server (at most
    /// 1 s), return `Ok` — at most about 36 s, and at once when nothing is in flight. What is
    /// still running then is cancelled when the caller drops the runtime; its pods are left for
    /// the next leader. On lost leadership: return [`Error::LeaderElection`] without waiting for
    /// bindings, as upstream exits at once.
    ///
    /// # Errors
    /// Serving the HTTP endpoints failed, the election failed, or leadership was lost.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let inner = self.inner.clone();
        let mut registry = MetricsRegistry::default();
        inner.metrics.register(&mut registry);
        registry
            .sub_registry_with_prefix("scheduler")
            .register_collector(Box::new(QueueCollector(inner.queue.clone())));
        for hook in &self.metric_hooks {
            hook(&mut registry);
        }
        let stop = shutdown.child_token();
        let (addr, http_task) = http::serve(
            self.bind_address,
            self.health.clone(),
            Arc::new(registry),
            stop.clone(),
        )
        .await?;
        tracing::info!(%addr, profiles = ?self.profile_names(), "serving /healthz, /readyz, /metrics");
        self.health
            .set_not_ready("waiting for the pod and node informers to list");

        let client = inner
            .client
            .clone()
            .ok_or_else(|| Error::Builder("no kube client".into()))?;
        let handlers = Handlers {
            cache: inner.cache.clone(),
            queue: inner.queue.clone(),
            profiles: inner.profiles.clone(),
            pods: inner.pods.clone(),
        };
        let (mut synced, informers) = eventhandlers::start(
            client.clone(),
            handlers,
            stop.clone(),
            self.trim_assigned_pods,
        );
        let flushes = inner.queue.run();
        let cache_metrics = spawn_cache_metrics(inner.clone(), stop.clone());

        let (outcome, election) = self
            .lead_and_schedule(&inner, client, &mut synced, &shutdown)
            .await;
        let started = std::time::Instant::now();
        inner.queue.close();
        inner.bindings.close();
        inner.status_updates.tracker.close();
        match (&outcome, election) {
            (Ok(()), election) => {
                // Graceful: release the Lease at once (the standby takes over without waiting
                // for it to expire) while the bindings in flight finish.
                let release = async {
                    if let Some(e) = election {
                        e.release().await;
                    }
                };
                tokio::join!(release, drain(&inner));
                // The bindings' and failures' last events, then the process may go.
                if let Some(events) = &self.events
                    && tokio::time::timeout(EVENTS_DRAIN_TIMEOUT, events.flush())
                        .await
                        .is_err()
                {
                    tracing::warn!("events not published after {EVENTS_DRAIN_TIMEOUT:?}; dropped");
                }
            }
            (Err(_), Some(e)) => {
                // The Lease is someone else's now (or unreachable): never release it, and do
                // not wait for our bindings either — the new leader schedules; a binding of
                // ours that still lands is answered 409 on its side. Upstream exits at once.
                e.abandon();
            }
            (Err(_), None) => {}
        }
        stop.cancel();
        for t in informers.into_iter().chain(flushes).chain([cache_metrics]) {
            t.abort();
        }
        // Graceful HTTP shutdown waits for open connections; a scraper holding one must not
        // hold the process.
        if tokio::time::timeout(HTTP_SHUTDOWN_TIMEOUT, http_task)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after {HTTP_SHUTDOWN_TIMEOUT:?}; closing");
        }
        tracing::info!(took = ?started.elapsed(), "shutdown complete");
        outcome
    }

    /// Waits for the informers, campaigns (when leader election is on) and schedules until
    /// shutdown or lost leadership; returns the outcome and the election, which the caller
    /// releases or abandons.
    async fn lead_and_schedule(
        &self,
        inner: &Arc<Inner>,
        client: Client,
        synced: &mut eventhandlers::Synced,
        shutdown: &CancellationToken,
    ) -> (Result<()>, Option<Election>) {
        tokio::select! {
            () = shutdown.cancelled() => return (Ok(()), None),
            () = synced.wait() => {}
        }
        self.health.set_ready();
        tracing::info!(
            nodes = inner.cache.node_count(),
            pods = inner.pods.len(),
            "informers synced"
        );
        let mut election = if self.config.leader_election.leader_elect {
            // A Lease we may not use (missing RBAC, apiserver down) is retried, not fatal; the
            // replica is not ready meanwhile, since it could never take over.
            let health = self.health.clone();
            let Some(mut e) = Election::start_retrying(
                client,
                &self.config.leader_election,
                &self.identity,
                shutdown,
                |why| health.set_not_ready(format!("cannot campaign for leadership: {why}")),
            )
            .await
            else {
                return (Ok(()), None);
            };
            self.health.set_ready();
            tracing::info!(identity = %self.identity, lease = %format!("{}/{}", self.config.leader_election.resource_namespace, self.config.leader_election.resource_name), "waiting to become leader");
            tokio::select! {
                () = shutdown.cancelled() => return (Ok(()), Some(e)),
                r = e.until_leader() => if let Err(err) = r {
                    return (Err(err), Some(e));
                },
            }
            tracing::info!(identity = %self.identity, "became leader");
            Some(e)
        } else {
            None
        };
        let lost = async {
            match election.as_mut() {
                Some(e) => e.lost().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            () = inner.scheduling_loop() => Ok(()),
            () = lost => Err(Error::LeaderElection("leadership lost; stopping at once".into())),
        };
        (result, election)
    }
}

/// How long the HTTP server gets to close its connections at shutdown.
const HTTP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long status updates (`PodScheduled=False`) get after the bindings have drained.
const STATUS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the events recorded before shutdown get to be published after that.
const EVENTS_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Lets the bindings in flight finish for up to [`BINDING_DRAIN_TIMEOUT`], then the status
/// updates for up to [`STATUS_DRAIN_TIMEOUT`]. What is still running after that is cancelled
/// when the runtime stops: a pod whose binding did not land stays unbound, and the next leader
/// lists and schedules it (upstream does not wait at all).
async fn drain(inner: &Inner) {
    let in_flight = inner.bindings.len();
    if in_flight > 0 {
        tracing::info!(in_flight, "waiting for bindings in flight");
    }
    if tokio::time::timeout(BINDING_DRAIN_TIMEOUT, inner.bindings.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            cancelled = inner.bindings.len(),
            "bindings still running after {BINDING_DRAIN_TIMEOUT:?}; cancelling them (their pods \
             stay unbound for the next scheduler)"
        );
    }
    if tokio::time::timeout(STATUS_DRAIN_TIMEOUT, inner.status_updates.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            cancelled = inner.status_updates.tracker.len(),
            "status updates still running after {STATUS_DRAIN_TIMEOUT:?}; cancelling them"
        );
    }
}

fn spawn_cache_metrics(inner: Arc<Inner>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let d = inner.cache.dump();
            let set = |t: &'static str, v: usize| {
                inner
                    .metrics
                    .cache_size
                    .get_or_create(&CacheType { r#type: t })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set("nodes", inner.cache.node_count());
            set("pods", inner.cache.pod_count());
            set("assumed_pods", d.assumed_pods().len());
        }
    })
}
