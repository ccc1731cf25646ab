//! `ImageLocality`: prefers nodes that already have the pod's images, weighing each image by
//! its size and by how widely it is spread over the cluster (weight 1).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    CycleState, Handle, MAX_NODE_SCORE, NodeInfo, Plugin, PluginArgs, PluginError, PreScorePlugin,
    ScorePlugin, Status,
};

use crate::names;

const MB: i64 = 1024 * 1024;
/// Below this total, every node scores 0 (upstream `minThreshold`).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this total every node scores 100 (upstream `maxContainerThreshold`).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

const PRE_SCORE_KEY: &str = "PreScoreImageLocality";

/// The pod's images (normalized) and the cluster size, computed once per cycle rather than per
/// node.
#[derive(Debug, Clone)]
struct PreScoreState {
    images: Arc<Vec<String>>,
    containers: usize,
    total_nodes: usize,
}

/// The score of `node` for the pod's images in `s`.
fn node_score(s: &PreScoreState, node: &NodeInfo) -> i64 {
    let mut sum = 0i64;
    // Checked on the NodeInfo first: most nodes report no images, and the map is a cache
    // miss away.
    if node.has_images() {
        for image in s.images.iter() {
            if let Some(state) = node.image_states().get(image) {
                // Images on few nodes count less, so pods do not pile onto the one node
                // that has a rare image.
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let scaled =
                    (state.size as f64 * (state.num_nodes as f64 / s.total_nodes as f64)) as i64;
                sum = sum.saturating_add(scaled);
            }
        }
    }
    calculate_priority(sum, s.containers)
}

/// Upstream's ImageLocality Score plugin.
#[derive(Debug, Clone)]
pub struct ImageLocality {
    handle: Arc<Handle>,
}

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(ImageLocality {
        handle: handle.clone(),
    }))
}

/// `name:latest` for an image without a tag (a `:` after the last `/`), as the kubelet reports
/// images (upstream `normalizedImageName`).
fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c > s => name.to_owned(),
        (Some(_), None) => name.to_owned(),
        _ => format!("{name}:latest"),
    }
}

/// The score for the summed, spread-scaled image sizes of `containers` containers.
fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD.saturating_mul(i64::try_from(containers).unwrap_or(i64::MAX));
    let sum = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD));
    if max <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl Plugin for ImageLocality {
    fn name(&self) -> &str {
        names::IMAGE_LOCALITY
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl ImageLocality {
    fn state(&self, pod: &Pod) -> PreScoreState {
        let spec = pod.spec.as_ref();
        let containers: Vec<_> = spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .collect();
        PreScoreState {
            images: Arc::new(
                containers
                    .iter()
                    .filter_map(|c| c.image.as_deref())
                    .map(normalized_image_name)
                    .collect(),
            ),
            containers: containers.len(),
            total_nodes: self.handle.snapshot().len().max(1),
        }
    }
}

#[async_trait]
impl PreScorePlugin for ImageLocality {
    async fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &[Arc<NodeInfo>]) -> Status {
        state.write(PRE_SCORE_KEY, self.state(pod));
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    /// Scores are already in [0, 100]; no NormalizeScore (upstream: no ScoreExtensions).
    fn has_normalize_score(&self) -> bool {
        false
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let s = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Ok(s) => s,
            Err(_) => {
                computed = self.state(pod);
                &computed
            }
        };
        Ok(node_score(s, node))
    }

    /// [`ScorePlugin::score`] with the PreScore state read once for the chunk.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Result<(), (usize, Status)> {
        let computed;
        let s = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Ok(s) => s,
            Err(_) => {
                computed = self.state(pod);
                &computed
            }
        };
        for (node, out) in nodes.iter().zip(scores) {
            *out = node_score(s, node);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NodeBuilder, PodBuilder, snapshot};

    #[test]
    fn image_names() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized_image_name("localhost:5000/nginx"),
            "localhost:5000/nginx:latest"
        );
        assert_eq!(
            normalized_image_name("localhost:5000/nginx:1"),
            "localhost:5000/nginx:1"
        );
    }

    #[test]
    fn scores_by_size_and_spread() {
        let nodes = [
            NodeBuilder::new("big")
                .image("app:1", 500 * MB)
                .image("db:1", 300 * MB),
            NodeBuilder::new("small").image("app:1", 500 * MB),
            NodeBuilder::new("none"),
        ];
        let snap = snapshot(&nodes);
        let handle = Arc::new(Handle::for_tests("t"));
        handle.set_snapshot(snap.clone());
        let pl = ImageLocality { handle };
        let pod = PodBuilder::new("p").image("app:1").container("db:1").pod();
        let scores: Vec<i64> = snap
            .list()
            .iter()
            .map(|n| pl.score(&CycleState::new(), &pod, n).unwrap())
            .collect();
        // app is on 2 of 3 nodes, db on 1 of 3; two containers: max = 2000MB.
        let app = (500.0 * MB as f64 * 2.0 / 3.0) as i64;
        let db = 300 * MB / 3;
        let expect = |sum: i64| 100 * (sum - MIN_THRESHOLD) / (2000 * MB - MIN_THRESHOLD);
        assert_eq!(scores, [expect(app + db), expect(app), 0]);
    }
}
