//! Leader election over a `coordination.k8s.io` Lease (kube-lease-manager): of several
//! replicas only the holder reconciles; a standby takes over once the holder's claim expires.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::config::OperatorConfig;

/// Errors of the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took the Lease while this one led.
    #[error("leader election: lost the Lease; exiting so that only one replica acts")]
    Lost,
}

/// A running election.
#[derive(Debug)]
pub struct Election {
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Joins the election for the configured Lease as `identity`.
    ///
    /// # Errors
    /// The Lease cannot be read or created.
    pub async fn join(
        client: Client,
        config: &OperatorConfig,
        identity: &str,
    ) -> Result<Self, LeaderError> {
        let settings = &config.leader_election;
        let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
            .with_namespace(&config.namespace)
            .with_identity(identity)
            .with_duration(settings.lease_duration_seconds)
            .with_grace(settings.renew_grace_seconds)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquired(&mut self) -> Result<(), LeaderError> {
        self.leading
            .wait_for(|leading| *leading)
            .await
            .map(drop)
            .map_err(|_| LeaderError::Lost)
    }

    /// Resolves when this replica, leading, loses the Lease.
    pub async fn lost(&mut self) -> LeaderError {
        let _ = self.leading.wait_for(|leading| !*leading).await;
        LeaderError::Lost
    }

    /// Gives the Lease up so a standby takes over at once.
    pub async fn resign(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader Lease"),
            Ok(Err(error)) => tracing::warn!(%error, "releasing the leader Lease failed"),
            Err(error) => tracing::warn!(%error, "the election task failed"),
        }
    }
}
