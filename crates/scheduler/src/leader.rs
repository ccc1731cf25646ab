//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager), with upstream's
//! timing: a 15 s lease renewed 10 s into it (5 s before it expires), retried every 2 s.

use ksched_framework::config::LeaderElection;
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::{sync::watch, task::JoinHandle};

use crate::Error;

/// A running election: `is_leader` turns true once we hold the lease and false if we lose it.
pub struct Election {
    /// Our leadership, as it changes.
    pub is_leader: watch::Receiver<bool>,
    task:
        JoinHandle<Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

impl Election {
    /// Starts campaigning for the lease `config.resource_namespace/config.resource_name` as
    /// `identity`.
    ///
    /// # Errors
    /// [`Error::LeaderElection`] when the Lease cannot be read or created.
    pub async fn start(
        client: Client,
        config: &LeaderElection,
        identity: &str,
    ) -> Result<Self, Error> {
        let duration = config.lease_duration.as_secs().max(1);
        // kube-lease-manager renews `grace` seconds before expiry; upstream renews within
        // `renewDeadline` of acquiring, so grace = leaseDuration - renewDeadline.
        let grace = duration
            .saturating_sub(config.renew_deadline.as_secs())
            .clamp(1, duration.saturating_sub(1).max(1));
        let manager = LeaseManagerBuilder::new(client, &config.resource_name)
            .with_namespace(&config.resource_namespace)
            .with_parameters(LeaseParams::new(identity, duration, grace))
            .build()
            .await
            .map_err(|e| {
                Error::LeaderElection(format!(
                    "lease {}/{}: {e}",
                    config.resource_namespace, config.resource_name
                ))
            })?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self { is_leader, task })
    }

    /// Waits until we lead. Returns an error if the election task ends first.
    ///
    /// # Errors
    /// [`Error::LeaderElection`] when the election stopped.
    pub async fn until_leader(&mut self) -> Result<(), Error> {
        self.is_leader
            .wait_for(|l| *l)
            .await
            .map(|_| ())
            .map_err(|_| {
                Error::LeaderElection("the election stopped before we became leader".into())
            })
    }

    /// Resolves when leadership is lost (or the election ends).
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|l| !*l).await;
    }

    /// Stops campaigning and releases the lease if we hold it.
    pub async fn release(self) {
        drop(self.is_leader);
        // Dropping the receiver makes the watcher release the lease and return.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}
