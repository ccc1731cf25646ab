//! Herd compensation: bandwidth reserved for pods placed since the last samples.
//!
//! The measured traffic of a node does not move when a pod lands on it: `rate()` over the
//! window needs the pod to have sent bytes for a whole window before it shows in full. Without
//! compensation every pod of a burst sees the same numbers and piles onto the same "idle" node
//! (the seed's own log shows two replicas on one node). So Reserve adds the pod's expected
//! bandwidth to its node and Unreserve takes it back.
//!
//! A reservation made at time `B` is covered by a snapshot evaluated at `T` in proportion to
//! how much of the rate window `[T − W, T]` lies after `B`. The pending part is
//!
//! ```text
//! pending = expected × clamp((B + W − T) / W, 0, 1)
//! ```
//!
//! full while the snapshot predates the binding, fading linearly to zero once a whole window of
//! samples follows it. Entries fully covered are pruned by the refresher. The pod's start-up
//! time (image pulls) is not modelled: a pod that starts late is under-counted for that long.

use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

use k8s_openapi::api::core::v1::Pod;

use crate::args::parse_byte_rate;

/// Pod annotation with the pod's expected bandwidth in bytes/s, as a quantity (`10M`, `1Gi`).
pub const EXPECTED_BANDWIDTH_ANNOTATION: &str = "networktraffic.ksched.io/expected-bandwidth";

/// One pod's reservation.
#[derive(Debug, Clone, PartialEq)]
struct Reservation {
    pod: Arc<str>,
    bytes_per_sec: f64,
    /// Unix seconds of Reserve.
    at: f64,
}

/// The share of a reservation made at `reserved_at` that a snapshot evaluated at
/// `evaluated_at` does not yet include, for a rate window of `window` seconds.
#[must_use]
pub fn uncovered_fraction(reserved_at: f64, evaluated_at: f64, window: f64) -> f64 {
    if window <= 0.0 {
        return 0.0;
    }
    ((reserved_at + window - evaluated_at) / window).clamp(0.0, 1.0)
}

/// The pod's expected bandwidth in bytes/s: its annotation, else `default`.
///
/// # Errors
/// The annotation's value and what is wrong with it, when it is not a non-negative quantity
/// (the caller then uses `default`).
pub fn expected_bandwidth(pod: &Pod, default: f64) -> Result<f64, String> {
    let Some(v) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPECTED_BANDWIDTH_ANNOTATION))
    else {
        return Ok(default);
    };
    parse_byte_rate(v)
}

/// Shards of [`Reservations`]: a change copies one shard's map (node names and `Arc`s), never
/// the reservations of other shards.
const SHARDS: usize = 64;

/// One shard: per node, its reservations (shared between versions until that node changes).
type Shard = HashMap<Arc<str>, Arc<Vec<Reservation>>, foldhash::fast::RandomState>;

/// Reservations per node. Immutable: Reserve and Unreserve build a changed version, so Score
/// reads it without a lock. A version shares everything but the changed node's shard with the
/// one it came from: nodes are spread over 64 shards by a hash of their name, each shard maps
/// a node to an `Arc`'d list. Reserve and Unreserve copy one shard's map (its node names are
/// `Arc`s too) and one node's list, so their cost does not grow with the reservations in
/// flight elsewhere.
#[derive(Debug, Clone)]
pub struct Reservations {
    shards: Arc<[Arc<Shard>; SHARDS]>,
    len: usize,
}

impl Default for Reservations {
    fn default() -> Self {
        Self {
            shards: Arc::new(std::array::from_fn(|_| Arc::new(Shard::default()))),
            len: 0,
        }
    }
}

impl Reservations {
    fn shard_of(node: &str) -> usize {
        // A fixed seed: a node's shard must not change between versions. The top bits: the low
        // ones also pick the bucket inside the shard's map.
        let h = foldhash::fast::FixedState::default().hash_one(node);
        usize::try_from(h >> 58).unwrap_or(0) % SHARDS
    }

    /// A version with shard `i` replaced by `f(copy of it)`.
    fn with_shard(&self, i: usize, len: usize, f: impl FnOnce(&mut Shard)) -> Self {
        let mut shards: [Arc<Shard>; SHARDS] = (*self.shards).clone();
        f(Arc::make_mut(&mut shards[i]));
        Self {
            shards: Arc::new(shards),
            len,
        }
    }

    /// True when nothing is reserved anywhere (the common case: Score skips the lookup).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes/s reserved on `node` that a snapshot evaluated at `evaluated_at` does not include.
    #[must_use]
    pub fn pending(&self, node: &str, evaluated_at: f64, window: f64) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        self.shards[Self::shard_of(node)]
            .get(node)
            .map_or(0.0, |rs| {
                rs.iter()
                    .map(|r| r.bytes_per_sec * uncovered_fraction(r.at, evaluated_at, window))
                    .sum()
            })
    }

    /// A version with `pod` reserving `bytes_per_sec` on `node` from `at`; an earlier
    /// reservation of the same pod on that node is replaced.
    #[must_use]
    pub fn with_added(&self, node: &str, pod: &str, bytes_per_sec: f64, at: f64) -> Self {
        let i = Self::shard_of(node);
        let old = self.shards[i].get(node);
        let replaced = old.is_some_and(|l| l.iter().any(|r| &*r.pod == pod));
        let len = if replaced { self.len } else { self.len + 1 };
        let mut list: Vec<Reservation> = old.map_or_else(Vec::new, |l| {
            l.iter().filter(|r| &*r.pod != pod).cloned().collect()
        });
        list.push(Reservation {
            pod: pod.into(),
            bytes_per_sec,
            at,
        });
        let key: Arc<str> = self.shards[i]
            .get_key_value(node)
            .map_or_else(|| node.into(), |(k, _)| k.clone());
        self.with_shard(i, len, |shard| {
            shard.insert(key, Arc::new(list));
        })
    }

    /// A version without `pod`'s reservation on `node`, or `None` when there is none
    /// (Unreserve without Reserve, or twice: nothing to do).
    #[must_use]
    pub fn with_removed(&self, node: &str, pod: &str) -> Option<Self> {
        let i = Self::shard_of(node);
        let old = self.shards[i].get(node)?;
        if !old.iter().any(|r| &*r.pod == pod) {
            return None;
        }
        let list: Vec<Reservation> = old.iter().filter(|r| &*r.pod != pod).cloned().collect();
        let removed = old.len() - list.len();
        Some(self.with_shard(i, self.len - removed, |shard| {
            if list.is_empty() {
                shard.remove(node);
            } else if let Some(slot) = shard.get_mut(node) {
                *slot = Arc::new(list);
            }
        }))
    }

    /// A version without the reservations a snapshot evaluated at `evaluated_at` fully covers,
    /// or `None` when there are none.
    #[must_use]
    pub fn pruned(&self, evaluated_at: f64, window: f64) -> Option<Self> {
        let covered = |r: &Reservation| uncovered_fraction(r.at, evaluated_at, window) <= 0.0;
        if !self
            .shards
            .iter()
            .flat_map(|s| s.values())
            .any(|l| l.iter().any(covered))
        {
            return None;
        }
        let mut len = 0;
        let shards: [Arc<Shard>; SHARDS] = std::array::from_fn(|i| {
            let shard = &self.shards[i];
            if !shard.values().any(|l| l.iter().any(covered)) {
                len += shard.values().map(|l| l.len()).sum::<usize>();
                return shard.clone();
            }
            let mut next = Shard::with_capacity_and_hasher(shard.len(), shard.hasher().clone());
            for (node, list) in shard.iter() {
                let kept: Vec<Reservation> = list.iter().filter(|r| !covered(r)).cloned().collect();
                len += kept.len();
                if kept.len() == list.len() {
                    next.insert(node.clone(), list.clone());
                } else if !kept.is_empty() {
                    next.insert(node.clone(), Arc::new(kept));
                }
            }
            Arc::new(next)
        });
        Some(Self {
            shards: Arc::new(shards),
            len,
        })
    }

    /// Number of reservations in flight.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn coverage_fades_linearly_over_the_window() {
        // Reserved at 1000 with a 60 s window.
        assert_eq!(uncovered_fraction(1000.0, 990.0, 60.0), 1.0); // snapshot older than the pod
        assert_eq!(uncovered_fraction(1000.0, 1000.0, 60.0), 1.0);
        assert_eq!(uncovered_fraction(1000.0, 1015.0, 60.0), 0.75);
        assert_eq!(uncovered_fraction(1000.0, 1060.0, 60.0), 0.0);
        assert_eq!(uncovered_fraction(1000.0, 2000.0, 60.0), 0.0);
        assert_eq!(uncovered_fraction(1000.0, 1000.0, 0.0), 0.0);
    }

    #[test]
    fn add_remove_prune() {
        let r = Reservations::default();
        assert!(r.is_empty());
        let r = r
            .with_added("n1", "ns/a", 10e6, 1000.0)
            .with_added("n1", "ns/b", 5e6, 1030.0);
        let r = r.with_added("n2", "ns/c", 1e6, 1000.0);
        assert_eq!(r.len(), 3);
        // At 1030: a is half covered, b not at all.
        assert_eq!(r.pending("n1", 1030.0, 60.0), 10e6 * 0.5 + 5e6);
        assert_eq!(r.pending("n3", 1030.0, 60.0), 0.0);
        // Re-reserving a pod replaces its entry.
        let r = r.with_added("n1", "ns/a", 20e6, 1000.0);
        assert_eq!(r.pending("n1", 1000.0, 60.0), 25e6);
        // Unreserve is idempotent.
        let r2 = r.with_removed("n2", "ns/c").unwrap();
        assert!(r2.with_removed("n2", "ns/c").is_none());
        assert!(r2.with_removed("n9", "ns/c").is_none());
        assert_eq!(r2.len(), 2);
        // Pruning at 1060 drops a (fully covered), keeps b.
        let p = r2.pruned(1060.0, 60.0).unwrap();
        assert_eq!(p.len(), 1);
        assert!(p.pruned(1060.0, 60.0).is_none());
        assert!(p.pruned(1090.0, 60.0).unwrap().is_empty());
    }

    #[test]
    fn annotation_or_default() {
        let mut pod = Pod::default();
        assert_eq!(expected_bandwidth(&pod, 7.0), Ok(7.0));
        pod.metadata.annotations = Some(BTreeMap::from([(
            EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
            "10Mi".to_owned(),
        )]));
        assert_eq!(expected_bandwidth(&pod, 7.0), Ok(10.0 * 1024.0 * 1024.0));
        pod.metadata.annotations = Some(BTreeMap::from([(
            EXPECTED_BANDWIDTH_ANNOTATION.to_owned(),
            "lots".to_owned(),
        )]));
        assert!(expected_bandwidth(&pod, 7.0).is_err());
    }
}
