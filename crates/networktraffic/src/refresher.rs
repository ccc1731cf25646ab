//! The background task: one query per refresh interval, swapped in as the new snapshot; data
//! aged out after `maxStaleness`; metrics; and one log line per change of state, never one per
//! pod or per failed query.
//!
//! Failure policy: a failed query keeps the last snapshot until it is `maxStaleness` old (a
//! blip does not reshuffle scores), then the plugin drops it and every node scores neutral
//! until a query succeeds again. A successful query with an empty result is taken at its word:
//! no node has data. Nothing here ever fails a scheduling cycle.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use ksched_framework::Handle;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    Error, NAME,
    args::Config,
    metrics::{ErrorLabels, NetworkTrafficMetrics, ProfileLabel},
    query::ParseStats,
    snapshot::TrafficSnapshot,
    source::{PrometheusSource, unix_now},
    view::Shared,
};

/// What the last refreshes looked like, to log only transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Healthy,
    Empty,
    Failing(&'static str),
}

#[derive(Debug)]
struct Health {
    state: State,
    failures: u64,
    expired: bool,
    last_stats: ParseStats,
    last_missing: usize,
}

/// What one successful refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Nodes (keys) with a traffic rate.
    pub nodes_with_data: usize,
    /// Series, unmapped series and invalid samples in the answer.
    pub stats: ParseStats,
    /// Cluster nodes (from the scheduler's snapshot) without data; 0 when unknown.
    pub nodes_without_data: usize,
}

/// Runs the query and keeps the plugin's snapshot fresh.
pub(crate) struct Refresher {
    source: PrometheusSource,
    config: Arc<Config>,
    shared: Arc<Shared>,
    health: Mutex<Health>,
    metrics: NetworkTrafficMetrics,
    profile: ProfileLabel,
    handle: Weak<Handle>,
}

impl Refresher {
    pub(crate) fn new(
        source: PrometheusSource,
        config: Arc<Config>,
        shared: Arc<Shared>,
        metrics: NetworkTrafficMetrics,
        profile: &str,
        handle: Weak<Handle>,
    ) -> Self {
        Self {
            source,
            config,
            shared,
            health: Mutex::new(Health {
                state: State::Starting,
                failures: 0,
                expired: false,
                last_stats: ParseStats::default(),
                last_missing: 0,
            }),
            metrics,
            profile: ProfileLabel {
                profile: profile.to_owned(),
            },
            handle,
        }
    }

    /// The PromQL the refresher sends.
    pub(crate) fn promql(&self) -> &str {
        self.source.promql()
    }

    /// One refresh: query, install, prune reservations, record metrics, log transitions.
    pub(crate) async fn refresh_once(&self) -> Result<RefreshSummary, Error> {
        let started = Instant::now();
        let result = self.source.fetch().await;
        self.metrics
            .refresh_duration
            .get_or_create(&self.profile)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok((snapshot, stats)) => Ok(self.install(snapshot, stats)),
            Err(e) => {
                self.metrics
                    .refresh_errors
                    .get_or_create(&ErrorLabels {
                        profile: self.profile.profile.clone(),
                        kind: e.kind(),
                    })
                    .inc();
                self.on_failure(&e);
                Err(e)
            }
        }
    }

    fn install(&self, snapshot: TrafficSnapshot, stats: ParseStats) -> RefreshSummary {
        let nodes_with_data = snapshot.nodes_with_rate();
        let nodes_without_data = self.count_missing(&snapshot);
        self.shared
            .set_traffic(Arc::new(snapshot), self.config.rate_window.as_secs_f64());
        self.metrics
            .last_success
            .get_or_create(&self.profile)
            .set(unix_now());
        self.set_gauges(nodes_with_data, nodes_without_data);

        let mut h = self.health.lock();
        h.expired = false;
        let state = if nodes_with_data == 0 {
            State::Empty
        } else {
            State::Healthy
        };
        if state != h.state {
            match (h.state, state) {
                (_, State::Empty) => tracing::warn!(
                    plugin = NAME,
                    profile = %self.profile.profile,
                    series = stats.series,
                    query = %self.source.promql(),
                    "the traffic query returned no usable series; every node scores neutral (check the metric names, device regex and node mapping)"
                ),
                (State::Failing(_), _) => tracing::info!(
                    plugin = NAME,
                    profile = %self.profile.profile,
                    nodes = nodes_with_data,
                    failed_queries = h.failures,
                    "Prometheus answers again"
                ),
                _ => {
                    tracing::info!(plugin = NAME, profile = %self.profile.profile, nodes = nodes_with_data, "traffic data available")
                }
            }
            h.state = state;
        }
        h.failures = 0;
        if (stats.unmapped > 0) != (h.last_stats.unmapped > 0)
            || (stats.invalid > 0) != (h.last_stats.invalid > 0)
        {
            if stats.unmapped > 0 || stats.invalid > 0 {
                tracing::warn!(
                    plugin = NAME,
                    profile = %self.profile.profile,
                    unmapped_series = stats.unmapped,
                    invalid_samples = stats.invalid,
                    node_label = %self.config.node_label,
                    "some series were ignored: without the node label, or NaN/Inf/negative values; those nodes score neutral"
                );
            }
            h.last_stats = stats;
        }
        if nodes_without_data != h.last_missing {
            if nodes_without_data > 0 {
                tracing::warn!(
                    plugin = NAME,
                    profile = %self.profile.profile,
                    nodes = nodes_without_data,
                    examples = %self.missing_examples(5),
                    "cluster nodes without traffic data score neutral (node names differ from the query's node label?)"
                );
            }
            h.last_missing = nodes_without_data;
        }
        RefreshSummary {
            nodes_with_data,
            stats,
            nodes_without_data,
        }
    }

    fn on_failure(&self, e: &Error) {
        let mut h = self.health.lock();
        h.failures += 1;
        let state = State::Failing(e.kind());
        if h.state != state {
            tracing::warn!(
                plugin = NAME,
                profile = %self.profile.profile,
                error = %e,
                max_staleness = ?self.config.max_staleness,
                "querying Prometheus failed; keeping the last data until it is maxStaleness old, then every node scores neutral"
            );
            h.state = state;
        } else {
            tracing::debug!(plugin = NAME, profile = %self.profile.profile, error = %e, failures = h.failures, "querying Prometheus failed again");
        }
    }

    /// When the data in use is older than `maxStaleness`, drops it (all nodes neutral).
    pub(crate) fn expire_if_stale(&self) {
        let snap = self.shared.load().traffic.clone();
        if snap.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let age = unix_now() - snap.evaluated_at() as f64;
        if age <= self.config.max_staleness.as_secs_f64() {
            return;
        }
        drop(snap);
        self.shared.set_traffic(
            Arc::new(TrafficSnapshot::empty()),
            self.config.rate_window.as_secs_f64(),
        );
        self.set_gauges(0, self.count_missing(&TrafficSnapshot::empty()));
        let mut h = self.health.lock();
        if !h.expired {
            h.expired = true;
            tracing::warn!(
                plugin = NAME,
                profile = %self.profile.profile,
                max_staleness = ?self.config.max_staleness,
                "no fresh traffic data for maxStaleness; every node scores neutral until a query succeeds"
            );
        }
    }

    /// How long until the data in use turns stale (`None` without data).
    fn until_stale(&self) -> Option<Duration> {
        let snap = self.shared.load().traffic.clone();
        if snap.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let stale_at = snap.evaluated_at() as f64 + self.config.max_staleness.as_secs_f64();
        Some(
            Duration::try_from_secs_f64((stale_at - unix_now()).max(0.0)).unwrap_or(Duration::ZERO),
        )
    }

    fn set_gauges(&self, with_data: usize, without_data: usize) {
        let as_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .nodes_with_fresh_data
            .get_or_create(&self.profile)
            .set(as_i64(with_data));
        self.metrics
            .nodes_without_data
            .get_or_create(&self.profile)
            .set(as_i64(without_data));
        self.metrics
            .pending_reservations
            .get_or_create(&self.profile)
            .set(as_i64(self.shared.load().reservations.len()));
    }

    /// Cluster nodes (as the scheduler last saw them) the snapshot has no rate for.
    fn count_missing(&self, snapshot: &TrafficSnapshot) -> usize {
        let Some(handle) = self.handle.upgrade() else {
            return 0;
        };
        let nodes = handle.snapshot();
        nodes
            .list()
            .iter()
            .filter(|n| {
                snapshot
                    .lookup(
                        self.config.node_mapping,
                        n.node_name(),
                        n.node().map(AsRef::as_ref),
                    )
                    .and_then(|t| t.rate)
                    .is_none()
            })
            .count()
    }

    fn missing_examples(&self, max: usize) -> String {
        let Some(handle) = self.handle.upgrade() else {
            return String::new();
        };
        let snap = self.shared.load().traffic.clone();
        let nodes = handle.snapshot();
        let names: Vec<&str> = nodes
            .list()
            .iter()
            .filter(|n| {
                snap.lookup(
                    self.config.node_mapping,
                    n.node_name(),
                    n.node().map(AsRef::as_ref),
                )
                .and_then(|t| t.rate)
                .is_none()
            })
            .take(max)
            .map(|n| n.node_name())
            .collect();
        names.join(", ")
    }

    /// Refreshes every `refreshInterval` (the first one at once) and expires data on time,
    /// until `stop`.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.config.refresh_interval;
        let mut next_refresh = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_refresh {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = self.refresh_once() => {}
                }
                // A slow query delays the next one instead of queueing up several.
                next_refresh = (next_refresh + interval).max(tokio::time::Instant::now());
            }
            self.expire_if_stale();
            let deadline = match self.until_stale() {
                Some(d) => next_refresh.min(tokio::time::Instant::now() + d),
                None => next_refresh,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Starts [`Refresher::run`] on the current tokio runtime, or on a thread of its own when
    /// the plugin is built outside one. Returns at once: the first refresh does not block
    /// start-up (until it lands, every node scores neutral).
    pub(crate) fn spawn(self: Arc<Self>, stop: CancellationToken) -> Result<(), Error> {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.run(stop));
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::HttpClient(format!("starting the refresh runtime: {e}")))?;
        std::thread::Builder::new()
            .name("networktraffic-refresh".into())
            .spawn(move || rt.block_on(self.run(stop)))
            .map(|_| ())
            .map_err(|e| Error::HttpClient(format!("starting the refresh thread: {e}")))
    }
}
