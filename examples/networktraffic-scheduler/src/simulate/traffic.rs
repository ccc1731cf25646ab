//! The in-memory traffic source: what Prometheus would report for each node at a simulated
//! time, and the statistics of a traffic vector (max/mean, coefficient of variation).
//!
//! Model: a node carries its baseline, plus the expected bandwidth of every pod placed on it
//! at least `lag` ago. The lag stands for start-up, scrape interval and the `rate()` window:
//! until it has passed, the placed pod is invisible in the measurements, which is exactly the
//! gap herd compensation is there to cover.

use std::{collections::HashMap, time::Duration};

use ksched_networktraffic::{NodeTraffic, TrafficSnapshot};

/// Unix seconds the simulated clock starts at: a fixed value so that every run computes the
/// same reservation ages (a real epoch would make the plugin's arithmetic depend on the day).
pub const SIM_EPOCH_SECS: i64 = 1_700_000_000;

/// One node as the traffic source sees it.
#[derive(Debug, Clone)]
pub struct NodeLink {
    /// Node name (the plugin's `Uname`/`Label` mapping key).
    pub name: String,
    /// Bytes/s without simulated pods.
    pub baseline: f64,
    /// Link capacity in bytes/s, if known.
    pub capacity: Option<f64>,
}

/// A placement the source must account for.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Index of the pod (to remove it again).
    pub pod: usize,
    /// Index of the node in the source's node list.
    pub node: usize,
    /// Simulated time of the binding.
    pub at: Duration,
    /// Bytes/s the pod adds once visible.
    pub bandwidth: f64,
}

/// The source: nodes, placements so far, lag.
#[derive(Debug, Clone)]
pub struct TrafficSource {
    nodes: Vec<NodeLink>,
    placements: Vec<Placement>,
    lag: Duration,
}

impl TrafficSource {
    /// A source for `nodes` with metric lag `lag`.
    #[must_use]
    pub fn new(nodes: Vec<NodeLink>, lag: Duration) -> Self {
        Self {
            nodes,
            placements: Vec::new(),
            lag,
        }
    }

    /// Records a binding.
    pub fn place(&mut self, p: Placement) {
        self.placements.push(p);
    }

    /// Removes the placement of pod `pod` (deleted by preemption).
    pub fn remove(&mut self, pod: usize) {
        self.placements.retain(|p| p.pod != pod);
    }

    /// Bytes/s per node as measured at `t`: baseline plus pods placed at least `lag` before.
    #[must_use]
    pub fn measured(&self, t: Duration) -> Vec<f64> {
        self.visible(t, self.lag)
    }

    /// Bytes/s per node really carried at `t`: baseline plus pods placed by then.
    #[must_use]
    pub fn actual_at(&self, t: Duration) -> Vec<f64> {
        self.visible(t, Duration::ZERO)
    }

    fn visible(&self, t: Duration, lag: Duration) -> Vec<f64> {
        let mut v: Vec<f64> = self.nodes.iter().map(|n| n.baseline).collect();
        for p in &self.placements {
            if p.at + lag <= t {
                v[p.node] += p.bandwidth;
            }
        }
        v
    }

    /// The metric lag.
    #[must_use]
    pub fn lag(&self) -> Duration {
        self.lag
    }

    /// Simulated time of the last placement.
    #[must_use]
    pub fn last_placement(&self) -> Option<Duration> {
        self.placements.iter().map(|p| p.at).max()
    }

    /// Bytes/s per node once every placed pod is visible (what the nodes really carry).
    #[must_use]
    pub fn actual(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.nodes.iter().map(|n| n.baseline).collect();
        for p in &self.placements {
            v[p.node] += p.bandwidth;
        }
        v
    }

    /// What one Prometheus query evaluated at `t` would return: rates and, where known, link
    /// capacities, stamped with the simulated unix second.
    #[must_use]
    pub fn snapshot(&self, t: Duration) -> TrafficSnapshot {
        let measured = self.measured(t);
        let nodes: HashMap<Box<str>, NodeTraffic> = self
            .nodes
            .iter()
            .zip(measured)
            .map(|(n, rate)| {
                (
                    n.name.as_str().into(),
                    NodeTraffic {
                        rate: Some(rate),
                        capacity: n.capacity,
                    },
                )
            })
            .collect();
        TrafficSnapshot::new(nodes, sim_unix_secs(t))
    }
}

/// Simulated time as whole unix seconds (the resolution of Prometheus evaluation times).
#[must_use]
pub fn sim_unix_secs(t: Duration) -> i64 {
    SIM_EPOCH_SECS + i64::try_from(t.as_secs()).unwrap_or(i64::MAX - SIM_EPOCH_SECS)
}

/// Simulated time as fractional unix seconds (the plugin's Reserve clock).
#[must_use]
pub fn sim_unix(t: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let epoch = SIM_EPOCH_SECS as f64;
    epoch + t.as_secs_f64()
}

/// Balance of a traffic vector.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Balance {
    /// Highest node traffic, bytes/s.
    pub max: f64,
    /// Mean node traffic, bytes/s.
    pub mean: f64,
    /// `max / mean` (1 is perfectly even; 0 when the mean is 0).
    pub max_over_mean: f64,
    /// Population standard deviation over the mean (0 is perfectly even).
    pub cv: f64,
}

impl Balance {
    /// The balance of `values` (all zeros → all zeros).
    #[must_use]
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        #[allow(clippy::cast_precision_loss)]
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        if mean <= 0.0 {
            return Self {
                max,
                mean,
                max_over_mean: 0.0,
                cv: 0.0,
            };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self {
            max,
            mean,
            max_over_mean: max / mean,
            cv: var.sqrt() / mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_hides_recent_pods() {
        let mut s = TrafficSource::new(
            vec![
                NodeLink {
                    name: "a".into(),
                    baseline: 10.0,
                    capacity: Some(100.0),
                },
                NodeLink {
                    name: "b".into(),
                    baseline: 0.0,
                    capacity: None,
                },
            ],
            Duration::from_secs(30),
        );
        s.place(Placement {
            pod: 0,
            node: 1,
            at: Duration::from_secs(5),
            bandwidth: 7.0,
        });
        assert_eq!(s.measured(Duration::from_secs(34)), [10.0, 0.0]);
        assert_eq!(s.measured(Duration::from_secs(35)), [10.0, 7.0]);
        assert_eq!(s.actual(), [10.0, 7.0]);
        let snap = s.snapshot(Duration::from_secs(40));
        assert_eq!(snap.evaluated_at(), SIM_EPOCH_SECS + 40);
        assert_eq!(snap.get("b").and_then(|t| t.rate), Some(7.0));
        assert_eq!(snap.get("a").and_then(|t| t.capacity), Some(100.0));
    }

    #[test]
    fn balance() {
        let b = Balance::of(&[1.0, 1.0, 1.0, 1.0]);
        assert_eq!((b.max_over_mean, b.cv), (1.0, 0.0));
        let b = Balance::of(&[0.0, 0.0, 0.0, 4.0]);
        assert_eq!(b.max_over_mean, 4.0);
        assert!((b.cv - 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(Balance::of(&[0.0, 0.0]).cv, 0.0);
        assert_eq!(Balance::of(&[]), Balance::default());
    }
}
