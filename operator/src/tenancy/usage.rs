//! The GPUs each FineTuneJob holds, read from what exists in the cluster — its attempts' batch
//! Jobs and their pods — never from memory, so a restarted operator counts what an earlier one
//! admitted. A job holds GPUs from the moment its Job exists unsuspended until its last pod is
//! gone: a terminating pod still holds them (its trainer may be writing a checkpoint).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::ResourceExt;

/// What one FineTuneJob's children hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The namespace.
    pub namespace: String,
    /// The FineTuneJob's name.
    pub name: String,
    /// GPUs held.
    pub gpus: u32,
    /// Whether an attempt runs (its Job neither suspended nor finished): it will hold GPUs
    /// until it ends or is stopped. Otherwise only stopping pods hold them.
    pub active: bool,
    /// When the running attempt started (or was resumed).
    pub since: Timestamp,
}

/// Resources of a pod spec that are neither CPU, memory, storage nor huge pages: the GPUs
/// (whatever their extended resource's name), limits and requests being equal for those.
pub fn pod_gpus(spec: &PodSpec) -> u32 {
    spec.containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref())
        .flatten()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "cpu" | "memory" | "ephemeral-storage" | "pods"
            ) && !name.starts_with("hugepages-")
        })
        .filter_map(|(_, q)| q.0.parse::<u32>().ok())
        .sum()
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.status == "True"
                    && matches!(
                        c.type_.as_str(),
                        "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
                    )
            })
        })
}

/// The UID of the FineTuneJob controlling `job`, if one does.
fn owner_uid(job: &Job) -> Option<&str> {
    job.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "FineTuneJob")
        .map(|o| o.uid.as_str())
}

/// What each FineTuneJob (by UID) holds, from its trainer Jobs and their pods.
pub fn holds(jobs: &[Arc<Job>], pods: &[Arc<Pod>]) -> HashMap<String, Hold> {
    let mut pods_of: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in pods {
        if terminal(pod) {
            continue;
        }
        for owner in pod.owner_references() {
            if owner.controller == Some(true) && owner.kind == "Job" {
                pods_of.entry(owner.uid.as_str()).or_default().push(pod);
            }
        }
    }
    let mut holds: HashMap<String, Hold> = HashMap::new();
    for job in jobs {
        let Some(owner) = owner_uid(job) else {
            continue;
        };
        let live: u32 = job
            .uid()
            .and_then(|uid| pods_of.get(uid.as_str()))
            .map(|pods| {
                pods.iter()
                    .filter_map(|p| p.spec.as_ref())
                    .map(pod_gpus)
                    .sum()
            })
            .unwrap_or(0);
        let has_pods = job
            .uid()
            .is_some_and(|uid| pods_of.contains_key(uid.as_str()));
        let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let active = !suspended && !finished(job);
        if !active && !has_pods {
            continue;
        }
        let template = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map_or(0, pod_gpus);
        let gpus = if active { live.max(template) } else { live };
        let since = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(job.metadata.creation_timestamp.as_ref())
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let name = job
            .labels()
            .get(crate::names::JOB_LABEL)
            .cloned()
            .unwrap_or_else(|| job.name_any());
        let entry = holds.entry(owner.to_owned()).or_insert_with(|| Hold {
            namespace: job.namespace().unwrap_or_default(),
            name,
            gpus: 0,
            active: false,
            since,
        });
        entry.gpus += gpus;
        if active {
            entry.since = if entry.active {
                entry.since.max(since)
            } else {
                since
            };
            entry.active = true;
        }
    }
    holds
}

/// PriorityClass values by name, and the cluster's default for pods that name none.
#[derive(Clone, Debug, Default)]
pub struct Priorities {
    values: HashMap<String, i32>,
    default: i32,
}

impl Priorities {
    /// From every PriorityClass (`globalDefault` ones set the default; the highest wins, as
    /// the API server does).
    pub fn new<'a>(classes: impl IntoIterator<Item = &'a PriorityClass>) -> Self {
        let mut priorities = Self::default();
        let mut default: Option<i32> = None;
        for class in classes {
            let value = class.value.unwrap_or(0);
            priorities.values.insert(class.name_any(), value);
            if class.global_default == Some(true) {
                default = Some(default.map_or(value, |d| d.max(value)));
            }
        }
        priorities.default = default.unwrap_or(0);
        priorities
    }

    /// The priority of a pod naming `class`.
    pub fn of(&self, class: Option<&str>) -> i32 {
        class.map_or(self.default, |c| {
            self.values.get(c).copied().unwrap_or(self.default)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(
        name: &str,
        uid: &str,
        suspend: bool,
        conditions: serde_json::Value,
        gpus: u32,
    ) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": format!("{name}-1"), "namespace": "ns", "uid": uid,
                    "labels": { "attune.dev/job": name },
                    "creationTimestamp": "2027-01-01T00:00:00Z",
                    "ownerReferences": [{ "apiVersion": "attune.dev/v1alpha1", "kind": "FineTuneJob", "name": name, "uid": format!("ftj-{name}"), "controller": true }] },
                "spec": { "suspend": suspend, "template": { "spec": { "containers": [{ "name": "trainer",
                    "resources": { "limits": { "nvidia.com/gpu": gpus.to_string(), "cpu": "4" } } }] } } },
                "status": { "conditions": conditions, "startTime": "2027-01-01T00:01:00Z" },
            }))
            .expect("a Job"),
        )
    }

    fn pod(job_uid: &str, phase: &str, deleting: bool, gpus: u32) -> Arc<Pod> {
        let mut pod = json!({
            "metadata": { "name": "p", "namespace": "ns",
                "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job_uid, "controller": true }] },
            "spec": { "containers": [{ "name": "trainer", "resources": { "limits": { "amd.com/gpu": gpus.to_string(), "memory": "1Gi", "hugepages-2Mi": "1Gi" } } }] },
            "status": { "phase": phase },
        });
        if deleting {
            pod["metadata"]["deletionTimestamp"] = "2027-01-01T00:05:00Z".into();
        }
        Arc::new(serde_json::from_value(pod).expect("a Pod"))
    }

    #[test]
    fn gpus_are_held_from_the_job_until_the_last_pod_is_gone() {
        let done = json!([{ "type": "Complete", "status": "True" }]);
        let jobs = [
            job("running", "j1", false, json!([]), 2),
            job("stopping", "j2", true, json!([]), 4),
            job("stopped", "j3", true, json!([]), 4),
            job("finished", "j4", false, done, 1),
        ];
        let pods = [
            pod("j1", "Running", false, 2),
            pod("j2", "Running", true, 4),
            pod("j3", "Succeeded", false, 4),
            pod("j4", "Succeeded", false, 1),
        ];
        let holds = holds(&jobs, &pods);
        let running = &holds["ftj-running"];
        assert_eq!(
            (running.gpus, running.active, running.name.as_str()),
            (2, true, "running")
        );
        assert_eq!(running.since, "2027-01-01T00:01:00Z".parse().expect("time"));
        let stopping = &holds["ftj-stopping"];
        assert_eq!((stopping.gpus, stopping.active), (4, false));
        assert!(!holds.contains_key("ftj-stopped"), "{holds:?}");
        assert!(!holds.contains_key("ftj-finished"), "{holds:?}");
    }

    #[test]
    fn an_unsuspended_job_holds_its_gpus_before_its_pod_exists() {
        let holds = holds(&[job("new", "j1", false, json!([]), 3)], &[]);
        assert_eq!(holds["ftj-new"].gpus, 3);
        assert!(holds["ftj-new"].active);
    }

    #[test]
    fn priorities_come_from_the_classes_and_the_global_default() {
        let class = |name: &str, value: i32, default: bool| -> PriorityClass {
            serde_json::from_value(
                json!({ "metadata": { "name": name }, "value": value, "globalDefault": default }),
            )
            .expect("class")
        };
        let classes = [class("high", 1000, false), class("batch", 10, true)];
        let priorities = Priorities::new(&classes);
        assert_eq!(priorities.of(Some("high")), 1000);
        assert_eq!(priorities.of(None), 10);
        assert_eq!(Priorities::new(&[]).of(None), 0);
    }
}
