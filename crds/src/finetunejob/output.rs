//! `spec.output`: where the fine-tuned model is published, and under which name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ObjectStoreLocation, PvcLocation};
use crate::rules;

/// The published model: its destination and its name in the `TrainedModel` registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSpec {
    /// Where the exported model folder is written.
    pub destination: OutputDestination,
    /// Name of the `TrainedModel` that records the result; defaults to the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Version of the published model, e.g. `1.0.0` or `2026-11-28`.
    #[serde(default = "default_version")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub version: String,
}

fn default_version() -> String {
    "1".to_owned()
}

/// Members of [`OutputDestination`].
const DESTINATIONS: &[&str] = &["pvc", "objectStore"];

/// One place for the exported model. Exactly one member is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": rules::exactly_one_of(DESTINATIONS), "message": rules::exactly_one_of_message(DESTINATIONS)}]))]
pub struct OutputDestination {
    /// A folder on a PersistentVolumeClaim in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcLocation>,
    /// A prefix in an object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreLocation>,
}
