use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::core::Status;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::Result;

/// A namespace created for one test (see [`crate::ControlPlane::namespace`]), with a client.
///
/// The namespace is not deleted afterwards: without kube-controller-manager a deleted namespace
/// stays `Terminating` forever, and the control plane goes away with the test binary anyway.
#[derive(Clone)]
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    pub(crate) fn new(name: String, client: Client) -> Self {
        TestNamespace { name, client }
    }

    /// The namespace's name (also a good name prefix for this test's cluster-scoped objects).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was created with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An `Api` for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Pods in this namespace.
    pub fn pods(&self) -> Api<Pod> {
        self.api()
    }

    /// [`crate::create_pod`] in this namespace.
    pub async fn create_pod(&self, pod: impl Into<Pod>) -> Result<Pod> {
        crate::create_pod(&self.client, &self.name, pod).await
    }

    /// [`crate::delete_pod`] in this namespace.
    pub async fn delete_pod(&self, name: &str) -> Result<()> {
        crate::delete_pod(&self.client, &self.name, name).await
    }

    /// [`crate::bind_pod`] in this namespace.
    pub async fn bind_pod(&self, pod: &str, node: &str) -> Result<Status> {
        crate::bind_pod(&self.client, &self.name, pod, node).await
    }

    /// [`crate::wait_for_pod_bound`] in this namespace.
    pub async fn wait_for_pod_bound(&self, pod: &str, timeout: Duration) -> Result<String> {
        crate::wait_for_pod_bound(&self.client, &self.name, pod, timeout).await
    }

    /// [`crate::events_for_pod`] in this namespace.
    pub async fn events_for_pod(&self, pod: &str) -> Result<Vec<Event>> {
        crate::events_for_pod(&self.client, &self.name, pod).await
    }
}
