//! Test support for ksched: a **real** Kubernetes control plane for `cargo test`.
//!
//! The control plane is etcd + kube-apiserver (and, on request, the upstream kube-scheduler), all
//! built from Go modules by `testenv/build.sh` and supervised by the small Go program
//! `ksched-testenv up`. Nothing is faked: requests go over TLS to a real kube-apiserver backed by a
//! real etcd. See `docs/testing.md` for how it works and how to use it by hand.
//!
//! ```no_run
//! # async fn example() -> ksched_testenv::Result<()> {
//! use std::time::Duration;
//! use ksched_testenv::{ControlPlane, NodeSpec, TestPod};
//!
//! let cp = ControlPlane::shared().await?;          // one per test binary, started lazily
//! let ns = cp.namespace("my-test").await?;         // fresh namespace for this test
//! let client = cp.client().await?;
//! ksched_testenv::create_nodes(&client, 3, &NodeSpec::new().name_prefix(ns.name())).await?;
//! ns.create_pod(TestPod::new("p").cpu("100m")).await?;
//! let node = ns.bind_pod("p", &format!("{}-0", ns.name())).await;
//! # Ok(()) }
//! ```
//!
//! Binaries are located through the environment variable [`BIN_DIR_ENV`]
//! (`KSCHED_TESTENV_BIN_DIR`) or else built (once, cached under `target/testenv/`) by running
//! `testenv/build.sh`; a cold build takes tens of minutes on two cores.
//!
//! Cleanup: the supervisor stops etcd and kube-apiserver and deletes its temporary directory when
//! its stdin (held by the test process) reaches EOF, so a test binary that exits, panics or is
//! killed leaves no processes behind.

mod binaries;
mod control_plane;
mod error;
mod exec;
mod http;
mod namespace;
mod objects;
mod process;
mod scheduler;

pub use binaries::{BIN_DIR_ENV, bin_dir, repo_root};
pub use control_plane::free_port;
pub use control_plane::{ApiserverRestart, ControlPlane, ControlPlaneOptions, ReadyInfo};
pub use error::{Error, Result};
pub use exec::{Babysat, ExecOptions, program_pid};
pub use http::http_get;
pub use namespace::TestNamespace;
pub use objects::{
    NodeSpec, TestPod, bind_pod, create_node, create_nodes, create_pod, delete_node, delete_pod,
    events_for_pod, wait_for_pod_bound,
};
pub use scheduler::{KubeScheduler, KubeSchedulerOptions};

/// Re-export of the `kube` crate version this crate is built against.
pub use kube;
