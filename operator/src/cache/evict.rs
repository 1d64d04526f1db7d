//! The eviction of one CachedModel, step by step and level-triggered, as its reconcile finds it:
//!
//! 1. asked for ([`EVICT_ANNOTATION`], set by the collector) → marked: phase `Pending`, condition
//!    `Evicting`; a job that arrives from now on waits instead of starting on the files;
//! 2. marked → checked again against the jobs: one that slipped in before the mark (it is in
//!    the job controller's cache by then) cancels the eviction and the entry is as it was;
//! 3. still unused → the eviction Job (`attune-trainer evict`) removes the revision's files;
//! 4. that Job ended → the CachedModel is deleted in the foreground, its Jobs first, so the
//!    next job that needs the model creates a fresh entry whose fetch cannot meet the old Jobs.

use std::time::Duration;

use attune_crds::{CachePhase, CachedModel, CachedModelStatus};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::claims;
use super::jobs::{evict_job, evict_job_name};
use super::reconcile::{CLAIM_RECHECK, apply_params, ended, job_message, set};
use super::retention::{EVICT_ANNOTATION, EVICT_REASON_ANNOTATION, last_used, needed};
use crate::conditions;
use crate::context::Context;
use crate::error::Result;

/// Condition of an entry being evicted.
pub const EVICTING: &str = "Evicting";
/// How soon an eviction waiting for the job controller's cache looks again.
const JOBS_RECHECK: Duration = Duration::from_secs(5);

/// Takes the eviction one step and returns what the reconcile should do next, or `None` when
/// no eviction is under way (the fetch logic then runs). Changes `status`; the caller writes it.
///
/// # Errors
/// An API call failed.
pub async fn step(
    cache: &CachedModel,
    context: &Context,
    status: &mut CachedModelStatus,
) -> Result<Option<Action>> {
    let config = &context.config;
    let name = cache.name_any();
    let now = Time(Timestamp::now());
    let requested = cache
        .annotations()
        .get(EVICT_ANNOTATION)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let marked = conditions::find(&status.conditions, EVICTING).is_some_and(|c| c.status == "True");
    if requested.is_none() && !marked {
        return Ok(None);
    }
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &config.namespace);
    let job_name = evict_job_name(cache);
    if let Some(job) = jobs.get_opt(&job_name).await? {
        let ours = job
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == cache.uid().as_ref());
        if !ours {
            // A former entry's, on its way out with it.
            return Ok(Some(Action::requeue(JOBS_RECHECK)));
        }
        if ended(&job, "Complete") || ended(&job, "Failed") {
            let message = job_message(context, &config.namespace, &job_name).await?;
            if ended(&job, "Failed") {
                tracing::warn!(cached_model = %name, %message, "the eviction Job failed; the entry goes anyway and its files may remain on the volume");
            } else {
                tracing::info!(cached_model = %name, %message, "evicted");
            }
            let api: Api<CachedModel> = Api::all(context.client.clone());
            match api.delete(&name, &DeleteParams::foreground()).await {
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                other => drop(other?),
            }
        }
        return Ok(Some(Action::await_change()));
    }
    let Some(requested) = requested else {
        restore(
            status,
            &now,
            "Withdrawn",
            "the eviction request was withdrawn",
        );
        return Ok(Some(Action::await_change()));
    };
    if !marked {
        let why = cache
            .annotations()
            .get(EVICT_REASON_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "asked for".to_owned());
        status.phase = Some(CachePhase::Pending);
        status.message = Some(format!("evicting: {why}"));
        set(status, &now, EVICTING, true, "Unused", &why);
        return Ok(Some(Action::await_change()));
    }
    let Some(needed) = needed(context) else {
        return Ok(Some(Action::requeue(JOBS_RECHECK)));
    };
    if needed.contains(&name) || last_used(cache) > requested {
        restore(status, &now, "InUse", "a job needs the entry: kept");
        let patch = json!({ "metadata": { "annotations": {
            EVICT_ANNOTATION: null, EVICT_REASON_ANNOTATION: null,
        } } });
        let api: Api<CachedModel> = Api::all(context.client.clone());
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(Some(Action::await_change()));
    }
    if !claims::ensure(&context.client, config, &config.namespace).await? {
        return Ok(Some(Action::requeue(CLAIM_RECHECK)));
    }
    let revision = status
        .resolved_revision
        .clone()
        .unwrap_or_else(|| cache.spec.revision.clone());
    let job = evict_job(cache, config, &revision);
    jobs.patch(&job_name, &apply_params(), &Patch::Apply(&job))
        .await?;
    let message = format!("removing the files of {revision}");
    set(status, &now, "Ready", false, EVICTING, &message);
    set(status, &now, EVICTING, true, "Removing", &message);
    Ok(Some(Action::await_change()))
}

/// Undoes the mark: the phase the conditions still tell (the files were never touched).
fn restore(status: &mut CachedModelStatus, now: &Time, reason: &str, message: &str) {
    let holds = |type_: &str| {
        conditions::find(&status.conditions, type_).is_some_and(|c| c.status == "True")
    };
    status.phase = if holds("Ready") {
        Some(CachePhase::Ready)
    } else if holds("Failed") {
        Some(CachePhase::Failed)
    } else {
        None
    };
    status.message = conditions::find(&status.conditions, "Failed")
        .filter(|_| status.phase == Some(CachePhase::Failed))
        .map(|c| c.message.clone());
    set(status, now, EVICTING, false, reason, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_eviction_leaves_the_entry_as_it_was() {
        let now = Time(Timestamp::from_second(1_800_000_000).expect("time"));
        let mut status = CachedModelStatus::default();
        set(&mut status, &now, "Ready", true, "Fetched", "ok");
        status.phase = Some(CachePhase::Pending);
        status.message = Some("evicting: unused".to_owned());
        set(&mut status, &now, EVICTING, true, "Unused", "unused");
        restore(&mut status, &now, "InUse", "kept");
        assert_eq!(status.phase, Some(CachePhase::Ready));
        assert_eq!(status.message, None);
        let evicting = conditions::find(&status.conditions, EVICTING).expect("condition");
        assert_eq!(
            (evicting.status.as_str(), evicting.reason.as_str()),
            ("False", "InUse")
        );

        let mut failed = CachedModelStatus::default();
        set(
            &mut failed,
            &now,
            "Failed",
            true,
            "RepositoryNotFound",
            "404",
        );
        failed.phase = Some(CachePhase::Pending);
        failed.message = Some("evicting: unused".to_owned());
        set(&mut failed, &now, EVICTING, true, "Unused", "unused");
        restore(&mut failed, &now, "Withdrawn", "withdrawn");
        assert_eq!(failed.phase, Some(CachePhase::Failed));
        assert_eq!(failed.message.as_deref(), Some("404"));
    }
}
