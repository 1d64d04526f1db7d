//! The batch/v1 Job of one training attempt: one pod, never restarted in place, under the
//! restricted profile, with the GPUs, placement, volumes and job file of its FineTuneJob.

use std::collections::BTreeMap;

use attune_crds::{DataSource, FineTuneJob};
use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, PersistentVolumeClaimVolumeSource, ResourceRequirements,
    SecretVolumeSource, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::job_file::{data_file, output_dir, paths};
use super::kueue::QUEUE_NAME_LABEL;
use crate::config::{MODEL_CACHE_VOLUME, OperatorConfig};
use crate::names;
use crate::pod::{env, mount, pod_spec, scratch_volume, single_pod_job, trainer_container};
use crate::token::TOKEN_FIELD;

/// Exit code of a trainer stopped by SIGTERM after writing a checkpoint: not a failure.
pub const EXIT_PREEMPTED: i32 = 75;

/// What an attempt's Job needs besides the FineTuneJob.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// 1 for the first run, 2 for the first retry, …
    pub number: u32,
    /// The cache folder (relative to the cache volume) holding the model, e.g. `tenants/ns`
    /// for a credential-scoped model; empty for the shared part.
    pub cache_subdir: &'a str,
    /// The full progress URL of this job.
    pub progress_url: &'a str,
    /// Whether the attempt is held (`runPolicy.suspend`). A job in Kueue mode
    /// (`spec.queueName`) is always created held: Kueue releases it.
    pub suspend: bool,
}

/// The labels of an attempt's Job and pod.
pub fn attempt_labels(job: &FineTuneJob, attempt: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::JOB_LABEL.to_owned(),
            names::job_label_value(&job.name_any()),
        ),
        (names::ATTEMPT_LABEL.to_owned(), attempt.to_string()),
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGER.to_owned(),
        ),
    ])
}

/// A volume from a data source mounted read-only at `dir`.
fn data_volume(name: &str, source: &DataSource, dir: &str) -> Option<(Volume, VolumeMount)> {
    let volume = if let Some(pvc) = &source.pvc {
        Volume {
            name: name.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        }
    } else {
        let key = source.config_map.as_ref()?;
        Volume {
            name: name.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: key.name.clone(),
                items: Some(vec![KeyToPath {
                    key: key.key.clone(),
                    path: key.key.clone(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }
    };
    Some((volume, mount(name, dir, true)))
}

/// The Job of `attempt` of `job`.
pub fn trainer_job(job: &FineTuneJob, config: &OperatorConfig, attempt: &Attempt<'_>) -> Job {
    let spec = &job.spec;
    let name = job.name_any();
    let resources = &spec.resources;

    // The job file and the token live in one Secret; each key is mounted on its own.
    let key_of_secret = |volume: &str, key: &str| Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::trainer_secret(&name)),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: key.to_owned(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![
        key_of_secret("trainer-config", paths::JOB_FILE),
        Volume {
            name: "checkpoints".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::checkpoint_claim(&name),
                read_only: None,
            }),
            ..Volume::default()
        },
        key_of_secret("progress-token", TOKEN_FIELD),
        config.model_cache.volume.clone(),
        scratch_volume(config),
    ];
    let mut mounts = vec![
        mount("trainer-config", paths::CONFIG_DIR, true),
        mount("checkpoints", paths::CHECKPOINT_DIR, false),
        mount("progress-token", paths::TOKEN_DIR, true),
        mount(MODEL_CACHE_VOLUME, paths::MODEL_CACHE_DIR, true),
    ];
    let train_file = data_file(&spec.dataset.source, paths::TRAIN_DIR).unwrap_or_default();
    let mut args = vec![
        "train".to_owned(),
        "--config".to_owned(),
        format!("{}/{}", paths::CONFIG_DIR, paths::JOB_FILE),
        "--train-file".to_owned(),
        train_file,
    ];
    if let Some((volume, volume_mount)) =
        data_volume("dataset", &spec.dataset.source, paths::TRAIN_DIR)
    {
        volumes.push(volume);
        mounts.push(volume_mount);
    }
    if let Some(source) = &spec.dataset.validation.source {
        if let Some((volume, volume_mount)) =
            data_volume("validation", source, paths::VALIDATION_DIR)
        {
            volumes.push(volume);
            mounts.push(volume_mount);
        }
        if let Some(file) = data_file(source, paths::VALIDATION_DIR) {
            args.extend(["--validation-file".to_owned(), file]);
        }
    }
    if let Some(pvc) = &spec.output.destination.pvc {
        volumes.push(Volume {
            name: "output".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(mount("output", paths::OUTPUT_DIR, false));
    }
    if let Some(dir) = output_dir(spec) {
        args.extend(["--output-dir".to_owned(), dir]);
    }
    let cache = if attempt.cache_subdir.is_empty() {
        paths::MODEL_CACHE_DIR.to_owned()
    } else {
        format!("{}/{}", paths::MODEL_CACHE_DIR, attempt.cache_subdir)
    };
    args.extend([
        "--checkpoint-dir".to_owned(),
        paths::CHECKPOINT_DIR.to_owned(),
        "--cache".to_owned(),
        cache,
    ]);

    let env_vars = vec![
        env(
            "ATTUNE_DEVICE",
            if resources.gpus == 0 {
                "cpu"
            } else {
                &config.trainer.gpu_device
            },
        ),
        env("ATTUNE_PROGRESS_URL", attempt.progress_url),
        env(
            "ATTUNE_PROGRESS_TOKEN_FILE",
            format!("{}/token", paths::TOKEN_DIR),
        ),
        // Training never touches the network except to report progress.
        env("HF_HUB_OFFLINE", "1"),
    ];
    let mut container = trainer_container(config, "trainer", args, env_vars, mounts);
    container.resources = Some(resource_requirements(job));

    let mut tolerations = Vec::new();
    if resources.gpus > 0 {
        tolerations.push(Toleration {
            key: Some(resources.gpu_resource_name.clone()),
            operator: Some("Exists".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        });
    }
    tolerations.extend(resources.tolerations.iter().cloned());
    let mut pod = pod_spec(
        &config.trainer.pod_defaults,
        vec![container],
        volumes,
        &resources.node_selector,
        tolerations,
    );
    pod.affinity.clone_from(&resources.affinity);
    pod.priority_class_name
        .clone_from(&resources.priority_class_name);
    pod.termination_grace_period_seconds = Some(config.trainer.termination_grace_period_seconds);

    let mut batch = single_pod_job(
        ObjectMeta {
            name: Some(names::trainer_job(&name, attempt.number)),
            namespace: job.namespace(),
            owner_references: job.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        attempt_labels(job, attempt.number),
        pod,
    );
    if let Some(queue) = &spec.queue_name {
        batch
            .metadata
            .labels
            .get_or_insert_default()
            .insert(QUEUE_NAME_LABEL.to_owned(), queue.clone());
    }
    if let Some(batch_spec) = batch.spec.as_mut() {
        batch_spec.suspend = Some(attempt.suspend || spec.queue_name.is_some());
        batch_spec.pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![
                // SIGTERM after a checkpoint (suspension, eviction, Kueue's preemption) is no
                // failure.
                PodFailurePolicyRule {
                    action: "Ignore".to_owned(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".to_owned(),
                        values: vec![EXIT_PREEMPTED],
                    }),
                    on_pod_conditions: None,
                },
                PodFailurePolicyRule {
                    action: "Ignore".to_owned(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".to_owned(),
                        status: Some("True".to_owned()),
                    }]),
                },
            ],
        });
    }
    batch
}

/// GPUs as requests and limits (extended resources need both equal), CPU and memory likewise.
fn resource_requirements(job: &FineTuneJob) -> ResourceRequirements {
    let resources = &job.spec.resources;
    let mut amounts = BTreeMap::new();
    if resources.gpus > 0 {
        amounts.insert(
            resources.gpu_resource_name.clone(),
            Quantity(resources.gpus.to_string()),
        );
    }
    if let Some(cpu) = &resources.cpu {
        amounts.insert("cpu".to_owned(), cpu.clone());
    }
    if let Some(memory) = &resources.memory {
        amounts.insert("memory".to_owned(), memory.clone());
    }
    ResourceRequirements {
        limits: (!amounts.is_empty()).then(|| amounts.clone()),
        requests: (!amounts.is_empty()).then_some(amounts),
        ..ResourceRequirements::default()
    }
}
