//! Upstream kube-scheduler's default plugins for ksched, under upstream's names.
//!
//! [`in_tree_registry`] returns a [`Registry`] with every plugin of this crate and the default
//! profile (`multiPoint` in upstream's order with upstream's weights) as its default plugins.

pub mod default_binder;
pub mod default_preemption;
pub mod dynamic_resources;
pub mod helper;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod names;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_balanced_allocation;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod resource_allocation;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;
pub mod volume_placeholder;

#[cfg(test)]
pub(crate) mod test_util;

use std::sync::Arc;

use ksched_framework::{
    Handle, Plugin, PluginArgs, PluginError, Registry,
    config::{PluginRef, PluginSet, Plugins},
};

type Factory = fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError>;

/// Every in-tree plugin, and the default profile as default plugins.
///
/// ```
/// let registry = ksched_plugins::in_tree_registry();
/// assert!(registry.contains("DefaultBinder"));
/// assert!(registry.contains("NodeResourcesFit"));
/// ```
#[must_use]
pub fn in_tree_registry() -> Registry {
    let mut r = Registry::new();
    let entries: [(&str, Factory); 16] = [
        (names::PRIORITY_SORT, priority_sort::new),
        (names::SCHEDULING_GATES, scheduling_gates::new),
        (names::DEFAULT_BINDER, default_binder::new),
        (names::NODE_UNSCHEDULABLE, node_unschedulable::new),
        (names::NODE_NAME, node_name::new),
        (names::TAINT_TOLERATION, taint_toleration::new),
        (names::NODE_AFFINITY, node_affinity::new),
        (names::NODE_PORTS, node_ports::new),
        (names::NODE_RESOURCES_FIT, node_resources_fit::new),
        (
            names::NODE_RESOURCES_BALANCED_ALLOCATION,
            node_resources_balanced_allocation::new,
        ),
        (names::IMAGE_LOCALITY, image_locality::new),
        (names::POD_TOPOLOGY_SPREAD, pod_topology_spread::new),
        (names::INTER_POD_AFFINITY, inter_pod_affinity::new),
        (names::DEFAULT_PREEMPTION, default_preemption::new),
        (names::VOLUME_BINDING, volume_binding::new),
        (names::DYNAMIC_RESOURCES, dynamic_resources::new),
    ];
    for (name, factory) in entries {
        // Names are distinct constants: registration cannot clash.
        let _ = r.register(name, factory);
    }
    for name in [
        names::VOLUME_RESTRICTIONS,
        names::NODE_VOLUME_LIMITS,
        names::VOLUME_ZONE,
    ] {
        let _ = r.register(name, volume_placeholder::factory(name));
    }
    r.set_default_plugins(default_plugins());
    r
}

/// Upstream's default profile (`pkg/scheduler/apis/config/v1/default_plugins.go`): every
/// plugin through `multiPoint`, in upstream's order and with its Score weights.
#[must_use]
pub fn default_plugins() -> Plugins {
    let enabled = vec![
        PluginRef::new(names::SCHEDULING_GATES),
        PluginRef::new(names::PRIORITY_SORT),
        PluginRef::new(names::NODE_UNSCHEDULABLE),
        PluginRef::new(names::NODE_NAME),
        PluginRef::weighted(names::TAINT_TOLERATION, 3),
        PluginRef::weighted(names::NODE_AFFINITY, 2),
        PluginRef::new(names::NODE_PORTS),
        PluginRef::weighted(names::NODE_RESOURCES_FIT, 1),
        PluginRef::new(names::VOLUME_RESTRICTIONS),
        PluginRef::new(names::NODE_VOLUME_LIMITS),
        PluginRef::new(names::VOLUME_BINDING),
        PluginRef::new(names::VOLUME_ZONE),
        PluginRef::weighted(names::POD_TOPOLOGY_SPREAD, 2),
        PluginRef::weighted(names::INTER_POD_AFFINITY, 2),
        PluginRef::new(names::DYNAMIC_RESOURCES),
        PluginRef::new(names::DEFAULT_PREEMPTION),
        PluginRef::weighted(names::NODE_RESOURCES_BALANCED_ALLOCATION, 1),
        PluginRef::weighted(names::IMAGE_LOCALITY, 1),
        PluginRef::new(names::DEFAULT_BINDER),
    ];
    Plugins {
        multi_point: PluginSet {
            enabled,
            disabled: vec![],
        },
        ..Plugins::default()
    }
}
