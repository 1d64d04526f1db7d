//! Two watches over the workload's namespaces, stamped with the local clock: trainer pods (when
//! each ran and ended, and its GPUs) and FineTuneJobs (when each finished, and why one failed).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use attune_crds::FineTuneJob;
use attune_operator::names::JOB_LABEL;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::common::cluster::Cluster;
use crate::common::ending::{Ending, failures};
use crate::common::watch::{Change, Watched};
use crate::common::workload::TrainerPod;
use crate::metrics::{JobTimes, Span};

/// The label Kueue gives the pods of a Job it admitted.
const KUEUE_CLUSTER_QUEUE_LABEL: &str = "kueue.x-k8s.io/cluster-queue-name";

/// One trainer pod.
#[derive(Debug)]
struct PodTrack {
    pod: TrainerPod,
    gpus: u32,
    running: Option<Instant>,
    /// When it finished, or was gone.
    ended: Option<Instant>,
    /// Whether Kueue admitted it: Kueue labels the pods of a Job it admitted with their
    /// ClusterQueue.
    kueue: bool,
}

/// What the watches saw.
#[derive(Debug, Default)]
pub struct Runs {
    namespaces: HashSet<String>,
    /// By `namespace/pod`.
    pods: HashMap<String, PodTrack>,
    /// The pods listed since the pod watch began a list, while it lists.
    listed: Option<HashSet<String>>,
    jobs: HashMap<String, Ending>,
}

impl Runs {
    /// Whether `n` jobs are `Succeeded` or `Failed`.
    pub fn finished(&self, n: usize) -> bool {
        self.jobs.values().filter(|j| j.finished.is_some()).count() >= n
    }

    fn summary(&self) -> String {
        let running = self
            .pods
            .values()
            .filter(|p| p.running.is_some() && p.ended.is_none())
            .count();
        let finished = self.jobs.values().filter(|j| j.finished.is_some()).count();
        format!(
            "{} trainer pods seen, {running} running; {finished} jobs finished",
            self.pods.len()
        )
    }

    fn record_pod(&mut self, change: Change<Pod>, now: Instant) {
        let (pod, deleted) = match change {
            Change::Applied(pod) => (pod, false),
            Change::Deleted(pod) => (pod, true),
            Change::Relisting => {
                self.listed = Some(HashSet::new());
                return;
            }
            Change::Listed => {
                let listed = self.listed.take().unwrap_or_default();
                for (key, track) in &mut self.pods {
                    if !listed.contains(key) {
                        track.ended.get_or_insert(now);
                    }
                }
                return;
            }
        };
        let namespace = pod.namespace().unwrap_or_default();
        let Some(job) = pod.labels().get(JOB_LABEL).cloned() else {
            return;
        };
        if !self.namespaces.contains(&namespace) {
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let gpus = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get("nvidia.com/gpu"))
            .filter_map(|q| q.0.parse::<u32>().ok())
            .sum();
        let name = pod.name_any();
        let key = format!("{namespace}/{name}");
        if let Some(listed) = &mut self.listed {
            listed.insert(key.clone());
        }
        let track = self.pods.entry(key).or_insert_with(|| PodTrack {
            pod: TrainerPod {
                namespace,
                job,
                pod: name,
            },
            gpus,
            running: None,
            ended: None,
            kueue: false,
        });
        track.kueue |= pod.labels().contains_key(KUEUE_CLUSTER_QUEUE_LABEL);
        if phase == Some("Running") {
            track.running.get_or_insert(now);
        }
        if deleted || matches!(phase, Some("Succeeded" | "Failed")) {
            track.ended.get_or_insert(now);
        }
    }

    fn record_job(&mut self, change: Change<FineTuneJob>, now: Instant) {
        let Change::Applied(job) = change else { return };
        if !self
            .namespaces
            .contains(&job.namespace().unwrap_or_default())
        {
            return;
        }
        let Some(status) = &job.status else { return };
        self.jobs
            .entry(job.name_any())
            .or_default()
            .record(status, now);
    }
}

/// Counts of the trainer pods that ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodsRan {
    pub pods: usize,
    /// The jobs they belong to.
    pub jobs: usize,
    /// Those Kueue admitted.
    pub kueue: usize,
}

/// The watches.
pub struct Observer {
    runs: Watched<Runs>,
}

impl Observer {
    /// Starts watching the trainer pods and FineTuneJobs of `namespaces`.
    pub fn start(cluster: &Cluster, namespaces: &[String]) -> Self {
        let runs = Watched::new(Runs {
            namespaces: namespaces.iter().cloned().collect(),
            ..Runs::default()
        });
        let pods: Api<Pod> = Api::all(cluster.client.clone());
        let trainers = watcher::Config::default().labels(JOB_LABEL);
        runs.watch(watcher(pods, trainers), Runs::record_pod);
        let jobs: Api<FineTuneJob> = Api::all(cluster.client.clone());
        runs.watch(watcher(jobs, watcher::Config::default()), Runs::record_job);
        Self { runs }
    }

    /// Waits until `n` jobs finished; fails when nothing changed for `stall`.
    pub async fn wait_finished(&self, n: usize, stall: Duration) -> anyhow::Result<()> {
        self.runs
            .wait(
                "every job Succeeded or Failed",
                stall,
                |runs| runs.finished(n),
                Runs::summary,
            )
            .await
    }

    /// The pods that have run for `run_for` and did not end yet.
    pub fn due(&self, run_for: Duration) -> Vec<TrainerPod> {
        self.runs.read(|runs| {
            runs.pods
                .values()
                .filter(|p| p.ended.is_none() && p.running.is_some_and(|r| r.elapsed() >= run_for))
                .map(|p| p.pod.clone())
                .collect()
        })
    }

    /// The pods that ran, and the times of each job in `created` (when its create returned),
    /// in seconds since `start`, with the tenant `tenants` gives each job; pods still running
    /// end at the last job's end.
    pub fn times(
        &self,
        start: Instant,
        created: &HashMap<String, Instant>,
        tenants: &HashMap<String, usize>,
    ) -> (Vec<Span>, Vec<JobTimes>) {
        let tenant_of = |job: &str| tenants.get(job).copied().unwrap_or_default();
        let at = |i: Instant| i.saturating_duration_since(start).as_secs_f64();
        self.runs.read(|runs| {
            let end = runs
                .jobs
                .values()
                .filter_map(|j| j.finished)
                .max()
                .unwrap_or(start);
            let spans = runs
                .pods
                .values()
                .filter_map(|p| {
                    Some(Span {
                        tenant: tenant_of(&p.pod.job),
                        gpus: p.gpus,
                        start: at(p.running?),
                        end: at(p.ended.unwrap_or(end)),
                    })
                })
                .collect();
            let mut first_run: HashMap<&str, Instant> = HashMap::new();
            for p in runs.pods.values() {
                let Some(running) = p.running else { continue };
                let first = first_run.entry(p.pod.job.as_str()).or_insert(running);
                *first = (*first).min(running);
            }
            let jobs = created
                .iter()
                .map(|(name, created)| JobTimes {
                    tenant: tenant_of(name),
                    created: at(*created),
                    started: first_run.get(name.as_str()).map(|r| at(*r)),
                    finished: runs.jobs.get(name).and_then(|j| j.finished).map(at),
                })
                .collect();
            (spans, jobs)
        })
    }

    /// The trainer pods that ran, the jobs they ran for (fewer: preempted and run again), and
    /// how many of the pods Kueue admitted.
    pub fn pods_ran(&self) -> PodsRan {
        self.runs.read(|runs| {
            let ran: Vec<&PodTrack> = runs.pods.values().filter(|p| p.running.is_some()).collect();
            let jobs: HashSet<&str> = ran.iter().map(|p| p.pod.job.as_str()).collect();
            PodsRan {
                pods: ran.len(),
                jobs: jobs.len(),
                kueue: ran.iter().filter(|p| p.kueue).count(),
            }
        })
    }

    /// The jobs that failed, as `job: reason: message`.
    pub fn failures(&self) -> Vec<String> {
        self.runs.read(|runs| failures(&runs.jobs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": "ns", "labels": { JOB_LABEL: name } },
            "spec": { "containers": [{ "name": "trainer",
                "resources": { "limits": { "nvidia.com/gpu": "2" } } }] },
            "status": { "phase": phase },
        }))
        .expect("a pod")
    }

    #[test]
    fn a_pod_gone_while_the_watch_had_expired_ends_when_the_relist_misses_it() {
        let mut runs = Runs {
            namespaces: HashSet::from(["ns".to_owned()]),
            ..Runs::default()
        };
        let start = Instant::now();
        runs.record_pod(Change::Applied(pod("a", "Running")), start);
        runs.record_pod(Change::Applied(pod("b", "Running")), start);
        let later = start + Duration::from_secs(5);
        runs.record_pod(Change::Relisting, later);
        runs.record_pod(Change::Applied(pod("b", "Running")), later);
        runs.record_pod(Change::Listed, later);
        assert_eq!(runs.pods["ns/a"].ended, Some(later));
        assert_eq!(runs.pods["ns/b"].ended, None);
        assert_eq!(runs.pods["ns/b"].gpus, 2);
        assert_eq!(runs.pods["ns/b"].running, Some(start));
    }
}
