//! The heart of the FineTuneJob reconciler, with no client: from what exists (the job, its
//! cache entry, its attempts' Jobs and pods, its live progress) to the status that tells the
//! truth and the few actions that move the job on. Level-triggered: the same world gives the
//! same decision, so a replayed event or a restarted operator repeats nothing.

use std::time::Duration;

use attune_crds::{
    CachePhase, CachedModel, Checkpoint, FineTuneJob, FineTuneJobStatus, Metrics, Phase, Progress,
    TrainedModel,
};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::isolation::foreign_reference;
use super::kueue::{KueueView, Verdict, reason as kueue_reason};
use super::outcome::{Failure, classify, done_report, running_since, start_problem, termination};
use super::publish::{exported, final_metrics, trained_model};
use crate::conditions;
use crate::progress::Live;
use crate::tenancy::Admission;

/// One attempt as observed: its Job and the newest pod of it.
#[derive(Clone, Debug)]
pub struct AttemptView {
    /// Attempt number, from 1.
    pub number: u32,
    /// The batch Job.
    pub job: Job,
    /// Its newest pod, if any.
    pub pod: Option<Pod>,
}

/// Everything the decision reads.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The job.
    pub job: &'a FineTuneJob,
    /// The time of the decision.
    pub now: Timestamp,
    /// Referenced objects that do not exist, as `Kind name`.
    pub missing: Vec<String>,
    /// The job's cache entry, if it exists.
    pub cache: Option<&'a CachedModel>,
    /// The job's attempts, oldest first.
    pub attempts: Vec<AttemptView>,
    /// What the trainer reported, if anything.
    pub live: Option<Live>,
    /// The TrainedModel of the job's output name, if one exists.
    pub published: Option<&'a TrainedModel>,
    /// What admission says: whether the job may start or resume, waits, or must stop.
    pub admission: Admission,
    /// In Kueue mode, what Kueue says of the latest attempt's Job, when it was read (a
    /// running job's Workload is read only until the job shows Kueue's admission).
    pub kueue: Option<KueueView>,
}

/// Something to do besides writing the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the job's CachedModel.
    EnsureCachedModel,
    /// Ask the CachedModel's controller to fetch again after an earlier failure.
    RetryFetch,
    /// Create attempt `n` (and the ConfigMap, Secret and claim it mounts).
    CreateAttempt(u32),
    /// Hold (`true`) or release the attempt's Job.
    Suspend(u32, bool),
    /// Kueue mode: let Kueue admit (`true`), or keep it from admitting and evict (`false`),
    /// the named Workload. The operator never releases a Kueue job's Job itself.
    ActivateWorkload(String, bool),
    /// End the attempt's pod now (deadline, stall): its Job is suspended for good, so the
    /// pod gets SIGTERM and checkpoints; the Job is marked with why
    /// ([`STOPPED_ANNOTATION`]), so that the next attempt follows even after a wait.
    StopAttempt(u32, String),
    /// Create the TrainedModel.
    Publish(Box<TrainedModel>),
    /// Delete the finished job's pods, Jobs, ConfigMap, Secret and checkpoint claim.
    DeleteChildren,
}

/// The decision.
#[derive(Debug)]
pub struct Decision {
    /// The status to write.
    pub status: FineTuneJobStatus,
    /// What to do first.
    pub actions: Vec<Action>,
    /// When to look again even if nothing changes.
    pub requeue: Option<Duration>,
}

/// Annotation on an attempt's Job that the operator stopped for good (a stall), with why.
pub const STOPPED_ANNOTATION: &str = "attune.dev/stopped";

/// Condition types, in `status.conditions`.
pub mod condition {
    /// The job may run (quota, references).
    pub const ADMITTED: &str = "Admitted";
    /// Admission stopped the job for another (its message names which); it resumes from its
    /// checkpoint when admitted again.
    pub const PREEMPTED: &str = "Preempted";
    /// The base model is in the cache.
    pub const MODEL_CACHED: &str = "ModelCached";
    /// A trainer pod runs.
    pub const RUNNING: &str = "Running";
    /// The trainer stopped reporting steps.
    pub const STALLED: &str = "Stalled";
    /// Held by `runPolicy.suspend`.
    pub const SUSPENDED: &str = "Suspended";
    /// The model is published.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The job stopped for good.
    pub const FAILED: &str = "Failed";
}

/// How often a job that waits on something the operator does not watch is looked at again.
const RECHECK: Duration = Duration::from_secs(15);

/// How soon a job Kueue holds is looked at again while what Kueue says of it changes (its
/// Workload is not watched; the Job's watch wakes the job when Kueue releases or stops it).
const KUEUE_RECHECK: Duration = Duration::from_secs(5);

/// How often once its status shows what Kueue says: only Kueue's wording can change without
/// an event on the Job, and each look is a list (thousands of queued jobs would be hundreds
/// of requests a second at the short interval).
const KUEUE_SETTLED: Duration = Duration::from_secs(30);

struct Builder<'a> {
    observed: &'a Observed<'a>,
    status: FineTuneJobStatus,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    now: Time,
}

impl Builder<'_> {
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let generation = self.observed.job.metadata.generation;
        conditions::set(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message,
            generation,
            &self.now,
        );
    }

    fn phase(&mut self, phase: Phase, reason: &str, message: impl Into<String>) {
        self.status.phase = Some(phase);
        self.status.reason = Some(reason.to_owned());
        self.status.message = Some(message.into());
    }

    fn fail(&mut self, reason: &str, message: impl Into<String>) {
        let message = message.into();
        self.phase(Phase::Failed, reason, message.clone());
        self.condition(condition::FAILED, true, reason, message);
        self.condition(condition::RUNNING, false, reason, "the job has ended");
        self.status
            .completion_time
            .get_or_insert_with(|| self.now.clone());
    }

    fn requeue_in(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// Opens or closes the pause the deadline does not count: a started job that is queued
    /// again (preempted, or evicted by Kueue) or suspended is paused.
    fn count_pause(&mut self) {
        let paused = self.status.start_time.is_some()
            && matches!(self.status.phase, Some(Phase::Queued | Phase::Suspended));
        if paused {
            self.status
                .paused_since
                .get_or_insert_with(|| self.now.clone());
        } else if let Some(since) = self.status.paused_since.take() {
            self.status.paused_seconds += seconds_between(since.0, self.now.0);
        }
    }

    fn finish(mut self) -> Decision {
        self.count_pause();
        Decision {
            status: self.status,
            actions: self.actions,
            requeue: self.requeue,
        }
    }
}

/// The status of a job whose trainer Job the API server refused (core types carry no schema
/// limits inside a FineTuneJob, so e.g. an affinity weight of 0 passes `kubectl apply` and fails
/// here): Failed with the server's words, since retrying the same spec cannot help.
pub fn refused(
    observed: &Observed<'_>,
    status: FineTuneJobStatus,
    message: &str,
) -> FineTuneJobStatus {
    let mut b = Builder {
        observed,
        status,
        actions: Vec::new(),
        requeue: None,
        now: Time(observed.now),
    };
    b.fail(
        "JobRejected",
        format!(
            "the API server refused the trainer's Job: {message}; fix the FineTuneJob's \
             spec.resources and create it again"
        ),
    );
    b.status
}

/// Decides the job's status and next actions.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let job = observed.job;
    let mut b = Builder {
        observed,
        status: job.status.clone().unwrap_or_default(),
        actions: Vec::new(),
        requeue: None,
        now: Time(observed.now),
    };
    b.status.observed_generation = job.metadata.generation;

    if matches!(b.status.phase, Some(Phase::Succeeded | Phase::Failed)) {
        expire(&mut b);
        return b.finish();
    }
    if let Some(message) = foreign_reference(&job.spec, &job.namespace().unwrap_or_default()) {
        b.fail("CrossNamespaceReference", message);
        return b.finish();
    }
    if let Some(field) = object_store_field(job) {
        b.fail(
            "UnsupportedLocation",
            format!(
                "{field}: object-store locations are not supported yet; use a pvc location \
                 (or a configMap for small datasets)"
            ),
        );
        return b.finish();
    }
    if !observed.missing.is_empty() && observed.attempts.is_empty() {
        let message = format!(
            "{} not found in namespace {}: create {}",
            observed.missing.join(", "),
            job.namespace().unwrap_or_default(),
            if observed.missing.len() == 1 {
                "it"
            } else {
                "them"
            }
        );
        b.phase(Phase::Pending, "MissingReference", message.clone());
        b.condition(condition::ADMITTED, false, "MissingReference", message);
        b.requeue_in(RECHECK);
        return b.finish();
    }
    b.status.tenant = observed.admission.tenant().map(str::to_owned);
    b.status.queue_position = None;
    if let Admission::Refused(why) = &observed.admission
        && observed.attempts.is_empty()
    {
        b.fail("NoTenant", why.clone());
        return b.finish();
    }
    if job.spec.run_policy.suspend && observed.attempts.is_empty() {
        b.phase(Phase::Suspended, "Suspended", "runPolicy.suspend is true");
        b.condition(
            condition::SUSPENDED,
            true,
            "Suspended",
            "runPolicy.suspend is true",
        );
        return b.finish();
    }
    let Some(resolved) = cached_model(&mut b) else {
        if observed.attempts.is_empty() {
            b.condition(
                condition::ADMITTED,
                false,
                "WaitingForModel",
                "the job queues for its tenant's GPU quota once its base model is cached",
            );
        }
        return b.finish();
    };
    attempts(&mut b, &resolved);
    if let Some(live) = &observed.live {
        report_progress(&mut b.status, live);
    }
    b.finish()
}

/// `ttlSecondsAfterFinished`: delete the children once it has passed.
fn expire(b: &mut Builder<'_>) {
    let (Some(ttl), Some(done)) = (
        b.observed.job.spec.run_policy.ttl_seconds_after_finished,
        b.status.completion_time.clone(),
    ) else {
        return;
    };
    let elapsed = seconds_between(done.0, b.observed.now);
    if elapsed >= ttl {
        b.actions.push(Action::DeleteChildren);
    } else {
        b.requeue_in(Duration::from_secs(ttl - elapsed));
    }
}

/// The first location of the spec this version cannot serve.
fn object_store_field(job: &FineTuneJob) -> Option<&'static str> {
    let spec = &job.spec;
    if spec.dataset.source.object_store.is_some() {
        return Some("spec.dataset.source.objectStore");
    }
    if spec
        .dataset
        .validation
        .source
        .as_ref()
        .is_some_and(|s| s.object_store.is_some())
    {
        return Some("spec.dataset.validation.source.objectStore");
    }
    if spec.output.destination.object_store.is_some() {
        return Some("spec.output.destination.objectStore");
    }
    None
}

/// The base model's state; the resolved commit once it is Ready.
fn cached_model(b: &mut Builder<'_>) -> Option<String> {
    let Some(cache) = b.observed.cache else {
        b.actions.push(Action::EnsureCachedModel);
        b.phase(
            Phase::CachingModel,
            "ModelDownloading",
            "creating the model-cache entry",
        );
        b.condition(
            condition::MODEL_CACHED,
            false,
            "Creating",
            "creating the cache entry",
        );
        return None;
    };
    let status = cache.status.clone().unwrap_or_default();
    let name = cache.name_any();
    match status.phase {
        Some(CachePhase::Ready) => {
            let resolved = status.resolved_revision.unwrap_or_default();
            b.condition(
                condition::MODEL_CACHED,
                true,
                "Ready",
                format!("CachedModel {name} holds commit {resolved}"),
            );
            Some(resolved)
        }
        Some(CachePhase::Failed) => {
            let message = status.message.unwrap_or_default();
            let failed_at =
                conditions::find(&status.conditions, "Failed").map(|c| c.last_transition_time.0);
            let created = b
                .observed
                .job
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0);
            let reason = conditions::find(&status.conditions, "Failed")
                .map_or("FetchFailed", |c| c.reason.as_str())
                .to_owned();
            if failed_at.zip(created).is_some_and(|(f, c)| f >= c) {
                b.condition(condition::MODEL_CACHED, false, &reason, message.clone());
                b.fail(
                    "ModelFetchFailed",
                    format!("fetching the base model failed ({reason}): {message}"),
                );
            } else {
                // The failure predates this job: it asks for a fresh try rather than inherit it.
                b.actions.push(Action::RetryFetch);
                b.phase(
                    Phase::CachingModel,
                    "ModelDownloading",
                    format!("retrying the fetch that failed before this job existed ({message})"),
                );
                b.condition(condition::MODEL_CACHED, false, "Retrying", message);
            }
            None
        }
        _ => {
            b.phase(
                Phase::CachingModel,
                "ModelDownloading",
                format!("waiting for CachedModel {name} to be downloaded"),
            );
            b.condition(
                condition::MODEL_CACHED,
                false,
                "Downloading",
                "the model is being fetched",
            );
            None
        }
    }
}

/// The batch Jobs: create, retry, hold, stop, or conclude.
fn attempts(b: &mut Builder<'_>, resolved: &str) {
    let observed = b.observed;
    let Some(latest) = observed.attempts.last() else {
        if let Some(seen) = &observed.kueue {
            if seen.verdict == Verdict::NotInstalled {
                kueue_waits(b, 1, &seen.verdict);
                return;
            }
            // Created held: Kueue admits it; the job starts when Kueue releases the Job.
            b.actions.push(Action::CreateAttempt(1));
            b.status.attempts = 1;
            kueue_waits(b, 1, &seen.verdict);
            return;
        }
        if !admitted(b, "the first attempt") {
            return;
        }
        b.actions.push(Action::CreateAttempt(1));
        b.status.attempts = 1;
        b.status.start_time.get_or_insert_with(|| b.now.clone());
        starting(b, 1);
        return;
    };
    b.status.attempts = b.status.attempts.max(latest.number);
    // A job in Kueue mode starts (and its deadline counts) once Kueue first releases it.
    if !kueue_mode(b) || !suspended(&latest.job) {
        b.status.start_time.get_or_insert_with(|| b.now.clone());
    }
    let batch_status = latest.job.status.clone().unwrap_or_default();
    let finished = |type_: &str| {
        batch_status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .map(|c| c.reason.clone().unwrap_or_default())
    };
    if finished("Complete").is_some() || finished("SuccessCriteriaMet").is_some() {
        succeed(b, latest, resolved);
    } else if let Some(job_reason) = finished("Failed").or_else(|| finished("FailureTarget")) {
        failed_attempt(b, latest, &job_reason);
    } else if let Some(why) = latest.job.annotations().get(STOPPED_ANNOTATION) {
        let failure = Failure {
            retriable: true,
            reason: "Stalled",
            message: why.clone(),
        };
        retry_or_fail(b, latest.number, &failure);
    } else {
        active_attempt(b, latest);
    }
}

/// Attempt `number` is on its way, from the creation of its Job until its pod runs. One
/// status for all of it (Job created, pod created, pod scheduled): each change would be a
/// write, and none of them is news to the user.
fn starting(b: &mut Builder<'_>, number: u32) {
    let message = format!("attempt {number}: the trainer's pod is starting");
    b.phase(Phase::Running, "Starting", message.clone());
    b.condition(condition::RUNNING, false, "Starting", message);
}

/// The attempt succeeded: publish.
fn succeed(b: &mut Builder<'_>, latest: &AttemptView, resolved: &str) {
    let observed = b.observed;
    let job = observed.job;
    let message = latest
        .pod
        .as_ref()
        .and_then(termination)
        .map(|t| t.message)
        .unwrap_or_default();
    let report = match done_report(&message) {
        Ok(report) => report,
        Err(error) => {
            b.fail(
                "NoExportReport",
                format!("the trainer succeeded but {error}"),
            );
            return;
        }
    };
    let train_loss = observed.live.as_ref().and_then(|l| l.loss);
    let metrics: Metrics = final_metrics(&report, train_loss);
    let model = match observed.published {
        Some(existing) if existing.spec.producer.job_uid == job.uid().unwrap_or_default() => {
            existing.clone()
        }
        Some(existing) => {
            b.fail(
                "OutputNameTaken",
                format!(
                    "TrainedModel {} already records FineTuneJob {}: set spec.output.name to a \
                     new name",
                    existing.name_any(),
                    existing.spec.producer.job_name
                ),
            );
            return;
        }
        None => {
            let completed = b
                .status
                .completion_time
                .clone()
                .unwrap_or_else(|| b.now.clone());
            match trained_model(job, &report, metrics.clone(), resolved, &completed) {
                Ok(model) => {
                    b.actions.push(Action::Publish(Box::new(model.clone())));
                    model
                }
                Err(error) => {
                    b.fail("NoExportReport", error);
                    return;
                }
            }
        }
    };
    b.status.completion_time = Some(model.spec.producer.completion_time.clone());
    b.status.exported_model = Some(exported(&model));
    b.status.metrics = Some(metrics);
    if let Some(progress) = &mut b.status.progress {
        progress.step = report.step;
        progress.percent = 100;
        progress.eta_seconds = Some(0);
    }
    let message = format!(
        "published TrainedModel {} ({})",
        model.name_any(),
        model.spec.uri
    );
    b.phase(Phase::Succeeded, "Published", message.clone());
    b.condition(condition::SUCCEEDED, true, "Published", message);
    b.condition(condition::RUNNING, false, "Completed", "training finished");
    b.condition(condition::STALLED, false, "Completed", "training finished");
}

/// The attempt failed: retry from the checkpoint, or give up with the reason.
fn failed_attempt(b: &mut Builder<'_>, latest: &AttemptView, job_reason: &str) {
    let failure = match latest.pod.as_ref().and_then(termination) {
        Some(ended) => classify(&ended),
        None => Failure {
            retriable: true,
            reason: "TrainerFailed",
            message: format!("the trainer's Job failed ({job_reason}) without a pod result"),
        },
    };
    retry_or_fail(b, latest.number, &failure);
}

/// After attempt `number` failed: the next attempt when the failure is worth retrying and
/// `runPolicy.backoffLimit` allows, else the job fails with the reason.
fn retry_or_fail(b: &mut Builder<'_>, number: u32, failure: &Failure) {
    let limit = b.observed.job.spec.run_policy.backoff_limit;
    if !failure.retriable {
        b.fail(failure.reason, failure.message.clone());
        return;
    }
    if number > limit {
        b.fail(
            "BackoffLimitExceeded",
            format!(
                "{number} attempts failed (runPolicy.backoffLimit {limit}); the last: {}: {}",
                failure.reason, failure.message
            ),
        );
        return;
    }
    let next = number + 1;
    let message = format!(
        "attempt {number} failed ({}: {}); attempt {next} resumes from the last checkpoint",
        failure.reason, failure.message
    );
    b.condition(condition::RUNNING, false, "Retrying", message.clone());
    if !admitted(b, &format!("attempt {next} ({message})")) {
        return;
    }
    b.actions.push(Action::CreateAttempt(next));
    b.status.attempts = next;
    b.phase(Phase::Running, "Retrying", message);
}

/// Whether admission lets `what` start now. If it does, the Admitted condition says under
/// which quota; if not, the job is Queued (or Failed, when its namespace may run nothing) with
/// admission's reason and place.
fn admitted(b: &mut Builder<'_>, what: &str) -> bool {
    if kueue_mode(b) {
        // Kueue admits the attempt's Job once it exists (created held): see `kueue_waits`.
        return true;
    }
    match b.observed.admission.clone() {
        Admission::Unmetered(why) => {
            b.condition(condition::ADMITTED, true, "Admitted", why);
            true
        }
        Admission::Granted {
            tenant,
            gpus,
            borrowed,
        } => {
            let borrowing = if borrowed > 0 {
                format!(", {borrowed} of them borrowed from its cohort")
            } else {
                String::new()
            };
            b.condition(
                condition::ADMITTED,
                true,
                "Admitted",
                format!("admitted under tenant {tenant}'s quota: {gpus} GPUs{borrowing}"),
            );
            true
        }
        Admission::Refused(why) => {
            b.fail("NoTenant", why);
            false
        }
        Admission::Queued {
            reason,
            message,
            position,
            ..
        } => {
            let message = format!("{what} waits: {message}");
            b.status.queue_position = position;
            b.phase(Phase::Queued, &reason, message.clone());
            b.condition(condition::ADMITTED, false, &reason, message);
            false
        }
        Admission::Preempted { message, .. } => {
            b.phase(Phase::Queued, "Preempted", message.clone());
            b.condition(condition::ADMITTED, false, "Preempted", message.clone());
            b.condition(condition::PREEMPTED, true, "Preempted", message);
            false
        }
    }
}

/// Whole seconds from `from` to `to`, 0 when `to` is earlier.
fn seconds_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.duration_since(from).as_secs()).unwrap_or(0)
}

/// The seconds `runPolicy.activeDeadlineSeconds` counts: since `startTime`, less the pauses.
fn active_seconds(b: &Builder<'_>) -> Option<u64> {
    let status = &b.status;
    let elapsed = seconds_between(status.start_time.as_ref()?.0, b.now.0);
    let pausing = status
        .paused_since
        .as_ref()
        .map_or(0, |since| seconds_between(since.0, b.now.0));
    Some(elapsed.saturating_sub(status.paused_seconds + pausing))
}

/// The seconds the job's deadline was passed by, if it was.
fn deadline_passed(b: &Builder<'_>) -> Option<u64> {
    let deadline = b.observed.job.spec.run_policy.active_deadline_seconds?;
    let active = active_seconds(b)?;
    (active >= deadline).then(|| active - deadline)
}

/// Whether the job is in Kueue mode (`spec.queueName`).
fn kueue_mode(b: &Builder<'_>) -> bool {
    b.observed.job.spec.queue_name.is_some()
}

/// Whether a batch Job is suspended.
fn suspended(batch: &Job) -> bool {
    batch.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// Attempt `number` of a job in Kueue mode waits for Kueue: Queued with Kueue's words (or
/// Pending when Kueue is not installed), looked at again soon since its Workload is not watched.
fn kueue_waits(b: &mut Builder<'_>, number: u32, verdict: &Verdict) {
    let queue = b.observed.job.spec.queue_name.clone().unwrap_or_default();
    let (phase, reason, message) = match verdict {
        Verdict::NotInstalled => (
            Phase::Pending,
            kueue_reason::NOT_INSTALLED.to_owned(),
            "Kueue is not installed: spec.queueName needs Kueue (the cluster serves no \
             kueue.x-k8s.io Workloads); install Kueue or remove spec.queueName"
                .to_owned(),
        ),
        Verdict::Pending { reason, message } => (
            Phase::Queued,
            reason.clone(),
            format!("attempt {number} waits for Kueue LocalQueue {queue}: {message}"),
        ),
        Verdict::Evicted { preempted, message } => {
            let message = format!(
                "Kueue stopped attempt {number} ({message}); it resumes from its latest \
                 checkpoint when LocalQueue {queue} admits it again"
            );
            if *preempted {
                b.condition(condition::PREEMPTED, true, "Preempted", message.clone());
            }
            let reason = if *preempted {
                kueue_reason::PREEMPTED
            } else {
                kueue_reason::EVICTED
            };
            (Phase::Queued, reason.to_owned(), message)
        }
        Verdict::Admitted { .. } => {
            starting(b, number);
            return;
        }
    };
    let settled = b.status.reason.as_deref() == Some(&reason)
        && b.status.message.as_deref() == Some(&message);
    b.requeue_in(if settled {
        KUEUE_SETTLED
    } else {
        KUEUE_RECHECK
    });
    b.phase(phase, &reason, message.clone());
    b.condition(condition::ADMITTED, false, &reason, message);
    b.condition(
        condition::RUNNING,
        false,
        "Queued",
        "the attempt waits for Kueue to admit it",
    );
}

/// Whether the attempt's Job may run, and the action that makes it so: Attune's admission
/// holds and releases the Job; in Kueue mode only Kueue does (the operator reaches it
/// through the Workload, for `runPolicy.suspend`).
fn run_or_hold(b: &mut Builder<'_>, latest: &AttemptView) -> bool {
    let observed = b.observed;
    let policy = &observed.job.spec.run_policy;
    let held = suspended(&latest.job);
    if kueue_mode(b) {
        // Only a Workload this job's suspension deactivated is activated again: Kueue (or an
        // administrator) may deactivate one for reasons of its own.
        let seen = observed.kueue.as_ref();
        let resumes = conditions::is_true(&b.status.conditions, condition::SUSPENDED);
        if let Some(seen) = seen
            && let Some(workload) = &seen.workload
            && (if policy.suspend {
                seen.active
            } else {
                !seen.active && resumes
            })
        {
            b.actions
                .push(Action::ActivateWorkload(workload.clone(), !policy.suspend));
        }
        let verdict = seen.map(|s| &s.verdict);
        let evicted = matches!(verdict, Some(Verdict::Evicted { .. }));
        let admitted = matches!(verdict, Some(Verdict::Admitted { .. }));
        return !policy.suspend && !evicted && (!held || admitted);
    }
    // A held attempt resumes only when admission grants it GPUs again; a running one stops
    // when admission preempts it.
    let preempted = matches!(observed.admission, Admission::Preempted { .. });
    let run = !policy.suspend
        && if held {
            observed.admission.grants()
        } else {
            !preempted
        };
    if held == run {
        b.actions.push(Action::Suspend(latest.number, !run));
    }
    run
}

/// The attempt runs (or waits to): suspension, deadlines, stalls, and what the pod shows.
fn active_attempt(b: &mut Builder<'_>, latest: &AttemptView) {
    let observed = b.observed;
    let policy = &observed.job.spec.run_policy;
    let held = suspended(&latest.job);
    let run = run_or_hold(b, latest);
    let pod = latest.pod.as_ref().filter(|p| {
        p.metadata.deletion_timestamp.is_none()
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    });
    if policy.suspend {
        let message = if pod.is_some() {
            "runPolicy.suspend is true: the trainer is checkpointing and stopping"
        } else {
            "runPolicy.suspend is true: the trainer stopped after a checkpoint"
        };
        b.phase(Phase::Suspended, "Suspended", message);
        b.condition(condition::SUSPENDED, true, "Suspended", message);
        b.condition(condition::RUNNING, false, "Suspended", message);
        return;
    }
    // Only a job that was suspended says it resumed (a condition that appears on its own
    // would be a status write with nothing to tell).
    if conditions::find(&b.status.conditions, condition::SUSPENDED).is_some() {
        b.condition(
            condition::SUSPENDED,
            false,
            "Resumed",
            "runPolicy.suspend is false",
        );
    }
    if deadline_passed(b).is_some() {
        let message = format!(
            "the job ran longer than runPolicy.activeDeadlineSeconds ({} s)",
            policy.active_deadline_seconds.unwrap_or_default()
        );
        b.actions
            .push(Action::StopAttempt(latest.number, message.clone()));
        b.fail("DeadlineExceeded", message);
        return;
    }
    if !run && let Some(seen) = &observed.kueue {
        kueue_waits(b, latest.number, &seen.verdict);
        return;
    }
    if !run {
        admitted(b, &format!("resuming attempt {}", latest.number));
        b.condition(
            condition::RUNNING,
            false,
            "Queued",
            "the trainer stopped after a checkpoint and waits for GPUs",
        );
        return;
    }
    if held {
        admitted(b, "");
    }
    if let Some(Verdict::Admitted { cluster_queue }) = observed.kueue.as_ref().map(|s| &s.verdict) {
        b.condition(
            condition::ADMITTED,
            true,
            "Admitted",
            format!("admitted by Kueue ClusterQueue {cluster_queue}"),
        );
    }
    if (held || kueue_mode(b)) && conditions::is_true(&b.status.conditions, condition::PREEMPTED) {
        b.condition(
            condition::PREEMPTED,
            false,
            "Resumed",
            format!(
                "attempt {} resumes from its latest checkpoint",
                latest.number
            ),
        );
    }
    if let (Some(deadline), Some(active)) = (policy.active_deadline_seconds, active_seconds(b)) {
        b.requeue_in(Duration::from_secs(deadline.saturating_sub(active) + 1));
    }
    let trained = observed.live.as_ref().is_some_and(|l| l.finished_training)
        || latest
            .pod
            .as_ref()
            .and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded");
    if trained {
        // The pod is done or exporting; the Job's Complete condition follows in a moment.
        b.phase(
            Phase::Exporting,
            "Exporting",
            "training finished; exporting the model",
        );
        b.condition(
            condition::RUNNING,
            true,
            "Exporting",
            "the trainer exports the model",
        );
        return;
    }
    let Some(pod) = pod else {
        starting(b, latest.number);
        return;
    };
    if let Some((reason, message)) = start_problem(pod, observed.now) {
        b.phase(Phase::Pending, &reason, message.clone());
        b.condition(condition::RUNNING, false, &reason, message);
        b.requeue_in(RECHECK);
        return;
    }
    let Some(since) = running_since(pod) else {
        // A problem may only show with time (a claim that never binds): look again.
        b.requeue_in(RECHECK);
        starting(b, latest.number);
        return;
    };
    if let Some(deadline) = policy.progress_deadline_seconds {
        let advanced = observed
            .live
            .as_ref()
            .and_then(|l| l.advanced_at)
            .map_or(since, |a| a.max(since));
        let quiet = seconds_between(advanced, observed.now);
        if quiet >= deadline {
            let message = format!(
                "no training step for {quiet} s (runPolicy.progressDeadlineSeconds {deadline}): \
                 stopping attempt {}",
                latest.number
            );
            b.actions
                .push(Action::StopAttempt(latest.number, message.clone()));
            b.condition(condition::STALLED, true, "NoProgress", message.clone());
            let failure = Failure {
                retriable: true,
                reason: "Stalled",
                message,
            };
            retry_or_fail(b, latest.number, &failure);
            return;
        } else {
            b.condition(
                condition::STALLED,
                false,
                "Progressing",
                "steps are being reported",
            );
            b.requeue_in(Duration::from_secs(deadline - quiet + 1));
        }
    }
    b.phase(
        Phase::Running,
        "Training",
        format!("attempt {} is training", latest.number),
    );
    b.condition(
        condition::RUNNING,
        true,
        "Training",
        format!("attempt {} runs", latest.number),
    );
}

/// Copies the trainer's latest report into the status.
fn report_progress(status: &mut FineTuneJobStatus, live: &Live) {
    if let Some(share) = (live.step * 100).checked_div(live.total_steps) {
        let percent = if status.phase == Some(Phase::Succeeded) {
            100
        } else {
            u32::try_from(share.min(100)).unwrap_or(100)
        };
        status.progress = Some(Progress {
            epoch: live.epoch.ceil().max(1.0) as u32,
            step: live.step,
            total_steps: live.total_steps,
            percent,
            samples_per_second: live.samples_per_sec,
            eta_seconds: live.eta_sec.map(|s| s.max(0.0).round() as u64),
        });
    }
    let metrics = status.metrics.get_or_insert_with(Metrics::default);
    if metrics.train_loss.is_none() || status.phase != Some(Phase::Succeeded) {
        metrics.train_loss = live.loss.or(metrics.train_loss);
    }
    if let Some(eval) = &live.eval {
        metrics.eval_loss = Some(eval.loss);
        metrics.eval_accuracy = Some(eval.accuracy);
        metrics.eval_f1 = Some(eval.macro_f1);
    }
    if let Some((step, time)) = live.checkpoint {
        status.last_checkpoint = Some(Checkpoint {
            step,
            time: Time(time),
        });
    }
}
