//! [`Dump`]: a copy of the cache's state for debugging.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use ksched_framework::NodeInfo;

/// The cache's state at one moment (upstream `cache.Dump`), from `Cache::dump`.
#[derive(Debug, Clone)]
pub struct Dump {
    /// Every NodeInfo by node name, ghosts included.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Every pod by `namespace/name`.
    pub pods: BTreeMap<String, DumpedPod>,
    /// Every image by name: size and number of nodes having it.
    pub images: BTreeMap<String, (i64, usize)>,
}

/// Where the cache has a pod and in which state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedPod {
    /// The node it is counted on.
    pub node: String,
    /// Assumed: counted before the informer confirmed its binding.
    pub assumed: bool,
    /// The binder reported the binding as finished (assumed pods only).
    pub binding_finished: bool,
}

impl Dump {
    /// Keys of the assumed pods.
    #[must_use]
    pub fn assumed_pods(&self) -> BTreeSet<&str> {
        self.pods
            .iter()
            .filter(|(_, p)| p.assumed)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

impl fmt::Display for Dump {
    /// One line per node (ghosts marked) with its pods, then the assumed pods.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} nodes, {} pods, {} images",
            self.nodes.len(),
            self.pods.len(),
            self.images.len()
        )?;
        for (name, info) in &self.nodes {
            let ghost = if info.node().is_none() {
                " (ghost)"
            } else {
                ""
            };
            let req = info.requested();
            let alloc = info.allocatable();
            let mut pods: Vec<&str> = info.pods().iter().map(|p| p.key()).collect();
            pods.sort_unstable();
            writeln!(
                f,
                "node {name}{ghost}: cpu {}m/{}m, memory {}/{}, pods {}/{}: [{}]",
                req.milli_cpu,
                alloc.milli_cpu,
                req.memory,
                alloc.memory,
                info.pods().len(),
                alloc.allowed_pod_number,
                pods.join(", ")
            )?;
        }
        let assumed: Vec<&str> = self.assumed_pods().into_iter().collect();
        writeln!(f, "assumed pods: [{}]", assumed.join(", "))
    }
}
