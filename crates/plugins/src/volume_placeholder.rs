//! `VolumeRestrictions`, `NodeVolumeLimits` and `VolumeZone` as accepted placeholders: their
//! upstream checks concern PersistentVolumeClaim-backed volumes, which the `VolumeBinding`
//! guard already rejects, so they have nothing to do (their PreFilter returns Skip). They exist
//! so that configurations naming them (upstream's default profile does) stay valid. Inline CSI
//! volume limits are not enforced; see "Volumes and DRA" in docs/configuration.md.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    CycleState, Handle, NodeInfo, Plugin, PluginArgs, PluginError, PreFilterPlugin,
    PreFilterResult, Status,
};

/// A named plugin whose PreFilter skips it.
#[derive(Debug, Clone, Copy)]
pub struct VolumePlaceholder {
    name: &'static str,
}

/// Factory for `name`; any args are accepted and ignored.
pub fn factory(
    name: &'static str,
) -> impl Fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> + Send + Sync + 'static
{
    move |_, _| Ok(Arc::new(VolumePlaceholder { name }) as Arc<dyn Plugin>)
}

impl Plugin for VolumePlaceholder {
    fn name(&self) -> &str {
        self.name
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
}

#[async_trait]
impl PreFilterPlugin for VolumePlaceholder {
    async fn pre_filter(
        &self,
        _: &mut CycleState,
        _: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        (None, Status::skip())
    }
}
