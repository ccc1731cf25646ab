//! [`ImageStateSummary`]: an image on a node, for ImageLocality.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Node;

/// An image present on a node: its size and on how many nodes of the cluster it is (upstream
/// `fwk.ImageStateSummary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageStateSummary {
    /// Size in bytes (`node.status.images[].sizeBytes`).
    pub size: i64,
    /// Number of nodes that have the image. The cache fills it in when it copies the node into
    /// a snapshot; like upstream, it is not refreshed when only other nodes change.
    pub num_nodes: usize,
}

/// The images of `node` by each of their names, counting only this node.
#[must_use]
pub fn node_image_states(node: &Node) -> HashMap<String, ImageStateSummary> {
    let mut states = HashMap::new();
    for image in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
        for name in image.names.iter().flatten() {
            states.entry(name.clone()).or_insert(ImageStateSummary {
                size: image.size_bytes.unwrap_or(0),
                num_nodes: 1,
            });
        }
    }
    states
}
