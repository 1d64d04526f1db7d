//! How a FineTuneJob ended, as a watch on FineTuneJobs saw it: when it reached `Succeeded` or
//! `Failed`, and a failed one's reason, for the list of failures under a table.

use std::time::Instant;

use attune_crds::FineTuneJobStatus;

/// The end of one job.
#[derive(Debug, Default)]
pub struct Ending {
    /// When it reached `Succeeded` or `Failed`.
    pub finished: Option<Instant>,
    /// `reason: message` of a `Failed` job.
    failure: Option<String>,
}

impl Ending {
    /// Takes in the job's `status`, seen at `now`.
    pub fn record(&mut self, status: &FineTuneJobStatus, now: Instant) {
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            self.finished.get_or_insert(now);
        }
        if phase == "Failed" {
            let reason = status.reason.as_deref().unwrap_or_default();
            let message = status.message.as_deref().unwrap_or_default();
            self.failure = Some(format!("{reason}: {message}"));
        }
    }
}

/// The failed jobs of `endings` (by job name), as `job: reason: message`, sorted.
pub fn failures<'a>(endings: impl IntoIterator<Item = (&'a String, &'a Ending)>) -> Vec<String> {
    let mut failures: Vec<String> = endings
        .into_iter()
        .filter_map(|(job, e)| Some(format!("{job}: {}", e.failure.as_ref()?)))
        .collect();
    failures.sort();
    failures
}
