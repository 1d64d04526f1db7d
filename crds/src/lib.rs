//! The `attune.dev/v1alpha1` API: the types users write (`FineTuneJob`, `Tenant`) and the ones the
//! operator publishes (`TrainedModel`, `CachedModel`).
//!
//! This crate holds types and their schemas only: no client, no runtime. Doc comments become the
//! schema descriptions that `kubectl explain` prints, and the CEL rules attached with
//! `x-kubernetes-validations` extensions are what the API server enforces at `kubectl apply` time.

mod cached_model;
mod common;
mod crdgen;
mod finetunejob;
mod rules;
mod tenant;
mod trained_model;

pub use cached_model::{CachePhase, CachedModel, CachedModelSpec, CachedModelStatus};
pub use common::{
    ConfigMapKey, Metrics, ModelFile, ObjectStoreLocation, PvcLocation, SecretReference,
};
pub use crdgen::{
    CRD_FOLDERS, CrdFilesError, GeneratedCrd, StaleFile, generated_crds, stale_crd_files,
    write_crd_folders,
};
pub use finetunejob::*;
pub use tenant::{GpuQuota, Tenant, TenantSpec, TenantStatus};
pub use trained_model::{
    BaseModelRef, ProducerRef, TrainedModel, TrainedModelSpec, TrainedModelStatus,
};

/// The API group of every Attune kind.
pub const GROUP: &str = "attune.dev";
