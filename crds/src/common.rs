//! Building blocks shared by several kinds: references, storage locations, file records and
//! metrics.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// A reference to a Secret in the object's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the same namespace as the object that names it. References into
    /// other namespaces are not allowed, so one tenant can never borrow another's credentials.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A folder or file on a PersistentVolumeClaim in the object's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcLocation {
    /// Name of the PersistentVolumeClaim, in the same namespace as the object that names it.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path relative to the root of the claim's volume, e.g. `datasets/reviews.jsonl`.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::RELATIVE_PATH, "message": rules::RELATIVE_PATH_MESSAGE}]))]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
}

/// A key of a ConfigMap in the object's own namespace; fits small datasets (up to 1 MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    /// Name of the ConfigMap, in the same namespace as the object that names it.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap whose value holds the data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A prefix or object in an object store (S3, GCS, Azure Blob or plain HTTPS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreLocation {
    /// URI of the object or prefix, e.g. `s3://bucket/datasets/reviews.jsonl`.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::OBJECT_STORE_URI, "message": rules::OBJECT_STORE_URI_MESSAGE}]))]
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// Secret holding the store's credentials (keys as the store's SDK expects them, e.g.
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`). Omit for public or ambient access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// One file of a model artefact, with the digest that proves its content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelFile {
    /// Path of the file relative to the artefact's root, e.g. `model.safetensors`.
    pub path: String,
    /// Lowercase hex SHA-256 of the file's content.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
}

/// Quality and loss figures of a training run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Mean training loss over the most recent logging window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Mean loss on the validation split at the most recent evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// Fraction of validation examples classified correctly (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_accuracy: Option<f64>,
    /// Macro-averaged F1 score on the validation split (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_f1: Option<f64>,
}
