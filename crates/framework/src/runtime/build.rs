//! Building a [`Framework`] from a profile: instantiate plugins, expand MultiPoint, order each
//! extension point, check the profile is complete.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, atomic::AtomicUsize},
};

use super::{Enabled, Framework, Parallelizer};
use crate::{
    Handle, Plugin, PluginArgs,
    config::{ConfigError, ExtensionPoint, Problem, ProfileConfig},
    events::unroll_wildcard_resource,
    metrics::FrameworkMetrics,
    registry::Registry,
};

/// Options a framework takes from the global configuration.
#[derive(Debug, Clone)]
pub struct FrameworkOptions {
    /// Global `percentageOfNodesToScore` (the profile's own value wins).
    pub percentage_of_nodes_to_score: u32,
    /// The Filter/Score thread pool (share one across profiles).
    pub parallelizer: Parallelizer,
    /// Metrics to record into.
    pub metrics: Option<Arc<FrameworkMetrics>>,
}

fn implements(p: &dyn Plugin, point: ExtensionPoint) -> bool {
    match point {
        ExtensionPoint::PreEnqueue => p.as_pre_enqueue().is_some(),
        ExtensionPoint::QueueSort => p.as_queue_sort().is_some(),
        ExtensionPoint::PreFilter => p.as_pre_filter().is_some(),
        ExtensionPoint::Filter => p.as_filter().is_some(),
        ExtensionPoint::PostFilter => p.as_post_filter().is_some(),
        ExtensionPoint::PreScore => p.as_pre_score().is_some(),
        ExtensionPoint::Score => p.as_score().is_some(),
        ExtensionPoint::Reserve => p.as_reserve().is_some(),
        ExtensionPoint::Permit => p.as_permit().is_some(),
        ExtensionPoint::PreBind => p.as_pre_bind().is_some(),
        ExtensionPoint::Bind => p.as_bind().is_some(),
        ExtensionPoint::PostBind => p.as_post_bind().is_some(),
    }
}

impl Framework {
    /// Instantiates the profile's plugins from `registry` and orders them per extension point.
    ///
    /// Order at each point follows upstream: plugins both explicitly enabled there and listed in
    /// `multiPoint` first (explicit order), then `multiPoint`-only plugins, then the remaining
    /// explicit ones. A Score weight of 0 (or none) becomes 1.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: a factory rejected its args, a plugin enabled at a
    /// point it does not implement, not exactly one QueueSort plugin, no Bind plugin.
    pub fn new(
        profile: &ProfileConfig,
        registry: &Registry,
        handle: Arc<Handle>,
        options: FrameworkOptions,
    ) -> Result<Arc<Framework>, ConfigError> {
        let ppath = format!("profiles[{}]", profile.index);
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| {
            problems.push(Problem {
                path,
                location: None,
                message,
            })
        };

        // Instantiate every plugin the profile names, once.
        let mut instances: BTreeMap<String, Arc<dyn Plugin>> = BTreeMap::new();
        let mut order = Vec::new();
        for (_, set) in profile.plugins.sets() {
            for r in &set.enabled {
                if !order.contains(&r.name) {
                    order.push(r.name.clone());
                }
            }
        }
        for name in &order {
            let Some(factory) = registry.get(name) else {
                problem(
                    format!("{ppath}.plugins"),
                    format!("unknown plugin {name:?}"),
                );
                continue;
            };
            let (args, args_path) = match profile.plugin_config.get(name) {
                Some((j, v)) => (
                    v.clone().map(PluginArgs::from_value).unwrap_or_default(),
                    format!("{ppath}.pluginConfig[{j}].args"),
                ),
                None => (PluginArgs::none(), format!("{ppath}.plugins")),
            };
            match factory(&args, &handle) {
                Ok(p) => {
                    instances.insert(name.clone(), p);
                }
                Err(e) => {
                    let path = match e.field_path() {
                        Some(f) if !f.is_empty() => format!("{args_path}.{f}"),
                        _ => args_path,
                    };
                    let msg = match &e {
                        crate::PluginError::Args { message, .. }
                        | crate::PluginError::InvalidArg { message, .. } => message.clone(),
                        crate::PluginError::Other(err) => err.to_string(),
                    };
                    problem(path, format!("plugin {name:?}: {msg}"));
                }
            }
        }

        let multi = &profile.plugins.multi_point.enabled;
        let mut per_point: BTreeMap<ExtensionPoint, Vec<Enabled>> = BTreeMap::new();
        for point in ExtensionPoint::ALL {
            let set = profile.plugins.get(point);
            let key = point.config_key();
            let explicit: Vec<&str> = set.enabled.iter().map(|r| r.name.as_str()).collect();
            for (k, r) in set.enabled.iter().enumerate() {
                if let Some(p) = instances.get(&r.name)
                    && !implements(p.as_ref(), point)
                {
                    problem(
                        format!("{ppath}.plugins.{key}.enabled[{k}].name"),
                        format!(
                            "plugin {:?} does not extend {} plugin",
                            r.name,
                            point.metric_label()
                        ),
                    );
                }
            }
            let mut overridden = Vec::new();
            let mut multi_only = Vec::new();
            if !set.is_disabled("*") {
                for m in multi {
                    let Some(p) = instances.get(&m.name) else {
                        continue;
                    };
                    if !implements(p.as_ref(), point) || set.is_disabled(&m.name) {
                        continue;
                    }
                    if explicit.contains(&m.name.as_str()) {
                        overridden.push(m.name.as_str());
                    } else if !multi_only.iter().any(|(n, _)| *n == m.name.as_str()) {
                        multi_only.push((m.name.as_str(), m.weight));
                    }
                }
            }
            let weight_of = |name: &str, multi_weight: Option<i32>| -> i64 {
                let w = set
                    .enabled
                    .iter()
                    .find(|r| r.name == name)
                    .and_then(|r| r.weight)
                    .or(multi_weight)
                    .unwrap_or(0);
                if w <= 0 { 1 } else { i64::from(w) }
            };
            let mut names: Vec<(&str, i64)> = Vec::new();
            // Explicit entries that re-configure a MultiPoint plugin keep the explicit order.
            for n in explicit.iter().filter(|n| overridden.contains(n)) {
                let mw = multi.iter().find(|m| m.name == *n).and_then(|m| m.weight);
                names.push((n, weight_of(n, mw)));
            }
            for (n, mw) in &multi_only {
                names.push((n, weight_of(n, *mw)));
            }
            for n in explicit.iter().filter(|n| !overridden.contains(n)) {
                if !names.iter().any(|(x, _)| x == n) {
                    names.push((n, weight_of(n, None)));
                }
            }
            let list = names
                .into_iter()
                .filter_map(|(n, weight)| {
                    let plugin = instances.get(n)?.clone();
                    implements(plugin.as_ref(), point).then_some(Enabled { plugin, weight })
                })
                .collect();
            per_point.insert(point, list);
        }

        let mut take = |p: ExtensionPoint| per_point.remove(&p).unwrap_or_default();
        let queue_sorts = take(ExtensionPoint::QueueSort);
        let bind = take(ExtensionPoint::Bind);
        if instances.len() == order.len() {
            if queue_sorts.len() != 1 {
                problem(
                    format!("{ppath}.plugins.queueSort"),
                    format!(
                        "exactly one queue sort plugin is required, found {} ({})",
                        queue_sorts.len(),
                        queue_sorts
                            .iter()
                            .map(Enabled::name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if bind.is_empty() {
                problem(
                    format!("{ppath}.plugins.bind"),
                    "at least one bind plugin is required".to_owned(),
                );
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                file: None,
                problems,
            });
        }
        let Some(queue_sort) = queue_sorts.into_iter().next() else {
            return Err(ConfigError::single(
                format!("{ppath}.plugins.queueSort"),
                "no queue sort plugin",
            ));
        };

        let pre_enqueue = take(ExtensionPoint::PreEnqueue);
        let pre_filter = take(ExtensionPoint::PreFilter);
        let filter = take(ExtensionPoint::Filter);
        let reserve = take(ExtensionPoint::Reserve);
        let permit = take(ExtensionPoint::Permit);
        // Plugins that can reject a pod decide which events may requeue it.
        let mut enqueue_extensions = Vec::new();
        let mut seen = HashSet::new();
        for e in pre_enqueue
            .iter()
            .chain(&pre_filter)
            .chain(&filter)
            .chain(&reserve)
            .chain(&permit)
        {
            if !seen.insert(e.name().to_owned()) {
                continue;
            }
            let events = match e.plugin.as_enqueue_extensions() {
                Some(x) => x.events_to_register(),
                None => unroll_wildcard_resource(),
            };
            enqueue_extensions.push((e.name().to_owned(), events));
        }

        let fw = Arc::new(Framework {
            profile_name: profile.scheduler_name.clone(),
            handle: handle.clone(),
            plugins: order
                .iter()
                .filter_map(|n| instances.get(n).cloned())
                .collect(),
            pre_enqueue,
            queue_sort,
            pre_filter,
            filter,
            post_filter: take(ExtensionPoint::PostFilter),
            pre_score: take(ExtensionPoint::PreScore),
            score: take(ExtensionPoint::Score),
            reserve,
            permit,
            pre_bind: take(ExtensionPoint::PreBind),
            bind,
            post_bind: take(ExtensionPoint::PostBind),
            enqueue_extensions,
            percentage_of_nodes_to_score: profile
                .percentage_of_nodes_to_score
                .unwrap_or(options.percentage_of_nodes_to_score),
            parallelizer: options.parallelizer,
            next_start_node_index: AtomicUsize::new(0),
            metrics: options.metrics,
            tie_break: parking_lot::Mutex::new(None),
            normalize_scratch: parking_lot::Mutex::new(Vec::new()),
        });
        handle.set_framework(Arc::downgrade(&fw));
        Ok(fw)
    }
}
