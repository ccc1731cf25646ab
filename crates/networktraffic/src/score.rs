//! The scoring formula, its normalisation and the Filter's decision — pure functions of the
//! snapshot, the reservations and the node.
//!
//! Score returns a raw value per node; NormalizeScore maps all of them into [0, 100]:
//!
//! - **relative** (no capacity configured): raw = effective traffic in bytes/s, and
//!   `score = round(100 × (max − t) / max)` with `max` the busiest node's effective traffic;
//!   when every node with data has the same traffic (all idle included) they all get 100 —
//!   never a division by zero (the seed's B1).
//! - **capacity** (`linkCapacity` or `linkCapacityFromMetric`): raw = utilisation in parts per
//!   million, and `score = round(100 × (1 − min(t / capacity, 1)))`, comparable across
//!   clusters and NIC speeds.
//!
//! Effective traffic = measured rate + the pending part of reservations (see
//! [`crate::compensation`]). A node without fresh data (or, in capacity mode, without a known
//! capacity) returns [`NO_DATA`] and gets the configured neutral score.

use k8s_openapi::api::core::v1::Node;
use ksched_framework::{MAX_NODE_SCORE, MIN_NODE_SCORE, NodeScore};

use crate::{
    args::{Config, MaxBandwidth},
    compensation::Reservations,
    snapshot::TrafficSnapshot,
};

/// Raw score of a node without usable data.
pub const NO_DATA: i64 = -1;

/// Utilisation scale of capacity mode: parts per million.
const PPM: f64 = 1_000_000.0;

/// A node's load as the plugin sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Measured bytes/s.
    pub measured: f64,
    /// Bytes/s reserved for recently placed pods and not yet in `measured`.
    pub pending: f64,
    /// Link capacity in bytes/s for the counted direction(s), when known.
    pub capacity: Option<f64>,
}

impl Load {
    /// `measured + pending`.
    #[must_use]
    pub fn effective(&self) -> f64 {
        self.measured + self.pending
    }
}

/// The load of one node, or `None` without fresh data.
#[must_use]
pub fn load(
    config: &Config,
    snapshot: &TrafficSnapshot,
    reservations: &Reservations,
    node_name: &str,
    node: Option<&Node>,
) -> Option<Load> {
    let t = snapshot.lookup(config.node_mapping, node_name, node)?;
    let measured = t.rate?;
    #[allow(clippy::cast_precision_loss)] // unix seconds fit an f64 exactly for ages to come
    let evaluated_at = snapshot.evaluated_at() as f64;
    let pending = reservations.pending(node_name, evaluated_at, config.rate_window.as_secs_f64());
    let capacity = t
        .capacity
        .or(config.link_capacity)
        .map(|c| c * config.direction.capacity_factor());
    Some(Load {
        measured,
        pending,
        capacity,
    })
}

/// A float to a score-range integer; `as` saturates and maps NaN to 0.
#[allow(clippy::cast_possible_truncation)]
fn to_i64(v: f64) -> i64 {
    // Rounds half up for the non-negative values used here. Not `f64::round`: without SSE4.1
    // (the x86-64 baseline) that is a libm call, and this runs once per node per pod.
    (v + 0.5) as i64
}

/// The raw score Score returns.
#[must_use]
pub fn raw_score(capacity_mode: bool, load: Option<Load>) -> i64 {
    let Some(l) = load else { return NO_DATA };
    let t = l.effective();
    if !t.is_finite() || t < 0.0 {
        return NO_DATA;
    }
    if capacity_mode {
        return match l.capacity {
            Some(c) if c > 0.0 && c.is_finite() => to_i64((t / c).min(1.0) * PPM),
            _ => NO_DATA,
        };
    }
    to_i64(t)
}

/// NormalizeScore: maps raw scores into [0, 100] (less traffic → higher), [`NO_DATA`] (and
/// any other negative value) to `neutral`.
pub fn normalize(scores: &mut [NodeScore], capacity_mode: bool, neutral: i64) {
    let neutral = neutral.clamp(MIN_NODE_SCORE, MAX_NODE_SCORE);
    if capacity_mode {
        for s in scores {
            s.score = if s.score < 0 {
                neutral
            } else {
                #[allow(clippy::cast_precision_loss)]
                let u = (s.score as f64 / PPM).min(1.0);
                to_i64(100.0 * (1.0 - u))
            };
        }
        return;
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for s in scores.iter().filter(|s| s.score >= 0) {
        min = min.min(s.score);
        max = max.max(s.score);
    }
    // max > min ≥ 0 whenever it is used below, so no division by zero. Floats rather than
    // exact integer division: one multiply per node, and a 2^-53 relative error cannot move a
    // score by a whole point.
    #[allow(clippy::cast_precision_loss)]
    let scale = if max > 0 {
        MAX_NODE_SCORE as f64 / max as f64
    } else {
        0.0
    };
    for s in scores {
        s.score = if s.score < 0 {
            neutral
        } else if min == max {
            MAX_NODE_SCORE
        } else {
            #[allow(clippy::cast_precision_loss)]
            let headroom = (max - s.score) as f64;
            to_i64(headroom * scale).clamp(MIN_NODE_SCORE, MAX_NODE_SCORE)
        };
    }
}

/// Why the Filter rejects the node, or `None` when it passes. Missing data (or, for a
/// percentage limit, missing capacity) never rejects.
#[must_use]
pub fn filter_reason(limit: MaxBandwidth, load: Option<Load>, pod_expected: f64) -> Option<String> {
    let l = load?;
    let (max, what) = match limit {
        MaxBandwidth::Absolute(b) => (b, format!("maxBandwidth {}", format_rate(b))),
        MaxBandwidth::FractionOfCapacity(f) => {
            let c = l.capacity.filter(|c| *c > 0.0)?;
            (
                f * c,
                format!(
                    "maxBandwidth {:.0}% of link capacity {}",
                    f * 100.0,
                    format_rate(c)
                ),
            )
        }
    };
    let after = l.effective() + pod_expected;
    if after <= max {
        return None;
    }
    let mut reason = format!("node's network traffic {}", format_rate(l.measured));
    if l.pending > 0.0 {
        reason.push_str(&format!(
            " (+{} expected from pods placed recently)",
            format_rate(l.pending)
        ));
    }
    if pod_expected > 0.0 {
        reason.push_str(&format!(" plus this pod's {}", format_rate(pod_expected)));
    }
    reason.push_str(&format!(" exceeds {what}"));
    Some(reason)
}

/// Bytes/s in decimal units: `812.3 MB/s`.
#[must_use]
pub fn format_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 5] = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
    let mut v = bytes_per_sec;
    let mut i = 0;
    while v.abs() >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(raw: &[i64]) -> Vec<NodeScore> {
        raw.iter()
            .enumerate()
            .map(|(i, s)| NodeScore {
                name: format!("n{i}"),
                score: *s,
            })
            .collect()
    }

    fn normalized(raw: &[i64], capacity_mode: bool) -> Vec<i64> {
        let mut s = scores(raw);
        normalize(&mut s, capacity_mode, 50);
        s.iter().map(|s| s.score).collect()
    }

    #[test]
    fn relative_normalization() {
        assert_eq!(normalized(&[0, 50, 100], false), [100, 50, 0]);
        assert_eq!(normalized(&[10, 20, 40], false), [75, 50, 0]);
        // All zero (the seed's division by zero) and all equal: everyone 100.
        assert_eq!(normalized(&[0, 0, 0], false), [100, 100, 100]);
        assert_eq!(normalized(&[7, 7], false), [100, 100]);
        // Missing data is neutral and does not take part in min/max.
        assert_eq!(normalized(&[NO_DATA, 0, 100], false), [50, 100, 0]);
        assert_eq!(normalized(&[NO_DATA, NO_DATA], false), [50, 50]);
        assert_eq!(normalized(&[-5, 3], false), [50, 100]);
        // Extremes do not overflow.
        assert_eq!(normalized(&[0, i64::MAX], false), [100, 0]);
        assert_eq!(normalized(&[i64::MAX - 1, i64::MAX], false), [0, 0]);
        assert_eq!(normalized(&[], false), Vec::<i64>::new());
    }

    #[test]
    fn capacity_normalization() {
        assert_eq!(
            normalized(&[0, 250_000, 1_000_000, 2_000_000, NO_DATA], true),
            [100, 75, 0, 0, 50]
        );
    }

    #[test]
    fn raw_scores_handle_bad_values() {
        let l = |m: f64, c: Option<f64>| {
            Some(Load {
                measured: m,
                pending: 0.0,
                capacity: c,
            })
        };
        assert_eq!(raw_score(false, None), NO_DATA);
        assert_eq!(raw_score(false, l(f64::NAN, None)), NO_DATA);
        assert_eq!(raw_score(false, l(f64::INFINITY, None)), NO_DATA);
        assert_eq!(raw_score(false, l(-1.0, None)), NO_DATA);
        assert_eq!(raw_score(false, l(1e300, None)), i64::MAX);
        assert_eq!(raw_score(false, l(1234.4, None)), 1234);
        assert_eq!(raw_score(true, l(1234.0, None)), NO_DATA);
        assert_eq!(raw_score(true, l(250.0, Some(1000.0))), 250_000);
        assert_eq!(raw_score(true, l(5000.0, Some(1000.0))), 1_000_000);
        assert_eq!(raw_score(true, l(1.0, Some(0.0))), NO_DATA);
        let pending = Some(Load {
            measured: 100.0,
            pending: 50.0,
            capacity: None,
        });
        assert_eq!(raw_score(false, pending), 150);
    }

    #[test]
    fn filter_decisions() {
        let l = Some(Load {
            measured: 700e6,
            pending: 100e6,
            capacity: Some(1.25e9),
        });
        assert_eq!(filter_reason(MaxBandwidth::Absolute(900e6), l, 0.0), None);
        assert_eq!(
            filter_reason(MaxBandwidth::Absolute(750e6), l, 0.0).unwrap(),
            "node's network traffic 700.0 MB/s (+100.0 MB/s expected from pods placed recently) exceeds maxBandwidth 750.0 MB/s"
        );
        assert_eq!(
            filter_reason(MaxBandwidth::FractionOfCapacity(0.5), l, 0.0).unwrap(),
            "node's network traffic 700.0 MB/s (+100.0 MB/s expected from pods placed recently) exceeds maxBandwidth 50% of link capacity 1.2 GB/s"
        );
        assert!(
            filter_reason(MaxBandwidth::Absolute(850e6), l, 100e6)
                .unwrap()
                .contains("plus this pod's 100.0 MB/s")
        );
        // No data, or no capacity for a percentage: never filtered.
        assert_eq!(filter_reason(MaxBandwidth::Absolute(1.0), None, 0.0), None);
        let no_cap = Some(Load {
            measured: 1e12,
            pending: 0.0,
            capacity: None,
        });
        assert_eq!(
            filter_reason(MaxBandwidth::FractionOfCapacity(0.1), no_cap, 0.0),
            None
        );
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(format_rate(0.0), "0 B/s");
        assert_eq!(format_rate(999.0), "999 B/s");
        assert_eq!(format_rate(812_300_000.0), "812.3 MB/s");
        assert_eq!(format_rate(3e15), "3000.0 TB/s");
    }
}
