//! `VolumeBinding` (guard): ksched does not bind PersistentVolumeClaims yet, so a pod with a
//! `persistentVolumeClaim` or generic `ephemeral` volume is rejected as
//! UnschedulableAndUnresolvable with a reason naming the missing capability — never placed
//! while its volumes are ignored. Registered under upstream's name so configurations that
//! mention it stay valid.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ClusterEventWithHint, CycleState, EnqueueExtensions, Handle, NodeInfo, Plugin, PluginArgs,
    PluginError, PreFilterPlugin, PreFilterResult, Status,
};

use crate::names;

/// The guard plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct VolumeBinding;

/// Factory. Upstream's `VolumeBindingArgs` are accepted and ignored.
///
/// # Errors
/// Never.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(VolumeBinding))
}

/// The reason for a pod with claim-backed volumes, or `None`.
pub fn unsupported_volumes(pod: &Pod) -> Option<String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let names: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(format!(
                    "{:?} (persistentVolumeClaim {:?})",
                    v.name, pvc.claim_name
                ))
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{:?} (ephemeral)", v.name))
            }
        })
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "pod has PersistentVolumeClaim-backed volume(s) {}: volume binding is not supported by ksched yet (see \"Volumes and DRA\" in docs/configuration.md)",
            names.join(", ")
        )
    })
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &str {
        names::VOLUME_BINDING
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

#[async_trait]
impl PreFilterPlugin for VolumeBinding {
    async fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        match unsupported_volumes(pod) {
            Some(reason) => (None, Status::unresolvable(reason)),
            None => (None, Status::skip()),
        }
    }
}

impl EnqueueExtensions for VolumeBinding {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        // A pod's volumes are immutable and no cluster change adds the capability.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, Volume,
    };
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::PodBuilder;

    #[tokio::test]
    async fn rejects_claims_only() {
        let mut pod = PodBuilder::new("p").pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]);
        assert!(
            VolumeBinding
                .pre_filter(&mut CycleState::new(), &pod, &[])
                .await
                .1
                .is_skip()
        );
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes.as_mut().unwrap().push(Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "pvc-1".into(),
                read_only: None,
            }),
            ..Volume::default()
        });
        spec.volumes.as_mut().unwrap().push(Volume {
            name: "tmp".into(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        });
        let (_, s) = VolumeBinding
            .pre_filter(&mut CycleState::new(), &pod, &[])
            .await;
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert!(
            s.message()
                .contains(r#""data" (persistentVolumeClaim "pvc-1"), "tmp" (ephemeral)"#),
            "{}",
            s.message()
        );
        assert!(
            s.message().contains("volume binding is not supported"),
            "{}",
            s.message()
        );
    }
}
