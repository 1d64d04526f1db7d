//! What every reconcile and request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use attune_crds::{FineTuneJob, FineTuneJobStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, Recorder};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Semaphore, mpsc};

use crate::cache::Touches;
use crate::config::OperatorConfig;
use crate::finetunejob::references::Found;
use crate::metrics::{Metrics, PhaseLabels};
use crate::progress::LiveStore;
use crate::tenancy::Ledger;
use crate::token::TokenKey;
use crate::watches::Watches;

/// Event writes in flight at once: a quarter of the default reconcile concurrency.
const EVENT_WRITES: usize = 4;

/// A FineTuneJob as the controller watches it: one that does not deserialize is kept as an
/// error, so it cannot stop the watch.
pub type GuardedJob = DeserializeGuard<FineTuneJob>;

/// Shared state of the operator process.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The configuration file.
    pub config: OperatorConfig,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Publishes Events (through [`Context::publish`]).
    recorder: Recorder,
    /// Event writes allowed in flight at once (see [`Context::publish`]).
    event_writes: Arc<Semaphore>,
    /// Latest progress per job.
    pub live: LiveStore,
    /// Signs and checks progress tokens.
    pub key: TokenKey,
    /// The controller's watch caches, once this replica leads.
    pub watches: OnceLock<Watches>,
    /// Asks the controller to reconcile a job (a progress report arrived, admission changed).
    pub wake: mpsc::UnboundedSender<ObjectRef<GuardedJob>>,
    /// When this replica last marked each CachedModel used.
    pub touches: Touches,
    /// Admission under Tenants' quotas: what it decided for each job.
    pub tenancy: Ledger,
    /// References of jobs found lately.
    pub references: Found,
    /// Phase of each job at its latest reconcile, for the phase gauge.
    phases: Mutex<HashMap<String, String>>,
    /// When each job's status was last written, and what was written: for throttling step
    /// reports, and because the watch cache shows a write only a moment later.
    status_writes: Mutex<HashMap<String, (Instant, Option<FineTuneJobStatus>)>>,
    /// Reconciles of each object that failed in a row, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The latest attempt this replica created for each job, and when: the watch cache shows
    /// a new Job a moment later, and a reconcile in between must not create it again.
    created: Mutex<HashMap<String, (u32, Instant)>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client and the recorder have no Debug; the rest says enough.
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context; the returned receiver feeds the controller's extra reconcile requests.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        recorder: Recorder,
        key: TokenKey,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<ObjectRef<GuardedJob>>) {
        let (wake, woken) = mpsc::unbounded_channel();
        let tenancy = Ledger::new(config.tenancy.clone());
        let touches = Touches::new(&config.model_cache.retention);
        let context = Self {
            client,
            config,
            metrics: Arc::new(Metrics::default()),
            recorder,
            event_writes: Arc::new(Semaphore::new(EVENT_WRITES)),
            live: LiveStore::default(),
            key,
            watches: OnceLock::new(),
            wake,
            tenancy,
            references: Found::default(),
            touches,
            phases: Mutex::default(),
            status_writes: Mutex::default(),
            failures: Mutex::default(),
            created: Mutex::default(),
        };
        (Arc::new(context), woken)
    }

    /// Records a job's phase (`None`: the job is gone) and updates the gauge.
    pub fn record_phase(&self, uid: &str, phase: Option<String>) {
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = match &phase {
            Some(phase) => phases.insert(uid.to_owned(), phase.clone()),
            None => phases.remove(uid),
        };
        if previous == phase {
            return;
        }
        if let Some(old) = previous {
            self.metrics
                .jobs
                .get_or_create(&PhaseLabels { phase: old })
                .dec();
        }
        if let Some(new) = phase {
            self.metrics
                .jobs
                .get_or_create(&PhaseLabels { phase: new })
                .inc();
        }
    }

    /// How long ago the job's status was last written by this replica.
    pub fn since_status_write(&self, uid: &str) -> Option<std::time::Duration> {
        self.status_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .map(|(at, _)| at.elapsed())
    }

    /// Notes a status write of the job.
    pub fn status_written(&self, uid: &str, status: &FineTuneJobStatus) {
        let mut writes = self
            .status_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Statuses older than the cache's lag are no use: a thousand jobs' would be megabytes.
        for (at, written) in writes.values_mut() {
            if at.elapsed() >= CREATE_EXPECTED_WITHIN {
                *written = None;
            }
        }
        writes.insert(uid.to_owned(), (Instant::now(), Some(status.clone())));
    }

    /// The status this replica wrote for the job in the last [`CREATE_EXPECTED_WITHIN`]: newer
    /// than the watch cache's while that has not caught up, so a reconcile in between neither
    /// writes it again nor announces its phase twice.
    pub fn fresh_status(&self, uid: &str) -> Option<FineTuneJobStatus> {
        self.status_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .filter(|(at, _)| at.elapsed() < CREATE_EXPECTED_WITHIN)
            .and_then(|(_, status)| status.clone())
    }

    /// Notes that attempt `number` of job `uid` was just created.
    pub fn attempt_created(&self, uid: &str, number: u32) {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(uid.to_owned(), (number, Instant::now()));
    }

    /// Whether this replica created attempt `number` of job `uid` in the last
    /// [`CREATE_EXPECTED_WITHIN`] (after that, a Job still missing from the cache is missing).
    pub fn attempt_created_recently(&self, uid: &str, number: u32) -> bool {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .is_some_and(|(n, at)| *n == number && at.elapsed() < CREATE_EXPECTED_WITHIN)
    }

    /// Counts a failed reconcile of `key` and returns how long to wait before the next: 5 s,
    /// doubling with each failure in a row, at most 5 minutes.
    pub fn backoff(&self, key: &str) -> std::time::Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_after(*count)
    }

    /// Resets the backoff of `key` after a reconcile that succeeded.
    pub fn recovered(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Publishes an Event about each of `references` in the background: an Event is a write of
    /// its own, and a reconcile that waited for it would hold a worker while new jobs queue
    /// behind it. At most [`EVENT_WRITES`] are in flight, so that a burst of phase changes does
    /// not crowd the API server's answers to the writes that start jobs. A failure is logged;
    /// Events are best-effort.
    pub fn publish(&self, event: Event, references: Vec<ObjectReference>) {
        let recorder = self.recorder.clone();
        let writes = Arc::clone(&self.event_writes);
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            for reference in references {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, reason = %event.reason, object = ?reference.name, "cannot publish an Event");
                }
            }
        });
    }

    /// Forgets a job's bookkeeping (it is gone).
    pub fn forget(&self, uid: &str) {
        self.record_phase(uid, None);
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uid);
        self.status_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uid);
    }
}

/// How long a write of this replica (a created Job, a status) may take to show in the watch
/// cache.
const CREATE_EXPECTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The wait after `failures` failed reconciles in a row: 5 s, doubling, at most 5 minutes.
fn backoff_after(failures: u32) -> std::time::Duration {
    let seconds = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    std::time::Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::backoff_after;

    #[test]
    fn failures_back_off_exponentially_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
