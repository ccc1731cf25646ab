//! The ksched scheduler: informers feed the scheduling queue and the node cache;
//! `schedule_one` pops a pod, runs its profile's scheduling cycle, assumes it in the cache and
//! binds it in a task of its own — seed 001's loop, with upstream's semantics.
//!
//! Compose one with [`Scheduler::builder`]: register out-of-tree plugins with
//! [`SchedulerBuilder::with_plugin`] (upstream's `app.WithPlugin`), give it a
//! `KubeSchedulerConfiguration`, build, run.

pub mod client;
mod error;
pub mod eventhandlers;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod offline;
mod pod_status;
mod schedule_one;
mod scheduler;

pub use error::{Error, Result};
pub use offline::OfflineScheduler;
pub use pod_status::{REASON_SCHEDULER_ERROR, REASON_UNSCHEDULABLE};
pub use scheduler::{Scheduler, SchedulerBuilder};
