//! A tiny custom Score plugin registered through the registry, configured with a
//! KubeSchedulerConfiguration, scheduling a few pods over an in-memory snapshot.
//!
//! Run with `cargo run -p ksched-framework --example custom_score`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    BindPlugin, CycleState, Framework, Handle, NodeInfo, Plugin, PluginArgs, PodInfo,
    QueueSortPlugin, QueuedPodInfo, Registry, ScorePlugin, Snapshot, Status,
    config::{PluginRef, PluginSet, Plugins, SchedulerConfig},
    pod_priority,
    runtime::{FrameworkOptions, Parallelizer},
};

/// Args of `PreferLabel`: prefer nodes carrying `label`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreferLabelArgs {
    label: String,
}

/// Scores 100 on nodes with the label, 0 elsewhere.
struct PreferLabel {
    label: String,
}

impl Plugin for PreferLabel {
    fn name(&self) -> &str {
        "PreferLabel"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl ScorePlugin for PreferLabel {
    fn score(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let has = node
            .node()
            .and_then(|n| n.metadata.labels.as_ref())
            .is_some_and(|l| l.contains_key(&self.label));
        Ok(if has { 100 } else { 0 })
    }
}

/// Minimal QueueSort and Bind so the profile is complete (ksched-plugins has the real ones).
struct Basics;
impl Plugin for Basics {
    fn name(&self) -> &str {
        "Basics"
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}
impl QueueSortPlugin for Basics {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        pod_priority(a.pod()) > pod_priority(b.pod())
    }
}
#[async_trait]
impl BindPlugin for Basics {
    async fn bind(&self, _: &CycleState, _: &Pod, _: &str) -> Status {
        Status::success()
    }
}

const CONFIG: &str = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: example
  plugins:
    score:
      enabled: [{name: PreferLabel, weight: 2}]
  pluginConfig:
  - name: PreferLabel
    args: {label: example.com/fast-network}
"#;

fn node(name: &str, fast: bool) -> NodeInfo {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    if fast {
        n.metadata.labels =
            Some([("example.com/fast-network".to_owned(), "true".to_owned())].into());
    }
    NodeInfo::new(Arc::new(n))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    registry.register("Basics", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(Basics) as Arc<dyn Plugin>)
    })?;
    registry.register("PreferLabel", |args: &PluginArgs, _: &Arc<Handle>| {
        let a: PreferLabelArgs = args.decode()?;
        Ok(Arc::new(PreferLabel { label: a.label }) as Arc<dyn Plugin>)
    })?;
    registry.set_default_plugins(Plugins {
        multi_point: PluginSet {
            enabled: vec![PluginRef::new("Basics")],
            disabled: vec![],
        },
        ..Plugins::default()
    });

    let config = SchedulerConfig::from_yaml(CONFIG, None, &registry)?;
    let profile = &config.profiles[0];
    let handle = Arc::new(Handle::for_tests(&profile.scheduler_name));
    let options = FrameworkOptions {
        percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
        parallelizer: Parallelizer::new(config.parallelism)?,
        metrics: None,
    };
    let framework = Framework::new(profile, &registry, handle.clone(), options)?;
    println!("profile {:?} plugins:", framework.profile_name());
    for (point, names) in framework.list_plugins() {
        if !names.is_empty() {
            println!("  {point:<11} {}", names.join(", "));
        }
    }

    let mut nodes = vec![
        node("node-a", false),
        node("node-b", true),
        node("node-c", false),
    ];
    for i in 0..3 {
        handle.set_snapshot(Arc::new(Snapshot::from_node_infos(nodes.clone())));
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("pod-{i}"));
        pod.metadata.namespace = Some("default".into());
        let pod = Arc::new(pod);
        let mut state = CycleState::new();
        let result = framework.schedule_pod(&mut state, &pod).await?;
        let bound = framework
            .run_bind_plugins(&state, &pod, &result.suggested_host)
            .await;
        println!(
            "pod-{i} -> {} ({} feasible of {} evaluated, bind: {})",
            result.suggested_host,
            result.feasible_nodes,
            result.evaluated_nodes,
            bound.code()
        );
        if let Some(n) = nodes
            .iter_mut()
            .find(|n| n.node_name() == result.suggested_host)
        {
            n.add_pod(Arc::new(PodInfo::new(pod.clone())));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}
