//! The ksched scheduler cache (upstream `pkg/scheduler/backend/cache`).
//!
//! [`Cache`] holds every node with the pods bound to it and the pods the scheduler has
//! assumed onto it but whose binding the informer has not confirmed yet. The informer event
//! handlers keep it current (`add_node`, `add_pod`, …); the scheduling loop assumes and forgets
//! pods, and at the start of each cycle calls [`Cache::update_snapshot`], which copies only
//! what changed into the cycle's [`ksched_framework::Snapshot`].

mod cache;
mod dump;
mod error;
mod node_tree;
mod retired;

pub use cache::Cache;
pub use dump::{Dump, DumpedPod};
pub use error::Error;
pub use node_tree::zone_key;
