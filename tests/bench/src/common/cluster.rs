//! The harness cluster as a benchmark sees it: an admin client, the operator's own identity and
//! the simulated GPU nodes.

use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

/// The cluster of `KUBECONFIG` and `cluster.env`'s settings.
pub struct Cluster {
    /// An admin client.
    pub client: kube::Client,
    /// The kubeconfig of the operator's user (a static token of `tests/cluster/up`).
    pub operator_kubeconfig: PathBuf,
}

/// A setting of `cluster.env`, which the benchmark's script exports.
pub fn setting(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{name} is not set: source the cluster's cluster.env (set -a)"))
}

impl Cluster {
    /// The cluster of the environment (`KUBECONFIG`, `ATTUNE_OPERATOR_KUBECONFIG`).
    pub async fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            client: kube::Client::try_default()
                .await
                .context("connecting with KUBECONFIG")?,
            operator_kubeconfig: setting("ATTUNE_OPERATOR_KUBECONFIG")?.into(),
        })
    }

    /// The simulated GPU nodes and their GPUs.
    pub async fn gpu_nodes(&self) -> anyhow::Result<(usize, u64)> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&ListParams::default().labels("attune.dev/node-pool=gpu"))
            .await?;
        let gpus = list
            .items
            .iter()
            .filter_map(|n| n.status.as_ref()?.capacity.as_ref()?.get("nvidia.com/gpu"))
            .filter_map(|q| q.0.parse::<u64>().ok())
            .sum();
        Ok((list.items.len(), gpus))
    }
}
