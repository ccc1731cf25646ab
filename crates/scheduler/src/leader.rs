//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager), with upstream's
//! timing: a 15 s lease renewed 10 s into it (5 s before it expires), retried every 2 s.

use ksched_framework::config::LeaderElection;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// A running election: `is_leader` turns true once we hold the lease and false if we lose it.
pub struct Election {
    /// Our leadership, as it changes.
    pub is_leader: watch::Receiver<bool>,
    lease: Api<Lease>,
    config: LeaderElection,
    identity: String,
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
        Self::try_start(client, config, identity)
            .await
            .map_err(|e| Error::LeaderElection(describe(&e, config)))
    }

    /// Like [`Election::start`], but an error — a 403 for missing RBAC, an unreachable apiserver
    /// — is retried with backoff (`retryPeriod`, doubling up to 30 s), as upstream retries
    /// acquiring forever. `on_failure` gets the reason of each failure (for `/readyz`); the
    /// first failure, every change of reason and every retry at the longest delay are logged
    /// at WARN, naming the RBAC a 403 calls for. Returns `None` once `shutdown` is cancelled.
    pub async fn start_retrying(
        client: Client,
        config: &LeaderElection,
        identity: &str,
        shutdown: &CancellationToken,
        mut on_failure: impl FnMut(&str),
    ) -> Option<Self> {
        let first = config.retry_period.max(Duration::from_millis(100));
        let mut delay = first;
        let mut last: Option<String> = None;
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return None,
                r = Self::try_start(client.clone(), config, identity) => r,
            };
            let e = match attempt {
                Ok(election) => {
                    if last.is_some() {
                        tracing::info!("the Lease is usable now; campaigning");
                    }
                    return Some(election);
                }
                Err(e) => e,
            };
            let why = describe(&e, config);
            let retry_in = delay.mul_f64(rand::random_range(1.0..1.2));
            if last.as_deref() != Some(why.as_str()) || delay == START_BACKOFF_MAX {
                tracing::warn!(error = %why, ?retry_in, "cannot campaign for the Lease; retrying");
            } else {
                tracing::debug!(error = %why, ?retry_in, "cannot campaign for the Lease; retrying");
            }
            on_failure(&why);
            last = Some(why);
            delay = (delay * 2).min(START_BACKOFF_MAX);
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    async fn try_start(
        client: Client,
        config: &LeaderElection,
        identity: &str,
    ) -> Result<Self, LeaseManagerError> {
        let duration = config.lease_duration.as_secs().max(1);
        // kube-lease-manager renews `grace` seconds before expiry; upstream renews within
        // `renewDeadline` of acquiring, so grace = leaseDuration - renewDeadline.
        let grace = duration
            .saturating_sub(config.renew_deadline.as_secs())
            .clamp(1, duration.saturating_sub(1).max(1));
        let lease = Api::namespaced(client.clone(), &config.resource_namespace);
        let manager = LeaseManagerBuilder::new(client, &config.resource_name)
            .with_namespace(&config.resource_namespace)
            .with_parameters(LeaseParams::new(identity, duration, grace))
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self {
            is_leader,
            lease,
            config: config.clone(),
            identity: identity.to_owned(),
            task,
        })
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

    /// Resolves when leadership is lost: the lease manager says so, or — upstream's
    /// `renewDeadline` — we have not seen the Lease renewed under our name for that long (the
    /// apiserver unreachable, or someone else took it). The lease manager alone would keep
    /// reporting leadership through API errors, past the lease's expiry, while another replica
    /// may already lead.
    pub async fn lost(&mut self) {
        let watchdog = renewal_watchdog(&self.lease, &self.config, &self.identity);
        tokio::select! {
            _ = self.is_leader.wait_for(|l| !*l) => {}
            () = watchdog => {}
        }
    }

    /// Stops campaigning without touching the Lease: after losing it, a release would clear
    /// the new holder's claim.
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Stops campaigning and releases the lease if we hold it.
    pub async fn release(self) {
        drop(self.is_leader);
        // Dropping the receiver makes the watcher release the lease and return.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// Longest delay between attempts to start campaigning.
const START_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why the Lease could not be used; for a 403, the RBAC that is missing.
fn describe(e: &LeaseManagerError, config: &LeaderElection) -> String {
    let (ns, name) = (&config.resource_namespace, &config.resource_name);
    match e {
        LeaseManagerError::KubeError(kube::Error::Api(s)) if s.code == 403 => format!(
            "forbidden to use Lease {ns}/{name}: the scheduler's user needs a Role in namespace \
             {ns} allowing get, create, update and patch on leases (coordination.k8s.io) named \
             {name}, and a RoleBinding to it (apiserver: {})",
            s.message
        ),
        e => format!("Lease {ns}/{name}: {e}"),
    }
}

/// Returns once our renewals have not been seen for `renew_deadline`.
async fn renewal_watchdog(lease: &Api<Lease>, config: &LeaderElection, identity: &str) {
    let mut last_seen = Instant::now();
    let period = config.retry_period.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        match lease.get(&config.resource_name).await {
            Ok(l) => {
                let spec = l.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity) {
                    tracing::warn!(holder = ?spec.holder_identity, "the lease is held by someone else");
                    return;
                }
                let fresh = spec.renew_time.is_some_and(|t| {
                    let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
                    age.as_secs_f64() < config.lease_duration.as_secs_f64()
                });
                if fresh {
                    last_seen = Instant::now();
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the lease"),
        }
        if last_seen.elapsed() > config.renew_deadline {
            tracing::error!(
                renew_deadline = ?config.renew_deadline,
                "the lease was not renewed within renewDeadline; giving up leadership"
            );
            return;
        }
    }
}
