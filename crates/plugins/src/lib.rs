//! Upstream kube-scheduler's default plugins for ksched, under upstream's names.
//!
//! [`in_tree_registry`] returns a [`Registry`] with every plugin of this crate and the default
//! profile (`multiPoint` in upstream's order with upstream's weights) as its default plugins.

pub mod default_binder;
pub mod names;
pub mod priority_sort;
pub mod scheduling_gates;

use std::sync::Arc;

use ksched_framework::{
    Handle, Plugin, PluginArgs, PluginError, Registry,
    config::{PluginRef, PluginSet, Plugins},
};

/// Every in-tree plugin, and the default profile as default plugins.
///
/// ```
/// let registry = ksched_plugins::in_tree_registry();
/// assert!(registry.contains("DefaultBinder"));
/// assert!(registry.contains("PrioritySort"));
/// ```
#[must_use]
pub fn in_tree_registry() -> Registry {
    let mut r = Registry::new();
    let entries: [(&str, fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError>); 3] = [
        (names::PRIORITY_SORT, priority_sort::new),
        (names::SCHEDULING_GATES, scheduling_gates::new),
        (names::DEFAULT_BINDER, default_binder::new),
    ];
    for (name, factory) in entries {
        // Names are distinct constants: registration cannot clash.
        let _ = r.register(name, factory);
    }
    r.set_default_plugins(default_plugins());
    r
}

/// Upstream's default profile (`pkg/scheduler/apis/config/v1/default_plugins.go`), restricted to
/// the plugins this crate implements, in upstream's order and with its weights.
#[must_use]
pub fn default_plugins() -> Plugins {
    let enabled = vec![
        PluginRef::new(names::SCHEDULING_GATES),
        PluginRef::new(names::PRIORITY_SORT),
        PluginRef::new(names::DEFAULT_BINDER),
    ];
    Plugins { multi_point: PluginSet { enabled, disabled: vec![] }, ..Plugins::default() }
}
