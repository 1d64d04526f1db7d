//! `modelCache.persistentVolume`: the model cache reaches pods through a claim in their own
//! namespace, which Pod Security "restricted" admits (a hostPath volume it does not). For each
//! namespace that runs fetch, eviction or trainer pods the operator creates a PersistentVolume
//! from the configured spec — every one pointing at the same storage — pre-bound (`claimRef`) to
//! claim `<instance>-model-cache`, which it creates there with `volumeName` set, so no other
//! claim can take the volume and no provisioner makes a fresh, empty one. The same pattern as
//! KServe's LocalModelNodeGroup. Volumes are `Retain`: deleting one (when its namespace's claim
//! is gone) never touches the files.

use std::sync::Arc;
use std::time::Duration;

use attune_crds::FineTuneJob;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, ResourceExt};

use super::config::claim_name;
use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ErrorLabels;
use crate::names;

/// Label on the volumes and claims: the namespace a volume serves.
const NAMESPACE_LABEL: &str = "attune.dev/namespace";
/// Capacity of volume and claim when the spec names none (nominal for nfs and hostPath).
const DEFAULT_CAPACITY: &str = "100Gi";
/// How soon a namespace whose volume was stale is looked at again.
const RECHECK: Duration = Duration::from_secs(2);

/// The PersistentVolume serving `namespace` in installation `instance`.
pub fn volume_name(instance: &str, namespace: &str) -> String {
    format!("{instance}-model-cache-{namespace}")
}

fn labels(config: &OperatorConfig, namespace: &str) -> std::collections::BTreeMap<String, String> {
    [
        (names::INSTANCE_LABEL.to_owned(), config.instance.clone()),
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGER.to_owned(),
        ),
        (NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
    ]
    .into()
}

/// The spec's access modes, class and capacity with their defaults: ReadWriteMany, no class
/// (`""`, so no provisioner and no default class step in), [`DEFAULT_CAPACITY`].
fn completed(spec: &PersistentVolumeSpec) -> PersistentVolumeSpec {
    let mut spec = spec.clone();
    spec.access_modes
        .get_or_insert_with(|| vec!["ReadWriteMany".to_owned()]);
    spec.storage_class_name.get_or_insert_with(String::new);
    spec.capacity.get_or_insert_with(|| {
        [("storage".to_owned(), Quantity(DEFAULT_CAPACITY.to_owned()))].into()
    });
    spec.persistent_volume_reclaim_policy = Some("Retain".to_owned());
    spec
}

/// The volume of `namespace`, reserved for its claim.
pub fn persistent_volume(
    config: &OperatorConfig,
    spec: &PersistentVolumeSpec,
    namespace: &str,
) -> PersistentVolume {
    let mut spec = completed(spec);
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(claim_name(&config.instance)),
        ..ObjectReference::default()
    });
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(&config.instance, namespace)),
            labels: Some(labels(config, namespace)),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The claim of `namespace`, bound by name to its volume.
pub fn claim(
    config: &OperatorConfig,
    spec: &PersistentVolumeSpec,
    namespace: &str,
) -> PersistentVolumeClaim {
    let spec = completed(spec);
    let capacity = spec
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity(DEFAULT_CAPACITY.to_owned()));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&config.instance)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(config, namespace)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            volume_name: Some(volume_name(&config.instance, namespace)),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), capacity)].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Makes sure `namespace` has its claim and volume (`persistentVolume` mode; otherwise there is
/// nothing to do). Returns `false` when a stale volume — still bound to a claim that is gone,
/// e.g. from a deleted namespace of the same name — had to be deleted first: call again soon.
///
/// # Errors
/// An API call failed.
pub async fn ensure(client: &Client, config: &OperatorConfig, namespace: &str) -> Result<bool> {
    let Some(spec) = &config.model_cache.persistent_volume else {
        return Ok(true);
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let volume_name = volume_name(&config.instance, namespace);
    // The volume first, then the claim: a claim created meanwhile (by a reconcile of the same
    // namespace running side by side) is then seen with the volume bound to it, never taken
    // for gone.
    let existing_volume = volumes.get_opt(&volume_name).await?;
    let existing_claim = claims.get_opt(&claim_name(&config.instance)).await?;
    match existing_volume {
        Some(volume) => {
            let bound_to = volume
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.clone());
            let claim_uid = existing_claim.as_ref().and_then(ResourceExt::uid);
            let stale = volume.metadata.deletion_timestamp.is_some()
                || bound_to
                    .as_ref()
                    .is_some_and(|uid| claim_uid.as_ref() != Some(uid));
            if stale {
                tracing::info!(volume = %volume_name, %namespace, "deleting a model-cache volume whose claim is gone");
                ignore_gone(volumes.delete(&volume_name, &DeleteParams::default()).await)?;
                if bound_to.is_some() && bound_to == claim_uid {
                    // A volume being deleted while its claim lives stays so for ever (the
                    // volume's protection finalizer): the claim goes too, and both come back.
                    ignore_gone(
                        claims
                            .delete(&claim_name(&config.instance), &DeleteParams::default())
                            .await,
                    )?;
                }
                return Ok(false);
            }
        }
        None => {
            let volume = persistent_volume(config, spec, namespace);
            ignore_exists(volumes.create(&PostParams::default(), &volume).await)?;
            tracing::info!(volume = %volume_name, %namespace, "created the model-cache volume");
        }
    }
    if existing_claim.is_none() {
        let claim = claim(config, spec, namespace);
        ignore_exists(claims.create(&PostParams::default(), &claim).await)?;
        tracing::info!(claim = %claim.name_any(), %namespace, "created the model-cache claim");
    }
    Ok(true)
}

/// Deletes this installation's volumes whose claim is gone (phase `Released`: the namespace or
/// the claim was deleted). The files stay.
///
/// # Errors
/// An API call failed.
pub async fn release_stale(client: &Client, config: &OperatorConfig) -> Result<()> {
    if config.model_cache.persistent_volume.is_none() {
        return Ok(());
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let selector = format!(
        "{}={},{}={}",
        names::INSTANCE_LABEL,
        config.instance,
        names::MANAGED_BY_LABEL,
        names::MANAGER
    );
    for volume in volumes
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        let released = volume
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Released");
        if released && volume.metadata.deletion_timestamp.is_none() {
            tracing::info!(volume = %volume.name_any(), "deleting a released model-cache volume");
            ignore_gone(
                volumes
                    .delete(&volume.name_any(), &DeleteParams::default())
                    .await,
            )?;
        }
    }
    Ok(())
}

fn ignore_exists<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn ignore_gone<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Gives each namespace its claim as soon as a FineTuneJob appears there (before its trainer
/// pod exists), until `shutdown` resolves. Only in `persistentVolume` mode. Watches the jobs'
/// metadata alone, and only their creation and spec changes.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    if context.config.model_cache.persistent_volume.is_none() {
        return;
    }
    let jobs: Api<PartialObjectMeta<FineTuneJob>> = match context.config.watch_namespaces.as_slice()
    {
        [one] => Api::namespaced(context.client.clone(), one),
        _ => Api::all(context.client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(jobs, watcher::Config::default())
        .default_backoff()
        .modify(|job| job.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(stream, reader)
        .with_config(Config::default().concurrency(context.config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "model-cache claim reconcile did not complete");
            }
        })
        .await;
}

async fn reconcile(
    job: Arc<PartialObjectMeta<FineTuneJob>>,
    context: Arc<Context>,
) -> Result<Action> {
    let config = &context.config;
    let Some(namespace) = job.namespace() else {
        return Err(Error::MissingField {
            kind: "FineTuneJob",
            field: "metadata.namespace",
        });
    };
    if !config.watch_namespaces.is_empty() && !config.watch_namespaces.contains(&namespace) {
        return Ok(Action::await_change());
    }
    if ensure(&context.client, config, &namespace).await? {
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(RECHECK))
    }
}

fn error_policy(
    job: Arc<PartialObjectMeta<FineTuneJob>>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    context
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            controller: "modelcacheclaim",
            reason: error.metric_label(),
        })
        .inc();
    tracing::warn!(namespace = job.namespace().unwrap_or_default(), %error, "could not give the namespace its model-cache claim; retrying");
    Action::requeue(context.backoff(&format!("claim/{}", job.namespace().unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OperatorConfig {
        OperatorConfig::from_yaml(
            "instance: ml\nmodelCache:\n  persistentVolume:\n    nfs: {server: nfs.local, path: /exports/models}\n    mountOptions: [nfsvers=4.1]\n",
        )
        .expect("config")
    }

    #[test]
    fn each_namespace_gets_a_volume_reserved_for_its_claim() {
        let config = config();
        let spec = config.model_cache.persistent_volume.clone().expect("spec");
        let volume = persistent_volume(&config, &spec, "team-a");
        assert_eq!(volume.name_any(), "ml-model-cache-team-a");
        let volume_spec = volume.spec.expect("spec");
        let reference = volume_spec.claim_ref.expect("claimRef");
        assert_eq!(reference.namespace.as_deref(), Some("team-a"));
        assert_eq!(reference.name.as_deref(), Some("ml-model-cache"));
        assert_eq!(reference.uid, None, "the binder fills in the claim's uid");
        assert_eq!(
            volume_spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(
            volume_spec.access_modes,
            Some(vec!["ReadWriteMany".to_owned()])
        );
        assert_eq!(volume_spec.storage_class_name.as_deref(), Some(""));
        assert_eq!(volume_spec.nfs.expect("nfs").server, "nfs.local");
        assert_eq!(
            volume_spec.mount_options,
            Some(vec!["nfsvers=4.1".to_owned()])
        );

        let claim = claim(&config, &spec, "team-a");
        assert_eq!(claim.namespace().as_deref(), Some("team-a"));
        let claim_spec = claim.spec.expect("spec");
        assert_eq!(
            claim_spec.volume_name.as_deref(),
            Some("ml-model-cache-team-a")
        );
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some(""));
        assert_eq!(claim_spec.access_modes, volume_spec.access_modes);
        assert_eq!(
            claim_spec
                .resources
                .and_then(|r| r.requests)
                .map(|r| r["storage"].clone()),
            volume_spec.capacity.map(|c| c["storage"].clone())
        );
    }

    #[test]
    fn the_platform_s_class_modes_and_capacity_are_kept() {
        let config = config();
        let spec: PersistentVolumeSpec = serde_json::from_value(serde_json::json!({
            "csi": { "driver": "efs.csi.aws.com", "volumeHandle": "fs-1" },
            "storageClassName": "efs", "accessModes": ["ReadOnlyMany"], "capacity": { "storage": "5Ti" },
        }))
        .expect("spec");
        let claim_spec = claim(&config, &spec, "ns").spec.expect("spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("efs"));
        assert_eq!(
            claim_spec.access_modes,
            Some(vec!["ReadOnlyMany".to_owned()])
        );
        assert_eq!(
            claim_spec
                .resources
                .and_then(|r| r.requests)
                .map(|r| r["storage"].0.clone()),
            Some("5Ti".to_owned())
        );
    }
}
