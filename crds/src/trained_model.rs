//! `TrainedModel`: the published record of a fine-tuned model and where it came from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Metrics, ModelFile};
use crate::finetunejob::{Hyperparameters, TaskSpec};

/// The provenance of a fine-tuned model. Written once by the operator when a job succeeds;
/// immutable afterwards, so what it says stays true of the artefact it names.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "attune.dev",
    version = "v1alpha1",
    kind = "TrainedModel",
    doc = "A TrainedModel records a published fine-tuned model: its files, digests and provenance.",
    plural = "trainedmodels",
    namespaced,
    shortname = "tm",
    category = "attune",
    status = "TrainedModelStatus",
    derive = "PartialEq",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Base", type_ = "string", json_path = ".spec.baseModel.source"),
    printcolumn(
        name = "Accuracy",
        type_ = "number",
        json_path = ".spec.metrics.evalAccuracy"
    ),
    printcolumn(name = "URI", type_ = "string", json_path = ".spec.uri"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "a TrainedModel is immutable: publish a new version instead"}]))]
pub struct TrainedModelSpec {
    /// Version of the published model.
    pub version: String,
    /// Location of the exported model folder (HF layout: safetensors, config.json, tokenizer).
    pub uri: String,
    /// Every file of the export with its digest.
    #[schemars(length(max = 10000))]
    pub files: Vec<ModelFile>,
    /// The base model it was fine-tuned from.
    pub base_model: BaseModelRef,
    /// The task it was trained for, with its labels.
    pub task: TaskSpec,
    /// SHA-256 of the training data as read by the trainer, in lowercase hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub dataset_digest: String,
    /// The hyperparameters of the run.
    pub hyperparameters: Hyperparameters,
    /// Final evaluation figures.
    pub metrics: Metrics,
    /// The FineTuneJob that produced it.
    pub producer: ProducerRef,
}

/// A base model pinned to the exact commit that was trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseModelRef {
    /// Repository as written in the job, e.g. `hf://bert-base-uncased`.
    pub source: String,
    /// Revision as written in the job, e.g. `main`.
    pub revision: String,
    /// The commit that revision resolved to when the model was cached.
    pub resolved_revision: String,
}

/// The job that produced a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducerRef {
    /// Name of the FineTuneJob, in the same namespace.
    pub job_name: String,
    /// UID of the FineTuneJob, which tells apart jobs that reused a name.
    pub job_uid: String,
    /// When the job completed.
    pub completion_time: Time,
}

/// Observed state of a published model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TrainedModelStatus {
    /// True once every file under `uri` was verified against its digest.
    pub verified: bool,
    /// When the files were last verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_time: Option<Time>,
}
