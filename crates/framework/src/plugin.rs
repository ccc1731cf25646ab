//! The plugin traits, one per upstream extension point.
//!
//! A plugin is one type implementing [`Plugin`] plus the extension-point traits it takes part
//! in; it tells the framework which by overriding the matching `as_*` accessor:
//!
//! ```
//! use ksched_framework::{CycleState, NodeInfo, Plugin, ScorePlugin, Status};
//! use k8s_openapi::api::core::v1::Pod;
//!
//! /// Prefers nodes with fewer pods.
//! struct FewestPods;
//!
//! impl Plugin for FewestPods {
//!     fn name(&self) -> &str {
//!         "FewestPods"
//!     }
//!     fn as_score(&self) -> Option<&dyn ScorePlugin> {
//!         Some(self)
//!     }
//! }
//!
//! impl ScorePlugin for FewestPods {
//!     fn score(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
//!         Ok(100 - (node.pods().len() as i64).min(100))
//!     }
//! }
//! ```
//!
//! ## Sync and async points
//! Filter and Score run once per node per pod, spread over the framework's thread pool
//! (`parallelism` threads, 16 by default), so they are plain synchronous methods taking `&self`:
//! no allocation of a future per node, no awaiting, and a plugin that needs data from elsewhere
//! gets it in its PreFilter/PreScore (async, once per pod) or keeps it fresh in a background
//! task (as NetworkTraffic does with Prometheus). Points that may do I/O once per pod —
//! PreFilter, PostFilter, PreScore, Reserve/Unreserve, Permit, PreBind, Bind, PostBind — are
//! `async` (via `async_trait`). PreEnqueue, QueueSort, queueing hints and the PreFilter
//! extensions run inside the queue or per node and are synchronous too.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use crate::{
    ClusterEventWithHint, CycleState, NodeInfo, NodeScore, NodeToStatus, PodInfo, PostFilterResult,
    PreFilterResult, QueuedPodInfo, Status,
};

/// Longest a Permit plugin may make a pod wait; longer requests are capped.
pub const MAX_PERMIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The base trait of every plugin: its name and the extension points it implements.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, as used in the configuration.
    fn name(&self) -> &str;

    /// This plugin as a PreEnqueue plugin.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// This plugin as a QueueSort plugin.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// This plugin as a PreFilter plugin.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// This plugin as a Filter plugin.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// This plugin as a PostFilter plugin.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// This plugin as a PreScore plugin.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// This plugin as a Score plugin.
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// This plugin as a Reserve plugin.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// This plugin as a Permit plugin.
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    /// This plugin as a PreBind plugin.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// This plugin as a Bind plugin.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// This plugin as a PostBind plugin.
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        None
    }
    /// The events that can make a pod this plugin rejected schedulable. A rejecting plugin
    /// (PreEnqueue, PreFilter, Filter, Reserve, Permit) that returns `None` is given every event
    /// with no hint, so its pods are requeued on anything (upstream's default); `Some(vec![])`
    /// means no event helps (the pod waits for its own update or the unschedulable flush).
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        None
    }
}

/// Runs before a pod enters activeQ/backoffQ; a non-success keeps it gated. Must be cheap: it
/// runs under the queue's lock.
pub trait PreEnqueuePlugin: Plugin {
    /// Success lets the pod in; anything else holds it among the gated pods.
    fn pre_enqueue(&self, pod: &Pod) -> Status;
}

/// Orders activeQ. Exactly one per profile, identical across profiles.
pub trait QueueSortPlugin: Plugin {
    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// The cluster events that may make a rejected pod schedulable, with queueing hints.
pub trait EnqueueExtensions: Plugin {
    /// Events to register.
    fn events_to_register(&self) -> Vec<ClusterEventWithHint>;
}

/// Once per pod before Filter: precompute state, reject early, or narrow the nodes.
#[async_trait]
pub trait PreFilterPlugin: Plugin {
    /// Returns an optional restriction of the nodes and a status; Skip disables this plugin's
    /// Filter for the cycle.
    async fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status);

    /// The AddPod/RemovePod extensions preemption uses to update this plugin's state when it
    /// adds nominated pods or removes victims in a dry run.
    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        None
    }
}

/// Keeps a PreFilter plugin's cycle state right when preemption or nominated pods change a
/// node in a dry run.
pub trait PreFilterExtensions: Send + Sync {
    /// `pod_to_add` is now on `node` for the rest of this (cloned) cycle state.
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &Pod,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
    /// `pod_to_remove` has left `node` for the rest of this (cloned) cycle state.
    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &Pod,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
}

/// Whether the pod can run on one node. Synchronous: runs once per node, in parallel.
pub trait FilterPlugin: Plugin {
    /// Success, or a rejection (Unschedulable / UnschedulableAndUnresolvable) with a reason.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;

    /// [`FilterPlugin::filter`] of a run of nodes: pushes `(i, status)` onto `rejected` for
    /// each `nodes[i]` whose status is not Success (in increasing `i`), nothing for the nodes
    /// that pass. The framework calls it per chunk of a cycle's nodes, plugin by plugin, with
    /// only the nodes every earlier Filter plugin passed (nodes with nominated pods go through
    /// `filter` one by one). The default calls `filter` per node; plugins override it to do
    /// per-cycle work — reading their [`CycleState`] entry, say — once per chunk instead of
    /// once per node. It must give the statuses `filter` gives.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        rejected: &mut Vec<(usize, Status)>,
    ) {
        for (i, node) in nodes.iter().enumerate() {
            let s = self.filter(state, pod, node);
            if !s.is_success() {
                rejected.push((i, s));
            }
        }
    }
}

/// Runs when no node passed Filter (preemption).
#[async_trait]
pub trait PostFilterPlugin: Plugin {
    /// Tries to make the pod schedulable, e.g. by evicting lower-priority pods.
    async fn post_filter(
        &self,
        state: &CycleState,
        pod: &Pod,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status);
}

/// Once per pod before Score, over the feasible nodes.
#[async_trait]
pub trait PreScorePlugin: Plugin {
    /// Skip disables this plugin's Score for the cycle.
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[Arc<NodeInfo>])
    -> Status;
}

/// Ranks feasible nodes. Synchronous: runs once per node, in parallel.
pub trait ScorePlugin: Plugin {
    /// The node's raw score; it must lie in [0, 100] after [`ScorePlugin::normalize_score`].
    ///
    /// # Errors
    /// A Status (any non-success code) aborts the cycle with an error.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status>;

    /// The raw scores of a run of nodes, `scores[i]` for `nodes[i]` (equal lengths): the
    /// framework calls it per chunk of a cycle's feasible nodes (in a cycle sampled for the
    /// plugin metrics, each node is observed with the chunk's mean duration). The default
    /// calls [`ScorePlugin::score`] per node; plugins override it to do per-cycle work — reading
    /// their [`CycleState`] entry, say — once per chunk instead of once per node. It must
    /// give the scores `score` gives.
    ///
    /// # Errors
    /// The position in `nodes` of the first node whose score failed, with its status
    /// (`scores` before that position are set).
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        for (i, (node, out)) in nodes.iter().zip(scores).enumerate() {
            *out = self.score(state, pod, node).map_err(|s| (i, s))?;
        }
        Ok(())
    }

    /// Rescales the raw scores of all nodes into [0, 100] (upstream's ScoreExtensions). The
    /// default leaves them as they are.
    fn normalize_score(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        _scores: &mut [NodeScore],
    ) -> Status {
        Status::success()
    }

    /// Whether [`ScorePlugin::normalize_score`] does anything (upstream: `ScoreExtensions()`
    /// returns non-nil). The framework builds the per-node list NormalizeScore takes — a node
    /// name per node — only for plugins answering `true`. The default is `true`, so a plugin
    /// that overrides `normalize_score` is always normalized; plugins that do not normalize
    /// return `false` to save the list.
    fn has_normalize_score(&self) -> bool {
        true
    }
}

/// Claims resources for the pod on its node before binding; Unreserve gives them back.
#[async_trait]
pub trait ReservePlugin: Plugin {
    /// Reserve; a failure triggers Unreserve of every Reserve plugin.
    async fn reserve(&self, state: &mut CycleState, pod: &Pod, node_name: &str) -> Status;
    /// Undo Reserve. Called in reverse plugin order, possibly without a prior Reserve, so it
    /// must be idempotent.
    async fn unreserve(&self, state: &mut CycleState, pod: &Pod, node_name: &str);
}

/// Approves, rejects or delays binding.
#[async_trait]
pub trait PermitPlugin: Plugin {
    /// Success, a rejection, or Wait with how long to wait (capped at
    /// [`MAX_PERMIT_TIMEOUT`]); a waiting pod is allowed or rejected through the handle's
    /// waiting pods.
    async fn permit(&self, state: &CycleState, pod: &Pod, node_name: &str) -> (Status, Duration);
}

/// Work before binding (e.g. provisioning); runs in the binding task.
#[async_trait]
pub trait PreBindPlugin: Plugin {
    /// A cheap check whether PreBind has anything to do: Skip leaves PreBind out for this pod.
    async fn pre_bind_pre_flight(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        _node_name: &str,
    ) -> Status {
        Status::success()
    }
    /// The PreBind work; a failure fails the binding cycle.
    async fn pre_bind(&self, state: &CycleState, pod: &Pod, node_name: &str) -> Status;
}

/// Binds the pod to its node. The first plugin that does not return Skip handles it.
#[async_trait]
pub trait BindPlugin: Plugin {
    /// Skip means "not mine".
    async fn bind(&self, state: &CycleState, pod: &Pod, node_name: &str) -> Status;
}

/// Informational, after a successful bind.
#[async_trait]
pub trait PostBindPlugin: Plugin {
    /// Called once the pod is bound.
    async fn post_bind(&self, state: &CycleState, pod: &Pod, node_name: &str);
}
