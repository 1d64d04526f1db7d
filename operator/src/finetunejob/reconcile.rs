//! One reconcile of a FineTuneJob: observe what exists, [`decide`], act, write the status.

use std::sync::Arc;
use std::time::Duration;

use attune_crds::{CachedModel, FineTuneJob, FineTuneJobStatus, Phase, TrainedModel};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::children;
use super::decide::{
    Action, AttemptView, Observed, STOPPED_ANNOTATION, condition, decide, refused,
};
use super::kueue::{self, KueueView};
use super::publish::trained_model_name;
use crate::conditions;
use crate::context::{Context, GuardedJob};
use crate::error::{Error, Result};
use crate::metrics::{ReconcileTimer, ResultLabels};
use crate::names;
use crate::progress::JobKey;
use crate::tenancy::Admission;

/// Reconciles one FineTuneJob.
///
/// # Errors
/// An API call failed; the controller retries with backoff.
pub async fn reconcile(guarded: Arc<GuardedJob>, context: Arc<Context>) -> Result<Requeue> {
    let _timer = ReconcileTimer::start(Arc::clone(&context.metrics), "finetunejob");
    let cached = match &guarded.0 {
        Ok(job) => job,
        Err(invalid) => {
            super::invalid::report(&context, invalid);
            return Ok(Requeue::await_change());
        }
    };
    // The watch cache may not show this replica's latest status write yet: go on from that.
    let job = &match cached.uid().and_then(|uid| context.fresh_status(&uid)) {
        Some(fresh) if cached.status.as_ref() != Some(&fresh) => {
            let mut job = cached.clone();
            job.status = Some(fresh);
            std::borrow::Cow::Owned(job)
        }
        _ => std::borrow::Cow::Borrowed(cached),
    };
    if !super::watched(&context.config, job) {
        return Ok(Requeue::await_change());
    }
    let namespace = job.namespace().ok_or(Error::MissingField {
        kind: "FineTuneJob",
        field: "metadata.namespace",
    })?;
    let uid = job.uid().ok_or(Error::MissingField {
        kind: "FineTuneJob",
        field: "metadata.uid",
    })?;
    let key = JobKey {
        namespace: namespace.clone(),
        name: job.name_any(),
        uid: uid.clone(),
    };
    if job.meta().deletion_timestamp.is_some() {
        // Owner references take the children; the TrainedModel stays.
        context.live.forget(&key);
        context.forget(&uid);
        return Ok(Requeue::await_change());
    }

    // Admission must know what runs before any job is judged.
    context.tenancy.ready().await;
    let world = World::observe(job, &context, &namespace, &key).await?;
    let observed = world.observed(job, context.tenancy.admission(job));
    let mut decision = decide(&observed);
    for action in &decision.actions {
        match act(action, job, &context, &world).await {
            Err(Error::Kube(kube::Error::Api(status)))
                if matches!(action, Action::CreateAttempt(_))
                    && matches!(status.code, 400 | 422) =>
            {
                decision.status = refused(&observed, decision.status, &status.message);
                decision.requeue = None;
                break;
            }
            result => result?,
        }
    }
    let old = job.status.clone().unwrap_or_default();
    let mut requeue = decision.requeue;
    if let Some(wait) = write_status(job, &old, &decision.status, &context, &key).await? {
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    context.record_phase(&uid, decision.status.phase.map(|p| format!("{p:?}")));
    // An Event per phase change, and per new warning within a phase: reasons such as
    // Starting → Training are status only (each Event is a write).
    if old.phase != decision.status.phase
        || (old.reason != decision.status.reason && warning(&decision.status))
    {
        announce(job, &decision.status, &context);
    }
    if matches!(
        decision.status.phase,
        Some(Phase::Succeeded | Phase::Failed)
    ) {
        context.live.forget(&key);
    }
    context.recovered(&uid);
    Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue))
}

/// What exists around a job.
struct World {
    missing: Vec<String>,
    cache: Option<CachedModel>,
    attempts: Vec<AttemptView>,
    live: Option<crate::progress::Live>,
    published: Option<TrainedModel>,
    kueue: Option<KueueView>,
}

impl World {
    /// Reads the job's children from the watch caches (no list per reconcile: with a thousand
    /// jobs those lists were most of the API server's load) and, before the first attempt, asks
    /// the API server whether what the job references exists.
    async fn observe(
        job: &FineTuneJob,
        context: &Context,
        namespace: &str,
        key: &JobKey,
    ) -> Result<Self> {
        let watches = context.watches.get().ok_or(Error::NotLeading)?;
        let mut world = Self {
            missing: Vec::new(),
            cache: None,
            attempts: Vec::new(),
            live: context.live.get(key),
            published: None,
            kueue: None,
        };
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, Phase::Succeeded | Phase::Failed));
        if finished {
            return Ok(world);
        }
        let mut pods: Vec<Arc<Pod>> = watches
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
            .collect();
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        for batch in watches.batches.state() {
            let owned = batch
                .owner_references()
                .iter()
                .any(|o| o.uid == key.uid && o.controller == Some(true));
            let number = batch
                .labels()
                .get(names::ATTEMPT_LABEL)
                .and_then(|n| n.parse().ok());
            let (true, Some(number)) = (owned, number) else {
                continue;
            };
            let batch_uid = batch.uid();
            let pod = pods
                .iter()
                .rev()
                .find(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == batch_uid.as_ref())
                })
                .map(|p| Pod::clone(p));
            world.attempts.push(AttemptView {
                number,
                job: Job::clone(&batch),
                pod,
            });
        }
        world.attempts.sort_by_key(|a| a.number);
        if world.attempts.is_empty() {
            world.missing = super::references::missing(
                job,
                context.client.clone(),
                namespace,
                &context.references,
            )
            .await?;
        }
        let name = children::cached_model_name(job, &context.config.instance);
        world.cache = watches
            .models
            .get(&ObjectRef::new(&name))
            .map(|c| CachedModel::clone(&c));
        world.kueue = kueue_view(job, &world.attempts, context, namespace).await?;
        if world.attempts.iter().any(|a| succeeded(&a.job)) {
            let models: Api<TrainedModel> = Api::namespaced(context.client.clone(), namespace);
            world.published = models.get_opt(&trained_model_name(job)).await?;
        }
        Ok(world)
    }

    fn observed<'a>(&'a self, job: &'a FineTuneJob, admission: Admission) -> Observed<'a> {
        Observed {
            job,
            now: jiff::Timestamp::now(),
            missing: self.missing.clone(),
            cache: self.cache.as_ref(),
            attempts: self.attempts.clone(),
            live: self.live.clone(),
            published: self.published.as_ref(),
            admission,
            kueue: self.kueue.clone(),
        }
    }
}

/// In Kueue mode, what Kueue says of the latest attempt, read while Kueue decides anything the
/// job's status does not show yet: before the first attempt (whether Kueue is installed),
/// while the Job is held, under `runPolicy.suspend`, and until the status shows Kueue's
/// admission. A running job that shows it is not read again (each read is a list).
async fn kueue_view(
    job: &FineTuneJob,
    attempts: &[AttemptView],
    context: &Context,
    namespace: &str,
) -> Result<Option<KueueView>> {
    if job.spec.queue_name.is_none() {
        return Ok(None);
    }
    let latest = attempts.last();
    let shown = job
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, condition::ADMITTED));
    let held = latest.is_none_or(|a| a.job.spec.as_ref().and_then(|s| s.suspend) == Some(true));
    if !held && !job.spec.run_policy.suspend && shown {
        return Ok(None);
    }
    let uid = latest.and_then(|a| a.job.uid());
    Ok(Some(
        kueue::observe(context.client.clone(), namespace, uid.as_deref()).await?,
    ))
}

fn succeeded(batch: &Job) -> bool {
    batch
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Server-side apply as the operator.
fn apply_params() -> PatchParams {
    PatchParams::apply(names::MANAGER).force()
}

/// A plain create as the operator. A new attempt's children are created, not applied: they are
/// on the path from `kubectl apply` to a running pod, and a create is one etcd transaction where
/// an apply first reads the object and merges field ownership (issue 10's footprint benchmark).
fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(names::MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// Creates `object`, or applies it over the one an earlier attempt left, so that it says what
/// this attempt needs.
async fn create_or_apply<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&create_params(), object).await {
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            api.patch(&object.name_any(), &apply_params(), &Patch::Apply(object))
                .await?;
            Ok(())
        }
        result => result.map(drop).map_err(Into::into),
    }
}

/// Success when the create succeeded or the object already exists.
fn existing_is_fine<K>(created: kube::Result<K>) -> Result<()> {
    match created {
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        result => result.map(drop).map_err(Into::into),
    }
}

async fn act(action: &Action, job: &FineTuneJob, context: &Context, world: &World) -> Result<()> {
    let client = context.client.clone();
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let lookup = |result: &'static str| {
        context
            .metrics
            .cache_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    };
    match action {
        Action::EnsureCachedModel => {
            lookup("miss");
            let cache = children::cached_model(job, &context.config);
            let api: Api<CachedModel> = Api::all(client);
            api.patch(&cache.name_any(), &apply_params(), &Patch::Apply(&cache))
                .await?;
        }
        Action::RetryFetch => {
            lookup("retry");
            let api: Api<CachedModel> = Api::all(client);
            let patch = json!({ "metadata": { "annotations": {
                crate::cache::RETRY_ANNOTATION: jiff::Timestamp::now().to_string()
            } } });
            api.patch(
                &children::cached_model_name(job, &context.config.instance),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        Action::CreateAttempt(number) => {
            let uid = job.uid().unwrap_or_default();
            if context.attempt_created_recently(&uid, *number) {
                // The watch cache has not shown this replica's own create yet.
                return Ok(());
            }
            lookup("hit");
            let cache = world.cache.as_ref();
            let resolved = cache
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.resolved_revision.clone())
                .unwrap_or_default();
            let token = context.key.token(&namespace, &name, &uid);
            let secret = children::trainer_secret(job, &resolved, &token)?;
            let claim = children::checkpoint_claim(job, &context.config);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
            // The pod mounts both: they go first, side by side; the Job follows.
            let create = create_params();
            let (secret_made, claim_made) = tokio::join!(
                create_or_apply(&secrets, &secret),
                claims.create(&create, &claim),
            );
            secret_made?;
            // The claim outlives attempts: attempt 2 finds attempt 1's.
            existing_is_fine(claim_made)?;
            let batch = children::trainer_job(job, &context.config, *number, cache);
            // The name is the attempt's: one that exists is this attempt's Job, made by an
            // earlier reconcile that the watch cache does not show yet.
            existing_is_fine(jobs.create(&create, &batch).await)?;
            context.attempt_created(&uid, *number);
            if let Some(cache) = cache {
                context.touches.touch(client, cache).await?;
            }
            tracing::info!(%namespace, job = %name, attempt = number, "created the trainer's Job");
        }
        Action::Suspend(number, suspend) => {
            hold(
                &jobs,
                &name,
                *number,
                json!({ "spec": { "suspend": suspend } }),
            )
            .await?;
        }
        Action::ActivateWorkload(workload, active) => {
            kueue::activate(client, &namespace, workload, *active).await?;
        }
        Action::StopAttempt(number, why) => {
            if job.spec.queue_name.is_some() {
                // Kueue would release a Job it admitted that anyone else suspends: the
                // attempt's Workload is deactivated first, so that Kueue stops it for good.
                stop_workload(job, &client, &namespace, *number, world).await?;
            }
            let patch = json!({
                "metadata": { "annotations": { STOPPED_ANNOTATION: why } },
                "spec": { "suspend": true },
            });
            hold(&jobs, &name, *number, patch).await?;
        }
        Action::Publish(model) => {
            let api: Api<TrainedModel> = Api::namespaced(client, &namespace);
            match api.create(&create_params(), model).await {
                Ok(_) => {
                    tracing::info!(%namespace, job = %name, model = %model.name_any(), "published")
                }
                // Someone published first: the next reconcile reads it and checks its producer.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Action::DeleteChildren => children::delete_all(job, client).await?,
    }
    Ok(())
}

/// Deactivates the Workload of attempt `number`'s Job, if Kueue made one.
async fn stop_workload(
    job: &FineTuneJob,
    client: &kube::Client,
    namespace: &str,
    number: u32,
    world: &World,
) -> Result<()> {
    let uid = world
        .attempts
        .iter()
        .find(|a| a.number == number)
        .and_then(|a| a.job.uid());
    let Some(uid) = uid else {
        return Ok(());
    };
    let seen = kueue::observe(client.clone(), namespace, Some(&uid)).await?;
    match seen.workload {
        Some(workload) => {
            kueue::activate(client.clone(), namespace, &workload, false).await?;
            tracing::info!(%namespace, job = %job.name_any(), %workload, "deactivated the attempt's Kueue Workload");
            Ok(())
        }
        // Without Kueue nothing will release the Job: suspending it is enough.
        None if matches!(seen.verdict, kueue::Verdict::NotInstalled) => Ok(()),
        // Kueue makes the Workload moments after the Job: the controller's backoff retries.
        None => Err(Error::WorkloadPending {
            job: names::trainer_job(&job.name_any(), number),
        }),
    }
}

/// Holds (`suspend: true`: the Job controller stops the pod with SIGTERM, the trainer
/// checkpoints) or releases an attempt's Job, by merging `patch`.
async fn hold(jobs: &Api<Job>, name: &str, attempt: u32, patch: serde_json::Value) -> Result<()> {
    jobs.patch(
        &names::trainer_job(name, attempt),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the status when it changed; step reports alone at most every
/// `progress.statusIntervalSeconds`. Returns how long to wait when a write was held back.
async fn write_status(
    job: &FineTuneJob,
    old: &FineTuneJobStatus,
    new: &FineTuneJobStatus,
    context: &Context,
    key: &JobKey,
) -> Result<Option<Duration>> {
    if old == new {
        return Ok(None);
    }
    let progress_only = {
        let strip = |s: &FineTuneJobStatus| FineTuneJobStatus {
            progress: None,
            metrics: None,
            last_checkpoint: None,
            ..s.clone()
        };
        strip(old) == strip(new)
    };
    let interval = Duration::from_secs(context.config.progress.status_interval_seconds);
    let milestone = context.live.get(key).is_some_and(|l| l.milestone_pending);
    if progress_only
        && !milestone
        && let Some(since) = context.since_status_write(&key.uid)
        && since < interval
    {
        return Ok(Some(interval - since));
    }
    let api: Api<FineTuneJob> = Api::namespaced(context.client.clone(), &key.namespace);
    let patch = json!({
        "apiVersion": "attune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "status": new,
    });
    api.patch_status(&job.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    context.status_written(&key.uid, new);
    context.live.written(key);
    Ok(None)
}

/// Whether the status is a failure or a problem someone should look at.
fn warning(status: &FineTuneJobStatus) -> bool {
    matches!(status.phase, Some(Phase::Failed))
        || status.reason.as_deref().is_some_and(|r| {
            matches!(
                r,
                "Unschedulable"
                    | "MissingReference"
                    | "Retrying"
                    | "ErrImagePull"
                    | "ImagePullBackOff"
            )
        })
}

/// An Event for a phase change or a warning.
fn announce(job: &FineTuneJob, status: &FineTuneJobStatus, context: &Context) {
    let phase = status
        .phase
        .map_or("Unknown".to_owned(), |p| format!("{p:?}"));
    let event = Event {
        type_: if warning(status) {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: status.reason.clone().unwrap_or_else(|| phase.clone()),
        note: status
            .message
            .clone()
            .map(|m| m.chars().take(1000).collect()),
        action: phase,
        secondary: None,
    };
    context.publish(event, vec![job.object_ref(&())]);
}
