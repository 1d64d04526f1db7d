//! One reconcile of a CachedModel: an eviction under way goes first ([`super::evict`]);
//! otherwise start the first fetch, read how the latest one ended, and start another after a
//! failure only when a job asked after it and the backoff has passed.

use std::sync::Arc;
use std::time::Duration;

use attune_crds::{CachePhase, CachedModel, CachedModelStatus};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::report::{failure, fetched};
use super::{CREDENTIALS_ANNOTATION, RETRY_ANNOTATION, claims, evict, fetch_job, fetch_namespace};
use crate::conditions;
use crate::context::Context;
use crate::error::Result;
use crate::finetunejob::outcome::termination;
use crate::metrics::ReconcileTimer;
use crate::names;

/// How soon a fetch waiting for its namespace's model-cache claim is tried again.
pub const CLAIM_RECHECK: Duration = Duration::from_secs(2);

/// First retry after 30 s, doubling per failed attempt, at most 10 minutes.
fn backoff(failed_attempts: u32) -> Duration {
    let factor = 1u64 << failed_attempts.saturating_sub(1).min(5);
    Duration::from_secs((30 * factor).min(600))
}

/// Whether the Job has condition `type_` (`Complete`, `Failed`) true.
pub fn ended(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The termination message of the finished pod of Job `job` in `namespace`.
///
/// # Errors
/// Listing the pods failed.
pub async fn job_message(context: &Context, namespace: &str, job: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let pod_list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?;
    Ok(pod_list
        .items
        .iter()
        .find_map(termination)
        .map(|t| t.message)
        .unwrap_or_default())
}

/// Server-side apply as the operator.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(names::MANAGER).force()
}

pub async fn reconcile(cache: Arc<CachedModel>, context: Arc<Context>) -> Result<Action> {
    let _timer = ReconcileTimer::start(Arc::clone(&context.metrics), "cachedmodel");
    if cache.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let old = cache.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let action = match evict::step(&cache, &context, &mut status).await? {
        Some(action) => action,
        None => fetch(&cache, &context, &mut status).await?,
    };
    if let Some(uid) = cache.uid() {
        context.recovered(&uid);
    }
    if status != old {
        let api: Api<CachedModel> = Api::all(context.client.clone());
        let patch = json!({
            "apiVersion": "attune.dev/v1alpha1",
            "kind": "CachedModel",
            "status": status,
        });
        api.patch_status(&cache.name_any(), &apply_params(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(action)
}

/// The fetch: start it, read its outcome, retry it when asked.
async fn fetch(
    cache: &CachedModel,
    context: &Context,
    status: &mut CachedModelStatus,
) -> Result<Action> {
    let name = cache.name_any();
    let namespace = fetch_namespace(cache, &context.config);
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let selector = ListParams::default().labels(&format!("{}={name}", names::CACHED_MODEL_LABEL));
    let uid = cache.uid();
    let mut attempts: Vec<(u32, Job)> = jobs
        .list(&selector)
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .filter_map(|j| {
            let number = j.name_any().rsplit('-').next()?.parse().ok()?;
            Some((number, j))
        })
        .collect();
    attempts.sort_by_key(|(n, _)| *n);

    let now = Time(Timestamp::now());
    let credentials = cache.annotations().get(CREDENTIALS_ANNOTATION).cloned();
    // Starts fetch attempt `number` once the namespace has its model-cache claim.
    let start = async |number: u32, status: &mut CachedModelStatus| -> Result<Option<Duration>> {
        if !claims::ensure(&context.client, &context.config, &namespace).await? {
            return Ok(Some(CLAIM_RECHECK));
        }
        let job = fetch_job(cache, &context.config, number, credentials.as_deref());
        jobs.patch(&job.name_any(), &apply_params(), &Patch::Apply(&job))
            .await?;
        downloading(status, &now, number);
        Ok(None)
    };

    let mut requeue = None;
    match attempts.last() {
        None if status.phase == Some(CachePhase::Ready) => {}
        None => requeue = start(1, status).await?,
        Some((number, job)) => {
            let message = if ended(job, "Complete") || ended(job, "Failed") {
                job_message(context, &namespace, &job.name_any()).await?
            } else {
                String::new()
            };
            if ended(job, "Complete") {
                match fetched(&message) {
                    Ok(report) => {
                        let repo = cache.spec.source.trim_start_matches("hf://");
                        let folder = format!("models--{}", repo.replace('/', "--"));
                        let subdir = crate::finetunejob::cache_subdir(cache.spec.tenant.as_deref());
                        let path = if subdir.is_empty() {
                            format!("{folder}/snapshots/{}", report.resolved_revision)
                        } else {
                            format!("{subdir}/{folder}/snapshots/{}", report.resolved_revision)
                        };
                        status.phase = Some(CachePhase::Ready);
                        status.resolved_revision = Some(report.resolved_revision);
                        status.size_bytes = Some(report.size_bytes);
                        status.files = report.files;
                        status.path = Some(path);
                        status.message = None;
                        set(
                            status,
                            &now,
                            "Ready",
                            true,
                            "Fetched",
                            "every file is present and verified",
                        );
                        set(
                            status,
                            &now,
                            "Failed",
                            false,
                            "Fetched",
                            "the latest fetch succeeded",
                        );
                    }
                    Err(error) => fail(status, &now, "BadFetchReport", error),
                }
            } else if ended(job, "Failed") {
                if status.phase != Some(CachePhase::Failed) {
                    let (reason, text) =
                        failure(&message, &cache.spec.source, &cache.spec.revision);
                    fail(status, &now, reason, text);
                }
                let failed_at = conditions::find(&status.conditions, "Failed")
                    .filter(|c| c.status == "True")
                    .map_or(now.0, |c| c.last_transition_time.0);
                let asked = cache
                    .annotations()
                    .get(RETRY_ANNOTATION)
                    .and_then(|t| t.parse::<Timestamp>().ok());
                if asked.is_some_and(|asked| asked > failed_at) {
                    let wait = backoff(*number);
                    let waited = Timestamp::now().duration_since(failed_at).unsigned_abs();
                    requeue = if waited >= wait {
                        start(number + 1, status).await?
                    } else {
                        Some(wait - waited)
                    };
                }
            } else {
                downloading(status, &now, *number);
            }
        }
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Sets condition `type_` of the entry.
pub fn set(
    status: &mut CachedModelStatus,
    now: &Time,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
) {
    conditions::set(
        &mut status.conditions,
        type_,
        value,
        reason,
        message,
        None,
        now,
    );
}

fn downloading(status: &mut CachedModelStatus, now: &Time, attempt: u32) {
    status.phase = Some(CachePhase::Downloading);
    status.message = None;
    let message = format!("fetch attempt {attempt} is downloading");
    set(status, now, "Ready", false, "Downloading", &message);
    set(status, now, "Failed", false, "Downloading", &message);
}

fn fail(status: &mut CachedModelStatus, now: &Time, reason: &str, message: String) {
    status.phase = Some(CachePhase::Failed);
    set(status, now, "Ready", false, reason, &message);
    set(status, now, "Failed", true, reason, &message);
    status.message = Some(message);
}
