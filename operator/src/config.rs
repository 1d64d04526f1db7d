//! `attune-operator --config FILE`: the operator's settings, one YAML file (the Helm chart
//! renders it into a ConfigMap). Every field has a documented default (operator/README.md); an
//! unknown field is an error that names it, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

pub use crate::cache::config::{MODEL_CACHE_VOLUME, ModelCacheConfig, RetentionConfig};
use crate::error::{Error, Result};
pub use crate::tenancy::TenancyConfig;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// Name of this installation. CachedModels are labelled with it and each installation
    /// reconciles only its own, so two installations can share a cluster when they also watch
    /// disjoint namespaces.
    pub instance: String,
    /// The operator's own namespace: its leader-election Lease, the progress-token key and the
    /// fetch Jobs of public models live here. Default: `$POD_NAMESPACE`, else `attune-system`.
    pub namespace: String,
    /// Namespaces whose FineTuneJobs this installation reconciles; empty means all.
    pub watch_namespaces: Vec<String>,
    /// Trainer and fetch pods.
    pub trainer: TrainerConfig,
    /// The shared base-model cache.
    pub model_cache: ModelCacheConfig,
    /// The model hub.
    pub hub: HubConfig,
    /// Where trainer pods report progress.
    pub progress: ProgressConfig,
    /// Prometheus metrics and health probes.
    pub metrics: MetricsConfig,
    /// The per-job checkpoint volumes.
    pub checkpoints: CheckpointConfig,
    /// Leader election among replicas.
    pub leader_election: LeaderElectionConfig,
    /// Tenants' quotas, queueing and preemption.
    pub tenancy: TenancyConfig,
    /// FineTuneJobs reconciled at the same time.
    pub concurrency: u16,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            instance: "attune".to_owned(),
            namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "attune-system".to_owned()),
            watch_namespaces: Vec::new(),
            trainer: TrainerConfig::default(),
            model_cache: ModelCacheConfig::default(),
            hub: HubConfig::default(),
            progress: ProgressConfig::default(),
            metrics: MetricsConfig::default(),
            checkpoints: CheckpointConfig::default(),
            leader_election: LeaderElectionConfig::default(),
            tenancy: TenancyConfig::default(),
            concurrency: 16,
        }
    }
}

/// The trainer image and what every trainer and fetch pod gets.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Image of trainer and fetch pods.
    pub image: String,
    /// `imagePullPolicy` of those pods; unset lets Kubernetes choose.
    pub image_pull_policy: Option<String>,
    /// The command that runs `attune-trainer` in that image; subcommands are appended.
    pub command: Vec<String>,
    /// Merged into every trainer and fetch pod; a FineTuneJob's own settings win.
    pub pod_defaults: PodDefaults,
    /// Seconds a trainer pod gets after SIGTERM to write its checkpoint.
    pub termination_grace_period_seconds: i64,
    /// `--device` of trainer pods that have GPUs: `cuda` fails loudly when the image's trainer
    /// cannot use them; `auto` falls back to the CPU.
    pub gpu_device: String,
    /// Size limit of the writable scratch `emptyDir` at `/tmp` (the root filesystem is
    /// read-only).
    pub scratch_size_limit: Quantity,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            image: format!(
                "ghcr.io/attune/attune-trainer:{}",
                env!("CARGO_PKG_VERSION")
            ),
            image_pull_policy: None,
            command: vec!["attune-trainer".to_owned()],
            pod_defaults: PodDefaults::default(),
            termination_grace_period_seconds: 300,
            gpu_device: "cuda".to_owned(),
            scratch_size_limit: Quantity("10Gi".to_owned()),
        }
    }
}

/// Placement applied to every pod the operator creates.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodDefaults {
    /// Node labels every pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// Taints every pod tolerates.
    pub tolerations: Vec<Toleration>,
}

/// The model hub.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HubConfig {
    /// Passed to fetch pods as `HF_ENDPOINT`; a mirror works the same.
    pub endpoint: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            endpoint: "https://huggingface.co".to_owned(),
        }
    }
}

/// The progress endpoint trainer pods POST their events to.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProgressConfig {
    /// Base URL of this operator as trainer pods reach it (plain `http://`).
    pub url: String,
    /// Address the progress server listens on.
    pub listen: SocketAddr,
    /// Least seconds between two status writes of one job for step reports alone (start,
    /// evaluation, checkpoint and completion are written at once).
    pub status_interval_seconds: u64,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        Self {
            url: "http://attune-operator.attune-system.svc:8081".to_owned(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            status_interval_seconds: 5,
        }
    }
}

/// `/metrics`, `/healthz` and `/readyz`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address the metrics and health server listens on.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
        }
    }
}

/// The PersistentVolumeClaim each job keeps its checkpoints on, so that a retry resumes.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// StorageClass of the claim; unset uses the cluster's default class.
    pub storage_class_name: Option<String>,
    /// Requested size of the claim.
    pub size: Quantity,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            size: Quantity("10Gi".to_owned()),
        }
    }
}

/// Leader election over a `coordination.k8s.io` Lease in the operator's namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Off: this replica acts at once (only ever run one then).
    pub enabled: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// Seconds a leader's claim lasts without renewal; a standby takes over after it.
    pub lease_duration_seconds: u64,
    /// Seconds before expiry at which the leader renews.
    pub renew_grace_seconds: u64,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: "attune-operator".to_owned(),
            lease_duration_seconds: 15,
            renew_grace_seconds: 5,
        }
    }
}

impl OperatorConfig {
    /// Reads and checks a YAML file.
    ///
    /// # Errors
    /// The file is unreadable, is not YAML, has an unknown field or a bad value.
    pub fn from_file(path: &Path) -> Result<Self> {
        let error = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::from_yaml(&text).map_err(error)
    }

    /// Parses and checks YAML text; the error names the field.
    ///
    /// # Errors
    /// Unknown fields, wrong types and the checks of [`Self::check`].
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let mut config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        config.model_cache.resolve(&config.instance)?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    fn check(&self) -> Result<(), String> {
        if !self.progress.url.starts_with("http://") {
            return Err(format!(
                "progress.url: `{}` must be a plain http:// URL (trainer pods have no TLS client)",
                self.progress.url
            ));
        }
        if self.trainer.command.is_empty() {
            return Err("trainer.command: must name the attune-trainer executable".into());
        }
        if self.leader_election.renew_grace_seconds >= self.leader_election.lease_duration_seconds {
            return Err(
                "leaderElection.renewGraceSeconds: must be less than leaseDurationSeconds".into(),
            );
        }
        self.tenancy.check()?;
        if self.concurrency == 0 {
            return Err("concurrency: must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_takes_every_default() {
        let config = OperatorConfig::from_yaml("").expect("defaults");
        assert_eq!(config.hub.endpoint, "https://huggingface.co");
        assert_eq!(config.trainer.command, ["attune-trainer"]);
        assert_eq!(config.metrics.listen.port(), 8080);
        assert_eq!(config.progress.listen.port(), 8081);
        let host_path = config
            .model_cache
            .volume
            .host_path
            .expect("hostPath default");
        assert_eq!(host_path.path, "/var/lib/attune/model-cache");
        assert_eq!(config.model_cache.volume.name, MODEL_CACHE_VOLUME);
    }

    #[test]
    fn the_documented_example_parses() {
        let config = OperatorConfig::from_yaml(
            r"
trainer:
  image: ghcr.io/attune/attune-trainer:0.1.0
  command: [attune-trainer]
  podDefaults:
    nodeSelector: {pool: gpu}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
modelCache:
  volume:
    persistentVolumeClaim: {claimName: model-cache}
hub:
  endpoint: http://mirror.local:8080
progress:
  url: http://attune-operator.attune-system.svc:8081
  listen: 0.0.0.0:8081
metrics:
  listen: 127.0.0.1:9090
",
        )
        .expect("valid");
        assert_eq!(config.trainer.pod_defaults.node_selector["pool"], "gpu");
        assert_eq!(config.trainer.pod_defaults.tolerations.len(), 1);
        let claim = config
            .model_cache
            .volume
            .persistent_volume_claim
            .expect("pvc");
        assert_eq!(claim.claim_name, "model-cache");
        assert_eq!(config.hub.endpoint, "http://mirror.local:8080");
        assert_eq!(config.metrics.listen.to_string(), "127.0.0.1:9090");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let error = OperatorConfig::from_yaml("trainer:\n  imag: x\n").expect_err("typo");
        assert!(error.contains("unknown field `imag`"), "{error}");
        let error = OperatorConfig::from_yaml("hubb: {}\n").expect_err("typo");
        assert!(error.contains("unknown field `hubb`"), "{error}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let error = OperatorConfig::from_yaml("progress:\n  url: https://x\n").expect_err("tls");
        assert!(error.starts_with("progress.url:"), "{error}");
        let error = OperatorConfig::from_yaml("metrics:\n  listen: nowhere\n").expect_err("addr");
        assert!(
            error.contains("metrics.listen") || error.contains("invalid"),
            "{error}"
        );
        let error = OperatorConfig::from_yaml("modelCache:\n  volume: {}\n").expect_err("empty");
        assert!(error.contains("names no volume source"), "{error}");
        let error = OperatorConfig::from_yaml("concurrency: 0\n").expect_err("zero");
        assert!(error.starts_with("concurrency:"), "{error}");
    }
}
