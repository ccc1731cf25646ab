//! `DefaultBinder`: binds a pod by POSTing a `Binding` to its `pods/binding` subresource.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{Binding, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use ksched_framework::{BindPlugin, CycleState, Handle, Plugin, PluginArgs, PluginError, Status};
use kube::{Api, api::PostParams};

use crate::names;

/// Upstream's default Bind plugin.
#[derive(Debug)]
pub struct DefaultBinder {
    handle: Arc<Handle>,
}

/// Factory.
///
/// # Errors
/// Never; the plugin takes no args.
pub fn new(_: &PluginArgs, handle: &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> {
    Ok(Arc::new(DefaultBinder {
        handle: handle.clone(),
    }))
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &str {
        names::DEFAULT_BINDER
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

/// The body upstream's DefaultBinder sends: the pod's identity (uid included, so a pod deleted
/// and recreated under the same name is never bound by a stale decision) and the target node.
#[must_use]
pub fn binding_for(pod: &Pod, node_name: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node_name.into()),
            ..ObjectReference::default()
        },
    }
}

#[async_trait]
impl BindPlugin for DefaultBinder {
    async fn bind(&self, _: &CycleState, pod: &Pod, node_name: &str) -> Status {
        let Some(client) = self.handle.client() else {
            return Status::error("DefaultBinder needs a kube client (none configured)");
        };
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return Status::error("pod without namespace or name cannot be bound");
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        // The apiserver answers a binding with a `Status`, not a `Binding`.
        let res = api
            .create_subresource::<_, kube::core::Status>(
                "binding",
                name,
                &PostParams::default(),
                &binding_for(pod, node_name),
            )
            .await;
        match res {
            Ok(_) => Status::success(),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A retried POST whose first attempt went through answers 409: read the pod back
                // rather than reporting a failure for a bind that happened (or binding twice).
                match api.get_opt(name).await {
                    Ok(Some(p)) => match p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                        Some(n) if n == node_name => Status::success(),
                        Some(other) => Status::unresolvable(format!(
                            "pod {ns}/{name} is already bound to node {other}"
                        )),
                        None => Status::error(format!(
                            "binding pod {ns}/{name} conflicted: {}",
                            e.message
                        )),
                    },
                    Ok(None) => Status::unresolvable(format!("pod {ns}/{name} was deleted")),
                    Err(err) => Status::error(format!(
                        "binding pod {ns}/{name} conflicted and re-reading it failed: {err}"
                    )),
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                Status::unresolvable(format!("pod {ns}/{name} no longer exists: {}", e.message))
            }
            Err(e) => Status::error(format!("binding pod {ns}/{name} to {node_name}: {e}")),
        }
    }
}
