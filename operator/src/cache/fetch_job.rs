//! The batch/v1 Job that downloads a CachedModel into the cache volume with
//! `attune-trainer fetch`.

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

/// The fetch Job of `attempt`, reading the hub token from Secret `credentials` (key
/// `HF_TOKEN`) when the model needs one.
pub fn fetch_job(
    cache: &CachedModel,
    config: &OperatorConfig,
    attempt: u32,
    credentials: Option<&str>,
) -> Job {
    let name = cache.name_any();
    let subdir = cache_subdir(cache.spec.tenant.as_deref());
    let target = if subdir.is_empty() {
        paths::MODEL_CACHE_DIR.to_owned()
    } else {
        format!("{}/{subdir}", paths::MODEL_CACHE_DIR)
    };
    let args = vec![
        "fetch".to_owned(),
        repo_id(&cache.spec.source).to_owned(),
        "--revision".to_owned(),
        cache.spec.revision.clone(),
        "--cache".to_owned(),
        target,
    ];
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
    let container = trainer_container(
        config,
        "fetch",
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
        (names::CACHED_MODEL_LABEL.to_owned(), name.clone()),
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGER.to_owned(),
        ),
        (names::INSTANCE_LABEL.to_owned(), config.instance.clone()),
    ]
    .into();
    single_pod_job(
        ObjectMeta {
            name: Some(names::fetch_job(&name, attempt)),
            namespace: Some(fetch_namespace(cache, config)),
            owner_references: cache.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        labels,
        pod,
    )
}
