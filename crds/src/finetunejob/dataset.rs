//! `spec.dataset`: where the examples come from and how they are split.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ConfigMapKey, ObjectStoreLocation, PvcLocation};
use crate::rules;

/// Training data, its format, and the validation data used for evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Where the training examples are stored.
    pub source: DataSource,
    /// File format: `jsonl` (one JSON object per line) or `csv` (with a header row).
    #[serde(default)]
    pub format: DataFormat,
    /// How validation examples are obtained; by default 10% of the training file, seed 42.
    #[serde(default)]
    pub validation: ValidationSplit,
}

/// Members of [`DataSource`].
const SOURCES: &[&str] = &["pvc", "configMap", "objectStore"];

/// One place that holds a data file. Exactly one member is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": rules::exactly_one_of(SOURCES), "message": rules::exactly_one_of_message(SOURCES)}]))]
pub struct DataSource {
    /// A file on a PersistentVolumeClaim in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcLocation>,
    /// A key of a ConfigMap in this namespace (small datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
    /// An object in an object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreLocation>,
}

/// The encoding of a data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// Comma-separated values with a header row naming the fields.
    Csv,
}

/// Validation data: a seeded random fraction of the training file, or a separate file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.fraction) != has(self.source)",
     "message": "set exactly one of: fraction (split the training file) or source (a separate validation file)"},
    {"rule": "!has(self.seed) || has(self.fraction)",
     "message": "seed only applies to a fraction split: remove seed or use fraction"},
]))]
pub struct ValidationSplit {
    /// Fraction of the training examples held out for validation, greater than 0 and at most 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self > 0.0 && self <= 0.5", "message": "must be greater than 0 and at most 0.5, e.g. 0.1 for a 10% validation split"}]))]
    pub fraction: Option<f64>,
    /// Seed of the shuffle that picks the held-out examples; the same seed picks the same split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A separate validation file, in the same format as the training file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
}

impl Default for ValidationSplit {
    fn default() -> Self {
        Self {
            fraction: Some(0.1),
            seed: Some(42),
            source: None,
        }
    }
}
