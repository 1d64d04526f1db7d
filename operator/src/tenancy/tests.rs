//! Table-driven tests of admission: quotas held, borrowing and reclaim, priority, fair share by
//! weight, FIFO, starvation, victim choice, and that preemption never loops.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::admission::{Cause, HoldState, Holding, Outcome, Policy, Snapshot, Waiting, admit};
use super::quota::{JobId, Quota};
use super::reasons::Reason;

const NOW: i64 = 1_800_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(NOW + offset).expect("a time")
}

fn id(name: &str) -> JobId {
    JobId {
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

/// A tenant: `tenant("a", 8).borrow(4).cohort("c").weight(2)`.
fn tenant(name: &str, nominal: u32) -> Quota {
    Quota {
        name: name.into(),
        nominal,
        borrowing_limit: None,
        cohort: None,
        weight: 1,
        max_running_jobs: None,
    }
}

trait QuotaExt {
    fn cohort(self, cohort: &str) -> Self;
    fn limit(self, limit: u32) -> Self;
    fn weight(self, weight: u32) -> Self;
    fn max_jobs(self, max: u32) -> Self;
}

impl QuotaExt for Quota {
    fn cohort(mut self, cohort: &str) -> Self {
        self.cohort = Some(cohort.into());
        self
    }
    fn limit(mut self, limit: u32) -> Self {
        self.borrowing_limit = Some(limit);
        self
    }
    fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    fn max_jobs(mut self, max: u32) -> Self {
        self.max_running_jobs = Some(max);
        self
    }
}

/// A waiting job created `created` seconds from NOW (negative: before), waiting since then.
fn wait(name: &str, tenant: &str, gpus: u32, priority: i32, created: i64) -> Waiting {
    Waiting {
        id: id(name),
        tenant: tenant.into(),
        gpus,
        priority,
        created: at(created),
        waiting_since: at(created),
        preempted_by: None,
        nominated: false,
    }
}

/// A job running since `since` (seconds from NOW) with its latest checkpoint at `checkpoint`.
fn run(
    name: &str,
    tenant: &str,
    gpus: u32,
    priority: i32,
    since: i64,
    checkpoint: Option<i64>,
) -> Holding {
    Holding {
        id: id(name),
        tenant: tenant.into(),
        gpus,
        priority,
        state: HoldState::Running {
            since: at(since),
            checkpoint: checkpoint.map(at),
        },
    }
}

fn stopping(name: &str, tenant: &str, gpus: u32) -> Holding {
    Holding {
        id: id(name),
        tenant: tenant.into(),
        gpus,
        priority: 0,
        state: HoldState::Releasing,
    }
}

fn policy() -> Policy {
    Policy {
        preemption: true,
        minimum_runtime_seconds: 60,
        reserve_after_seconds: 600,
    }
}

/// One case: the world, and what the round must decide.
struct Case {
    name: &'static str,
    quotas: Vec<Quota>,
    holding: Vec<Holding>,
    waiting: Vec<Waiting>,
    /// Admitted jobs, in the order admitted, with the GPUs each borrows.
    admitted: &'static [(&'static str, u32)],
    /// (victim, preemptor).
    preempted: &'static [(&'static str, &'static str)],
    /// Waiting jobs' reasons (those listed).
    reasons: &'static [(&'static str, Reason)],
}

fn round(quotas: &[Quota], holding: &[Holding], waiting: &[Waiting], policy: Policy) -> Outcome {
    admit(&Snapshot {
        now: at(0),
        policy,
        quotas: quotas.to_vec(),
        waiting: waiting.to_vec(),
        holding: holding.to_vec(),
    })
}

fn check(cases: Vec<Case>) {
    for case in cases {
        let outcome = round(&case.quotas, &case.holding, &case.waiting, policy());
        let admitted: Vec<(&str, u32)> = outcome
            .admitted
            .iter()
            .map(|a| (a.id.name.as_str(), a.borrowed))
            .collect();
        assert_eq!(
            admitted, case.admitted,
            "{}: admitted\n{outcome:#?}",
            case.name
        );
        let preempted: Vec<(&str, &str)> = outcome
            .preemptions
            .iter()
            .map(|p| (p.victim.name.as_str(), p.preemptor.name.as_str()))
            .collect();
        assert_eq!(
            preempted, case.preempted,
            "{}: preempted\n{outcome:#?}",
            case.name
        );
        for (job, reason) in case.reasons {
            let queued = outcome
                .queued
                .iter()
                .find(|q| q.id.name == *job)
                .unwrap_or_else(|| panic!("{}: {job} is not queued\n{outcome:#?}", case.name));
            assert_eq!(
                queued.reason, *reason,
                "{}: {job}: {}",
                case.name, queued.message
            );
        }
    }
}

#[test]
fn quotas_are_held_by_running_stopping_and_admitted_jobs() {
    check(vec![
        Case {
            name: "within nominal",
            quotas: vec![tenant("a", 8)],
            holding: vec![run("r", "a", 4, 0, -100, None)],
            waiting: vec![
                wait("w1", "a", 2, 0, -10),
                wait("w2", "a", 2, 0, -5),
                wait("w3", "a", 1, 0, -1),
            ],
            admitted: &[("w1", 0), ("w2", 0)],
            preempted: &[],
            reasons: &[("w3", Reason::QuotaExhausted)],
        },
        Case {
            name: "a stopping pod still holds its GPUs",
            quotas: vec![tenant("a", 4)],
            holding: vec![stopping("s", "a", 4)],
            waiting: vec![wait("w", "a", 1, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("w", Reason::WaitingForRelease)],
        },
        Case {
            name: "more than the tenant can ever hold",
            quotas: vec![
                tenant("a", 4).cohort("c").limit(2),
                tenant("b", 8).cohort("c"),
            ],
            holding: vec![],
            waiting: vec![wait("huge", "a", 7, 0, -10), wait("ok", "a", 6, 0, -5)],
            admitted: &[("ok", 2)],
            preempted: &[],
            reasons: &[("huge", Reason::ExceedsQuota)],
        },
        Case {
            name: "maxRunningJobs",
            quotas: vec![tenant("a", 8).max_jobs(2)],
            holding: vec![run("r", "a", 1, 0, -100, None)],
            waiting: vec![wait("w1", "a", 1, 0, -10), wait("w2", "a", 1, 0, -5)],
            admitted: &[("w1", 0)],
            preempted: &[],
            reasons: &[("w2", Reason::MaxRunningJobs)],
        },
        Case {
            name: "GPU-less jobs count against maxRunningJobs only",
            quotas: vec![tenant("a", 0).max_jobs(1)],
            holding: vec![],
            waiting: vec![wait("cpu1", "a", 0, 0, -10), wait("cpu2", "a", 0, 0, -5)],
            admitted: &[("cpu1", 0)],
            preempted: &[],
            reasons: &[("cpu2", Reason::MaxRunningJobs)],
        },
    ]);
}

#[test]
fn idle_quota_is_borrowed_within_the_cohort_and_the_limit() {
    check(vec![
        Case {
            name: "borrow idle quota of the cohort",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 8).cohort("c")],
            holding: vec![run("r", "a", 4, 0, -100, None)],
            waiting: vec![wait("w", "a", 4, 0, -10)],
            admitted: &[("w", 4)],
            preempted: &[],
            reasons: &[],
        },
        Case {
            name: "no cohort, no borrowing",
            quotas: vec![tenant("a", 4), tenant("b", 8)],
            holding: vec![run("r", "a", 4, 0, -100, None)],
            waiting: vec![wait("w", "a", 1, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("w", Reason::QuotaExhausted)],
        },
        Case {
            name: "another cohort's idle quota is not lent",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 8).cohort("d")],
            holding: vec![run("r", "a", 4, 0, -100, None)],
            waiting: vec![wait("w", "a", 1, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("w", Reason::CohortExhausted)],
        },
        Case {
            name: "borrowing limit",
            quotas: vec![
                tenant("a", 4).cohort("c").limit(2),
                tenant("b", 8).cohort("c"),
            ],
            holding: vec![run("r", "a", 5, 0, -100, None)],
            waiting: vec![wait("w2", "a", 2, 0, -10), wait("w1", "a", 1, 0, -5)],
            admitted: &[("w1", 1)],
            preempted: &[],
            reasons: &[("w2", Reason::BorrowingLimitReached)],
        },
        Case {
            name: "only what is idle is lent",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 4).cohort("c")],
            holding: vec![
                run("r", "a", 4, 0, -100, None),
                run("rb", "b", 3, 0, -100, None),
            ],
            waiting: vec![wait("w", "a", 2, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("w", Reason::CohortExhausted)],
        },
        Case {
            name: "jobs within their nominal quota go before borrowers, whatever the priority",
            quotas: vec![tenant("a", 2).cohort("c"), tenant("b", 2).cohort("c")],
            holding: vec![run("ra", "a", 2, 100, -100, None)],
            waiting: vec![
                wait("borrower", "a", 2, 100, -50),
                wait("owner", "b", 2, 0, -10),
            ],
            admitted: &[("owner", 0)],
            preempted: &[],
            reasons: &[("borrower", Reason::CohortExhausted)],
        },
    ]);
}

#[test]
fn a_tenant_reclaims_its_nominal_quota_from_borrowers() {
    check(vec![
        Case {
            name: "reclaim from a borrower that ran long enough",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 4).cohort("c")],
            holding: vec![
                run("b-own", "b", 4, 0, -1000, None),
                run("b-borrow", "b", 4, 0, -500, None),
            ],
            waiting: vec![wait("a1", "a", 4, 0, -10)],
            admitted: &[],
            preempted: &[("b-borrow", "a1")],
            reasons: &[("a1", Reason::Preempting)],
        },
        Case {
            name: "a borrower within its minimum runtime is not preempted yet",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 4).cohort("c")],
            holding: vec![
                run("b-own", "b", 4, 0, -1000, None),
                run("b-borrow", "b", 4, 0, -30, None),
            ],
            waiting: vec![wait("a1", "a", 4, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("a1", Reason::QuotaLentOut)],
        },
        Case {
            name: "reclaim never takes jobs within their own tenant's nominal quota",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 4).cohort("c")],
            holding: vec![
                run("b-own", "b", 4, 0, -1000, None),
                run("a-own", "a", 4, 0, -1000, None),
            ],
            waiting: vec![wait("a1", "a", 2, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("a1", Reason::CohortExhausted)],
        },
        Case {
            name: "only as many borrowers as needed",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 2).cohort("c")],
            holding: vec![
                run("b1", "b", 2, 0, -1000, None),
                run("b2", "b", 2, 0, -900, None),
                run("b3", "b", 2, 0, -800, None),
            ],
            waiting: vec![wait("a1", "a", 2, 0, -10)],
            admitted: &[],
            preempted: &[("b3", "a1")],
            reasons: &[],
        },
        Case {
            name: "GPUs being given back are waited for, not preempted again",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 2).cohort("c")],
            holding: vec![
                run("b1", "b", 2, 0, -1000, None),
                run("b2", "b", 2, 0, -900, None),
                stopping("b3", "b", 2),
            ],
            waiting: vec![wait("a1", "a", 2, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("a1", Reason::WaitingForRelease)],
        },
    ]);
}

#[test]
fn priority_orders_admission_and_preempts_lower_priority_jobs() {
    check(vec![
        Case {
            name: "higher priority first, then FIFO",
            quotas: vec![tenant("a", 4)],
            holding: vec![],
            waiting: vec![
                wait("old-low", "a", 2, 0, -100),
                wait("new-high", "a", 2, 10, -1),
                wait("mid-low", "a", 2, 0, -50),
            ],
            admitted: &[("new-high", 0), ("old-low", 0)],
            preempted: &[],
            reasons: &[("mid-low", Reason::QuotaExhausted)],
        },
        Case {
            name: "a higher-priority job preempts a lower one of its tenant",
            quotas: vec![tenant("a", 4)],
            holding: vec![run("low", "a", 4, 0, -1000, None)],
            waiting: vec![wait("high", "a", 2, 100, -10)],
            admitted: &[],
            preempted: &[("low", "high")],
            reasons: &[("high", Reason::Preempting)],
        },
        Case {
            name: "equal priority never preempts within a tenant",
            quotas: vec![tenant("a", 4)],
            holding: vec![run("old", "a", 4, 5, -1000, None)],
            waiting: vec![wait("new", "a", 2, 5, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("new", Reason::QuotaExhausted)],
        },
        Case {
            name: "a higher-priority borrower preempts a lower-priority borrower of the cohort",
            quotas: vec![
                tenant("a", 2).cohort("c"),
                tenant("b", 2).cohort("c"),
                tenant("idle", 4).cohort("c"),
            ],
            holding: vec![
                run("a-own", "a", 2, 100, -1000, None),
                run("b-own", "b", 2, 0, -1000, None),
                run("b-borrow", "b", 4, 0, -500, None),
            ],
            waiting: vec![wait("a-high", "a", 2, 100, -10)],
            admitted: &[],
            preempted: &[("b-borrow", "a-high")],
            reasons: &[],
        },
        Case {
            name: "a higher priority never takes another tenant's nominal quota",
            quotas: vec![tenant("a", 2).cohort("c"), tenant("b", 4).cohort("c")],
            holding: vec![
                run("a-own", "a", 2, 1000, -1000, None),
                run("b-own", "b", 4, 0, -1000, None),
            ],
            waiting: vec![wait("a-high", "a", 2, 1000, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("a-high", Reason::CohortExhausted)],
        },
    ]);
}

#[test]
fn victims_are_the_cheapest_to_stop() {
    check(vec![
        Case {
            name: "lower priority before less work lost",
            quotas: vec![tenant("a", 4)],
            holding: vec![
                run("mid", "a", 2, 5, -1000, Some(-1)),
                run("low", "a", 2, 0, -1000, Some(-900)),
            ],
            waiting: vec![wait("high", "a", 2, 10, -10)],
            admitted: &[],
            preempted: &[("low", "high")],
            reasons: &[],
        },
        Case {
            name: "the most recent checkpoint loses the least work",
            quotas: vec![tenant("a", 6)],
            holding: vec![
                run("stale", "a", 2, 0, -1000, Some(-800)),
                run("fresh", "a", 2, 0, -1000, Some(-5)),
                run("never", "a", 2, 0, -300, None),
            ],
            waiting: vec![wait("high", "a", 2, 10, -10)],
            admitted: &[],
            preempted: &[("fresh", "high")],
            reasons: &[],
        },
        Case {
            name: "another tenant's borrower before an own lower-priority job",
            quotas: vec![tenant("a", 4).cohort("c"), tenant("b", 2).cohort("c")],
            holding: vec![
                run("a-low", "a", 2, 0, -1000, Some(-1)),
                run("b-own", "b", 2, 0, -2000, None),
                run("b-borrow", "b", 2, 0, -1000, Some(-900)),
            ],
            waiting: vec![wait("a-high", "a", 2, 10, -10)],
            admitted: &[],
            preempted: &[("b-borrow", "a-high")],
            reasons: &[],
        },
        Case {
            name: "the fewest victims that make room",
            quotas: vec![tenant("a", 8)],
            holding: vec![
                run("small", "a", 1, 0, -1000, Some(-1)),
                run("big", "a", 4, 0, -1000, Some(-10)),
                run("rest", "a", 3, 5, -1000, None),
            ],
            waiting: vec![wait("high", "a", 4, 10, -10)],
            admitted: &[],
            preempted: &[("big", "high")],
            reasons: &[],
        },
    ]);
}

#[test]
fn a_job_waiting_long_is_not_overtaken_by_smaller_ones() {
    check(vec![
        Case {
            name: "before the threshold, small jobs fill the gaps",
            quotas: vec![tenant("a", 4)],
            holding: vec![run("r", "a", 2, 0, -100, None)],
            waiting: vec![wait("big", "a", 4, 0, -599), wait("small", "a", 1, 0, -10)],
            admitted: &[("small", 0)],
            preempted: &[],
            reasons: &[("big", Reason::QuotaExhausted)],
        },
        Case {
            name: "after it, the big job reserves its place",
            quotas: vec![tenant("a", 4)],
            holding: vec![run("r", "a", 2, 0, -100, None)],
            waiting: vec![wait("big", "a", 4, 0, -600), wait("small", "a", 1, 0, -10)],
            admitted: &[],
            preempted: &[],
            reasons: &[("big", Reason::QuotaExhausted), ("small", Reason::Reserved)],
        },
        Case {
            name: "a reserved cohort lends to no later borrower",
            quotas: vec![
                tenant("a", 2).cohort("c"),
                tenant("b", 2).cohort("c"),
                tenant("idle", 2).cohort("c"),
            ],
            holding: vec![
                run("ra", "a", 2, 0, -100, None),
                run("rb", "b", 2, 0, -100, None),
            ],
            waiting: vec![
                wait("a-big", "a", 4, 0, -700),
                wait("b-small", "b", 1, 0, -10),
            ],
            admitted: &[],
            preempted: &[],
            reasons: &[
                ("a-big", Reason::CohortExhausted),
                ("b-small", Reason::Reserved),
            ],
        },
        Case {
            name: "a job waiting long goes before others of its priority",
            quotas: vec![
                tenant("a", 2).cohort("c"),
                tenant("b", 2).cohort("c"),
                tenant("idle", 2).cohort("c"),
            ],
            holding: vec![
                run("ra", "a", 2, 0, -100, None),
                run("rb", "b", 2, 0, -100, None),
            ],
            waiting: vec![
                wait("b-new", "b", 2, 0, -10),
                wait("a-old", "a", 2, 0, -700),
            ],
            admitted: &[("a-old", 2)],
            preempted: &[],
            reasons: &[("b-new", Reason::CohortExhausted)],
        },
        Case {
            name: "a job that never fits reserves nothing",
            quotas: vec![tenant("a", 4)],
            holding: vec![],
            waiting: vec![
                wait("impossible", "a", 5, 0, -10_000),
                wait("small", "a", 1, 0, -10),
            ],
            admitted: &[("small", 0)],
            preempted: &[],
            reasons: &[("impossible", Reason::ExceedsQuota)],
        },
    ]);
}

#[test]
fn queue_positions_count_within_each_tenant() {
    let outcome = round(
        &[tenant("a", 1), tenant("b", 1)],
        &[
            run("ra", "a", 1, 0, -100, None),
            run("rb", "b", 1, 0, -100, None),
        ],
        &[
            wait("a2", "a", 1, 0, -5),
            wait("a1", "a", 1, 0, -10),
            wait("b1", "b", 1, 0, -7),
            wait("a0", "a", 1, 5, -1),
        ],
        policy(),
    );
    let places: Vec<(&str, u32, u32)> = outcome
        .queued
        .iter()
        .map(|q| (q.id.name.as_str(), q.position, q.of))
        .collect();
    assert_eq!(
        places,
        [("a0", 1, 3), ("a1", 2, 3), ("a2", 3, 3), ("b1", 1, 1)]
    );
    assert!(
        outcome.queued[1]
            .message
            .starts_with("position 2 of 3 in tenant a's queue: "),
        "{}",
        outcome.queued[1].message
    );
    assert_eq!(outcome.usage["a"].queued, 3);
    assert_eq!(outcome.usage["b"].running, 1);
}

#[test]
fn borrowed_and_lent_gpus_add_up() {
    let outcome = round(
        &[
            tenant("a", 4).cohort("c"),
            tenant("b", 6).cohort("c"),
            tenant("d", 2).cohort("c"),
        ],
        &[
            run("ra", "a", 9, 0, -100, None),
            run("rd", "d", 1, 0, -100, None),
        ],
        &[],
        policy(),
    );
    let usage = |t: &str| {
        (
            outcome.usage[t].in_use,
            outcome.usage[t].borrowed,
            outcome.usage[t].lent,
        )
    };
    assert_eq!(usage("a"), (9, 5, 0));
    // 5 borrowed from 6 + 1 idle GPUs: b lends 4 (6/7 of 5 = 4.29), d lends 1 (0.71).
    assert_eq!(usage("b"), (0, 0, 4));
    assert_eq!(usage("d"), (1, 0, 1));
}

/// A small world stepped round after round: admitted jobs run, preempted jobs stop (their GPUs
/// come back the next round) and wait again, jobs end when their work is done.
struct Sim {
    quotas: Vec<Quota>,
    time: i64,
    policy: Policy,
    /// name -> (tenant, gpus, priority, work left in seconds)
    jobs: BTreeMap<String, (String, u32, i32, i64)>,
    waiting: Vec<Waiting>,
    running: Vec<(Holding, i64)>,
    stopping: Vec<Holding>,
    /// (victim, preemptor, cause, seconds the victim had run).
    preemptions: Vec<(String, String, Cause, i64)>,
    /// GPUs in use per tenant, after each round.
    samples: Vec<BTreeMap<String, u32>>,
}

impl Sim {
    fn new(quotas: Vec<Quota>, policy: Policy) -> Self {
        Self {
            quotas,
            time: 0,
            policy,
            jobs: BTreeMap::new(),
            waiting: Vec::new(),
            running: Vec::new(),
            stopping: Vec::new(),
            preemptions: Vec::new(),
            samples: Vec::new(),
        }
    }

    fn submit(&mut self, name: &str, tenant: &str, gpus: u32, priority: i32, work: i64) {
        self.jobs
            .insert(name.into(), (tenant.into(), gpus, priority, work));
        let mut job = wait(name, tenant, gpus, priority, 0);
        job.created = Timestamp::from_second(NOW + self.time).expect("t");
        job.waiting_since = job.created;
        self.waiting.push(job);
    }

    /// One round, then `step` seconds pass.
    fn step(&mut self, step: i64) {
        let now = Timestamp::from_second(NOW + self.time).expect("t");
        let holding: Vec<Holding> = self
            .running
            .iter()
            .map(|(h, _)| h.clone())
            .chain(self.stopping.iter().cloned())
            .collect();
        let outcome = admit(&Snapshot {
            now,
            policy: self.policy,
            quotas: self.quotas.clone(),
            waiting: self.waiting.clone(),
            holding,
        });
        // Stopped pods are gone by the next round.
        self.stopping.clear();
        for job in &mut self.waiting {
            job.nominated = outcome.queued.iter().any(|q| {
                q.id == job.id && matches!(q.reason, Reason::Preempting | Reason::WaitingForRelease)
            });
        }
        for a in &outcome.admitted {
            let i = self
                .waiting
                .iter()
                .position(|w| w.id == a.id)
                .expect("waiting");
            let job = self.waiting.remove(i);
            let holding = Holding {
                id: job.id.clone(),
                tenant: job.tenant.clone(),
                gpus: job.gpus,
                priority: job.priority,
                state: HoldState::Running {
                    since: now,
                    checkpoint: None,
                },
            };
            self.running.push((holding, self.time));
        }
        for p in &outcome.preemptions {
            let i = self
                .running
                .iter()
                .position(|(h, _)| h.id == p.victim)
                .expect("running");
            let (holding, started) = self.running.remove(i);
            self.preemptions.push((
                p.victim.name.clone(),
                p.preemptor.name.clone(),
                p.cause,
                self.time - started,
            ));
            let entry = self.jobs.get_mut(&holding.id.name).expect("job");
            entry.3 -= self.time - started;
            let mut again = wait(
                &holding.id.name,
                &holding.tenant,
                holding.gpus,
                holding.priority,
                0,
            );
            again.created = Timestamp::from_second(NOW).expect("t");
            again.waiting_since = now;
            again.preempted_by = Some(p.preemptor.clone());
            again.nominated = false;
            self.waiting.push(again);
            self.stopping.push(Holding {
                state: HoldState::Releasing,
                ..holding
            });
        }
        let mut sample = BTreeMap::new();
        for (h, _) in &self.running {
            *sample.entry(h.tenant.clone()).or_insert(0) += h.gpus;
        }
        for s in &self.stopping {
            *sample.entry(s.tenant.clone()).or_insert(0) += s.gpus;
        }
        self.samples.push(sample);
        self.time += step;
        let time = self.time;
        let jobs = &self.jobs;
        self.running
            .retain(|(h, started)| time - started < jobs[&h.id.name].3);
    }
}

#[test]
fn contended_borrowed_gpus_are_shared_by_weight() {
    // a (weight 3) and b (weight 1) each own 1 GPU and want many more; "idle" lends 8.
    let quotas = vec![
        tenant("a", 1).cohort("c").weight(3),
        tenant("b", 1).cohort("c").weight(1),
        tenant("idle", 8).cohort("c"),
    ];
    let mut sim = Sim::new(quotas, policy());
    for n in 0..20 {
        sim.submit(&format!("a{n}"), "a", 1, 0, 1_000_000);
        sim.submit(&format!("b{n}"), "b", 1, 0, 1_000_000);
    }
    sim.step(1);
    let last = sim.samples.last().expect("a sample");
    // 10 GPUs shared 3:1 of what is in use: a gets 7 or 8, b the rest.
    assert_eq!(last.values().sum::<u32>(), 10, "{last:?}");
    let (a, b) = (last["a"], last["b"]);
    assert!(a * 10 >= 70 && b * 10 >= 20, "a {a}, b {b} for weights 3:1");
}

#[test]
fn fifo_within_a_tenant_across_rounds() {
    let mut sim = Sim::new(vec![tenant("a", 2)], policy());
    for n in 0..6 {
        sim.submit(&format!("j{n}"), "a", 1, 0, 10);
        sim.time += 1;
    }
    let mut started = Vec::new();
    for _ in 0..40 {
        sim.step(5);
        for (h, _) in &sim.running {
            if !started.contains(&h.id.name) {
                started.push(h.id.name.clone());
            }
        }
    }
    assert_eq!(started, ["j0", "j1", "j2", "j3", "j4", "j5"]);
}

#[test]
fn preemption_never_loops_and_quotas_hold_throughout() {
    // Three tenants in one cohort with mixed priorities and sizes, jobs arriving over time;
    // no tenant may ever exceed nominal + borrowing limit, the cohort never its nominal total,
    // no victim is preempted within its minimum runtime, no two jobs preempt each other, and
    // every job finishes (nothing livelocks).
    let quotas = vec![
        tenant("a", 8).cohort("c").limit(8).weight(2),
        tenant("b", 8).cohort("c").limit(4),
        tenant("d", 4).cohort("c").limit(4),
    ];
    let limits: BTreeMap<&str, u32> = [("a", 16), ("b", 12), ("d", 8)].into();
    let mut sim = Sim::new(
        quotas,
        Policy {
            minimum_runtime_seconds: 30,
            ..policy()
        },
    );
    let mut n = 0;
    for round in 0..400 {
        if round % 3 == 0 && round < 240 {
            let (tenant, gpus, priority) = match n % 7 {
                0 => ("a", 4, 0),
                1 => ("b", 2, 10),
                2 => ("d", 1, 0),
                3 => ("a", 1, 100),
                4 => ("b", 4, 0),
                5 => ("d", 3, 50),
                _ => ("a", 2, 10),
            };
            sim.submit(&format!("j{n}"), tenant, gpus, priority, 60 + (n % 5) * 40);
            n += 1;
        }
        sim.step(5);
    }
    for sample in &sim.samples {
        for (tenant, used) in sample {
            assert!(
                used <= &limits[tenant.as_str()],
                "{tenant} used {used}: {sample:?}"
            );
        }
        assert!(sample.values().sum::<u32>() <= 20, "{sample:?}");
    }
    assert!(!sim.preemptions.is_empty(), "the workload contends");
    for (victim, preemptor, _, ran) in &sim.preemptions {
        assert!(
            *ran >= 30,
            "{victim} preempted after {ran} s, within its minimum runtime"
        );
        assert!(
            !sim.preemptions
                .iter()
                .any(|(v, p, _, _)| v == preemptor && p == victim),
            "{victim} and {preemptor} preempted each other: {:?}",
            sim.preemptions
        );
    }
    assert!(
        sim.waiting.is_empty() && sim.running.is_empty(),
        "all work done: {:?}",
        sim.waiting
    );
    // Borrowing happened, and so did reclaiming.
    assert!(
        sim.samples
            .iter()
            .any(|s| s.get("a").is_some_and(|u| *u > 8)),
        "a borrowed"
    );
    assert!(
        sim.preemptions
            .iter()
            .any(|(_, _, c, _)| *c == Cause::Reclaim),
        "{:?}",
        sim.preemptions
    );
}

#[test]
fn without_preemption_jobs_only_wait() {
    let outcome = round(
        &[tenant("a", 4)],
        &[run("low", "a", 4, 0, -1000, None)],
        &[wait("high", "a", 2, 100, -10)],
        Policy {
            preemption: false,
            ..policy()
        },
    );
    assert!(outcome.preemptions.is_empty() && outcome.admitted.is_empty());
    assert_eq!(outcome.queued[0].reason, Reason::QuotaExhausted);
}

#[test]
fn a_job_never_preempts_the_job_that_preempted_it() {
    let mut back = wait("victim", "a", 2, 100, -10);
    back.preempted_by = Some(id("winner"));
    let outcome = round(
        &[tenant("a", 2)],
        &[run("winner", "a", 2, 0, -1000, None)],
        &[back],
        policy(),
    );
    assert!(outcome.preemptions.is_empty(), "{outcome:#?}");
}
