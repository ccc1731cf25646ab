//! [`NetworkTraffic`]: the plugin type and its extension points (Score + NormalizeScore,
//! Reserve/Unreserve, optional Filter, EnqueueExtensions).

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, CycleState, EnqueueExtensions, EventResource,
    FilterPlugin, Handle, NodeInfo, NodeScore, Plugin, ReservePlugin, ScorePlugin, Status, pod_key,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, NAME,
    args::{Config, NetworkTrafficArgs},
    compensation,
    metrics::NetworkTrafficMetrics,
    refresher::{RefreshSummary, Refresher},
    score::{self, Load},
    snapshot::TrafficSnapshot,
    source::{PrometheusSource, unix_now},
    view::Shared,
};

/// Unix seconds, as Reserve stamps reservations (see [`NetworkTraffic::with_clock`]).
pub type ReserveClock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Prefers nodes with less network traffic. See the crate docs.
pub struct NetworkTraffic {
    config: Arc<Config>,
    shared: Arc<Shared>,
    refresher: Option<Arc<Refresher>>,
    stop: CancellationToken,
    /// `None`: the system clock.
    clock: Option<ReserveClock>,
}

impl std::fmt::Debug for NetworkTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkTraffic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for NetworkTraffic {
    /// Stops the refresher with the plugin (a rebuilt profile does not leave a poller behind).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl NetworkTraffic {
    /// Validates `args` and starts the refresher, recording into `metrics` under `profile`.
    /// `handle` (optional) lets the refresher report cluster nodes that have no data.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the field, or an HTTP-client setup error.
    pub fn start(
        args: &NetworkTrafficArgs,
        profile: &str,
        handle: Option<&Arc<Handle>>,
        metrics: NetworkTrafficMetrics,
    ) -> Result<Self, Error> {
        let config = Arc::new(args.validate()?);
        let source = PrometheusSource::new(&config)?;
        let shared = Arc::new(Shared::default());
        let refresher = Arc::new(Refresher::new(
            source,
            config.clone(),
            shared.clone(),
            metrics,
            profile,
            handle.map_or_else(Weak::new, Arc::downgrade),
        ));
        if config.insecure_skip_verify {
            tracing::warn!(plugin = NAME, %profile, "tls.insecureSkipVerify is set: the Prometheus server's certificate is not checked");
        }
        let stop = CancellationToken::new();
        refresher.clone().spawn(stop.clone())?;
        tracing::info!(plugin = NAME, %profile, address = %config.address, query = %refresher.promql(), "querying Prometheus every {:?}", config.refresh_interval);
        Ok(Self {
            config,
            shared,
            refresher: Some(refresher),
            stop,
            clock: None,
        })
    }

    /// A plugin without a refresher, fed through [`NetworkTraffic::install_snapshot`]
    /// (simulators, benchmarks, tests). Args are validated as for [`NetworkTraffic::start`].
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the field.
    pub fn without_refresher(args: &NetworkTrafficArgs) -> Result<Self, Error> {
        Ok(Self {
            config: Arc::new(args.validate()?),
            shared: Arc::new(Shared::default()),
            refresher: None,
            stop: CancellationToken::new(),
            clock: None,
        })
    }

    /// Stamps reservations with `clock` (unix seconds) instead of the system clock, so that a
    /// plugin fed through [`NetworkTraffic::install_snapshot`] with snapshots evaluated in
    /// simulated time ages its reservations in that same time (the simulator does).
    #[must_use]
    pub fn with_clock(mut self, clock: ReserveClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The PromQL sent each refresh (`None` without a refresher).
    #[must_use]
    pub fn promql(&self) -> Option<&str> {
        self.refresher.as_deref().map(Refresher::promql)
    }

    /// Runs one refresh now, besides the background ones (tests, diagnostics).
    ///
    /// # Errors
    /// What the query failed with; the plugin keeps its data as after a failed background
    /// refresh. [`Error::HttpClient`] without a refresher.
    pub async fn refresh_now(&self) -> Result<RefreshSummary, Error> {
        match &self.refresher {
            Some(r) => {
                let out = r.refresh_once().await;
                r.expire_if_stale();
                out
            }
            None => Err(Error::HttpClient(
                "this plugin has no Prometheus source".into(),
            )),
        }
    }

    /// Drops the data if it is older than `maxStaleness` (the refresher does this on time by
    /// itself; tests call it to not depend on its timing).
    pub fn expire_if_stale(&self) {
        if let Some(r) = &self.refresher {
            r.expire_if_stale();
        }
    }

    /// The data Score uses now.
    #[must_use]
    pub fn traffic(&self) -> Arc<TrafficSnapshot> {
        self.shared.load().traffic.clone()
    }

    /// Replaces the data Score uses (the refresher replaces it again on its next success).
    pub fn install_snapshot(&self, snapshot: TrafficSnapshot) {
        self.shared
            .set_traffic(Arc::new(snapshot), self.config.rate_window.as_secs_f64());
    }

    /// Herd-compensation reservations in flight.
    #[must_use]
    pub fn pending_reservations(&self) -> usize {
        self.shared.load().reservations.len()
    }

    /// The load of `node` now: measured rate, pending reservations, capacity.
    #[must_use]
    pub fn node_load(&self, node: &NodeInfo) -> Option<Load> {
        self.shared.with_view(|view| {
            score::load(
                &self.config,
                &view.traffic,
                &view.reservations,
                node.node_name(),
                node.node().map(AsRef::as_ref),
            )
        })
    }

    /// Records that `pod` will add its expected bandwidth to `node_name` from time `at` (unix
    /// seconds). Returns the bytes/s reserved.
    fn reserve_at(&self, pod: &Pod, node_name: &str, at: f64) -> f64 {
        let expected = self.expected_bandwidth(pod);
        if expected > 0.0 {
            let key = pod_key(pod);
            self.shared
                .update_reservations(|r| Some(r.with_added(node_name, &key, expected, at)));
        }
        expected
    }

    fn expected_bandwidth(&self, pod: &Pod) -> f64 {
        compensation::expected_bandwidth(pod, self.config.default_expected_bandwidth).unwrap_or_else(|e| {
            tracing::warn!(
                plugin = NAME,
                pod = %pod_key(pod),
                annotation = compensation::EXPECTED_BANDWIDTH_ANNOTATION,
                error = %e,
                "ignoring a malformed expected-bandwidth annotation; using defaultExpectedBandwidth"
            );
            self.config.default_expected_bandwidth
        })
    }
}

impl Plugin for NetworkTraffic {
    fn name(&self) -> &str {
        NAME
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        if self.config.max_bandwidth.is_some() {
            Some(self)
        } else {
            None
        }
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

impl ScorePlugin for NetworkTraffic {
    /// A lock-free lookup: the raw score is the node's effective traffic in bytes/s (relative
    /// mode) or its utilisation in ppm (capacity mode); [`score::NO_DATA`] without data. Never
    /// an error: missing data must not fail the cycle.
    fn score(&self, _state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        Ok(score::raw_score(
            self.config.capacity_mode(),
            self.node_load(node),
        ))
    }

    /// [`ScorePlugin::score`] with the view (snapshot and reservations) taken once for the
    /// chunk instead of once per node.
    fn score_nodes(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        let capacity_mode = self.config.capacity_mode();
        self.shared.with_view(|view| {
            for (node, out) in nodes.iter().zip(scores) {
                let load = score::load(
                    &self.config,
                    &view.traffic,
                    &view.reservations,
                    node.node_name(),
                    node.node().map(AsRef::as_ref),
                );
                *out = score::raw_score(capacity_mode, load);
            }
        });
        Ok(())
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &Pod, scores: &mut [NodeScore]) -> Status {
        score::normalize(
            scores,
            self.config.capacity_mode(),
            self.config.neutral_score,
        );
        Status::success()
    }
}

impl FilterPlugin for NetworkTraffic {
    /// Rejects a node whose traffic (with pending reservations and this pod's expected
    /// bandwidth) is above `maxBandwidth`. Unresolvable: preempting pods does not lower the
    /// measured rate within this cycle.
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let Some(limit) = self.config.max_bandwidth else {
            return Status::success();
        };
        match score::filter_reason(limit, self.node_load(node), self.expected_bandwidth(pod)) {
            None => Status::success(),
            Some(reason) => Status::unresolvable(reason),
        }
    }
}

#[async_trait]
impl ReservePlugin for NetworkTraffic {
    async fn reserve(&self, _state: &mut CycleState, pod: &Pod, node_name: &str) -> Status {
        let now = self.clock.as_ref().map_or_else(unix_now, |c| c());
        self.reserve_at(pod, node_name, now);
        Status::success()
    }

    async fn unreserve(&self, _state: &mut CycleState, pod: &Pod, node_name: &str) {
        let key = pod_key(pod);
        self.shared
            .update_reservations(|r| r.with_removed(node_name, &key));
    }
}

impl EnqueueExtensions for NetworkTraffic {
    /// With the Filter on: a new node may be quiet enough, and a pod leaving a node lowers its
    /// traffic. Traffic itself changes without any cluster event; rejected pods also come back
    /// with the queue's periodic flush of unschedulable pods. Without the Filter the plugin
    /// never rejects, so nothing.
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        if self.config.max_bandwidth.is_none() {
            return Vec::new();
        }
        vec![
            ClusterEventWithHint::new(ClusterEvent::new(EventResource::Node, ActionType::ADD)),
            ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::AssignedPod,
                ActionType::DELETE,
            )),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
    use ksched_framework::PluginArgs;
    use serde_json::json;

    use super::*;

    fn plugin(extra: serde_json::Value) -> NetworkTraffic {
        let mut v = json!({"prometheusAddress": "http://127.0.0.1:1"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let args: NetworkTrafficArgs = PluginArgs::from_value(v).decode().unwrap();
        NetworkTraffic::without_refresher(&args).unwrap()
    }

    fn node(name: &str, ip: Option<&str>) -> NodeInfo {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        if let Some(ip) = ip {
            n.status = Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                ..NodeStatus::default()
            });
        }
        NodeInfo::new(Arc::new(n))
    }

    fn pod(name: &str, bandwidth: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        if let Some(b) = bandwidth {
            p.metadata.annotations = Some(BTreeMap::from([(
                compensation::EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
                b.to_owned(),
            )]));
        }
        p
    }

    fn scores(p: &NetworkTraffic, nodes: &[NodeInfo]) -> Vec<i64> {
        let state = CycleState::new();
        let pod = Pod::default();
        let mut s: Vec<NodeScore> = nodes
            .iter()
            .map(|n| NodeScore {
                name: n.node_name().to_owned(),
                score: p.score(&state, &pod, n).unwrap(),
            })
            .collect();
        // The chunked path gives the same raw scores.
        let shared: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        let mut chunked = vec![0; nodes.len()];
        p.score_nodes(&state, &pod, &shared, &mut chunked).unwrap();
        assert_eq!(chunked, s.iter().map(|s| s.score).collect::<Vec<_>>());
        assert!(p.normalize_score(&state, &pod, &mut s).is_success());
        s.iter().map(|s| s.score).collect()
    }

    #[test]
    fn less_traffic_scores_higher_and_missing_is_neutral() {
        let p = plugin(json!({}));
        let nodes = [
            node("a", None),
            node("b", None),
            node("c", None),
            node("d", None),
        ];
        assert_eq!(
            scores(&p, &nodes),
            [50, 50, 50, 50],
            "no data yet: all neutral"
        );
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("a", 1e6), ("b", 4e6), ("c", 0.0)],
            1000,
        ));
        assert_eq!(scores(&p, &nodes), [75, 0, 100, 50]);
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("a", 0.0), ("b", 0.0), ("c", 0.0)],
            1000,
        ));
        assert_eq!(scores(&p, &nodes), [100, 100, 100, 50]);
    }

    #[test]
    fn internal_ip_mapping() {
        let p = plugin(json!({"nodeMapping": "InternalIP"}));
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("10.0.0.1", 10.0), ("10.0.0.2", 20.0), ("a", 0.0)],
            1000,
        ));
        let nodes = [
            node("a", Some("10.0.0.1")),
            node("b", Some("10.0.0.2")),
            node("c", None),
        ];
        assert_eq!(scores(&p, &nodes), [50, 0, 50]);
    }

    #[tokio::test]
    async fn reservations_spread_a_burst_and_unreserve_is_idempotent() {
        let p = plugin(json!({"rateWindow": "60s"}));
        let now = unix_now().floor();
        #[allow(clippy::cast_possible_truncation)]
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("a", 1e6), ("b", 1e6), ("c", 1e6)],
            now as i64,
        ));
        let nodes = [node("a", None), node("b", None), node("c", None)];
        let mut placed = BTreeMap::<String, usize>::new();
        for i in 0..9 {
            let pod = pod(&format!("p{i}"), Some("10M"));
            let s = scores(&p, &nodes);
            let best = s
                .iter()
                .enumerate()
                .max_by_key(|(j, s)| (**s, std::cmp::Reverse(*j)))
                .map(|(j, _)| j)
                .unwrap();
            let name = nodes[best].node_name().to_owned();
            let mut state = CycleState::new();
            assert!(p.reserve(&mut state, &pod, &name).await.is_success());
            *placed.entry(name).or_default() += 1;
        }
        assert_eq!(
            placed.values().copied().collect::<Vec<_>>(),
            [3, 3, 3],
            "{placed:?}"
        );
        assert_eq!(p.pending_reservations(), 9);
        let mut state = CycleState::new();
        p.unreserve(&mut state, &pod("p0", Some("10M")), "a").await;
        p.unreserve(&mut state, &pod("p0", Some("10M")), "a").await;
        assert_eq!(p.pending_reservations(), 8);
        // A pod without the annotation and a zero default reserves nothing.
        assert!(
            p.reserve(&mut state, &pod("q", None), "a")
                .await
                .is_success()
        );
        assert_eq!(p.pending_reservations(), 8);
        // A snapshot a whole window later covers every reservation.
        #[allow(clippy::cast_possible_truncation)]
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("a", 1e6), ("b", 1e6), ("c", 1e6)],
            now as i64 + 61,
        ));
        assert_eq!(scores(&p, &nodes), [100, 100, 100]);
    }

    #[tokio::test]
    async fn reserve_clock_stamps_reservations_in_its_own_time() {
        let t = Arc::new(parking_lot::Mutex::new(5000.0));
        let clock = t.clone();
        let p = plugin(json!({"rateWindow": "60s"})).with_clock(Arc::new(move || *clock.lock()));
        p.install_snapshot(TrafficSnapshot::from_rates([("a", 0.0), ("b", 0.0)], 4990));
        let nodes = [node("a", None), node("b", None)];
        let mut state = CycleState::new();
        assert!(
            p.reserve(&mut state, &pod("p", Some("1M")), "a")
                .await
                .is_success()
        );
        assert_eq!(
            scores(&p, &nodes),
            [0, 100],
            "reserved at 5000, snapshot from 4990: fully pending"
        );
        // Half a window after the reservation in the clock's time: half of it is still pending.
        *t.lock() = 5030.0;
        p.install_snapshot(TrafficSnapshot::from_rates([("a", 0.0), ("b", 0.0)], 5030));
        assert_eq!(p.node_load(&nodes[0]).map(|l| l.pending), Some(0.5e6));
    }

    #[test]
    fn filter_only_when_configured() {
        let p = plugin(json!({}));
        assert!(p.as_filter().is_none());
        assert!(p.events_to_register().is_empty());
        let p = plugin(json!({"maxBandwidth": "1M"}));
        assert!(p.as_filter().is_some());
        assert_eq!(p.events_to_register().len(), 2);
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("busy", 2e6), ("quiet", 1e3)],
            1000,
        ));
        let state = CycleState::new();
        let s = p.filter(&state, &pod("x", None), &node("busy", None));
        assert_eq!(
            s.code(),
            ksched_framework::Code::UnschedulableAndUnresolvable
        );
        assert_eq!(
            s.message(),
            "node's network traffic 2.0 MB/s exceeds maxBandwidth 1.0 MB/s"
        );
        assert!(
            p.filter(&state, &pod("x", None), &node("quiet", None))
                .is_success()
        );
        assert!(
            p.filter(&state, &pod("x", None), &node("unknown", None))
                .is_success()
        );
        assert!(
            !p.filter(&state, &pod("x", Some("2M")), &node("quiet", None))
                .is_success()
        );
    }

    #[test]
    fn capacity_mode_scores_utilisation() {
        let p = plugin(json!({"linkCapacity": "100M"}));
        p.install_snapshot(TrafficSnapshot::from_rates(
            [("a", 25e6), ("b", 100e6), ("c", 0.0)],
            1000,
        ));
        let nodes = [
            node("a", None),
            node("b", None),
            node("c", None),
            node("d", None),
        ];
        assert_eq!(scores(&p, &nodes), [75, 0, 100, 50]);
    }
}
