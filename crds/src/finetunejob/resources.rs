//! `spec.resources`: what the training pod asks the scheduler for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// Compute resources and placement of the trainer pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourcesSpec {
    /// GPUs for the trainer, counted against the tenant's quota; 0 trains on CPU (slow, for
    /// smoke tests).
    #[schemars(range(max = 64))]
    pub gpus: u32,
    /// Extended resource that names a GPU on the nodes, e.g. `nvidia.com/gpu` or `amd.com/gpu`.
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
        )
    )]
    pub gpu_resource_name: String,
    /// CPU request (and limit) of the trainer container, e.g. `8`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory request (and limit) of the trainer container, e.g. `32Gi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Node labels the trainer pod must match, e.g. a GPU product.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.size() <= 64", "message": "at most 64 node selector labels"}]))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the trainer pod tolerates, added to the toleration of the GPU taint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the trainer pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the trainer pod, for preemption between jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::BARE_NAME, "message": rules::BARE_NAME_MESSAGE}]))]
    pub priority_class_name: Option<String>,
}

impl Default for ResourcesSpec {
    fn default() -> Self {
        Self {
            gpus: 1,
            gpu_resource_name: "nvidia.com/gpu".to_owned(),
            cpu: None,
            memory: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            priority_class_name: None,
        }
    }
}
