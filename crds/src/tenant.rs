//! `Tenant`: a team that owns namespaces and a share of the cluster's GPUs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// Members of the namespace one-of in [`TenantSpec`].
const NAMESPACE_CHOICES: &[&str] = &["namespaces", "namespaceSelector"];

/// A tenant: its namespaces, its GPU quota and its share when GPUs are contended.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "attune.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A Tenant is a team: the namespaces it owns, its GPU quota and its share of contended GPUs.",
    plural = "tenants",
    shortname = "tnt",
    category = "attune",
    status = "TenantStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Nominal",
        type_ = "integer",
        json_path = ".spec.quota.nominal",
        description = "GPUs guaranteed to the tenant"
    ),
    printcolumn(name = "In Use", type_ = "integer", json_path = ".status.gpusInUse"),
    printcolumn(
        name = "Borrowed",
        type_ = "integer",
        json_path = ".status.gpusBorrowed",
        description = "GPUs in use beyond the nominal quota"
    ),
    printcolumn(
        name = "Lent",
        type_ = "integer",
        json_path = ".status.gpusLent",
        description = "Idle nominal GPUs other tenants of the cohort use"
    ),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.runningJobs"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queuedJobs"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Cohort",
        type_ = "string",
        json_path = ".spec.quota.cohort",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": rules::exactly_one_of(NAMESPACE_CHOICES), "message": rules::exactly_one_of_message(NAMESPACE_CHOICES)}]))]
pub struct TenantSpec {
    /// The namespaces this tenant owns, by name. FineTuneJobs in them run under this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(
        length(min = 1, max = 1000),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub namespaces: Option<Vec<String>>,
    /// The namespaces this tenant owns, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// GPU quota.
    pub quota: GpuQuota,
    /// Share of contended GPUs relative to other tenants of the cohort; 2 gets twice the share
    /// of 1.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
    /// Most FineTuneJobs of this tenant running at once; omit for no limit beyond the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_running_jobs: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

/// GPUs a tenant may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuQuota {
    /// GPUs guaranteed to this tenant.
    #[schemars(range(max = 100_000))]
    pub nominal: u32,
    /// Extra GPUs this tenant may borrow from idle quota of its cohort; 0 borrows none, omit
    /// for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100_000))]
    pub borrowing_limit: Option<u32>,
    /// Tenants of the same cohort lend each other idle quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    #[schemars(length(min = 1, max = 63))]
    pub cohort: Option<String>,
}

/// Observed usage of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantStatus {
    /// GPUs held by this tenant's running jobs, borrowed ones included.
    pub gpus_in_use: u32,
    /// GPUs in use beyond the nominal quota, borrowed from the cohort.
    pub gpus_borrowed: u32,
    /// Idle GPUs of this tenant's nominal quota that other tenants of the cohort borrow (the
    /// cohort's borrowed GPUs shared among its lenders in proportion to their idle quota).
    pub gpus_lent: u32,
    /// This tenant's FineTuneJobs holding GPUs.
    pub running_jobs: u32,
    /// This tenant's FineTuneJobs waiting for quota.
    pub queued_jobs: u32,
    /// Detailed state, one entry per condition type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
