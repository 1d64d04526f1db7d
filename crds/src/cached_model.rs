//! `CachedModel`: one base model revision in the shared model-cache volume.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ModelFile;
use crate::rules;

/// An entry of the shared model cache. The operator creates one per (source, revision, tenant
/// scope) and downloads it once; every job that needs the model mounts the cache read-only.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "attune.dev",
    version = "v1alpha1",
    kind = "CachedModel",
    doc = "A CachedModel is one base model revision in the shared model cache, downloaded once for every job that needs it.",
    plural = "cachedmodels",
    shortname = "cmod",
    category = "attune",
    status = "CachedModelStatus",
    derive = "PartialEq",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".spec.revision"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.sizeBytes",
        format = "int64"
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "a CachedModel's spec is immutable: create another entry for another model, revision or tenant"}]))]
pub struct CachedModelSpec {
    /// Repository, as `hf://org/name` or `hf://name`.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::HF_SOURCE, "message": rules::HF_SOURCE_MESSAGE}]))]
    #[schemars(length(min = 6, max = 256))]
    pub source: String,
    /// Branch, tag or commit as requested.
    #[schemars(length(min = 1, max = 256))]
    pub revision: String,
    /// The only tenant that may use this entry, when the model was fetched with that tenant's
    /// credential (gated or private models). Omitted: a public model, usable by every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    pub tenant: Option<String>,
}

/// Observed state of a cache entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CachedModelStatus {
    /// Where the entry is in its life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<CachePhase>,
    /// The commit the revision resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_revision: Option<String>,
    /// Folder of the snapshot inside the cache volume (HF cache layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Total size of the snapshot in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Every file of the snapshot with its digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub files: Vec<ModelFile>,
    /// When a job last used the entry; entries unused for long are evicted first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<Time>,
    /// Detailed state, one entry per condition type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Why the entry failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a cache entry is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CachePhase {
    /// Created, no download started.
    Pending,
    /// A fetch job is downloading the files.
    Downloading,
    /// Every file is present and verified.
    Ready,
    /// The download failed; `message` says why.
    Failed,
}
