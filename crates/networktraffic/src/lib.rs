//! `NetworkTraffic`: a ksched Score plugin that prefers nodes with less network traffic, as
//! measured by Prometheus (node-exporter's `node_network_*_bytes_total`).
//!
//! It is seed 000's idea, rebuilt so that it can be trusted in production:
//!
//! - **Prometheus is off the scheduling path.** A background task runs *one* query per
//!   `refreshInterval` (default 15 s) for all nodes and swaps in an immutable snapshot
//!   ([`snapshot`]); Score is a lock-free lookup ([`score`]). The seed ran one HTTP query per
//!   node per pod, with no timeout.
//! - **A rate, per node.** `rate()` over `rateWindow` of the byte counters, summed over real
//!   NICs, joined to node names through `node_uname_info` (or a node label, or the node's
//!   InternalIP) — see [`query`].
//! - **Scores that cannot blow up.** Less traffic, higher score; normalised to [0, 100] with
//!   no division by zero, NaN/Inf/negative samples ignored, optionally relative to link
//!   capacity.
//! - **Never fails a pod.** Prometheus down, slow, wrong or empty: nodes without fresh data get
//!   a neutral score; data is dropped once older than `maxStaleness` ([`refresher`]).
//! - **No herd.** Reserve adds the pod's expected bandwidth (annotation
//!   [`EXPECTED_BANDWIDTH_ANNOTATION`]) to its node until Prometheus sees it
//!   ([`compensation`]), so a burst spreads instead of piling onto the one quiet node.
//! - **Optional Filter** (`maxBandwidth`), auth ([`auth`]), its own metrics ([`metrics`]).
//!
//! Register it with the scheduler and enable it with `multiPoint` (Score *and* Reserve, and
//! Filter when `maxBandwidth` is set):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio_util::sync::CancellationToken;
//!
//! let scheduler = ksched::Scheduler::builder()
//!     .with_plugin(ksched_networktraffic::NAME, ksched_networktraffic::new)
//!     .with_config_file("/etc/kubernetes/scheduler-config.yaml")
//!     .build()
//!     .await?;
//! scheduler.run(CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! ```yaml
//! profiles:
//! - schedulerName: networktraffic-scheduler
//!   plugins:
//!     multiPoint:
//!       enabled: [{name: NetworkTraffic, weight: 5}]
//!   pluginConfig:
//!   - name: NetworkTraffic
//!     args:
//!       prometheusAddress: http://prometheus.monitoring.svc:9090
//! ```
//!
//! `docs/networktraffic.md` explains the query, the mapping, the formula with a worked example,
//! every argument and the metrics.

pub mod args;
pub mod auth;
pub mod compensation;
mod error;
pub mod metrics;
mod plugin;
pub mod query;
pub mod refresher;
pub mod score;
pub mod snapshot;
pub mod source;
mod view;

use std::sync::Arc;

use ksched_framework::{Handle, Plugin, PluginArgs, PluginError};

pub use args::NetworkTrafficArgs;
pub use compensation::EXPECTED_BANDWIDTH_ANNOTATION;
pub use error::Error;
pub use metrics::{NetworkTrafficMetrics, register as register_metrics};
pub use plugin::{NetworkTraffic, ReserveClock};
pub use refresher::RefreshSummary;
pub use snapshot::{NodeTraffic, TrafficSnapshot};

/// The plugin's name, in code, configuration, logs and metrics.
pub const NAME: &str = "NetworkTraffic";

/// The plugin factory for `Scheduler::builder().with_plugin(NAME, new)` or a framework
/// [`ksched_framework::Registry`]: decodes and validates the args (errors name the field), then
/// starts the refresher without waiting for its first query. Metrics go to
/// [`NetworkTrafficMetrics::global`], labelled with the handle's profile.
///
/// # Errors
/// [`PluginError::Args`] / [`PluginError::InvalidArg`] naming the field; [`PluginError::Other`]
/// when the HTTP client cannot be built.
pub fn new(args: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    let args: NetworkTrafficArgs = args.decode()?;
    let plugin = NetworkTraffic::start(
        &args,
        handle.profile_name(),
        Some(handle),
        NetworkTrafficMetrics::global().clone(),
    )?;
    Ok(Arc::new(plugin))
}
