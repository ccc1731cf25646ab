//! Generated scenarios (`simulate --nodes N --pods M --seed S`): a cluster of mixed node sizes
//! and uneven baseline traffic, and three pod templates — a steady stream, a burst and a
//! trickle of heavy talkers. Everything is drawn from a `StdRng` seeded with `S`, so the same
//! three numbers always give the same scenario.

use std::{collections::BTreeMap, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::scenario::{
    Arrival, Dur, NetworkTrafficSettings, NodeGroup, PodGroup, ProfileKind, Qty, Scenario,
};

/// Node shapes: (cpu, memory).
const SHAPES: [(&str, &str); 3] = [("4", "16Gi"), ("8", "32Gi"), ("16", "64Gi")];

fn qty(text: &str) -> Qty {
    // Only called with literals and formatted integers below, which always parse.
    Qty::parse(text).unwrap_or_else(|_| Qty::zero())
}

fn secs(s: f64) -> Dur {
    Dur::from_duration(Duration::from_secs_f64(s))
}

/// A scenario of `nodes` nodes and `pods` pods drawn from `seed`.
#[must_use]
pub fn generate(nodes: u32, pods: u32, seed: u64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes = nodes.max(1);
    let pods = pods.max(1);
    let node_groups = (0..nodes)
        .map(|i| {
            let (cpu, memory) = SHAPES[rng.random_range(0..SHAPES.len())];
            // Log-uniform between 1 MB/s and 200 MB/s: a few busy nodes, many quiet ones.
            let baseline = 10f64.powf(rng.random_range(6.0..8.3)).round();
            NodeGroup {
                name: format!("node-{i:04}"),
                count: 1,
                capacity: BTreeMap::from([
                    ("cpu".to_owned(), qty(cpu)),
                    ("memory".to_owned(), qty(memory)),
                    ("pods".to_owned(), qty("110")),
                ]),
                labels: BTreeMap::from([(
                    "topology.kubernetes.io/zone".to_owned(),
                    format!("zone-{}", i % 3),
                )]),
                taints: Vec::new(),
                baseline_traffic: Some(qty(&format!("{baseline}"))),
                // 10 Gbit/s.
                link_capacity: Some(qty("1250M")),
            }
        })
        .collect();
    // Split the pods 60 / 30 / 10 between the templates (at least one in the first).
    let burst = pods * 3 / 10;
    let heavy = pods / 10;
    let steady = pods - burst - heavy;
    // The steady stream lasts about a minute whatever its size.
    let steady_rate = f64::from(steady.max(1)) / 60.0;
    let mut groups = vec![PodGroup {
        name: "steady".into(),
        count: Some(steady),
        requests: BTreeMap::from([
            (
                "cpu".to_owned(),
                qty(&format!("{}m", 100 * rng.random_range(1..=5))),
            ),
            (
                "memory".to_owned(),
                qty(&format!("{}Mi", 128 * rng.random_range(1..=4))),
            ),
        ]),
        priority: None,
        expected_bandwidth: Some(qty(&format!("{}M", rng.random_range(1..=5)))),
        labels: BTreeMap::from([("app".to_owned(), "steady".to_owned())]),
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        arrival: Arrival::Rate {
            start: secs(0.0),
            rate: steady_rate,
            poisson: true,
        },
    }];
    if burst > 0 {
        groups.push(PodGroup {
            name: "burst".into(),
            count: Some(burst),
            requests: BTreeMap::from([
                (
                    "cpu".to_owned(),
                    qty(&format!("{}m", 100 * rng.random_range(1..=3))),
                ),
                ("memory".to_owned(), qty("256Mi")),
            ]),
            priority: Some(100),
            expected_bandwidth: Some(qty(&format!("{}M", rng.random_range(5..=20)))),
            labels: BTreeMap::from([("app".to_owned(), "burst".to_owned())]),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            arrival: Arrival::At {
                at: secs(f64::from(rng.random_range(10..=40))),
            },
        });
    }
    if heavy > 0 {
        groups.push(PodGroup {
            name: "heavy".into(),
            count: Some(heavy),
            requests: BTreeMap::from([
                ("cpu".to_owned(), qty("1")),
                ("memory".to_owned(), qty("1Gi")),
            ]),
            priority: None,
            expected_bandwidth: Some(qty(&format!("{}M", rng.random_range(30..=80)))),
            labels: BTreeMap::from([("app".to_owned(), "heavy".to_owned())]),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            arrival: Arrival::Rate {
                start: secs(5.0),
                rate: f64::from(heavy) / 50.0,
                poisson: false,
            },
        });
    }
    Scenario {
        name: format!("generated-n{nodes}-p{pods}-s{seed}"),
        description: format!(
            "{nodes} generated nodes, {pods} pods (steady stream, burst, heavy talkers), seed {seed}"
        ),
        seed,
        metric_lag: secs(30.0),
        refresh_interval: secs(15.0),
        profiles: vec![ProfileKind::NetworkTraffic],
        network_traffic: NetworkTrafficSettings::default(),
        percentage_of_nodes_to_score: None,
        nodes: node_groups,
        pods: groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scenario_other_seed_other_scenario() {
        let a = generate(50, 400, 9);
        let b = generate(50, 400, 9);
        assert_eq!(a, b);
        assert_eq!(a.to_yaml().unwrap(), b.to_yaml().unwrap());
        assert_ne!(a, generate(50, 400, 10));
        assert_eq!(a.node_count(), 50);
        assert_eq!(a.pod_count(), 400);
        assert!(a.validate().is_ok());
        // And it reads back as the same scenario.
        let again = Scenario::from_yaml(&a.to_yaml().unwrap(), "gen").unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn tiny_sizes_are_valid() {
        for (n, p) in [(1, 1), (1, 2), (3, 9), (0, 0)] {
            let s = generate(n, p, 1);
            assert!(s.validate().is_ok(), "{n} {p}: {:?}", s.validate());
            assert_eq!(s.pod_count(), p.max(1) as usize);
        }
    }
}
