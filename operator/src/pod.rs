//! What every pod the operator creates shares: Pod Security "restricted", a writable scratch
//! folder under a read-only root filesystem, the configured placement defaults, and the
//! termination message the trainer writes its last words to.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{OperatorConfig, PodDefaults};

/// UID and GID the trainer runs as (the image's non-root user).
const RUN_AS: i64 = 65532;
/// Where the trainer writes its final message (`ATTUNE_TERMINATION_LOG`); the kubelet puts it
/// into the container status.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The writable scratch folder.
const SCRATCH: &str = "/tmp";

/// Pod-level security settings of Pod Security "restricted".
pub fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level security settings of Pod Security "restricted", root filesystem read-only.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// A literal environment variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// A volume mount.
pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The trainer container with what every one shares: image, security, scratch, termination
/// message; `args` follow the configured command.
pub fn trainer_container(
    config: &OperatorConfig,
    name: &str,
    args: Vec<String>,
    mut env_vars: Vec<EnvVar>,
    mut mounts: Vec<VolumeMount>,
) -> Container {
    env_vars.extend([
        env("ATTUNE_TERMINATION_LOG", TERMINATION_LOG),
        env("HOME", SCRATCH),
        env("TMPDIR", SCRATCH),
    ]);
    mounts.push(mount("scratch", SCRATCH, false));
    Container {
        name: name.to_owned(),
        image: Some(config.trainer.image.clone()),
        image_pull_policy: config.trainer.image_pull_policy.clone(),
        command: Some(config.trainer.command.clone()),
        args: Some(args),
        env: Some(env_vars),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_container_security()),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        // The trainer writes its error line there; a crash before that still leaves the log's
        // tail in the status.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The scratch `emptyDir` every container mounts at `/tmp`.
pub fn scratch_volume(config: &OperatorConfig) -> Volume {
    Volume {
        name: "scratch".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(config.trainer.scratch_size_limit.clone()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A pod spec that never restarts in place, under the restricted profile, placed by the
/// configured defaults merged with `node_selector` and `tolerations` (which win on equal keys).
pub fn pod_spec(
    defaults: &PodDefaults,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
    node_selector: &BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
) -> PodSpec {
    let mut selector = defaults.node_selector.clone();
    selector.extend(node_selector.clone());
    let mut all_tolerations = defaults.tolerations.clone();
    all_tolerations.extend(tolerations);
    PodSpec {
        restart_policy: Some("Never".to_owned()),
        containers,
        volumes: Some(volumes),
        security_context: Some(restricted_pod_security()),
        node_selector: (!selector.is_empty()).then_some(selector),
        tolerations: (!all_tolerations.is_empty()).then_some(all_tolerations),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    }
}

/// A batch/v1 Job of one pod that Kubernetes does not retry (`backoffLimit: 0`): the operator
/// decides about retries itself, each as a Job of its own. `labels` go on the Job and its pod.
pub fn single_pod_job(
    mut metadata: ObjectMeta,
    labels: BTreeMap<String, String>,
    pod: PodSpec,
) -> Job {
    metadata.labels = Some(labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
