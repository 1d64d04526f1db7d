//! The FineTuneJob controller: watches jobs, their batch Jobs and pods, and the CachedModels
//! they wait for, and reconciles each job into a truthful status (see [`decide`]).

mod children;
pub mod decide;
mod invalid;
mod isolation;
pub mod job_file;
pub mod kueue;
pub mod outcome;
pub mod publish;
mod reconcile;
pub mod references;
#[cfg(test)]
mod tests;
pub mod trainer_job;

use std::sync::Arc;

use attune_crds::{CachedModel, FineTuneJob};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc};

pub use children::{JOB_NAME_ANNOTATION, cache_subdir, cached_model_name};

use crate::config::OperatorConfig;
use crate::context::{Context, GuardedJob};
use crate::error::Error;
use crate::metrics::ErrorLabels;
use crate::names;
use crate::tenancy::scheduler;
use crate::watches::{Watches, cached_watch};

/// Whether this installation reconciles `job` (config `watchNamespaces`).
pub fn watched(config: &OperatorConfig, job: &FineTuneJob) -> bool {
    config.watch_namespaces.is_empty()
        || job
            .namespace()
            .is_some_and(|ns| config.watch_namespaces.contains(&ns))
}

/// The API of `K` in the watched namespace, or in all of them.
fn scoped<K>(context: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match context.config.watch_namespaces.as_slice() {
        [one] => Api::namespaced(context.client.clone(), one),
        _ => Api::all(context.client.clone()),
    }
}

/// Runs the controller, and admission beside it, until `shutdown` resolves.
pub async fn run(
    context: Arc<Context>,
    woken: mpsc::UnboundedReceiver<ObjectRef<GuardedJob>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = format!(
        "{}={},{}",
        names::MANAGED_BY_LABEL,
        names::MANAGER,
        names::JOB_LABEL
    );
    // The controller's watches are cached and shared with admission, which reads every
    // FineTuneJob, trainer Job and pod, and is told of each change; reconciles read them too.
    let changed = Arc::new(Notify::new());
    let (jobs, job_events) = cached_watch(
        scoped::<GuardedJob>(&context),
        watcher::Config::default(),
        &changed,
    );
    let (batches, batch_events) = cached_watch(
        scoped::<Job>(&context),
        watcher::Config::default().labels(&managed),
        &changed,
    );
    let (pods, pod_events) = cached_watch(
        scoped::<Pod>(&context),
        watcher::Config::default().labels(&managed),
        &changed,
    );
    let instance = format!("{}={}", names::INSTANCE_LABEL, context.config.instance);
    let (models, model_events) = cached_watch(
        Api::<CachedModel>::all(context.client.clone()),
        watcher::Config::default().labels(&instance),
        &changed,
    );
    let watches = Watches {
        jobs: jobs.clone(),
        batches,
        pods,
        models,
        changed,
    };
    let controller = Controller::for_stream(job_events.applied_objects(), jobs.clone());
    let wake = futures::stream::unfold(woken, |mut woken| async move {
        woken.recv().await.map(|reference| (reference, woken))
    });
    let installation = context.config.instance.clone();
    let controller = controller
        .owns_stream(batch_events.touched_objects())
        .watches_stream(pod_events.touched_objects(), |pod| {
            let name = pod.annotations().get(JOB_NAME_ANNOTATION)?;
            Some(ObjectRef::new(name).within(&pod.namespace()?))
        })
        .watches_stream(model_events.touched_objects(), move |cache| {
            waiting_on(&jobs.state(), &cache.name_any(), &installation)
        })
        .reconcile_on(wake)
        .with_config(Config::default().concurrency(context.config.concurrency))
        .graceful_shutdown_on(shutdown);
    // The progress server checks tokens against the job cache; ready once it fills.
    let _ = context.watches.set(watches.clone());
    let controller = controller
        .run(reconcile::reconcile, error_policy, Arc::clone(&context))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        });
    tokio::select! {
        () = controller => {}
        () = scheduler::run(context, watches) => {}
    }
}

/// The jobs a change of CachedModel `name` can move on: those that have no attempt yet (they
/// wait for the model). A started job reads its entry at its next reconcile; waking every
/// job on a model for each `lastUsedTime` touch made a thousand jobs reconcile fifty times each.
fn waiting_on(
    jobs: &[Arc<GuardedJob>],
    name: &str,
    installation: &str,
) -> Vec<ObjectRef<GuardedJob>> {
    jobs.iter()
        .filter(|guarded| {
            guarded.0.as_ref().is_ok_and(|job| {
                job.status.as_ref().is_none_or(|s| s.attempts == 0)
                    && cached_model_name(job, installation) == name
            })
        })
        .map(|job| ObjectRef::from_obj(&**job))
        .collect()
}

/// Logs and counts a failed reconcile and retries it later.
fn error_policy(job: Arc<GuardedJob>, error: &Error, context: Arc<Context>) -> Action {
    context
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            controller: "finetunejob",
            reason: error.metric_label(),
        })
        .inc();
    tracing::warn!(
        namespace = job.namespace().unwrap_or_default(),
        job = job.name_any(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(context.backoff(&job.uid().unwrap_or_else(|| job.name_any())))
}
