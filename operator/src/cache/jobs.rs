//! The batch/v1 Jobs that fill and empty a CachedModel's folder on the cache volume:
//! `attune-trainer fetch` and `attune-trainer evict`, both with the volume writable.

use attune_crds::CachedModel;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::config::{MODEL_CACHE_VOLUME, OperatorConfig};
use crate::finetunejob::cache_subdir;
use crate::finetunejob::job_file::{paths, repo_id};
use crate::names;
use crate::pod::{env, mount, pod_spec, scratch_volume, single_pod_job, trainer_container};

/// The namespace a CachedModel's fetch runs in: its tenant's (where the token Secret is), else
/// the operator's.
pub fn fetch_namespace(cache: &CachedModel, config: &OperatorConfig) -> String {
    cache
        .spec
        .tenant
        .clone()
        .unwrap_or_else(|| config.namespace.clone())
}

/// The name of the entry's eviction Job (in the operator's namespace).
pub fn evict_job_name(cache: &CachedModel) -> String {
    names::child_name(&cache.name_any(), "evict")
}

/// The entry's cache folder as pods see it: the volume's root, or its tenant's folder.
fn cache_dir(cache: &CachedModel) -> String {
    let subdir = cache_subdir(cache.spec.tenant.as_deref());
    if subdir.is_empty() {
        paths::MODEL_CACHE_DIR.to_owned()
    } else {
        format!("{}/{subdir}", paths::MODEL_CACHE_DIR)
    }
}

/// The fetch Job of `attempt`, reading the hub token from Secret `credentials` (key
/// `HF_TOKEN`) when the model needs one.
pub fn fetch_job(
    cache: &CachedModel,
    config: &OperatorConfig,
    attempt: u32,
    credentials: Option<&str>,
) -> Job {
    let mut env_vars = vec![env("HF_ENDPOINT", config.hub.endpoint.clone())];
    if let Some(secret) = credentials {
        env_vars.push(EnvVar {
            name: "HF_TOKEN".to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_owned(),
                    key: "HF_TOKEN".to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    let metadata = ObjectMeta {
        name: Some(names::fetch_job(&cache.name_any(), attempt)),
        namespace: Some(fetch_namespace(cache, config)),
        ..ObjectMeta::default()
    };
    cache_job(
        cache,
        config,
        metadata,
        "fetch",
        &cache.spec.revision,
        env_vars,
    )
}

/// The Job that removes the entry's revision from the volume: in the operator's namespace
/// (the volume there holds every tenant's folder too), placed like fetch pods. `revision` is
/// the resolved commit when known, else the revision asked for.
pub fn evict_job(cache: &CachedModel, config: &OperatorConfig, revision: &str) -> Job {
    let metadata = ObjectMeta {
        name: Some(evict_job_name(cache)),
        namespace: Some(config.namespace.clone()),
        ..ObjectMeta::default()
    };
    cache_job(cache, config, metadata, "evict", revision, Vec::new())
}

/// A Job of `cache` (owned by it, labelled with it) whose pod runs `attune-trainer <command>
/// <repo> --revision <revision> --cache <folder>` with the cache volume writable.
fn cache_job(
    cache: &CachedModel,
    config: &OperatorConfig,
    mut metadata: ObjectMeta,
    command: &str,
    revision: &str,
    env_vars: Vec<EnvVar>,
) -> Job {
    let args = vec![
        command.to_owned(),
        repo_id(&cache.spec.source).to_owned(),
        "--revision".to_owned(),
        revision.to_owned(),
        "--cache".to_owned(),
        cache_dir(cache),
    ];
    let container = trainer_container(
        config,
        command,
        args,
        env_vars,
        vec![mount(MODEL_CACHE_VOLUME, paths::MODEL_CACHE_DIR, false)],
    );
    let placement = config
        .model_cache
        .fetch_pod_defaults
        .as_ref()
        .unwrap_or(&config.trainer.pod_defaults);
    let pod = pod_spec(
        placement,
        vec![container],
        vec![config.model_cache.volume.clone(), scratch_volume(config)],
        &Default::default(),
        Vec::new(),
    );
    let labels: std::collections::BTreeMap<String, String> = [
        (names::CACHED_MODEL_LABEL.to_owned(), cache.name_any()),
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGER.to_owned(),
        ),
        (names::INSTANCE_LABEL.to_owned(), config.instance.clone()),
    ]
    .into();
    metadata.owner_references = cache.controller_owner_ref(&()).map(|r| vec![r]);
    single_pod_job(metadata, labels, pod)
}
