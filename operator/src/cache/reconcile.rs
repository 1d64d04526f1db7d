//! One reconcile of a CachedModel: start the first fetch, read how the latest one ended, and
//! start another after a failure only when a job asked after it and the backoff has passed.

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
use super::{CREDENTIALS_ANNOTATION, RETRY_ANNOTATION, fetch_job, fetch_namespace};
use crate::conditions;
use crate::context::Context;
use crate::error::Result;
use crate::finetunejob::outcome::termination;
use crate::metrics::ReconcileTimer;
use crate::names;

/// First retry after 30 s, doubling per failed attempt, at most 10 minutes.
fn backoff(failed_attempts: u32) -> Duration {
    let factor = 1u64 << failed_attempts.saturating_sub(1).min(5);
    Duration::from_secs((30 * factor).min(600))
}

pub async fn reconcile(cache: Arc<CachedModel>, context: Arc<Context>) -> Result<Action> {
    let _timer = ReconcileTimer::start(Arc::clone(&context.metrics), "cachedmodel");
    let name = cache.name_any();
    let namespace = fetch_namespace(&cache, &context.config);
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
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

    let old = cache.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let now = Time(Timestamp::now());
    let mut requeue = None;
    let credentials = cache.annotations().get(CREDENTIALS_ANNOTATION).cloned();
    let start = |number: u32| fetch_job(&cache, &context.config, number, credentials.as_deref());
    let apply = PatchParams::apply(names::MANAGER).force();

    match attempts.last() {
        None if status.phase == Some(CachePhase::Ready) => {}
        None => {
            let job = start(1);
            jobs.patch(&job.name_any(), &apply, &Patch::Apply(&job))
                .await?;
            downloading(&mut status, &now, 1);
        }
        Some((number, job)) => {
            let ended = |type_: &str| {
                job.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
            };
            let message = if ended("Complete") || ended("Failed") {
                let pod_list = pods
                    .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
                    .await?;
                pod_list
                    .items
                    .iter()
                    .find_map(termination)
                    .map(|t| t.message)
                    .unwrap_or_default()
            } else {
                String::new()
            };
            if ended("Complete") {
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
                            &mut status,
                            &now,
                            "Ready",
                            true,
                            "Fetched",
                            "every file is present and verified",
                        );
                        set(
                            &mut status,
                            &now,
                            "Failed",
                            false,
                            "Fetched",
                            "the latest fetch succeeded",
                        );
                    }
                    Err(error) => fail(&mut status, &now, "BadFetchReport", error),
                }
            } else if ended("Failed") {
                if status.phase != Some(CachePhase::Failed) {
                    let (reason, text) =
                        failure(&message, &cache.spec.source, &cache.spec.revision);
                    fail(&mut status, &now, reason, text);
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
                    if waited >= wait {
                        let job = start(number + 1);
                        jobs.patch(&job.name_any(), &apply, &Patch::Apply(&job))
                            .await?;
                        downloading(&mut status, &now, number + 1);
                    } else {
                        requeue = Some(wait - waited);
                    }
                }
            } else {
                downloading(&mut status, &now, *number);
            }
        }
    }
    if let Some(uid) = &uid {
        context.recovered(uid);
    }
    if status != old {
        let api: Api<CachedModel> = Api::all(context.client.clone());
        let patch = json!({
            "apiVersion": "attune.dev/v1alpha1",
            "kind": "CachedModel",
            "status": status,
        });
        api.patch_status(&name, &apply, &Patch::Apply(&patch))
            .await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

fn set(
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
