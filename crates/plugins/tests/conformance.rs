//! Conformance with upstream kube-scheduler: for each case, the same cluster state (fake nodes
//! with labels, taints, capacity and images; bound pods; Services and PDBs) is built, the same
//! pod is created once for upstream kube-scheduler (v1.37, default profile) and once for ksched
//! (in-process, default profile), each in its own namespace, and both must choose the same
//! node. Every case is designed so that its best node is unique (ties would be broken at
//! random by both schedulers).
//!
//! Cases run one after another; each case's nodes carry a `conformance.ksched.io/case` label
//! and its pods select it, so earlier cases' nodes do not take part.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use k8s_openapi::{
    api::{
        core::v1::{
            Affinity, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
            NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinity, PodAffinityTerm,
            PodAntiAffinity, PreferredSchedulingTerm, Service, ServicePort, ServiceSpec,
            Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use ksched::Scheduler;
use ksched_testenv::{
    ControlPlane, KubeSchedulerOptions, NodeSpec, TestNamespace, TestPod,
    kube::{Api, Client, api::PostParams},
};
use tokio_util::sync::CancellationToken;

const CASE_LABEL: &str = "conformance.ksched.io/case";
const ZONE: &str = "topology.kubernetes.io/zone";
const HOST: &str = "kubernetes.io/hostname";
/// Pods created bound; no scheduler picks this name.
const NO_SCHEDULER: &str = "conformance-none";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profile {
    Default,
    MostAllocated,
}

impl Profile {
    fn upstream(self) -> &'static str {
        match self {
            Profile::Default => "default-scheduler",
            Profile::MostAllocated => "upstream-most-allocated",
        }
    }
    fn ksched(self) -> &'static str {
        match self {
            Profile::Default => "ksched-conformance",
            Profile::MostAllocated => "ksched-most-allocated",
        }
    }
}

/// One node of a case: name suffix, template, images (name, bytes).
struct CaseNode {
    suffix: &'static str,
    spec: NodeSpec,
    images: Vec<(&'static str, i64)>,
}

fn node(suffix: &'static str) -> CaseNode {
    CaseNode {
        suffix,
        spec: NodeSpec::new().cpu("4").memory("8Gi").pods(110),
        images: Vec::new(),
    }
}

impl CaseNode {
    fn with(mut self, f: impl FnOnce(NodeSpec) -> NodeSpec) -> Self {
        self.spec = f(self.spec);
        self
    }
    fn image(mut self, name: &'static str, size: i64) -> Self {
        self.images.push((name, size));
        self
    }
}

enum Extra {
    /// A Service selecting `app=<value>` in the case namespace.
    Service(&'static str),
    /// A PDB (minAvailable 1, so no disruption allowed) over `app=<value>`.
    Pdb(&'static str),
}

struct Case {
    name: String,
    profile: Profile,
    nodes: Vec<CaseNode>,
    /// (node suffix, pod) bound before the test pod is created.
    existing: Vec<(&'static str, Pod)>,
    pod: Pod,
    extra: Vec<Extra>,
    /// The node both must choose (by suffix): the case's own expectation, checked too.
    want: &'static str,
}

fn pod(name: &str) -> TestPod {
    TestPod::new(name).cpu("100m").memory("128Mi")
}

fn tiny(name: &str) -> TestPod {
    TestPod::new(name).cpu("10m").memory("10Mi")
}

fn with_spec(p: TestPod, f: impl FnOnce(&mut k8s_openapi::api::core::v1::PodSpec)) -> Pod {
    let mut pod = p.to_pod();
    if let Some(spec) = pod.spec.as_mut() {
        f(spec);
    }
    pod
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

fn required_node_affinity(term: NodeSelectorTerm) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term],
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

fn exprs(rs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(rs),
        match_fields: None,
    }
}

fn pod_term(key: &str, labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector(labels)),
        topology_key: key.into(),
        ..PodAffinityTerm::default()
    }
}

fn toleration(key: &str, op: &str, value: Option<&str>, effect: Option<&str>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some(op.into()),
        value: value.map(str::to_owned),
        effect: effect.map(str::to_owned),
        toleration_seconds: None,
    }
}

fn spread(max_skew: i32, key: &str, when: &str, app: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: key.into(),
        when_unsatisfiable: when.into(),
        label_selector: Some(selector(&[("app", app)])),
        ..TopologySpreadConstraint::default()
    }
}

fn case(
    name: &str,
    nodes: Vec<CaseNode>,
    existing: Vec<(&'static str, Pod)>,
    pod: Pod,
    want: &'static str,
) -> Case {
    Case {
        name: name.into(),
        profile: Profile::Default,
        nodes,
        existing,
        pod,
        extra: Vec::new(),
        want,
    }
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let three = || vec![node("n1"), node("n2"), node("n3")];
    let mut cs = vec![
        // TaintToleration Filter.
        case(
            "taint-noschedule",
            vec![
                node("n1").with(|s| s.taint("a", Some("1"), "NoSchedule")),
                node("n2").with(|s| s.taint("b", Some("2"), "NoSchedule")),
                node("n3"),
            ],
            vec![],
            pod("p").to_pod(),
            "n3",
        ),
        case(
            "taint-noexecute",
            vec![
                node("n1").with(|s| s.taint("a", None, "NoExecute")),
                node("n2"),
                node("n3").with(|s| s.taint("a", None, "NoExecute")),
            ],
            vec![],
            pod("p").to_pod(),
            "n2",
        ),
        case(
            "toleration-equal",
            vec![
                node("n1").with(|s| s.taint("dedicated", Some("gpu"), "NoSchedule")),
                node("n2").with(|s| s.taint("dedicated", Some("db"), "NoSchedule")),
                node("n3").with(|s| s.taint("dedicated", Some("web"), "NoSchedule")),
            ],
            vec![],
            with_spec(pod("p"), |s| {
                s.tolerations = Some(vec![toleration(
                    "dedicated",
                    "Equal",
                    Some("db"),
                    Some("NoSchedule"),
                )])
            }),
            "n2",
        ),
        case(
            "toleration-exists",
            vec![
                node("n1").with(|s| s.taint("k1", Some("x"), "NoSchedule")),
                node("n2").with(|s| s.taint("k2", Some("y"), "NoExecute")),
                node("n3").with(|s| s.taint("k3", Some("z"), "NoSchedule")),
            ],
            vec![],
            with_spec(pod("p"), |s| {
                s.tolerations = Some(vec![toleration("k2", "Exists", None, None)])
            }),
            "n2",
        ),
        // TaintToleration Score.
        case(
            "prefer-no-schedule-count",
            vec![
                node("n1").with(|s| {
                    s.taint("a", None, "PreferNoSchedule")
                        .taint("b", None, "PreferNoSchedule")
                }),
                node("n2").with(|s| s.taint("a", None, "PreferNoSchedule")),
                node("n3"),
            ],
            vec![],
            pod("p").to_pod(),
            "n3",
        ),
        case(
            "prefer-no-schedule-tolerated",
            vec![
                node("n1").with(|s| s.taint("a", Some("1"), "PreferNoSchedule")),
                node("n2").with(|s| s.taint("b", Some("2"), "PreferNoSchedule")),
            ],
            vec![],
            with_spec(pod("p"), |s| {
                s.tolerations = Some(vec![toleration(
                    "b",
                    "Equal",
                    Some("2"),
                    Some("PreferNoSchedule"),
                )])
            }),
            "n2",
        ),
        // NodeUnschedulable.
        case(
            "cordoned",
            vec![
                node("n1").with(|s| s.unschedulable(true)),
                node("n2").with(|s| s.unschedulable(true)),
                node("n3"),
            ],
            vec![],
            pod("p").to_pod(),
            "n3",
        ),
        case(
            "cordoned-tolerated",
            vec![
                node("n1").with(|s| s.unschedulable(true).cpu("16").memory("32Gi")),
                node("n2"),
            ],
            vec![],
            with_spec(pod("p"), |s| {
                s.tolerations = Some(vec![toleration(
                    "node.kubernetes.io/unschedulable",
                    "Exists",
                    None,
                    Some("NoSchedule"),
                )]);
            }),
            "n1",
        ),
        // NodeAffinity.
        case(
            "node-selector",
            vec![
                node("n1").with(|s| s.label("disk", "ssd")),
                node("n2").with(|s| s.label("disk", "hdd")),
                node("n3"),
            ],
            vec![],
            pod("p").node_selector("disk", "ssd").to_pod(),
            "n1",
        ),
    ];
    let tiers = || {
        vec![
            node("n1").with(|s| s.label("tier", "a").label("gen", "3")),
            node("n2").with(|s| s.label("tier", "b").label("gen", "5").label("gpu", "yes")),
            node("n3").with(|s| s.label("gen", "7")),
        ]
    };
    for (name, term, want) in [
        (
            "affinity-in",
            exprs(vec![req("tier", "In", &["b", "x"])]),
            "n2",
        ),
        (
            "affinity-notin",
            exprs(vec![req("tier", "NotIn", &["a", "b"])]),
            "n3",
        ),
        (
            "affinity-exists",
            exprs(vec![req("gpu", "Exists", &[])]),
            "n2",
        ),
        (
            "affinity-doesnotexist",
            exprs(vec![req("tier", "DoesNotExist", &[])]),
            "n3",
        ),
        ("affinity-gt", exprs(vec![req("gen", "Gt", &["6"])]), "n3"),
        ("affinity-lt", exprs(vec![req("gen", "Lt", &["4"])]), "n1"),
    ] {
        cs.push(case(
            name,
            tiers(),
            vec![],
            with_spec(pod("p"), |s| {
                s.affinity = Some(required_node_affinity(term))
            }),
            want,
        ));
    }
    // Terms are ORed, requirements within a term ANDed: only n2 satisfies a term.
    cs.push(case(
        "affinity-or-terms",
        tiers(),
        vec![],
        with_spec(pod("p"), |s| {
            let mut a = required_node_affinity(exprs(vec![
                req("tier", "In", &["a"]),
                req("gen", "Gt", &["4"]),
            ]));
            if let Some(r) = a.node_affinity.as_mut().and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_mut()
            }) {
                r.node_selector_terms
                    .push(exprs(vec![req("gpu", "Exists", &[])]));
            }
            s.affinity = Some(a);
        }),
        "n2",
    ));
    cs.push(Case {
        name: "affinity-match-fields".into(),
        ..case("", three(), vec![], pod("p").to_pod(), "n2")
    });
    cs.push(case(
        "preferred-node-affinity",
        tiers(),
        vec![],
        with_spec(pod("p"), |s| {
            s.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: None,
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            weight: 10,
                            preference: exprs(vec![req("tier", "In", &["a"])]),
                        },
                        PreferredSchedulingTerm {
                            weight: 50,
                            preference: exprs(vec![req("tier", "In", &["b"])]),
                        },
                    ]),
                }),
                ..Affinity::default()
            });
        }),
        "n2",
    ));
    // NodeResourcesFit Filter.
    cs.push(case(
        "insufficient-cpu",
        three(),
        vec![
            ("n1", tiny("e1").cpu("3500m").to_pod()),
            ("n2", tiny("e2").cpu("3900m").to_pod()),
            ("n3", tiny("e3").cpu("2").to_pod()),
        ],
        pod("p").cpu("1").to_pod(),
        "n3",
    ));
    cs.push(case(
        "insufficient-memory",
        three(),
        vec![
            ("n1", tiny("e1").memory("7Gi").to_pod()),
            ("n2", tiny("e2").memory("4Gi").to_pod()),
            ("n3", tiny("e3").memory("7500Mi").to_pod()),
        ],
        pod("p").memory("2Gi").to_pod(),
        "n2",
    ));
    cs.push(case(
        "too-many-pods",
        vec![
            node("n1").with(|s| s.pods(1)),
            node("n2").with(|s| s.pods(2)),
            node("n3").with(|s| s.pods(3)),
        ],
        vec![
            ("n1", tiny("e1").to_pod()),
            ("n2", tiny("e2").to_pod()),
            ("n2", tiny("e3").to_pod()),
            ("n3", tiny("e4").to_pod()),
        ],
        pod("p").to_pod(),
        "n3",
    ));
    cs.push(case(
        "extended-resource",
        vec![
            node("n1"),
            node("n2").with(|s| s.capacity("example.com/gpu", "2")),
            node("n3"),
        ],
        vec![],
        pod("p").request("example.com/gpu", "1").to_pod(),
        "n2",
    ));
    // NodePorts.
    let host_port = |p: TestPod| {
        with_spec(p, |s| {
            if let Some(c) = s.containers.first_mut() {
                c.ports = Some(vec![ContainerPort {
                    container_port: 8080,
                    host_port: Some(8080),
                    ..ContainerPort::default()
                }]);
            }
        })
    };
    cs.push(case(
        "host-port",
        three(),
        vec![("n1", host_port(tiny("e1"))), ("n2", host_port(tiny("e2")))],
        host_port(pod("p")),
        "n3",
    ));
    // NodeResourcesFit / BalancedAllocation scoring.
    cs.push(case(
        "least-allocated",
        three(),
        vec![
            ("n1", TestPod::new("e1").cpu("2").memory("4Gi").to_pod()),
            ("n2", TestPod::new("e2").cpu("1").memory("2Gi").to_pod()),
            ("n3", TestPod::new("e3").cpu("3").memory("6Gi").to_pod()),
        ],
        pod("p").to_pod(),
        "n2",
    ));
    cs.push(case(
        "balanced-allocation",
        vec![node("n1"), node("n2")],
        // A memory-heavy pod evens out the CPU-heavy n1 and skews the memory-heavy n2.
        vec![
            ("n1", TestPod::new("e1").cpu("2").memory("1Gi").to_pod()),
            ("n2", TestPod::new("e2").cpu("500m").memory("4Gi").to_pod()),
        ],
        TestPod::new("p").cpu("100m").memory("2Gi").to_pod(),
        "n1",
    ));
    // Balance after placement is nearly the same on both nodes; only the improvement over the
    // balance before (upstream since 1.36) tells them apart.
    cs.push(case(
        "balanced-allocation-improvement",
        vec![node("n1"), node("n2")],
        vec![
            ("n1", TestPod::new("e1").cpu("1").memory("2Gi").to_pod()),
            (
                "n2",
                TestPod::new("e2").cpu("500m").memory("3584Mi").to_pod(),
            ),
        ],
        TestPod::new("p").cpu("1").memory("512Mi").to_pod(),
        "n2",
    ));
    cs.push(Case {
        profile: Profile::MostAllocated,
        ..case(
            "most-allocated",
            vec![node("n1"), node("n2")],
            vec![
                ("n1", TestPod::new("e1").cpu("3").memory("6Gi").to_pod()),
                ("n2", TestPod::new("e2").cpu("1").memory("2Gi").to_pod()),
            ],
            pod("p").to_pod(),
            "n1",
        )
    });
    // ImageLocality: a huge image (its spread over the cluster scales it down).
    cs.push(case(
        "image-locality",
        vec![
            node("n1"),
            node("n2").image("conformance.example/app:1", 500 << 30),
            node("n3"),
        ],
        vec![],
        with_spec(pod("p"), |s| {
            if let Some(c) = s.containers.first_mut() {
                c.image = Some("conformance.example/app:1".into());
            }
        }),
        "n2",
    ));
    cs
}

#[allow(clippy::too_many_lines)]
fn topology_cases() -> Vec<Case> {
    let zones = |c: &str| {
        let (a, b, z) = (format!("{c}-a"), format!("{c}-b"), format!("{c}-c"));
        vec![
            node("n1").with(move |s| s.label(ZONE, a)),
            node("n2").with(move |s| s.label(ZONE, b)),
            node("n3").with(move |s| s.label(ZONE, z)),
        ]
    };
    let web = |n: &str| tiny(n).label("app", "web").to_pod();
    let mut cs = vec![
        case(
            "spread-zone-hard",
            zones("spread-zone-hard"),
            vec![("n1", web("w1")), ("n1", web("w2")), ("n2", web("w3"))],
            with_spec(pod("p").label("app", "web"), |s| {
                s.topology_spread_constraints = Some(vec![spread(1, ZONE, "DoNotSchedule", "web")])
            }),
            "n3",
        ),
        case(
            "spread-hostname-hard",
            vec![node("n1"), node("n2"), node("n3")],
            vec![("n1", web("w1")), ("n2", web("w2"))],
            with_spec(pod("p").label("app", "web"), |s| {
                s.topology_spread_constraints = Some(vec![spread(1, HOST, "DoNotSchedule", "web")])
            }),
            "n3",
        ),
        case(
            "spread-zone-soft",
            zones("spread-zone-soft"),
            vec![("n1", web("w1")), ("n1", web("w2")), ("n2", web("w3"))],
            with_spec(pod("p").label("app", "web"), |s| {
                s.topology_spread_constraints = Some(vec![spread(1, ZONE, "ScheduleAnyway", "web")])
            }),
            "n3",
        ),
        case(
            "spread-min-domains",
            vec![
                node("n1").with(|s| s.label(ZONE, "spread-min-domains-a")),
                node("n2").with(|s| s.label(ZONE, "spread-min-domains-b")),
            ],
            vec![("n1", web("w1")), ("n1", web("w2")), ("n2", web("w3"))],
            with_spec(pod("p").label("app", "web"), |s| {
                let mut c = spread(2, ZONE, "DoNotSchedule", "web");
                c.min_domains = Some(3);
                s.topology_spread_constraints = Some(vec![c]);
            }),
            "n2",
        ),
        Case {
            extra: vec![Extra::Service("svc")],
            ..case(
                "spread-service-default",
                vec![node("n1"), node("n2"), node("n3")],
                vec![
                    ("n1", tiny("s1").label("app", "svc").to_pod()),
                    ("n1", tiny("s2").label("app", "svc").to_pod()),
                    ("n2", tiny("s3").label("app", "svc").to_pod()),
                ],
                pod("p").label("app", "svc").to_pod(),
                "n3",
            )
        },
        // InterPodAffinity.
        case(
            "pod-affinity-zone",
            zones("pod-affinity-zone"),
            vec![("n2", tiny("db").label("app", "db").to_pod())],
            with_spec(pod("p"), |s| {
                s.affinity = Some(Affinity {
                    pod_affinity: Some(PodAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![pod_term(
                            ZONE,
                            &[("app", "db")],
                        )]),
                        ..PodAffinity::default()
                    }),
                    ..Affinity::default()
                });
            }),
            "n2",
        ),
        case(
            "pod-anti-affinity-host",
            vec![node("n1"), node("n2"), node("n3")],
            vec![("n1", web("w1")), ("n2", web("w2"))],
            with_spec(pod("p").label("app", "web"), |s| {
                s.affinity = Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![pod_term(
                            HOST,
                            &[("app", "web")],
                        )]),
                        ..PodAntiAffinity::default()
                    }),
                    ..Affinity::default()
                });
            }),
            "n3",
        ),
    ];
    let lonely = |n: &str| {
        with_spec(tiny(n).label("app", "lonely"), |s| {
            s.affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![pod_term(
                        HOST,
                        &[("app", "web")],
                    )]),
                    ..PodAntiAffinity::default()
                }),
                ..Affinity::default()
            });
        })
    };
    cs.push(case(
        "existing-anti-affinity",
        vec![node("n1"), node("n2"), node("n3")],
        vec![("n1", lonely("l1")), ("n2", lonely("l2"))],
        pod("p").label("app", "web").to_pod(),
        "n3",
    ));
    let preferred = |aff: Vec<(i32, PodAffinityTerm)>, anti: Vec<(i32, PodAffinityTerm)>| {
        let w = |v: Vec<(i32, PodAffinityTerm)>| {
            (!v.is_empty()).then(|| {
                v.into_iter()
                    .map(|(weight, t)| WeightedPodAffinityTerm {
                        weight,
                        pod_affinity_term: t,
                    })
                    .collect()
            })
        };
        Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: w(aff),
                ..PodAffinity::default()
            }),
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: w(anti),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }
    };
    cs.push(case(
        "preferred-pod-affinity",
        vec![node("n1"), node("n2"), node("n3")],
        vec![("n2", tiny("cache").label("app", "cache").to_pod())],
        with_spec(pod("p"), |s| {
            s.affinity = Some(preferred(
                vec![(100, pod_term(HOST, &[("app", "cache")]))],
                vec![],
            ))
        }),
        "n2",
    ));
    cs.push(case(
        "preferred-pod-anti-affinity",
        vec![node("n1"), node("n2"), node("n3")],
        vec![
            ("n1", tiny("x1").label("app", "noisy").to_pod()),
            ("n2", tiny("x2").label("app", "noisy").to_pod()),
        ],
        with_spec(pod("p"), |s| {
            s.affinity = Some(preferred(
                vec![],
                vec![(100, pod_term(HOST, &[("app", "noisy")]))],
            ))
        }),
        "n3",
    ));
    let client_pod = with_spec(tiny("client"), |s| {
        s.affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![pod_term(
                    HOST,
                    &[("app", "server")],
                )]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        });
    });
    cs.push(case(
        "hard-pod-affinity-weight",
        vec![node("n1"), node("n2"), node("n3")],
        vec![("n2", client_pod)],
        pod("p").label("app", "server").to_pod(),
        "n2",
    ));
    // DefaultPreemption.
    let full = |n: &str, prio: i32| TestPod::new(n).cpu("3800m").memory("1Gi").priority(prio);
    cs.push(case(
        "preempt-lowest-priority",
        vec![node("n1"), node("n2")],
        vec![
            ("n1", full("v1", 1).to_pod()),
            ("n2", full("v2", 5).to_pod()),
        ],
        pod("p").cpu("1").priority(100).to_pod(),
        "n1",
    ));
    cs.push(Case {
        extra: vec![Extra::Pdb("guarded")],
        ..case(
            "preempt-respects-pdb",
            vec![node("n1"), node("n2")],
            vec![
                ("n1", full("v1", 1).label("app", "guarded").to_pod()),
                ("n2", full("v2", 3).label("app", "plain").to_pod()),
            ],
            pod("p").cpu("1").priority(100).to_pod(),
            "n2",
        )
    });
    cs.push(case(
        "preempt-fewest-victims",
        vec![node("n1"), node("n2")],
        vec![
            (
                "n1",
                TestPod::new("a1")
                    .cpu("1900m")
                    .memory("1Gi")
                    .priority(2)
                    .to_pod(),
            ),
            (
                "n1",
                TestPod::new("a2")
                    .cpu("1900m")
                    .memory("1Gi")
                    .priority(2)
                    .to_pod(),
            ),
            (
                "n2",
                TestPod::new("b1")
                    .cpu("3800m")
                    .memory("1Gi")
                    .priority(2)
                    .to_pod(),
            ),
        ],
        pod("p").cpu("3").priority(100).to_pod(),
        "n2",
    ));
    cs
}

fn all_cases() -> Vec<Case> {
    let mut cs = cases();
    cs.extend(topology_cases());
    // The match-fields case names its node, which depends on the case name.
    for c in &mut cs {
        if c.name == "affinity-match-fields" {
            let target = format!("{}-n2", c.name);
            c.pod = with_spec(pod("p"), |s| {
                s.affinity = Some(required_node_affinity(NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "In", &[target.as_str()])]),
                }));
            });
        }
    }
    cs
}

fn node_name(case: &str, suffix: &str) -> String {
    format!("{case}-{suffix}")
}

async fn create_case_nodes(client: &Client, c: &Case) {
    let api: Api<Node> = Api::all(client.clone());
    for n in &c.nodes {
        let name = node_name(&c.name, n.suffix);
        let mut node = n
            .spec
            .clone()
            .label(CASE_LABEL, c.name.clone())
            .to_node(&name);
        if !n.images.is_empty()
            && let Some(status) = node.status.as_mut()
        {
            status.images = Some(
                n.images
                    .iter()
                    .map(|(i, size)| ContainerImage {
                        names: Some(vec![(*i).to_owned()]),
                        size_bytes: Some(*size),
                    })
                    .collect(),
            );
        }
        api.create(&PostParams::default(), &node)
            .await
            .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
    }
}

async fn create_extras(ns: &TestNamespace, c: &Case) {
    for e in &c.extra {
        match e {
            Extra::Service(app) => {
                let svc = Service {
                    metadata: ObjectMeta {
                        name: Some((*app).to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(ServiceSpec {
                        selector: Some([("app".to_owned(), (*app).to_owned())].into()),
                        ports: Some(vec![ServicePort {
                            port: 80,
                            ..ServicePort::default()
                        }]),
                        ..ServiceSpec::default()
                    }),
                    status: None,
                };
                ns.api::<Service>()
                    .create(&PostParams::default(), &svc)
                    .await
                    .expect("service");
            }
            Extra::Pdb(app) => {
                let pdb = PodDisruptionBudget {
                    metadata: ObjectMeta {
                        name: Some((*app).to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PodDisruptionBudgetSpec {
                        min_available: Some(IntOrString::Int(1)),
                        selector: Some(selector(&[("app", app)])),
                        ..PodDisruptionBudgetSpec::default()
                    }),
                    status: None,
                };
                ns.api::<PodDisruptionBudget>()
                    .create(&PostParams::default(), &pdb)
                    .await
                    .expect("pdb");
            }
        }
    }
}

/// Runs the case in a fresh namespace for `scheduler_name`; returns the chosen node's suffix.
async fn run_phase(
    cp: &ControlPlane,
    c: &Case,
    tag: &str,
    scheduler_name: &str,
) -> Result<String, String> {
    let ns = cp
        .namespace(&format!("{}-{tag}", c.name))
        .await
        .map_err(|e| e.to_string())?;
    create_extras(&ns, c).await;
    // Give the schedulers' informers a moment to see Services and PDBs.
    if !c.extra.is_empty() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (suffix, p) in &c.existing {
        let mut p = p.clone();
        if let Some(s) = p.spec.as_mut() {
            s.scheduler_name = Some(NO_SCHEDULER.into());
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        ns.create_pod(p)
            .await
            .map_err(|e| format!("existing pod {name}: {e}"))?;
        ns.bind_pod(&name, &node_name(&c.name, suffix))
            .await
            .map_err(|e| format!("binding {name}: {e}"))?;
    }
    let mut p = c.pod.clone();
    let name = format!("{}-{tag}", c.name);
    p.metadata.name = Some(name.clone());
    if let Some(s) = p.spec.as_mut() {
        s.scheduler_name = Some(scheduler_name.into());
        s.node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(CASE_LABEL.into(), c.name.clone());
    }
    ns.create_pod(p)
        .await
        .map_err(|e| format!("creating {name}: {e}"))?;
    let bound = ns
        .wait_for_pod_bound(&name, Duration::from_secs(40))
        .await
        .map_err(|e| e.to_string());
    // Leave nothing behind that later phases could count.
    let pods = ns
        .pods()
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    for pod in pods {
        let _ = ns
            .delete_pod(pod.metadata.name.as_deref().unwrap_or_default())
            .await;
    }
    let node = bound?;
    Ok(node
        .strip_prefix(&format!("{}-", c.name))
        .unwrap_or(&node)
        .to_owned())
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_node_as_upstream() {
    let started = std::time::Instant::now();
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client().await.expect("client");
    let most = "  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n";
    let upstream_yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {:?}\n  qps: 5000\n  burst: 5000\nleaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: {}\n- schedulerName: {}\n{most}",
        cp.kubeconfig_path().display().to_string(),
        Profile::Default.upstream(),
        Profile::MostAllocated.upstream(),
    );
    let upstream = cp
        .start_kube_scheduler(KubeSchedulerOptions {
            config_yaml: Some(upstream_yaml),
            verbosity: std::env::var("CONFORMANCE_UPSTREAM_V")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            ..KubeSchedulerOptions::default()
        })
        .await
        .expect("upstream kube-scheduler");
    let ksched_yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nclientConnection:\n  qps: 5000\n  burst: 5000\nprofiles:\n- schedulerName: {}\n- schedulerName: {}\n{most}",
        Profile::Default.ksched(),
        Profile::MostAllocated.ksched(),
    );
    let scheduler = Scheduler::builder()
        .with_client(client.clone())
        .with_config_yaml(ksched_yaml)
        .with_leader_election(false)
        .with_bind_address(free_addr())
        .build()
        .await
        .expect("build ksched");
    let token = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(token.clone()));

    // CONFORMANCE_CASES=a,b runs only those cases (for investigating one).
    let only: Option<Vec<String>> = std::env::var("CONFORMANCE_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    for c in &cases {
        create_case_nodes(&client, c).await;
    }
    // Let both schedulers' node informers catch up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut report = Vec::new();
    let mut mismatches = Vec::new();
    for c in &cases {
        let up = run_phase(cp, c, "u", c.profile.upstream()).await;
        let ks = run_phase(cp, c, "k", c.profile.ksched()).await;
        let line = format!(
            "{:<30} upstream={:<8} ksched={:<8} want={}",
            c.name,
            show(&up),
            show(&ks),
            c.want
        );
        eprintln!("{line}");
        if up.as_deref().ok() != Some(c.want) || ks.as_deref().ok() != Some(c.want) {
            mismatches.push(format!(
                "{line}\n    upstream: {up:?}\n    ksched:   {ks:?}"
            ));
        }
        report.push(line);
    }
    eprintln!(
        "{} cases in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    if !mismatches.is_empty() {
        eprintln!(
            "upstream log: {}\n{}",
            upstream.log_path().display(),
            upstream.log_tail(40)
        );
        if std::env::var_os("CONFORMANCE_KEEP_LOG").is_some() {
            let _ = std::fs::copy(upstream.log_path(), "/tmp/conformance-upstream.log");
        }
    }
    drop(upstream);
    assert!(
        only.is_some() || cases.len() >= 30,
        "only {} cases",
        cases.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(n) => n.clone(),
        Err(_) => "error".into(),
    }
}
