//! `DynamicResources` (guard): ksched does not allocate DRA resource claims yet, so a pod with
//! `spec.resourceClaims` is rejected as UnschedulableAndUnresolvable with a reason naming the
//! missing capability. Registered under upstream's name so configurations that mention it stay
//! valid.

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
pub struct DynamicResources;

/// Factory. Upstream's `DynamicResourcesArgs` are accepted and ignored.
///
/// # Errors
/// Never.
pub fn new(_: &PluginArgs, _: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(DynamicResources))
}

impl Plugin for DynamicResources {
    fn name(&self) -> &str {
        names::DYNAMIC_RESOURCES
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_enqueue_extensions(&self) -> Option<&dyn EnqueueExtensions> {
        Some(self)
    }
}

#[async_trait]
impl PreFilterPlugin for DynamicResources {
    async fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &Pod,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let claims = pod
            .spec
            .as_ref()
            .and_then(|s| s.resource_claims.as_deref())
            .unwrap_or_default();
        if claims.is_empty() {
            return (None, Status::skip());
        }
        let names: Vec<String> = claims.iter().map(|c| format!("{:?}", c.name)).collect();
        (
            None,
            Status::unresolvable(format!(
                "pod has resource claim(s) {}: dynamic resource allocation (DRA) is not supported by ksched yet (see \"Volumes and DRA\" in docs/configuration.md)",
                names.join(", ")
            )),
        )
    }
}

impl EnqueueExtensions for DynamicResources {
    fn events_to_register(&self) -> Vec<ClusterEventWithHint> {
        // `spec.resourceClaims` is immutable and no cluster change adds the capability.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodResourceClaim;
    use ksched_framework::Code;

    use super::*;
    use crate::test_util::PodBuilder;

    #[tokio::test]
    async fn rejects_resource_claims() {
        let mut pod = PodBuilder::new("p").pod();
        assert!(
            DynamicResources
                .pre_filter(&mut CycleState::new(), &pod, &[])
                .await
                .1
                .is_skip()
        );
        pod.spec.as_mut().unwrap().resource_claims = Some(vec![PodResourceClaim {
            name: "gpu".into(),
            ..PodResourceClaim::default()
        }]);
        let (_, s) = DynamicResources
            .pre_filter(&mut CycleState::new(), &pod, &[])
            .await;
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert!(s.message().contains("\"gpu\""), "{}", s.message());
        assert!(
            s.message().contains("(DRA) is not supported"),
            "{}",
            s.message()
        );
    }
}
