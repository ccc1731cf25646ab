//! The runtime that runs one profile: plugins instantiated from the configuration, ordered per
//! extension point, and the `run_*` methods the scheduler calls (upstream `frameworkImpl`).

mod build;
mod parallel;
mod run;
mod schedule;

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::AtomicUsize},
};

pub use build::FrameworkOptions;
pub use parallel::{Parallelizer, num_feasible_nodes_to_find};
pub use schedule::{
    Diagnosis, FitError, ScheduleError, ScheduleResult, select_host, select_host_with,
};

use crate::{ClusterEventWithHint, Handle, Plugin, metrics::FrameworkMetrics};

/// A plugin enabled at an extension point (with its Score weight).
#[derive(Clone)]
pub(crate) struct Enabled {
    pub(crate) plugin: Arc<dyn Plugin>,
    pub(crate) weight: i64,
}

impl Enabled {
    pub(crate) fn name(&self) -> &str {
        self.plugin.name()
    }
}

/// One profile's plugins, instantiated and ordered per extension point.
///
/// Built by [`Framework::new`] from a [`crate::config::ProfileConfig`] and a
/// [`crate::Registry`]; the scheduler keeps one per profile and calls its `run_*` methods and
/// [`Framework::schedule_pod`].
pub struct Framework {
    profile_name: String,
    handle: Arc<Handle>,
    plugins: Vec<Arc<dyn Plugin>>,
    pre_enqueue: Vec<Enabled>,
    queue_sort: Enabled,
    pre_filter: Vec<Enabled>,
    filter: Vec<Enabled>,
    post_filter: Vec<Enabled>,
    pre_score: Vec<Enabled>,
    score: Vec<Enabled>,
    reserve: Vec<Enabled>,
    permit: Vec<Enabled>,
    pre_bind: Vec<Enabled>,
    bind: Vec<Enabled>,
    post_bind: Vec<Enabled>,
    enqueue_extensions: Vec<(String, Vec<ClusterEventWithHint>)>,
    percentage_of_nodes_to_score: u32,
    parallelizer: Parallelizer,
    next_start_node_index: AtomicUsize,
    metrics: Option<Arc<FrameworkMetrics>>,
    tie_break: parking_lot::Mutex<Option<rand::rngs::StdRng>>,
    /// The `NodeScore` list handed to NormalizeScore, kept between cycles so its node-name
    /// strings are overwritten in place instead of allocated per node per cycle.
    normalize_scratch: parking_lot::Mutex<Vec<crate::NodeScore>>,
}

impl Framework {
    /// The profile's `schedulerName`.
    #[must_use]
    pub fn profile_name(&self) -> &str {
        &self.profile_name
    }

    /// The handle plugins were built with.
    #[must_use]
    pub fn handle(&self) -> &Arc<Handle> {
        &self.handle
    }

    /// Every instantiated plugin.
    #[must_use]
    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.plugins
    }

    /// The plugin named `name`, if instantiated.
    #[must_use]
    pub fn plugin(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// Plugin names per extension point, in run order (`(config key, names)`), for logs and
    /// tests.
    #[must_use]
    pub fn list_plugins(&self) -> Vec<(&'static str, Vec<String>)> {
        let names = |v: &[Enabled]| v.iter().map(|e| e.name().to_owned()).collect::<Vec<_>>();
        vec![
            ("preEnqueue", names(&self.pre_enqueue)),
            ("queueSort", vec![self.queue_sort.name().to_owned()]),
            ("preFilter", names(&self.pre_filter)),
            ("filter", names(&self.filter)),
            ("postFilter", names(&self.post_filter)),
            ("preScore", names(&self.pre_score)),
            ("score", names(&self.score)),
            ("reserve", names(&self.reserve)),
            ("permit", names(&self.permit)),
            ("preBind", names(&self.pre_bind)),
            ("bind", names(&self.bind)),
            ("postBind", names(&self.post_bind)),
        ]
    }

    /// Score plugins with their weights, in order.
    #[must_use]
    pub fn score_weights(&self) -> Vec<(String, i64)> {
        self.score
            .iter()
            .map(|e| (e.name().to_owned(), e.weight))
            .collect()
    }

    /// The PreEnqueue plugins (the queue runs them).
    #[must_use]
    pub fn pre_enqueue_plugins(&self) -> Vec<Arc<dyn Plugin>> {
        self.pre_enqueue.iter().map(|e| e.plugin.clone()).collect()
    }

    /// The QueueSort plugin.
    #[must_use]
    pub fn queue_sort_plugin(&self) -> &Arc<dyn Plugin> {
        &self.queue_sort.plugin
    }

    /// Registered cluster events per plugin that can reject pods (PreEnqueue, PreFilter,
    /// Filter, Reserve, Permit); plugins without EnqueueExtensions get every event, no hint.
    #[must_use]
    pub fn enqueue_extensions(&self) -> &[(String, Vec<ClusterEventWithHint>)] {
        &self.enqueue_extensions
    }

    /// Whether any Filter plugin is enabled.
    #[must_use]
    pub fn has_filter_plugins(&self) -> bool {
        !self.filter.is_empty()
    }

    /// Whether any PostFilter plugin is enabled.
    #[must_use]
    pub fn has_post_filter_plugins(&self) -> bool {
        !self.post_filter.is_empty()
    }

    /// Whether any Score plugin is enabled.
    #[must_use]
    pub fn has_score_plugins(&self) -> bool {
        !self.score.is_empty()
    }

    /// The profile's percentage of nodes to score (0 = adaptive).
    #[must_use]
    pub fn percentage_of_nodes_to_score(&self) -> u32 {
        self.percentage_of_nodes_to_score
    }

    /// The thread pool Filter and Score run on.
    #[must_use]
    pub fn parallelizer(&self) -> &Parallelizer {
        &self.parallelizer
    }

    /// Makes the tie-break between equally scored nodes draw from a generator seeded with
    /// `seed` instead of the thread's random source. With `parallelism: 1` this makes a run
    /// reproducible (the simulator uses it).
    pub fn set_tie_break_seed(&self, seed: u64) {
        *self.tie_break.lock() = Some(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            seed,
        ));
    }

    /// Names of plugins that implement `PreFilterExtensions`.
    #[must_use]
    pub fn pre_filter_extension_plugins(&self) -> BTreeSet<String> {
        self.pre_filter
            .iter()
            .filter(|e| {
                e.plugin
                    .as_pre_filter()
                    .and_then(|p| p.pre_filter_extensions())
                    .is_some()
            })
            .map(|e| e.name().to_owned())
            .collect()
    }
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framework")
            .field("profile_name", &self.profile_name)
            .field("plugins", &self.list_plugins())
            .finish_non_exhaustive()
    }
}
