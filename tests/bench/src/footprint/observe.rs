//! Three watches on the benchmark's namespace, each event stamped with the local clock when it
//! arrives: batch Jobs (when each job's Job first appeared), trainer pods (when each first ran)
//! and FineTuneJobs (every change of phase or reason, i.e. each transition).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attune_crds::FineTuneJob;
use attune_operator::names::JOB_LABEL;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::common::cluster::Cluster;
use crate::common::ending::{Ending, failures};
use crate::common::watch::{Change, Watched};
use crate::common::workload::TrainerPod;

/// One FineTuneJob as its watch saw it.
#[derive(Debug, Default)]
struct Track {
    /// The latest (phase, reason).
    state: Option<(String, String)>,
    transitions: u64,
    training: Option<Instant>,
    ending: Ending,
}

/// Everything the watches saw, by FineTuneJob name.
#[derive(Debug)]
pub struct Seen {
    jobs: HashMap<String, Instant>,
    pods: HashMap<String, (String, Option<Instant>)>,
    tracks: HashMap<String, Track>,
}

impl Seen {
    /// Whether `n` trainer pods run and `n` jobs reached `Training`.
    pub fn running(&self, n: usize) -> bool {
        self.pods.values().filter(|(_, run)| run.is_some()).count() >= n
            && self
                .tracks
                .values()
                .filter(|t| t.training.is_some())
                .count()
                >= n
    }

    /// Whether `n` jobs are `Succeeded` or `Failed`.
    pub fn finished(&self, n: usize) -> bool {
        self.tracks
            .values()
            .filter(|t| t.ending.finished.is_some())
            .count()
            >= n
    }

    fn summary(&self) -> String {
        let mut phases: HashMap<&(String, String), usize> = HashMap::new();
        for state in self.tracks.values().filter_map(|t| t.state.as_ref()) {
            *phases.entry(state).or_default() += 1;
        }
        let running = self.pods.values().filter(|(_, run)| run.is_some()).count();
        format!(
            "{} Jobs, {} pods ({running} Running), jobs by (phase, reason): {phases:?}",
            self.jobs.len(),
            self.pods.len()
        )
    }
}

/// The watches.
pub struct Observer {
    namespace: String,
    seen: Watched<Seen>,
}

/// The FineTuneJob a child belongs to: its `attune.dev/job` label (the job's name, as the
/// benchmark's names are short).
fn owner(object: &impl ResourceExt) -> Option<String> {
    object.labels().get(JOB_LABEL).cloned()
}

impl Observer {
    /// Starts watching `namespace`.
    pub fn start(cluster: &Cluster, namespace: &str) -> Self {
        let seen = Watched::new(Seen {
            jobs: HashMap::new(),
            pods: HashMap::new(),
            tracks: HashMap::new(),
        });
        let children = watcher::Config::default().labels(JOB_LABEL);
        let client = cluster.client.clone();
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        seen.watch(watcher(jobs, children.clone()), |seen, change, now| {
            if let Change::Applied(job) = change
                && let Some(name) = owner(&job)
            {
                seen.jobs.entry(name).or_insert(now);
            }
        });
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        seen.watch(watcher(pods, children), |seen, change, now| {
            let Change::Applied(pod) = change else { return };
            let Some(name) = owner(&pod) else { return };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let entry = seen.pods.entry(name).or_insert((pod.name_any(), None));
            entry.0 = pod.name_any();
            if running && entry.1.is_none() {
                entry.1 = Some(now);
            }
        });
        let fine_tune_jobs: Api<FineTuneJob> = Api::namespaced(client, namespace);
        let all = watcher::Config::default();
        seen.watch(watcher(fine_tune_jobs, all), |seen, change, now| {
            let Change::Applied(job) = change else { return };
            let Some(status) = &job.status else { return };
            let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
            let reason = status.reason.clone().unwrap_or_default();
            let track = seen.tracks.entry(job.name_any()).or_default();
            let state = Some((phase, reason));
            if track.state != state {
                track.transitions += 1;
                track.state = state;
            }
            if track.state.as_ref().is_some_and(|(_, r)| r == "Training") {
                track.training.get_or_insert(now);
            }
            track.ending.record(status, now);
        });
        Self {
            namespace: namespace.to_owned(),
            seen,
        }
    }

    /// Waits until `done` holds; fails when nothing changed for `stall`.
    pub async fn wait(
        &self,
        what: &str,
        stall: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        self.seen.wait(what, stall, done, Seen::summary).await
    }

    /// Transitions seen so far, over all jobs.
    pub fn transitions(&self) -> u64 {
        self.seen
            .read(|seen| seen.tracks.values().map(|t| t.transitions).sum())
    }

    /// For each job in `created` (name → when its create returned), how long until its Job
    /// appeared.
    pub fn job_latencies(&self, created: &HashMap<String, Instant>) -> Vec<Duration> {
        self.seen.read(|seen| {
            created
                .iter()
                .filter_map(|(name, at)| Some(seen.jobs.get(name)?.saturating_duration_since(*at)))
                .collect()
        })
    }

    /// When the last Job appeared, from `start`.
    pub fn last_job_after(&self, start: Instant) -> Duration {
        since(
            start,
            self.seen.read(|seen| seen.jobs.values().max().copied()),
        )
    }

    /// When the last trainer pod started running, from `start`.
    pub fn all_pods_running_after(&self, start: Instant) -> Duration {
        since(
            start,
            self.seen
                .read(|seen| seen.pods.values().filter_map(|(_, run)| *run).max()),
        )
    }

    /// The jobs that failed, as `job: reason: message`.
    pub fn failures(&self) -> Vec<String> {
        self.seen
            .read(|seen| failures(seen.tracks.iter().map(|(job, t)| (job, &t.ending))))
    }

    /// The trainer pods.
    pub fn trainer_pods(&self) -> Vec<TrainerPod> {
        self.seen.read(|seen| {
            seen.pods
                .iter()
                .map(|(job, (pod, _))| TrainerPod {
                    namespace: self.namespace.clone(),
                    job: job.clone(),
                    pod: pod.clone(),
                })
                .collect()
        })
    }
}

fn since(start: Instant, last: Option<Instant>) -> Duration {
    last.map_or(Duration::ZERO, |last| last.saturating_duration_since(start))
}
