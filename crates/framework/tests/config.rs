//! Configuration parsing and validation, including seed 000's broken ConfigMap.

mod common;

use std::{path::Path, sync::Arc};

use ksched_framework::{
    Framework, Handle,
    config::{ConfigError, SchedulerConfig},
    runtime::{FrameworkOptions, Parallelizer},
};

fn parse(yaml: &str) -> Result<SchedulerConfig, ConfigError> {
    let log = common::Log::default();
    SchedulerConfig::from_yaml(yaml, Some(Path::new("sched.yaml")), &common::registry(&log))
}

fn build(yaml: &str) -> Result<(), ConfigError> {
    let log = common::Log::default();
    let reg = common::registry(&log);
    let cfg = SchedulerConfig::from_yaml(yaml, Some(Path::new("sched.yaml")), &reg)?;
    let opts = FrameworkOptions {
        percentage_of_nodes_to_score: 0,
        parallelizer: Parallelizer::new(2).unwrap(),
        metrics: None,
    };
    for p in &cfg.profiles {
        Framework::new(
            p,
            &reg,
            Arc::new(Handle::for_tests(&p.scheduler_name)),
            opts.clone(),
        )
        .map_err(|e| e.in_file(cfg.file.clone()))?;
    }
    Ok(())
}

fn err(yaml: &str) -> String {
    match build(yaml) {
        Ok(()) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// The KubeSchedulerConfiguration of seed 000's ConfigMap, verbatim: the score plugin is
/// enabled as `network_traffic`, its args are given to `NetworkTraffic`.
const SEED_CONFIG: &str = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
profiles:
  - schedulerName: networktraffic-scheduler
    plugins:
      score:
        enabled:
          - name: network_traffic
    pluginConfig:
      - name: "NetworkTraffic"
        args:
          ip: "prometheus.kube-system:9090"
          deviceName: "eth0"
          timeRange: 60
"#;

#[test]
fn seed_configmap_is_rejected_naming_the_mismatch() {
    let e = err(SEED_CONFIG);
    assert!(e.contains("sched.yaml"), "{e}");
    assert!(e.contains("profiles[0].pluginConfig[0].name"), "{e}");
    assert!(
        e.contains(
            "\"NetworkTraffic\", which is not enabled in profile \"networktraffic-scheduler\""
        ),
        "{e}"
    );
    assert!(
        e.contains("the profile enables \"network_traffic\" — plugin names must match exactly"),
        "{e}"
    );
    assert!(e.contains("profiles[0].plugins.score.enabled[0].name: unknown plugin \"network_traffic\" (did you mean \"NetworkTraffic\"?)"), "{e}");
}

#[test]
fn corrected_seed_config_parses() {
    let yaml = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
profiles:
  - schedulerName: networktraffic-scheduler
    plugins:
      score:
        enabled:
          - name: NetworkTraffic
            weight: 5
    pluginConfig:
      - name: NetworkTraffic
        args:
          prometheusAddress: "http://prometheus.kube-system:9090"
"#;
    build(yaml).unwrap();
    let cfg = parse(yaml).unwrap();
    assert!(!cfg.leader_election.leader_elect);
    assert_eq!(cfg.parallelism, 16);
    assert_eq!(cfg.pod_initial_backoff.as_secs(), 1);
    assert_eq!(cfg.pod_max_backoff.as_secs(), 10);
    assert_eq!(cfg.client_connection.qps, 50.0);
    assert_eq!(cfg.client_connection.burst, 100);
    let p = &cfg.profiles[0];
    assert_eq!(p.scheduler_name, "networktraffic-scheduler");
    // Defaults stay, the explicit score plugin is appended.
    let mp: Vec<_> = p
        .plugins
        .multi_point
        .enabled
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(mp, ["PrioritySort", "DefaultBinder"]);
}

#[test]
fn defaults_for_an_empty_config() {
    let cfg =
        parse("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n")
            .unwrap();
    assert_eq!(cfg.profiles.len(), 1);
    assert_eq!(cfg.profiles[0].scheduler_name, "default-scheduler");
    assert!(cfg.leader_election.leader_elect);
    assert_eq!(cfg.leader_election.lease_duration.as_secs(), 15);
    assert_eq!(cfg.leader_election.renew_deadline.as_secs(), 10);
    assert_eq!(cfg.leader_election.retry_period.as_secs(), 2);
    assert_eq!(cfg.leader_election.resource_namespace, "kube-system");
    assert_eq!(cfg.leader_election.resource_name, "kube-scheduler");
    assert_eq!(cfg.pod_max_in_unschedulable_pods_duration.as_secs(), 300);
}

/// Each malformed config, a fragment its error must contain.
#[test]
fn malformed_configs_give_clear_errors() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown top-level field",
            "kind: KubeSchedulerConfiguration\nparalelism: 4\n",
            &["unknown field `paralelism`"],
        ),
        (
            "wrong type",
            "parallelism: many\n",
            &["parallelism", "invalid type"],
        ),
        (
            "syntax error has a line",
            "profiles:\n  - schedulerName: a\n   plugins: {\n",
            &["sched.yaml:"],
        ),
        (
            "bad apiVersion",
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\n",
            &["apiVersion", "unsupported apiVersion"],
        ),
        (
            "duplicate schedulerName",
            "profiles:\n- schedulerName: a\n- schedulerName: a\n",
            &["profiles[1].schedulerName", "duplicate schedulerName \"a\""],
        ),
        (
            "negative weight",
            "profiles:\n- plugins:\n    score:\n      enabled: [{name: NetworkTraffic, weight: -1}]\n  pluginConfig: [{name: NetworkTraffic, args: {prometheusAddress: 'http://p'}}]\n",
            &[
                "profiles[0].plugins.score.enabled[0].weight",
                "weight out of range",
            ],
        ),
        (
            "percentage out of range",
            "percentageOfNodesToScore: 101\n",
            &["percentageOfNodesToScore", "not in valid range [0-100]"],
        ),
        (
            "parallelism zero",
            "parallelism: 0\n",
            &["parallelism", "greater than zero"],
        ),
        (
            "max backoff below initial",
            "podInitialBackoffSeconds: 5\npodMaxBackoffSeconds: 2\n",
            &[
                "podMaxBackoffSeconds",
                "greater than or equal to podInitialBackoffSeconds",
            ],
        ),
        (
            "unknown plugin lists the known ones",
            "profiles:\n- plugins:\n    filter:\n      enabled: [{name: NodeFoo}]\n",
            &[
                "profiles[0].plugins.filter.enabled[0].name",
                "unknown plugin \"NodeFoo\"",
                "known plugins: DefaultBinder, NetworkTraffic",
            ],
        ),
        (
            "two queue sort plugins",
            "profiles:\n- plugins:\n    queueSort:\n      enabled: [{name: Probe1}, {name: PrioritySort}]\n",
            &["queueSort", "only one queue sort plugin"],
        ),
        (
            "no queue sort plugin",
            "profiles:\n- plugins:\n    multiPoint:\n      disabled: [{name: PrioritySort}]\n",
            &[
                "profiles[0].plugins.queueSort",
                "exactly one queue sort plugin is required, found 0",
            ],
        ),
        (
            "no bind plugin",
            "profiles:\n- plugins:\n    multiPoint:\n      disabled: [{name: '*'}]\n      enabled: [{name: PrioritySort}]\n",
            &["profiles[0].plugins.bind", "at least one bind plugin"],
        ),
        (
            "extenders",
            "extenders:\n- urlPrefix: http://x\n",
            &["extenders", "not supported"],
        ),
        (
            "bad duration",
            "leaderElection:\n  leaseDuration: 15\n",
            &["leaderElection.leaseDuration", "missing unit"],
        ),
        (
            "resource lock",
            "leaderElection:\n  resourceLock: endpoints\n",
            &["leaderElection.resourceLock", "must be \"leases\""],
        ),
        (
            "duplicate pluginConfig",
            "profiles:\n- pluginConfig:\n  - name: PrioritySort\n  - name: PrioritySort\n",
            &["profiles[0].pluginConfig[1].name", "duplicate pluginConfig"],
        ),
        (
            "unknown arg field names the path",
            "profiles:\n- plugins:\n    score:\n      enabled: [{name: NetworkTraffic}]\n  pluginConfig:\n  - name: NetworkTraffic\n    args: {prometheusAdress: 'http://p'}\n",
            &[
                "profiles[0].pluginConfig[0].args",
                "unknown field `prometheusAdress`",
            ],
        ),
        (
            "invalid arg value names the field",
            "profiles:\n- plugins:\n    score:\n      enabled: [{name: NetworkTraffic}]\n  pluginConfig:\n  - name: NetworkTraffic\n    args: {prometheusAddress: 'prometheus:9090'}\n",
            &[
                "profiles[0].pluginConfig[0].args.prometheusAddress",
                "must start with http",
            ],
        ),
        (
            "plugin at a point it does not implement",
            "profiles:\n- plugins:\n    filter:\n      enabled: [{name: DefaultBinder}]\n",
            &[
                "profiles[0].plugins.filter.enabled[0].name",
                "does not extend Filter plugin",
            ],
        ),
        (
            "queue sort differs between profiles",
            "profiles:\n- schedulerName: a\n- schedulerName: b\n  plugins:\n    queueSort:\n      enabled: [{name: PrioritySort}]\n",
            &[
                "profiles[1].plugins.queueSort",
                "must be the same for all profiles",
            ],
        ),
    ];
    for (what, yaml, wants) in cases {
        let e = err(yaml);
        for w in *wants {
            assert!(
                e.contains(w),
                "case {what:?}: error does not contain {w:?}:\n{e}"
            );
        }
    }
    assert!(cases.len() >= 10);
}

#[test]
fn type_errors_name_the_field_once() {
    let e = parse("percentageOfNodesToScore: lots\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e.matches("percentageOfNodesToScore").count(), 1, "{e}");
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e =
        parse("kind: KubeSchedulerConfiguration\nprofiles:\n  - schedulerName: [\n").unwrap_err();
    let p = &e.problems[0];
    assert!(p.location.is_some(), "{e}");
}
