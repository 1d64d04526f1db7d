//! `spec.runPolicy`: retries, deadlines, clean-up and suspension.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the job is run and retried. Deadlines and `suspend` may change while the job runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RunPolicy {
    /// Failed attempts retried before the job fails; each retry resumes from the last checkpoint.
    #[schemars(range(max = 100))]
    pub backoff_limit: u32,
    /// Wall-clock limit of the whole job in seconds from its start, time suspended or queued
    /// again (after a preemption, or a retry waiting for quota) excluded
    /// (`status.pausedSeconds`); the job fails past it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// The job fails when the trainer reports no progress for this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<u64>,
    /// Seconds after which a finished job's pods and scratch data are deleted (the published
    /// model and the `TrainedModel` stay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// True holds the job: it is not admitted, or its pod is stopped after a checkpoint and
    /// its GPUs return to the quota. False lets it run (again).
    pub suspend: bool,
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            backoff_limit: 3,
            active_deadline_seconds: None,
            progress_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            suspend: false,
        }
    }
}
