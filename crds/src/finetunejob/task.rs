//! `spec.task`: what the model learns to do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// The learning task. Exactly one member is set; token classification and question answering
/// will join `textClassification` here as further members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": rules::exactly_one_of(TASKS), "message": rules::exactly_one_of_message(TASKS)}]))]
pub struct TaskSpec {
    /// Assign one label to each text (or text pair): sentiment, topic, intent, entailment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_classification: Option<TextClassificationTask>,
}

/// The members of [`TaskSpec`].
const TASKS: &[&str] = &["textClassification"];

/// Sequence classification with a fresh classification head on the encoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!(has(self.labels) && has(self.numLabels))", "message": "set either labels or numLabels, not both: labels already fixes the number"}]))]
pub struct TextClassificationTask {
    /// The label names, in the order of the classifier's outputs. When omitted (and `numLabels`
    /// is too), the labels found in the training data are used, sorted by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(length(min = 2, max = 1000), inner(length(min = 1, max = 256)))]
    pub labels: Option<Vec<String>>,
    /// Number of classes when the dataset's labels are the integers `0..numLabels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1000))]
    pub num_labels: Option<u32>,
    /// Field (JSONL key or CSV column) holding the text.
    #[serde(default = "default_text_field")]
    #[schemars(length(min = 1, max = 256))]
    pub text_field: String,
    /// Field holding the second text of a pair (e.g. the hypothesis in entailment); omit for
    /// single-text tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub text_pair_field: Option<String>,
    /// Field holding the label.
    #[serde(default = "default_label_field")]
    #[schemars(length(min = 1, max = 256))]
    pub label_field: String,
}

fn default_text_field() -> String {
    "text".to_owned()
}

fn default_label_field() -> String {
    "label".to_owned()
}
