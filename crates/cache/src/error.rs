//! [`Error`]: what a cache operation refuses, naming the pod or node.

/// A cache operation that does not fit the cache's state. Pods are named `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The pod has no `metadata.name`.
    #[error("pod in namespace {namespace:?} has no name")]
    PodWithoutName {
        /// The pod's namespace.
        namespace: String,
    },
    /// The pod has no `spec.nodeName`; only assigned (or being assumed) pods go into the cache.
    #[error("pod {pod} has no spec.nodeName")]
    PodNotAssigned {
        /// The pod.
        pod: String,
    },
    /// `assume_pod` for a pod the cache already has.
    #[error("pod {pod} is in the cache, so it can't be assumed")]
    PodAlreadyInCache {
        /// The pod.
        pod: String,
    },
    /// An informer add for a pod that was already added (not assumed).
    #[error("pod {pod} was already added to the cache")]
    PodAlreadyAdded {
        /// The pod.
        pod: String,
    },
    /// An update or delete for a pod the cache does not have.
    #[error("pod {pod} is not in the cache")]
    PodNotFound {
        /// The pod.
        pod: String,
    },
    /// `forget_pod` for a pod that is not assumed (it was confirmed by the informer, or never
    /// assumed).
    #[error("pod {pod} is not assumed")]
    PodNotAssumed {
        /// The pod.
        pod: String,
    },
    /// `forget_pod` naming another node than the pod was assumed on.
    #[error("pod {pod} was assumed on node {assumed_node} but the pod to forget names node {node}")]
    PodNodeMismatch {
        /// The pod.
        pod: String,
        /// Where the cache has it.
        assumed_node: String,
        /// Where the caller said it is.
        node: String,
    },
    /// An informer update for an assumed pod: the informer's add must come first.
    #[error("assumed pod {pod} should not be updated before it is added")]
    AssumedPodUpdated {
        /// The pod.
        pod: String,
    },
    /// An informer update or delete puts a bound pod on another node than the cache has it on.
    /// The API forbids moving a bound pod, so an event was missed and the cache was wrong; it
    /// has followed the informer (the pod now counts where the informer says, or is gone).
    /// Upstream exits the process here; the caller decides.
    #[error(
        "pod {pod} is on node {to} but the cache had it on node {from} (cache was corrupted; it followed the informer)"
    )]
    PodNodeChanged {
        /// The pod.
        pod: String,
        /// Where the cache had it.
        from: String,
        /// Where the informer has it.
        to: String,
    },
    /// The node has no `metadata.name`.
    #[error("node has no name")]
    NodeWithoutName,
    /// The node is not in the cache (or is only a ghost of a deleted node).
    #[error("node {node} not found")]
    NodeNotFound {
        /// The node name.
        node: String,
    },
    /// The snapshot did not end up with one entry per node; it was rebuilt from scratch, and
    /// the cycle that asked should not trust it.
    #[error(
        "snapshot is not consistent: {listed} nodes listed, {expected} nodes in the cache; rebuilt it"
    )]
    SnapshotInconsistent {
        /// Nodes the snapshot listed.
        listed: usize,
        /// Nodes in the cache's node tree.
        expected: usize,
    },
}
