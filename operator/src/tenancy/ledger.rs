//! What admission remembers between rounds, and what the FineTuneJob reconciler asks it.
//!
//! Only the admission loop admits (one round at a time), so concurrent reconciles never admit
//! twice. An admission is a *reservation* here until the job's trainer Job is seen running in
//! the cluster; from then on the Job itself holds the GPUs (see [`super::usage`]), so a
//! restarted operator, which forgets reservations, still counts every started job. A job
//! admitted but not started when the operator restarts simply queues again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use attune_crds::{FineTuneJob, Phase};
use jiff::Timestamp;
use kube::ResourceExt;
use tokio::sync::watch;

use super::admission::{HoldState, Holding, Outcome, Policy, Snapshot, Waiting, admit};
use super::config::TenancyConfig;
use super::ownership::{Ownership, Placement};
use super::quota::{JobId, Quota};
use super::reasons::Reason;
use super::usage::{Hold, Priorities};
use super::verdict::Admission;
use crate::conditions;
use crate::finetunejob::decide::condition;

/// How often a waiting job's status is rewritten at most when only its place or the numbers
/// in its message change (a change of reason is written at once).
const REFRESH_SECONDS: i64 = 10;

/// GPUs reserved for an admitted job until its Job is seen running.
#[derive(Clone, Debug)]
struct Reservation {
    tenant: String,
    gpus: u32,
    borrowed: u32,
    at: Timestamp,
}

/// A running job told to stop.
#[derive(Clone, Debug)]
struct Stop {
    tenant: String,
    by: JobId,
    message: String,
}

/// A waiting job's place, as last decided.
#[derive(Clone, Debug)]
struct Place {
    tenant: String,
    reason: &'static str,
    message: String,
    position: u32,
    /// The message and position the job's reconcile was last woken for, and when.
    announced: (String, u32, Timestamp),
}

#[derive(Debug, Default)]
struct State {
    ownership: Ownership,
    rounds: u64,
    reservations: HashMap<String, Reservation>,
    stopping: HashMap<String, Stop>,
    preempted_by: HashMap<String, JobId>,
    places: HashMap<String, Place>,
    placements: HashMap<String, Placement>,
}

/// The admission ledger (one per operator process).
#[derive(Debug)]
pub struct Ledger {
    config: TenancyConfig,
    state: Mutex<State>,
    ready: watch::Sender<bool>,
}

/// What the cluster holds, for one round.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The time of the round.
    pub now: Timestamp,
    /// The watched FineTuneJobs.
    pub jobs: Vec<&'a FineTuneJob>,
    /// What their children hold (by the FineTuneJob's UID), in watched namespaces.
    pub holds: HashMap<String, Hold>,
    /// PriorityClass values.
    pub priorities: &'a Priorities,
    /// Who owns which namespace.
    pub ownership: Ownership,
    /// The Tenants this installation manages.
    pub quotas: Vec<Quota>,
}

/// What a round decided, for the loop to act on.
#[derive(Debug)]
pub struct Decided {
    /// The admission outcome.
    pub outcome: Outcome,
    /// Jobs whose reconcile should run now (their admission state changed).
    pub wake: Vec<JobId>,
}

fn id(job: &FineTuneJob) -> JobId {
    JobId {
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
    }
}

fn finished(job: &FineTuneJob) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| matches!(p, Phase::Succeeded | Phase::Failed))
}

/// Whether the job asks for admission: its reconciler put it in phase Queued, and nothing
/// holds it back.
fn asks(job: &FineTuneJob) -> bool {
    job.status.as_ref().and_then(|s| s.phase) == Some(Phase::Queued)
        && !job.spec.run_policy.suspend
        && job.metadata.deletion_timestamp.is_none()
}

impl Ledger {
    /// An empty ledger following `config`.
    pub fn new(config: TenancyConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
            ready: watch::channel(false).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the first round has run (the caches are filled), so that no job is judged
    /// before admission knows what runs.
    pub async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The admission state of `job`.
    pub fn admission(&self, job: &FineTuneJob) -> Admission {
        if job.spec.queue_name.is_some() {
            return Admission::Unmetered(
                "spec.queueName names a Kueue LocalQueue: Kueue, not the Tenant's quota, admits \
                 this job"
                    .to_owned(),
            );
        }
        let state = self.state();
        let namespace = job.namespace().unwrap_or_default();
        let uid = job.uid().unwrap_or_default();
        match state
            .ownership
            .place(&namespace, &self.config.unowned_namespaces)
        {
            Placement::Unmetered(why) => Admission::Unmetered(why),
            Placement::Refused(why) => Admission::Refused(why),
            Placement::Blocked(reason, message) => Admission::Queued {
                tenant: None,
                reason: reason.as_str().to_owned(),
                message,
                position: None,
            },
            Placement::Tenant(tenant) => {
                if let Some(stop) = state.stopping.get(&uid) {
                    return Admission::Preempted {
                        tenant: stop.tenant.clone(),
                        by: stop.by.to_string(),
                        message: stop.message.clone(),
                    };
                }
                if let Some(r) = state.reservations.get(&uid) {
                    return Admission::Granted {
                        tenant: r.tenant.clone(),
                        gpus: r.gpus,
                        borrowed: r.borrowed,
                    };
                }
                match state.places.get(&uid) {
                    Some(place) => Admission::Queued {
                        tenant: Some(place.tenant.clone()),
                        reason: place.reason.to_owned(),
                        message: place.message.clone(),
                        position: Some(place.position),
                    },
                    None => Admission::Queued {
                        message: format!("waiting for the next admission round of tenant {tenant}"),
                        tenant: Some(tenant),
                        reason: Reason::Queued.as_str().to_owned(),
                        position: None,
                    },
                }
            }
        }
    }

    /// The rules of a round.
    fn policy(&self) -> Policy {
        Policy {
            preemption: self.config.preemption.enabled,
            minimum_runtime_seconds: self.config.preemption.minimum_runtime_seconds,
            reserve_after_seconds: self.config.reserve_after_seconds,
        }
    }

    /// Runs one admission round over `inputs` and remembers its decisions.
    pub fn round(&self, inputs: Inputs<'_>) -> Decided {
        let mut guard = self.state();
        let state = &mut *guard;
        state.ownership = inputs.ownership;
        let mut wake: Vec<JobId> = Vec::new();
        let mut holds = inputs.holds;
        let mut snapshot = Snapshot {
            now: inputs.now,
            policy: self.policy(),
            quotas: inputs.quotas,
            waiting: Vec::new(),
            holding: Vec::new(),
        };
        let mut present = HashSet::new();
        let mut by_uid: HashMap<String, &FineTuneJob> = HashMap::new();
        for job in &inputs.jobs {
            let id = id(job);
            present.insert(id.uid.clone());
            by_uid.insert(id.uid.clone(), job);
            let placement = if job.spec.queue_name.is_some() {
                Placement::Unmetered(String::new())
            } else {
                state
                    .ownership
                    .place(&id.namespace, &self.config.unowned_namespaces)
            };
            if state.placements.get(&id.uid) != Some(&placement) {
                if state.rounds > 0 {
                    wake.push(id.clone());
                }
                state.placements.insert(id.uid.clone(), placement.clone());
            }
            let Placement::Tenant(tenant) = placement else {
                state.reservations.remove(&id.uid);
                state.stopping.remove(&id.uid);
                state.places.remove(&id.uid);
                holds.remove(&id.uid);
                continue;
            };
            if finished(job) {
                state.preempted_by.remove(&id.uid);
            }
            let priority = state_priority(job, inputs.priorities);
            if let Some(hold) = holds.remove(&id.uid) {
                if hold.active {
                    state.reservations.remove(&id.uid);
                } else {
                    state.stopping.remove(&id.uid);
                }
                let running = hold.active && !state.stopping.contains_key(&id.uid);
                snapshot.holding.push(Holding {
                    id,
                    tenant,
                    gpus: hold.gpus,
                    priority,
                    state: if running {
                        HoldState::Running {
                            since: hold.since,
                            checkpoint: job
                                .status
                                .as_ref()
                                .and_then(|s| s.last_checkpoint.as_ref())
                                .map(|c| c.time.0),
                        }
                    } else {
                        HoldState::Releasing
                    },
                });
                continue;
            }
            state.stopping.remove(&id.uid);
            // A reservation holds until the Job is seen (the reconcile may have moved the
            // job's phase on already), unless the job no longer wants to run.
            let gone = finished(job)
                || job.spec.run_policy.suspend
                || job.metadata.deletion_timestamp.is_some();
            if gone {
                state.reservations.remove(&id.uid);
            }
            if let Some(reservation) = state.reservations.get(&id.uid) {
                snapshot.holding.push(Holding {
                    id,
                    tenant,
                    gpus: reservation.gpus,
                    priority,
                    state: HoldState::Running {
                        since: reservation.at,
                        checkpoint: None,
                    },
                });
                continue;
            }
            if !asks(job) {
                continue;
            }
            let created = job
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(inputs.now, |t| t.0);
            let waiting_since = job
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, condition::ADMITTED))
                .filter(|c| c.status == "False")
                .map_or(created, |c| c.last_transition_time.0);
            let nominated = state.places.get(&id.uid).is_some_and(|p| {
                p.reason == Reason::Preempting.as_str()
                    || p.reason == Reason::WaitingForRelease.as_str()
            });
            snapshot.waiting.push(Waiting {
                preempted_by: state.preempted_by.get(&id.uid).cloned(),
                nominated,
                id,
                tenant,
                gpus: job.spec.resources.gpus,
                priority,
                created,
                waiting_since,
            });
        }
        // Children of jobs that are gone still hold GPUs until their pods are.
        for (uid, hold) in holds {
            if let Placement::Tenant(tenant) = state
                .ownership
                .place(&hold.namespace, &self.config.unowned_namespaces)
            {
                snapshot.holding.push(Holding {
                    id: JobId {
                        namespace: hold.namespace,
                        name: hold.name,
                        uid,
                    },
                    tenant,
                    gpus: hold.gpus,
                    priority: 0,
                    state: HoldState::Releasing,
                });
            }
        }
        state.places.retain(|uid, _| present.contains(uid));
        state.reservations.retain(|uid, _| present.contains(uid));
        state.stopping.retain(|uid, _| present.contains(uid));
        state.preempted_by.retain(|uid, _| present.contains(uid));
        state.placements.retain(|uid, _| present.contains(uid));

        let outcome = admit(&snapshot);
        for admitted in &outcome.admitted {
            state.places.remove(&admitted.id.uid);
            state.reservations.insert(
                admitted.id.uid.clone(),
                Reservation {
                    tenant: admitted.tenant.clone(),
                    gpus: admitted.gpus,
                    borrowed: admitted.borrowed,
                    at: inputs.now,
                },
            );
            wake.push(admitted.id.clone());
        }
        for preemption in &outcome.preemptions {
            let message = super::report::preemption_message(preemption);
            state.stopping.insert(
                preemption.victim.uid.clone(),
                Stop {
                    tenant: preemption.victim_tenant.clone(),
                    by: preemption.preemptor.clone(),
                    message,
                },
            );
            state
                .preempted_by
                .insert(preemption.victim.uid.clone(), preemption.preemptor.clone());
            wake.push(preemption.victim.clone());
        }
        for queued in &outcome.queued {
            let reason = queued.reason.as_str();
            let previous = state.places.get(&queued.id.uid);
            let due = match previous {
                None => true,
                Some(p) if p.reason != reason => true,
                Some(Place {
                    announced: (message, position, at),
                    ..
                }) => {
                    (*message != queued.message || *position != queued.position)
                        && inputs.now.duration_since(*at).as_secs() >= REFRESH_SECONDS
                }
            };
            let announced = match previous {
                Some(p) if !due => p.announced.clone(),
                _ => (queued.message.clone(), queued.position, inputs.now),
            };
            if due && by_uid.contains_key(&queued.id.uid) {
                wake.push(queued.id.clone());
            }
            state.places.insert(
                queued.id.uid.clone(),
                Place {
                    tenant: queued.tenant.clone(),
                    reason,
                    message: queued.message.clone(),
                    position: queued.position,
                    announced,
                },
            );
        }
        state.rounds += 1;
        drop(guard);
        self.ready.send_replace(true);
        wake.sort();
        wake.dedup();
        Decided { outcome, wake }
    }
}

fn state_priority(job: &FineTuneJob, priorities: &Priorities) -> i32 {
    priorities.of(job.spec.resources.priority_class_name.as_deref())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use attune_crds::{FineTuneJob, Tenant};
    use jiff::Timestamp;
    use serde_json::json;

    use super::{Decided, Inputs, Ledger};
    use crate::tenancy::config::{TenancyConfig, UnownedNamespaces};
    use crate::tenancy::ownership::Ownership;
    use crate::tenancy::quota::Quota;
    use crate::tenancy::usage::{Hold, Priorities};
    use crate::tenancy::verdict::Admission;

    const NOW: i64 = 1_800_000_000;

    fn job(name: &str, namespace: &str, phase: &str, created: i64) -> FineTuneJob {
        serde_json::from_value(json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": { "name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                "creationTimestamp": Timestamp::from_second(NOW + created).expect("t").to_string() },
            "spec": {
                "model": { "source": "hf://org/model" },
                "task": { "textClassification": {} },
                "dataset": { "source": { "configMap": { "name": "data", "key": "train.jsonl" } } },
                "output": { "destination": { "pvc": { "claimName": "models", "path": name } } },
                "resources": { "gpus": 1 },
            },
            "status": { "phase": phase },
        }))
        .expect("a FineTuneJob")
    }

    fn tenant() -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "Tenant",
            "metadata": { "name": "a" },
            "spec": { "namespaces": ["team-a"], "quota": { "nominal": 1 } },
        }))
        .expect("a Tenant")
    }

    fn hold(name: &str, active: bool) -> (String, Hold) {
        (
            format!("uid-{name}"),
            Hold {
                namespace: "team-a".into(),
                name: name.into(),
                gpus: 1,
                active,
                since: Timestamp::from_second(NOW - 600).expect("t"),
            },
        )
    }

    /// One round at NOW + `at` over `jobs` and what their children hold.
    fn round_with(
        ledger: &Ledger,
        jobs: &[&FineTuneJob],
        holds: &[(String, Hold)],
        at: i64,
        priorities: &Priorities,
    ) -> Decided {
        let tenants = [tenant()];
        let ownership = Ownership::new(&tenants, [("team-a".to_owned(), Default::default())]);
        ledger.round(Inputs {
            now: Timestamp::from_second(NOW + at).expect("t"),
            jobs: jobs.to_vec(),
            holds: holds.iter().cloned().collect::<HashMap<_, _>>(),
            priorities,
            ownership,
            quotas: vec![Quota {
                name: "a".into(),
                nominal: 1,
                borrowing_limit: None,
                cohort: None,
                weight: 1,
                max_running_jobs: None,
            }],
        })
    }

    fn round(ledger: &Ledger, jobs: &[&FineTuneJob], holds: &[(String, Hold)], at: i64) {
        round_with(ledger, jobs, holds, at, &Priorities::default());
    }

    fn config() -> TenancyConfig {
        let mut config = TenancyConfig::default();
        config.preemption.minimum_runtime_seconds = 60;
        config
    }

    #[test]
    fn an_admission_holds_the_quota_until_the_job_runs_and_its_pod_is_gone() {
        let ledger = Ledger::new(config());
        let first = job("first", "team-a", "Queued", -20);
        let second = job("second", "team-a", "Queued", -10);
        round(&ledger, &[&first, &second], &[], 0);
        assert!(matches!(
            ledger.admission(&first),
            Admission::Granted { .. }
        ));
        assert!(
            matches!(ledger.admission(&second), Admission::Queued { position: Some(1), ref reason, .. } if reason == "QuotaExhausted")
        );
        // The reconcile moved the first on; its Job is not seen yet: the reservation holds.
        let started = job("first", "team-a", "Running", -20);
        round(&ledger, &[&started, &second], &[], 1);
        assert!(matches!(
            ledger.admission(&second),
            Admission::Queued { .. }
        ));
        // Its Job runs; then its pod terminates, still holding the GPU.
        round(&ledger, &[&started, &second], &[hold("first", true)], 2);
        round(&ledger, &[&started, &second], &[hold("first", false)], 3);
        assert!(matches!(
            ledger.admission(&second),
            Admission::Queued { .. }
        ));
        // The pod is gone: the second goes.
        let done = job("first", "team-a", "Succeeded", -20);
        round(&ledger, &[&done, &second], &[], 4);
        assert!(matches!(
            ledger.admission(&second),
            Admission::Granted { .. }
        ));
    }

    #[test]
    fn a_restarted_operator_counts_what_runs_in_the_cluster() {
        let ledger = Ledger::new(config());
        let running = job("running", "team-a", "Running", -20);
        let waiting = job("waiting", "team-a", "Queued", -10);
        round(&ledger, &[&running, &waiting], &[hold("running", true)], 0);
        assert!(matches!(
            ledger.admission(&waiting),
            Admission::Queued { .. }
        ));
    }

    #[test]
    fn a_preempted_job_is_told_to_stop_until_its_job_is_held() {
        let ledger = Ledger::new(config());
        let mut low = job("low", "team-a", "Running", -1000);
        let mut high = job("high", "team-a", "Queued", -10);
        high.spec.resources.priority_class_name = Some("urgent".into());
        let classes =
            [
                serde_json::from_value(json!({ "metadata": { "name": "urgent" }, "value": 100 }))
                    .expect("a PriorityClass"),
            ];
        let priorities = Priorities::new(&classes);
        let decided = round_with(
            &ledger,
            &[&low, &high],
            &[hold("low", true)],
            0,
            &priorities,
        );
        assert_eq!(decided.outcome.preemptions.len(), 1);
        assert!(decided.wake.iter().any(|id| id.name == "low"));
        let told = ledger.admission(&low);
        assert!(
            matches!(&told, Admission::Preempted { by, .. } if by == "team-a/high"),
            "{told:?}"
        );
        // Its Job is suspended, the pod stops: the mark goes, and nothing more is preempted.
        low.status.get_or_insert_with(Default::default).phase = Some(attune_crds::Phase::Queued);
        let decided = round_with(
            &ledger,
            &[&low, &high],
            &[hold("low", false)],
            1,
            &priorities,
        );
        assert!(decided.outcome.preemptions.is_empty());
        assert!(matches!(ledger.admission(&low), Admission::Queued { .. }));
        // Gone: the preemptor is admitted, the victim waits, and never preempts it back.
        let decided = round_with(&ledger, &[&low, &high], &[], 2, &priorities);
        assert_eq!(decided.outcome.admitted.len(), 1);
        assert!(matches!(ledger.admission(&high), Admission::Granted { .. }));
    }

    #[test]
    fn unowned_namespaces_and_kueue_jobs_follow_their_own_rules() {
        let admit = Ledger::new(config());
        let stray = job("stray", "elsewhere", "Queued", 0);
        round(&admit, &[&stray], &[], 0);
        assert!(matches!(admit.admission(&stray), Admission::Unmetered(_)));
        let reject = Ledger::new(TenancyConfig {
            unowned_namespaces: UnownedNamespaces::Reject,
            ..config()
        });
        round(&reject, &[&stray], &[], 0);
        assert!(matches!(reject.admission(&stray), Admission::Refused(_)));
        let mut kueue = job("kueue", "team-a", "Queued", 0);
        kueue.spec.queue_name = Some("local".into());
        round(&reject, &[&kueue], &[], 0);
        assert!(matches!(reject.admission(&kueue), Admission::Unmetered(m) if m.contains("Kueue")));
    }

    #[test]
    fn a_kueue_job_uses_none_of_its_tenants_quota_and_is_never_preempted() {
        // Kueue counts its GPUs in its ClusterQueue: counting them here too would count them
        // twice, and preempting it would stop a job Attune did not admit.
        let ledger = Ledger::new(config());
        let mut kueue = job("kueue", "team-a", "Running", -20);
        kueue.spec.queue_name = Some("local".into());
        let plain = job("plain", "team-a", "Queued", -10);
        let mut priorities = Priorities::default();
        let decided = round_with(
            &ledger,
            &[&kueue, &plain],
            &[hold("kueue", true)],
            0,
            &priorities,
        );
        assert!(decided.outcome.preemptions.is_empty());
        assert!(matches!(
            ledger.admission(&plain),
            Admission::Granted { .. }
        ));
        assert!(matches!(ledger.admission(&kueue), Admission::Unmetered(_)));
        // A higher-priority job of the tenant waits for its quota, never for the Kueue job.
        priorities = Priorities::new(&[serde_json::from_value(
            json!({ "metadata": { "name": "high" }, "value": 1000 }),
        )
        .expect("a PriorityClass")]);
        let mut high = job("high", "team-a", "Queued", -5);
        high.spec.resources.priority_class_name = Some("high".into());
        let decided = round_with(
            &ledger,
            &[&kueue, &plain, &high],
            &[hold("kueue", true), hold("plain", true)],
            600,
            &priorities,
        );
        let victims: Vec<&str> = decided
            .outcome
            .preemptions
            .iter()
            .map(|p| p.victim.uid.as_str())
            .collect();
        assert_eq!(victims, ["uid-plain"]);
        assert!(matches!(ledger.admission(&kueue), Admission::Unmetered(_)));
    }
}
