//! Kueue mode (`spec.queueName`): Kueue, not the Tenant's quota, admits the job. The operator
//! creates each attempt's Job suspended with Kueue's queue-name label and never unsuspends it:
//! Kueue makes a Workload for the Job, unsuspends the Job when its ClusterQueue admits the
//! Workload, and suspends it again when it evicts or preempts it (the trainer checkpoints and
//! exits, and resumes in the same attempt when Kueue admits it again). The operator reads the
//! Workload to tell the job's status, and holds or stops an attempt through the Workload's
//! `spec.active` (Kueue would unsuspend an admitted Job that anyone else suspends).
//!
//! The Workload is read with a list per reconcile of a queued job, not watched: the operator
//! runs where Kueue is not installed, and a job that names a queue there is told so.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

/// The label that hands a Job to a Kueue LocalQueue.
pub const QUEUE_NAME_LABEL: &str = "kueue.x-k8s.io/queue-name";

/// The label Kueue puts on a Job's Workload: the Job's UID.
const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";

/// The fields of a Kueue Workload (`kueue.x-k8s.io/v1beta2`) the operator reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Workload {
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// Whether Kueue may admit it.
    #[serde(default)]
    pub spec: WorkloadSpec,
    /// Kueue's decision.
    #[serde(default)]
    pub status: WorkloadStatus,
}

/// `spec` of a Workload.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkloadSpec {
    /// `false` keeps it from admission and evicts it; absent means `true`.
    pub active: Option<bool>,
}

/// `status` of a Workload.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkloadStatus {
    /// QuotaReserved, Admitted, Evicted, Preempted, Finished, …
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Where it was admitted.
    pub admission: Option<WorkloadAdmission>,
}

/// `status.admission` of a Workload.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadAdmission {
    /// The ClusterQueue that admitted it.
    #[serde(default)]
    pub cluster_queue: String,
}

impl kube::Resource for Workload {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Workload".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "kueue.x-k8s.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1beta2".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "workloads".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What Kueue says of the latest attempt's Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The API server serves no Workloads: Kueue is not installed.
    NotInstalled,
    /// Waiting for quota (or for Kueue to make the Workload): `reason` is the operator's
    /// (`KueuePending`, `KueueInadmissible`), `message` Kueue's words.
    Pending { reason: String, message: String },
    /// Admitted by ClusterQueue `cluster_queue`.
    Admitted { cluster_queue: String },
    /// Evicted (preempted, deactivated, …): the Job is suspended, or about to be.
    Evicted {
        /// Whether another workload preempted it.
        preempted: bool,
        /// Kueue's words, naming the preemptor when there is one.
        message: String,
    },
}

/// The latest attempt's Workload as the decision reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KueueView {
    /// The Workload's name, once Kueue made it.
    pub workload: Option<String>,
    /// Its `spec.active`.
    pub active: bool,
    /// What Kueue decided.
    pub verdict: Verdict,
}

/// Phase reasons of a job Kueue holds.
pub mod reason {
    /// Waiting for the ClusterQueue's quota.
    pub const PENDING: &str = "KueuePending";
    /// Kueue preempted the running attempt for another workload.
    pub const PREEMPTED: &str = "KueuePreempted";
    /// Kueue evicted the running attempt (deactivated, stopped queue, …).
    pub const EVICTED: &str = "KueueEvicted";
    /// The cluster serves no Kueue Workloads.
    pub const NOT_INSTALLED: &str = "KueueNotInstalled";
}

fn condition<'a>(workload: &'a Workload, type_: &str) -> Option<&'a Condition> {
    workload.status.conditions.iter().find(|c| c.type_ == type_)
}

fn is_true(workload: &Workload, type_: &str) -> bool {
    condition(workload, type_).is_some_and(|c| c.status == "True")
}

/// What `workload` (the latest attempt's, if Kueue made it yet) says.
pub fn view(workload: Option<&Workload>) -> KueueView {
    let Some(workload) = workload else {
        return KueueView {
            workload: None,
            active: true,
            verdict: Verdict::Pending {
                reason: reason::PENDING.to_owned(),
                message: "waiting for Kueue to make the Job's Workload".to_owned(),
            },
        };
    };
    let verdict =
        if let Some(evicted) = condition(workload, "Evicted").filter(|c| c.status == "True") {
            let preempted = condition(workload, "Preempted").filter(|c| c.status == "True");
            Verdict::Evicted {
                preempted: preempted.is_some(),
                message: preempted.unwrap_or(evicted).message.clone(),
            }
        } else if is_true(workload, "Admitted") || is_true(workload, "Finished") {
            Verdict::Admitted {
                cluster_queue: workload
                    .status
                    .admission
                    .as_ref()
                    .map(|a| a.cluster_queue.clone())
                    .unwrap_or_default(),
            }
        } else {
            let reserved = condition(workload, "QuotaReserved");
            let message = match reserved {
                Some(c) if c.status == "True" => {
                    format!("{}; waiting for its admission checks", c.message)
                }
                Some(c) if !c.message.is_empty() => c.message.clone(),
                _ => "waiting for Kueue to consider the Workload".to_owned(),
            };
            let reason = match reserved.map(|c| c.reason.as_str()) {
                Some("Inadmissible") => "KueueInadmissible",
                _ => reason::PENDING,
            };
            Verdict::Pending {
                reason: reason.to_owned(),
                message,
            }
        };
    KueueView {
        workload: Some(workload.name_any()),
        active: workload.spec.active.unwrap_or(true),
        verdict,
    }
}

/// What Kueue says of the Job whose UID is `job_uid` in `namespace`; with no Job yet, only
/// whether Kueue is installed (a cheap list of at most one Workload).
///
/// # Errors
/// The API server failed otherwise than by not serving Workloads.
pub async fn observe(
    client: Client,
    namespace: &str,
    job_uid: Option<&str>,
) -> kube::Result<KueueView> {
    let api: Api<Workload> = Api::namespaced(client, namespace);
    let params = match job_uid {
        Some(uid) => ListParams::default().labels(&format!("{JOB_UID_LABEL}={uid}")),
        None => ListParams::default().limit(1),
    };
    match api.list(&params).await {
        Ok(list) => Ok(view(job_uid.and(list.items.first()))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(KueueView {
            workload: None,
            active: true,
            verdict: Verdict::NotInstalled,
        }),
        Err(error) => Err(error),
    }
}

/// Lets Kueue admit (`true`) or keeps it from admitting and evicts (`false`) Workload `name`.
///
/// # Errors
/// The patch failed.
pub async fn activate(
    client: Client,
    namespace: &str,
    name: &str,
    active: bool,
) -> kube::Result<()> {
    let api: Api<Workload> = Api::namespaced(client, namespace);
    let patch = json!({ "spec": { "active": active } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(conditions: serde_json::Value, active: Option<bool>) -> Workload {
        serde_json::from_value(json!({
            "metadata": { "name": "job-a-1-4f2c1", "namespace": "ns" },
            "spec": { "active": active },
            "status": {
                "conditions": conditions,
                "admission": { "clusterQueue": "team-gpus", "podSetAssignments": [] },
            },
        }))
        .expect("a Workload")
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2027-01-15T08:00:00Z" })
    }

    #[test]
    fn no_workload_yet_is_pending() {
        let seen = view(None);
        assert_eq!(seen.workload, None);
        assert!(
            matches!(seen.verdict, Verdict::Pending { reason, .. } if reason == reason::PENDING)
        );
    }

    #[test]
    fn a_workload_without_quota_is_pending_with_kueues_words() {
        let message = "couldn't assign flavors to pod set main: insufficient unused quota for \
                       nvidia.com/gpu in flavor gpu, 1 more needed";
        let w = workload(
            json!([condition("QuotaReserved", "False", "Pending", message)]),
            None,
        );
        let seen = view(Some(&w));
        assert_eq!(seen.workload.as_deref(), Some("job-a-1-4f2c1"));
        assert!(seen.active);
        assert_eq!(
            seen.verdict,
            Verdict::Pending {
                reason: reason::PENDING.to_owned(),
                message: message.to_owned()
            }
        );
        let missing = workload(
            json!([condition(
                "QuotaReserved",
                "False",
                "Inadmissible",
                "LocalQueue gpus doesn't exist"
            )]),
            Some(true),
        );
        assert!(matches!(view(Some(&missing)).verdict,
            Verdict::Pending { reason, message } if reason == "KueueInadmissible" && message.contains("LocalQueue gpus")));
    }

    #[test]
    fn an_admitted_workload_names_its_cluster_queue() {
        let w = workload(
            json!([
                condition(
                    "QuotaReserved",
                    "True",
                    "QuotaReserved",
                    "Quota reserved in ClusterQueue team-gpus"
                ),
                condition("Admitted", "True", "Admitted", "The workload is admitted"),
                condition("Evicted", "False", "QuotaReserved", "Previously: preempted"),
            ]),
            None,
        );
        assert_eq!(
            view(Some(&w)).verdict,
            Verdict::Admitted {
                cluster_queue: "team-gpus".to_owned()
            }
        );
    }

    #[test]
    fn eviction_wins_over_admission_and_names_the_preemptor() {
        let w = workload(
            json!([
                condition("Admitted", "True", "Admitted", "The workload is admitted"),
                condition(
                    "Evicted",
                    "True",
                    "Preempted",
                    "Preempted to accommodate a workload"
                ),
                condition(
                    "Preempted",
                    "True",
                    "InCohortReclamation",
                    "Preempted to accommodate a workload (UID: 42) due to reclamation within the cohort"
                ),
            ]),
            None,
        );
        assert_eq!(
            view(Some(&w)).verdict,
            Verdict::Evicted {
                preempted: true,
                message: "Preempted to accommodate a workload (UID: 42) due to reclamation \
                          within the cohort"
                    .to_owned()
            }
        );
        let deactivated = workload(
            json!([condition(
                "Evicted",
                "True",
                "Deactivated",
                "The workload is deactivated"
            )]),
            Some(false),
        );
        let seen = view(Some(&deactivated));
        assert!(!seen.active);
        assert!(matches!(
            seen.verdict,
            Verdict::Evicted {
                preempted: false,
                ..
            }
        ));
    }
}
