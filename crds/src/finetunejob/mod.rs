//! `FineTuneJob`: one fine-tuning run of a base model on a dataset, from queue to published model.

mod dataset;
mod hyperparameters;
mod model;
mod output;
mod resources;
mod run_policy;
mod status;
mod task;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use dataset::{DataFormat, DataSource, DatasetSpec, ValidationSplit};
pub use hyperparameters::{Hyperparameters, Precision};
pub use model::ModelSpec;
pub use output::{OutputDestination, OutputSpec};
pub use resources::ResourcesSpec;
pub use run_policy::RunPolicy;
pub use status::{Checkpoint, ExportedModel, FineTuneJobStatus, Phase, Progress};
pub use task::{TaskSpec, TextClassificationTask};

/// Once the first trainer run has started (`status.startTime` is set), everything in the spec
/// is frozen except `runPolicy.suspend` and the `runPolicy` deadlines: a running job's model,
/// data and settings must stay the ones its checkpoints and provenance describe.
const FROZEN_AFTER_START: &str = "!has(oldSelf.status) || !has(oldSelf.status.startTime) || (\
    self.spec.model == oldSelf.spec.model && self.spec.task == oldSelf.spec.task \
    && self.spec.dataset == oldSelf.spec.dataset \
    && self.spec.hyperparameters == oldSelf.spec.hyperparameters \
    && self.spec.resources == oldSelf.spec.resources && self.spec.output == oldSelf.spec.output \
    && has(self.spec.queueName) == has(oldSelf.spec.queueName) \
    && (!has(self.spec.queueName) || self.spec.queueName == oldSelf.spec.queueName) \
    && self.spec.runPolicy.backoffLimit == oldSelf.spec.runPolicy.backoffLimit \
    && has(self.spec.runPolicy.ttlSecondsAfterFinished) == has(oldSelf.spec.runPolicy.ttlSecondsAfterFinished) \
    && (!has(self.spec.runPolicy.ttlSecondsAfterFinished) \
        || self.spec.runPolicy.ttlSecondsAfterFinished == oldSelf.spec.runPolicy.ttlSecondsAfterFinished))";

/// A request to fine-tune a base model on a dataset and publish the result.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "attune.dev",
    version = "v1alpha1",
    kind = "FineTuneJob",
    doc = "A FineTuneJob fine-tunes a HuggingFace base model on a dataset under its tenant's GPU quota and publishes the result as a TrainedModel.",
    plural = "finetunejobs",
    namespaced,
    shortname = "ftj",
    category = "attune",
    status = "FineTuneJobStatus",
    derive = "PartialEq",
    validation = Rule::new(FROZEN_AFTER_START).message(
        "spec is frozen once the job has started: only spec.runPolicy.suspend and the \
         runPolicy deadlines may change; create a new FineTuneJob for other changes"
    ).reason(kube::core::Reason::FieldValueForbidden).field_path(".spec"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "integer", json_path = ".status.progress.percent",
        description = "Percent of training steps done"),
    printcolumn(name = "Accuracy", type_ = "number", json_path = ".status.metrics.evalAccuracy",
        description = "Latest validation accuracy (0 to 1)"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.source"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".spec.resources.gpus", priority = 1),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.progress.step", priority = 1),
    printcolumn(name = "Loss", type_ = "number", json_path = ".status.metrics.trainLoss", priority = 1),
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attempts", priority = 1,
        description = "Trainer runs started so far, retries included"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobSpec {
    /// The base model to fine-tune.
    pub model: ModelSpec,
    /// What the model learns to do.
    pub task: TaskSpec,
    /// The training (and validation) examples.
    pub dataset: DatasetSpec,
    /// Optimisation settings; every field has a default.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// GPUs, CPU, memory and placement of the trainer.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// Name of a Kueue LocalQueue in this namespace. When set, admission is left to Kueue
    /// instead of Attune's own tenant quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": crate::rules::BARE_NAME, "message": crate::rules::BARE_NAME_MESSAGE}]))]
    pub queue_name: Option<String>,
    /// Where and under which name the fine-tuned model is published.
    pub output: OutputSpec,
    /// Retries, deadlines, clean-up and suspension.
    #[serde(default)]
    pub run_policy: RunPolicy,
}
