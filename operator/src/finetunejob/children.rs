//! The objects a FineTuneJob owns or needs, built without a client, and deleting the children
//! at TTL.

use attune_crds::{CachedModel, CachedModelSpec, FineTuneJob};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};

use super::job_file::{job_file, paths};
use super::trainer_job::{Attempt, trainer_job as build_job};
use crate::config::OperatorConfig;
use crate::error::Result;
use crate::http::progress_path;
use crate::names;
use crate::token::TOKEN_FIELD;

/// Metadata of a child in the job's namespace, owned by the job.
fn child_meta(job: &FineTuneJob, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: job.namespace(),
        labels: Some(
            [
                (
                    names::JOB_LABEL.to_owned(),
                    names::job_label_value(&job.name_any()),
                ),
                (
                    names::MANAGED_BY_LABEL.to_owned(),
                    names::MANAGER.to_owned(),
                ),
            ]
            .into(),
        ),
        owner_references: job.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The credential scope of the job's model: its namespace when it uses a token.
fn tenant(job: &FineTuneJob) -> Option<String> {
    job.spec
        .model
        .credentials_secret_ref
        .as_ref()
        .and(job.namespace())
}

/// The name of the job's CachedModel in installation `instance`.
pub fn cached_model_name(job: &FineTuneJob, instance: &str) -> String {
    names::cached_model(
        instance,
        &job.spec.model.source,
        &job.spec.model.revision,
        tenant(job).as_deref(),
    )
}

/// The cache folder of the job's model below the cache volume's root.
pub fn cache_subdir(tenant: Option<&str>) -> String {
    tenant.map_or_else(String::new, |t| format!("tenants/{t}"))
}

/// The job's CachedModel as the operator creates it.
pub fn cached_model(job: &FineTuneJob, config: &OperatorConfig) -> CachedModel {
    let tenant = tenant(job);
    let mut cache = CachedModel::new(
        &cached_model_name(job, &config.instance),
        CachedModelSpec {
            source: job.spec.model.source.clone(),
            revision: job.spec.model.revision.clone(),
            tenant: tenant.clone(),
        },
    );
    cache.metadata.labels = Some(
        [
            (names::INSTANCE_LABEL.to_owned(), config.instance.clone()),
            (
                names::MANAGED_BY_LABEL.to_owned(),
                names::MANAGER.to_owned(),
            ),
        ]
        .into(),
    );
    if let Some(secret) = &job.spec.model.credentials_secret_ref {
        cache.metadata.annotations = Some(
            [(
                crate::cache::CREDENTIALS_ANNOTATION.to_owned(),
                secret.name.clone(),
            )]
            .into(),
        );
    }
    cache
}

/// The Secret with the trainer's job file (key [`paths::JOB_FILE`]) and the job's progress
/// token (key [`TOKEN_FIELD`]); the trainer's Job mounts each key on its own.
///
/// # Errors
/// The job file does not serialise.
pub fn trainer_secret(job: &FineTuneJob, resolved_revision: &str, token: &str) -> Result<Secret> {
    let file = serde_json::to_string_pretty(&job_file(&job.spec, resolved_revision))?;
    Ok(Secret {
        metadata: child_meta(job, names::trainer_secret(&job.name_any())),
        string_data: Some(
            [
                (paths::JOB_FILE.to_owned(), file),
                (TOKEN_FIELD.to_owned(), token.to_owned()),
            ]
            .into(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// The claim the job's checkpoints live on; it outlives attempts and goes with the job.
pub fn checkpoint_claim(job: &FineTuneJob, config: &OperatorConfig) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: child_meta(job, names::checkpoint_claim(&job.name_any())),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: config.checkpoints.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), config.checkpoints.size.clone())].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The batch Job of attempt `number`.
pub fn trainer_job(
    job: &FineTuneJob,
    config: &OperatorConfig,
    number: u32,
    cache: Option<&CachedModel>,
) -> Job {
    let tenant = cache.and_then(|c| c.spec.tenant.clone());
    let url = format!(
        "{}{}",
        config.progress.url.trim_end_matches('/'),
        progress_path(&job.namespace().unwrap_or_default(), &job.name_any())
    );
    let mut batch = build_job(
        job,
        config,
        &Attempt {
            number,
            cache_subdir: &cache_subdir(tenant.as_deref()),
            progress_url: &url,
            suspend: job.spec.run_policy.suspend,
        },
    );
    if let Some(template) = batch
        .spec
        .as_mut()
        .and_then(|s| s.template.metadata.as_mut())
    {
        template.annotations = Some([(JOB_NAME_ANNOTATION.to_owned(), job.name_any())].into());
    }
    batch
}

/// Annotation on trainer pods naming their FineTuneJob in full (the label may be shortened).
pub const JOB_NAME_ANNOTATION: &str = "attune.dev/job-name";

/// Deletes a finished job's Jobs (and so its pods), its Secret (job file and token) and
/// checkpoint claim. The export and the TrainedModel stay.
///
/// # Errors
/// A deletion other than of something already gone failed.
pub async fn delete_all(job: &FineTuneJob, client: Client) -> Result<()> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let selector = format!("{}={}", names::JOB_LABEL, names::job_label_value(&name));
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    jobs.delete_collection(&background, &ListParams::default().labels(&selector))
        .await?;
    ignore_missing(
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .delete(&names::trainer_secret(&name), &background)
            .await,
    )?;
    ignore_missing(
        Api::<PersistentVolumeClaim>::namespaced(client, &namespace)
            .delete(&names::checkpoint_claim(&name), &background)
            .await,
    )?;
    Ok(())
}

fn ignore_missing<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error.into()),
    }
}
