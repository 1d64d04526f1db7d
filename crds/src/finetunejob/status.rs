//! `status` of a FineTuneJob: written by the operator only (status subresource).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Metrics, ModelFile};

/// Observed state of a FineTuneJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FineTuneJobStatus {
    /// One-word summary of where the job is; the conditions hold the details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Detailed state, one entry per condition type (Admitted, ModelCached, Preempted, Running,
    /// Stalled, Succeeded, Failed, Suspended).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Trainer runs started so far, retries included.
    pub attempts: u32,
    /// When the first trainer run started; from then on the spec is frozen except `suspend`
    /// and the deadlines in `runPolicy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Seconds since `startTime` the job spent suspended, or queued again (after a preemption,
    /// or a retry waiting for quota): `runPolicy.activeDeadlineSeconds` does not count them.
    #[serde(skip_serializing_if = "is_zero")]
    pub paused_seconds: u64,
    /// While the job is suspended or queued again after it started: since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Time>,
    /// When the job reached Succeeded or Failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How far training has come, as last reported by the trainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Latest loss and evaluation figures reported by the trainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// The newest checkpoint a retry or resume would start from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<Checkpoint>,
    /// The published model, once exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported_model: Option<ExportedModel>,
    /// Machine-readable reason of the current phase, e.g. `QuotaExceeded` or `BadDatasetRow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation of the current phase, with what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Tenant whose GPU quota the job runs under; absent where no quota applies (a
    /// namespace no Tenant owns, or a job Kueue admits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// While Queued: the job's place in its tenant's queue, 1 being next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The one-word state of a FineTuneJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted; waiting for the objects it references.
    Pending,
    /// Waiting for GPU quota of its tenant (`reason` says why, `queuePosition` where), or
    /// preempted and waiting to resume from its checkpoint.
    Queued,
    /// The base model is being downloaded into the shared cache; the job queues for GPU quota
    /// once it is there.
    CachingModel,
    /// The trainer is running.
    Running,
    /// Training finished; the model is being exported and published.
    Exporting,
    /// The model is published.
    Succeeded,
    /// The job stopped for good; `reason` and `message` say why.
    Failed,
    /// Held by `spec.runPolicy.suspend`.
    Suspended,
}

/// Training progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Current epoch, counting from 1.
    pub epoch: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// Completed share of the run, 0 to 100.
    pub percent: u32,
    /// Training throughput over the most recent window, in examples per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<f64>,
    /// Estimated seconds until training ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
}

/// A saved, resumable training state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Optimizer step at which the checkpoint was taken.
    pub step: u64,
    /// When the checkpoint was written.
    pub time: Time,
}

/// Where the exported model went and what it consists of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportedModel {
    /// Location of the exported model folder, e.g. `pvc://models/reviews/1` or `s3://…`.
    pub uri: String,
    /// Every file of the export with its digest.
    #[schemars(length(max = 10000))]
    pub files: Vec<ModelFile>,
    /// Total size of the export in bytes.
    pub size_bytes: u64,
}
