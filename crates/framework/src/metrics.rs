//! The framework's Prometheus metrics, under upstream's names and labels.

use parking_lot::RwLock;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::Code;

/// Labels of `scheduler_framework_extension_point_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionPointLabels {
    /// `PreFilter`, `Filter`, …
    pub extension_point: &'static str,
    /// The status code name (`Success`, `Unschedulable`, …).
    pub status: &'static str,
    /// The profile.
    pub profile: String,
}

/// Labels of `scheduler_plugin_execution_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin.
    pub plugin: String,
    /// The extension point.
    pub extension_point: &'static str,
    /// The status code name.
    pub status: &'static str,
}

fn extension_point_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 12))
}

fn plugin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 1.5, 20))
}

/// Histograms the runtime records into; share one across all profiles' frameworks.
#[derive(Debug, Clone)]
pub struct FrameworkMetrics {
    /// `scheduler_framework_extension_point_duration_seconds{extension_point,status,profile}`.
    pub extension_point_duration: Family<ExtensionPointLabels, Histogram, fn() -> Histogram>,
    /// `scheduler_plugin_execution_duration_seconds{plugin,extension_point,status}` (sampled in
    /// 10 % of cycles, as upstream).
    pub plugin_execution_duration: Family<PluginLabels, Histogram, fn() -> Histogram>,
    /// Handles into `extension_point_duration`, resolved once per profile, point and code.
    point_handles: PointHandles,
}

impl Default for FrameworkMetrics {
    fn default() -> Self {
        Self {
            extension_point_duration: Family::new_with_constructor(extension_point_histogram),
            plugin_execution_duration: Family::new_with_constructor(plugin_histogram),
            point_handles: PointHandles::default(),
        }
    }
}

/// The extension points with a slot in [`PointHandles`]; others go through the family.
fn point_index(point: &str) -> Option<usize> {
    Some(match point {
        "PreFilter" => 0,
        "Filter" => 1,
        "PostFilter" => 2,
        "PreScore" => 3,
        "Score" => 4,
        "Reserve" => 5,
        "Unreserve" => 6,
        "Permit" => 7,
        "PreBindPreFlight" => 8,
        "PreBind" => 9,
        "Bind" => 10,
        "PostBind" => 11,
        _ => return None,
    })
}

const POINTS: usize = 12;
/// [`Code`]'s variants.
const CODES: usize = 7;
// A variant added after `Pending` must grow `CODES`.
const _: () = assert!(Code::Pending as usize == CODES - 1);

/// Extension-point histograms by profile, then by `point_index * CODES + code`: every
/// extension point of every cycle observes one, and going through the family each time
/// would build the label set — a copy of the profile name — and hash it.
#[derive(Debug, Default)]
struct PointHandles(RwLock<Vec<ProfilePoints>>);

/// A profile's name and its histograms by slot.
type ProfilePoints = (String, Box<[Option<Histogram>]>);

impl Clone for PointHandles {
    fn clone(&self) -> Self {
        Self(RwLock::new(self.0.read().clone()))
    }
}

impl FrameworkMetrics {
    /// New, unregistered metrics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Observes `seconds` in `scheduler_framework_extension_point_duration_seconds` for
    /// `{point, code, profile}` — through a handle resolved on the first observation.
    pub fn observe_extension_point(
        &self,
        profile: &str,
        point: &'static str,
        code: Code,
        seconds: f64,
    ) {
        let slot = point_index(point).map(|p| p * CODES + code as usize);
        if let Some(slot) = slot {
            let handles = self.point_handles.0.read();
            let cached = handles
                .iter()
                .find(|(p, _)| p == profile)
                .and_then(|(_, hs)| hs.get(slot)?.as_ref());
            if let Some(h) = cached {
                h.observe(seconds);
                return;
            }
        }
        let h = self
            .extension_point_duration
            .get_or_create(&ExtensionPointLabels {
                extension_point: point,
                status: code.as_str(),
                profile: profile.to_owned(),
            })
            .clone();
        h.observe(seconds);
        let Some(slot) = slot else { return };
        let mut handles = self.point_handles.0.write();
        let i = match handles.iter().position(|(p, _)| p == profile) {
            Some(i) => i,
            None => {
                handles.push((profile.to_owned(), vec![None; POINTS * CODES].into()));
                handles.len() - 1
            }
        };
        if let Some(s) = handles.get_mut(i).and_then(|(_, hs)| hs.get_mut(slot)) {
            *s = Some(h);
        }
    }

    /// Registers the metrics in `registry` (give it the `scheduler` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            self.extension_point_duration.clone(),
        );
        registry.register(
            "plugin_execution_duration_seconds",
            "Duration for running a plugin at a specific extension point.",
            self.plugin_execution_duration.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn text(m: &FrameworkMetrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r);
        let mut s = String::new();
        encode(&mut s, &r).unwrap_or_default();
        s
    }

    fn count(text: &str, labels: &str) -> Option<String> {
        let prefix = format!("framework_extension_point_duration_seconds_count{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    }

    #[test]
    fn extension_point_observations_land_in_their_label_sets() {
        let m = FrameworkMetrics::new();
        for _ in 0..3 {
            m.observe_extension_point("a", "Filter", Code::Success, 0.001);
        }
        m.observe_extension_point("a", "Filter", Code::Unschedulable, 0.001);
        m.observe_extension_point("b", "Filter", Code::Success, 0.001);
        // Not in the handle table: through the family every time.
        m.observe_extension_point("a", "Custom", Code::Success, 0.001);
        m.observe_extension_point("a", "Custom", Code::Success, 0.001);
        // A clone shares the histograms.
        m.clone()
            .observe_extension_point("b", "PostBind", Code::Pending, 0.001);
        let t = text(&m);
        let c = |labels| count(&t, labels);
        assert_eq!(
            c(r#"extension_point="Filter",status="Success",profile="a""#).as_deref(),
            Some("3")
        );
        assert_eq!(
            c(r#"extension_point="Filter",status="Unschedulable",profile="a""#).as_deref(),
            Some("1")
        );
        assert_eq!(
            c(r#"extension_point="Filter",status="Success",profile="b""#).as_deref(),
            Some("1")
        );
        assert_eq!(
            c(r#"extension_point="Custom",status="Success",profile="a""#).as_deref(),
            Some("2")
        );
        assert_eq!(
            c(r#"extension_point="PostBind",status="Pending",profile="b""#).as_deref(),
            Some("1")
        );
    }
}
