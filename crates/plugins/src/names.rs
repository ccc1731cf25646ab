//! Plugin names, as upstream spells them (`pkg/scheduler/framework/plugins/names`).

/// Orders activeQ by priority, then queue time.
pub const PRIORITY_SORT: &str = "PrioritySort";
/// Holds pods with `spec.schedulingGates` out of the queue.
pub const SCHEDULING_GATES: &str = "SchedulingGates";
/// Binds through the `pods/binding` subresource.
pub const DEFAULT_BINDER: &str = "DefaultBinder";
