//! Test plugins: every extension point, recording what ran.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use ksched_framework::{
    BindPlugin, CycleState, FilterPlugin, Handle, NodeInfo, NodeToStatus, PermitPlugin, Plugin,
    PluginArgs, PluginError, PostBindPlugin, PostFilterPlugin, PostFilterResult, PreBindPlugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, QueueSortPlugin, QueuedPodInfo, Registry,
    ReservePlugin, ScorePlugin, Status,
    config::{PluginRef, PluginSet, Plugins},
    pod_priority,
};
use parking_lot::Mutex;

/// Shared call log.
pub type Log = Arc<Mutex<Vec<String>>>;

/// A plugin at every point, logging `Name.Point`.
pub struct Probe {
    pub name: String,
    pub log: Log,
    pub permit: Option<Duration>,
    pub bind_skip: bool,
}

impl Probe {
    fn rec(&self, point: &str) {
        self.log.lock().push(format!("{}.{point}", self.name));
    }
}

impl Plugin for Probe {
    fn name(&self) -> &str {
        &self.name
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        Some(self)
    }
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        Some(self)
    }
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        Some(self)
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        Some(self)
    }
}

#[async_trait]
impl PreFilterPlugin for Probe {
    async fn pre_filter(
        &self,
        _: &mut CycleState,
        _: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        self.rec("PreFilter");
        (None, Status::success())
    }
}
impl FilterPlugin for Probe {
    fn filter(&self, _: &CycleState, _: &Pod, _: &NodeInfo) -> Status {
        self.rec("Filter");
        Status::success()
    }
}
#[async_trait]
impl PostFilterPlugin for Probe {
    async fn post_filter(
        &self,
        _: &CycleState,
        _: &Pod,
        _: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        self.rec("PostFilter");
        (
            None,
            Status::unschedulable(format!("{} could not help", self.name)),
        )
    }
}
#[async_trait]
impl PreScorePlugin for Probe {
    async fn pre_score(&self, _: &mut CycleState, _: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        self.rec("PreScore");
        Status::success()
    }
}
impl ScorePlugin for Probe {
    fn score(&self, _: &CycleState, _: &Pod, _: &NodeInfo) -> Result<i64, Status> {
        self.rec("Score");
        Ok(10)
    }
}
#[async_trait]
impl ReservePlugin for Probe {
    async fn reserve(&self, _: &mut CycleState, _: &Pod, _: &str) -> Status {
        self.rec("Reserve");
        Status::success()
    }
    async fn unreserve(&self, _: &mut CycleState, _: &Pod, _: &str) {
        self.rec("Unreserve");
    }
}
#[async_trait]
impl PermitPlugin for Probe {
    async fn permit(&self, _: &CycleState, _: &Pod, _: &str) -> (Status, Duration) {
        self.rec("Permit");
        match self.permit {
            Some(d) => (Status::wait(), d),
            None => (Status::success(), Duration::ZERO),
        }
    }
}
#[async_trait]
impl PreBindPlugin for Probe {
    async fn pre_bind(&self, _: &CycleState, _: &Pod, _: &str) -> Status {
        self.rec("PreBind");
        Status::success()
    }
}
#[async_trait]
impl BindPlugin for Probe {
    async fn bind(&self, _: &CycleState, _: &Pod, _: &str) -> Status {
        self.rec("Bind");
        if self.bind_skip {
            Status::skip()
        } else {
            Status::success()
        }
    }
}
#[async_trait]
impl PostBindPlugin for Probe {
    async fn post_bind(&self, _: &CycleState, _: &Pod, _: &str) {
        self.rec("PostBind");
    }
}

/// Priority order, FIFO among equals.
pub struct Sort;
impl Plugin for Sort {
    fn name(&self) -> &str {
        "PrioritySort"
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}
impl QueueSortPlugin for Sort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (pod_priority(a.pod()), pod_priority(b.pod()));
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

/// Binds everything (does nothing).
pub struct Binder;
impl Plugin for Binder {
    fn name(&self) -> &str {
        "DefaultBinder"
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}
#[async_trait]
impl BindPlugin for Binder {
    async fn bind(&self, _: &CycleState, _: &Pod, _: &str) -> Status {
        Status::success()
    }
}

/// Args of the `NetworkTraffic` stand-in used by config tests.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficArgs {
    pub prometheus_address: String,
}

/// A Score plugin named `NetworkTraffic` with strict args.
pub struct Traffic;
impl Plugin for Traffic {
    fn name(&self) -> &str {
        "NetworkTraffic"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
impl ScorePlugin for Traffic {
    fn score(&self, _: &CycleState, _: &Pod, _: &NodeInfo) -> Result<i64, Status> {
        Ok(0)
    }
}

/// A registry with `PrioritySort` + `DefaultBinder` as defaults, `Probe1..Probe4`, and
/// `NetworkTraffic`.
pub fn registry(log: &Log) -> Registry {
    let mut r = Registry::new();
    r.register("PrioritySort", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(Sort) as Arc<dyn Plugin>)
    })
    .unwrap();
    r.register("DefaultBinder", |_: &PluginArgs, _: &Arc<Handle>| {
        Ok(Arc::new(Binder) as Arc<dyn Plugin>)
    })
    .unwrap();
    for i in 1..=4 {
        let log = log.clone();
        r.register(
            format!("Probe{i}"),
            move |_: &PluginArgs, _: &Arc<Handle>| {
                Ok(Arc::new(Probe {
                    name: format!("Probe{i}"),
                    log: log.clone(),
                    permit: None,
                    bind_skip: true,
                }) as Arc<dyn Plugin>)
            },
        )
        .unwrap();
    }
    r.register("NetworkTraffic", |args: &PluginArgs, _: &Arc<Handle>| {
        let a: TrafficArgs = args.decode()?;
        if !a.prometheus_address.starts_with("http") {
            return Err(PluginError::invalid_arg(
                "prometheusAddress",
                "must start with http:// or https://",
            ));
        }
        Ok(Arc::new(Traffic) as Arc<dyn Plugin>)
    })
    .unwrap();
    r.set_default_plugins(Plugins {
        multi_point: PluginSet {
            enabled: vec![
                PluginRef::new("PrioritySort"),
                PluginRef::new("DefaultBinder"),
            ],
            disabled: vec![],
        },
        ..Plugins::default()
    });
    r
}

/// A node with a name.
pub fn node(name: &str) -> NodeInfo {
    let mut n = Node::default();
    n.metadata.name = Some(name.to_owned());
    NodeInfo::new(Arc::new(n))
}

/// A pod with a name and uid.
pub fn pod(name: &str) -> Arc<Pod> {
    let mut p = Pod::default();
    p.metadata.name = Some(name.to_owned());
    p.metadata.namespace = Some("default".to_owned());
    p.metadata.uid = Some(format!("uid-{name}"));
    Arc::new(p)
}
