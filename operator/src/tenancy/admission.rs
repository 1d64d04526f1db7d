//! Admission: from a snapshot of tenants, the jobs that wait and the jobs that hold GPUs, to the
//! jobs admitted now, the jobs to preempt, and each waiting job's place and reason. Pure (no
//! client, no clock): the same snapshot gives the same outcome. ARCHITECTURE.md describes the
//! algorithm; in short, one round makes three passes over the waiting jobs:
//!
//! 1. **Nominal**: jobs that fit in their tenant's nominal quota are admitted.
//! 2. **Borrowing**: the others may borrow idle quota of their cohort, up to the tenant's
//!    `borrowingLimit`.
//! 3. **Preemption**: a job still waiting may take GPUs back from running jobs — from lower
//!    priority jobs of its own tenant, from lower priority borrowers of its cohort, or, when
//!    it fits in its tenant's nominal quota, from any borrower of its cohort (reclaim).
//!
//! In every pass jobs go in one order: higher priority first; then jobs that have waited
//! longer than `reserveAfterSeconds` (oldest first); then the tenant with the lowest share of
//! GPUs in use per unit of weight; then FIFO. A tenant's own jobs always go by priority, then
//! FIFO. A job that waited longer than `reserveAfterSeconds` and still does not fit reserves
//! its place: no later job of its tenant is admitted, and no later job of its cohort borrows,
//! until it runs. So does a job for which room was made (by preemption, or in the GPUs of
//! stopping jobs), until it runs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use super::quota::{Books, Fit, JobId, Quota, Released, Shortfall};
use super::reasons::{Reason, Wait};

/// The rules a round follows (configuration `tenancy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Whether waiting jobs may preempt running ones.
    pub preemption: bool,
    /// A job that has run (or been admitted) for less than this is never preempted.
    pub minimum_runtime_seconds: u64,
    /// A job waiting this long reserves its place (see the module documentation).
    pub reserve_after_seconds: u64,
}

/// A job that wants GPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// The job.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// GPUs it asks for.
    pub gpus: u32,
    /// Its priority (the PriorityClass value).
    pub priority: i32,
    /// When it was created (FIFO order).
    pub created: Timestamp,
    /// Since when it waits (its creation, or its latest preemption or failed attempt).
    pub waiting_since: Timestamp,
    /// The job that preempted it last, which it never preempts in turn.
    pub preempted_by: Option<JobId>,
    /// Whether it made room in the previous round (preempted jobs, or claimed the GPUs of
    /// stopping ones): it keeps its place like a job that waited long, so that nothing
    /// admitted in between takes the room made for it.
    pub nominated: bool,
}

/// A job that holds GPUs: admitted, running, or stopping.
#[derive(Clone, Debug, PartialEq)]
pub struct Holding {
    /// The job.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// GPUs it holds.
    pub gpus: u32,
    /// Its priority.
    pub priority: i32,
    /// Whether it runs or is giving its GPUs back.
    pub state: HoldState,
}

/// What a holding job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    /// Admitted or running since `since`.
    Running {
        /// When it was admitted or (re)started.
        since: Timestamp,
        /// Its latest checkpoint, if any: preempting it loses the work since then.
        checkpoint: Option<Timestamp>,
    },
    /// Stopping (preempted, suspended, finished): its pod is still there and holds the GPUs.
    Releasing,
}

/// Everything a round reads.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The time of the round.
    pub now: Timestamp,
    /// The rules.
    pub policy: Policy,
    /// The tenants.
    pub quotas: Vec<Quota>,
    /// Jobs that wait for GPUs.
    pub waiting: Vec<Waiting>,
    /// Jobs that hold GPUs (admitted earlier and not started yet included).
    pub holding: Vec<Holding>,
}

/// A job admitted this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The job.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// GPUs it holds from now on.
    pub gpus: u32,
    /// Of those, GPUs borrowed from the cohort.
    pub borrowed: u32,
}

/// Why a job is preempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The preemptor has the higher priority.
    Priority,
    /// The preemptor's tenant takes back nominal quota the victim borrowed.
    Reclaim,
}

/// A running job to stop so that another can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// The job to stop.
    pub victim: JobId,
    /// Its tenant.
    pub victim_tenant: String,
    /// The job it makes room for.
    pub preemptor: JobId,
    /// That job's tenant.
    pub preemptor_tenant: String,
    /// Why.
    pub cause: Cause,
}

/// A job that keeps waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The job.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// Its place in its tenant's queue, 1 being next.
    pub position: u32,
    /// Jobs in that queue.
    pub of: u32,
    /// Why it waits.
    pub reason: Reason,
    /// The same, for people.
    pub message: String,
}

/// A tenant's GPUs and jobs after the round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// GPUs held, borrowed ones included.
    pub in_use: u32,
    /// GPUs held beyond the nominal quota.
    pub borrowed: u32,
    /// Idle nominal GPUs other tenants of the cohort use.
    pub lent: u32,
    /// Jobs holding GPUs.
    pub running: u32,
    /// Jobs waiting.
    pub queued: u32,
}

/// What a round decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Jobs that may start (or resume) now.
    pub admitted: Vec<Admitted>,
    /// Running jobs to stop.
    pub preemptions: Vec<Preemption>,
    /// Jobs that keep waiting, each with its place and reason.
    pub queued: Vec<Queued>,
    /// Every tenant's usage.
    pub usage: BTreeMap<String, Usage>,
}

/// Where a waiting job stands during the round.
#[derive(Clone, Debug, PartialEq)]
enum State {
    /// Not admitted yet; the latest reason it did not fit.
    Open(Option<Shortfall>),
    Admitted,
    /// Waits for good this round.
    Done(Wait),
}

/// Which waiting jobs a pass looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Nominal,
    Borrowing,
    Preemption,
}

/// Decides one round.
pub fn admit(snapshot: &Snapshot) -> Outcome {
    let mut round = Round::new(snapshot);
    round.pass(Pass::Nominal);
    round.pass(Pass::Borrowing);
    round.pass(Pass::Preemption);
    round.finish()
}

struct Round<'a> {
    snapshot: &'a Snapshot,
    books: Books,
    /// Each tenant's waiting jobs (indices into `snapshot.waiting`) in its own order.
    queues: BTreeMap<String, Vec<usize>>,
    states: Vec<State>,
    /// Tenants and cohorts held by a job that reserved its place: the job.
    tenant_reserved: HashMap<String, usize>,
    pool_reserved: HashMap<String, usize>,
    /// Holders (indices into `holding`) already chosen as victims or claimed while releasing.
    taken: HashSet<usize>,
    /// Holders, this round's admissions appended.
    holding: Vec<Holding>,
    outcome: Outcome,
}

impl<'a> Round<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let mut books = Books::new(&snapshot.quotas);
        for holder in &snapshot.holding {
            books.charge(&holder.tenant, holder.gpus);
        }
        let mut queues: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, job) in snapshot.waiting.iter().enumerate() {
            queues.entry(job.tenant.clone()).or_default().push(i);
        }
        for queue in queues.values_mut() {
            queue.sort_by(|&a, &b| tenant_order(&snapshot.waiting[a], &snapshot.waiting[b]));
        }
        Self {
            snapshot,
            books,
            queues,
            states: vec![State::Open(None); snapshot.waiting.len()],
            tenant_reserved: HashMap::new(),
            pool_reserved: HashMap::new(),
            taken: HashSet::new(),
            holding: snapshot.holding.clone(),
            outcome: Outcome::default(),
        }
    }

    /// Whether `job` reserves its place: it waited long, or room was made for it.
    fn starving(&self, job: &Waiting) -> bool {
        let waited = self
            .snapshot
            .now
            .duration_since(job.waiting_since)
            .as_secs();
        job.nominated
            || (waited >= 0 && waited.unsigned_abs() >= self.snapshot.policy.reserve_after_seconds)
    }

    /// Goes through the open jobs in the round's order (re-chosen after each job, since shares
    /// change with every admission).
    fn pass(&mut self, pass: Pass) {
        if pass == Pass::Preemption {
            self.preemption_pass();
            return;
        }
        let mut cursors: BTreeMap<String, usize> =
            self.queues.keys().map(|t| (t.clone(), 0)).collect();
        while let Some(i) = self.next(&mut cursors) {
            self.consider(i, pass == Pass::Borrowing);
        }
    }

    /// The next open job: the best of each tenant's first open job.
    fn next(&self, cursors: &mut BTreeMap<String, usize>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (tenant, cursor) in cursors.iter_mut() {
            let queue = &self.queues[tenant];
            while *cursor < queue.len() && !matches!(self.states[queue[*cursor]], State::Open(_)) {
                *cursor += 1;
            }
            let Some(&head) = queue.get(*cursor) else {
                continue;
            };
            best = Some(match best {
                Some(b) if self.order(b, head) != Ordering::Greater => b,
                _ => head,
            });
        }
        if let Some(i) = best {
            let tenant = &self.snapshot.waiting[i].tenant;
            if let Some(cursor) = cursors.get_mut(tenant) {
                *cursor += 1;
            }
        }
        best
    }

    /// The round's order between two waiting jobs.
    fn order(&self, a: usize, b: usize) -> Ordering {
        let (ja, jb) = (&self.snapshot.waiting[a], &self.snapshot.waiting[b]);
        let (sa, sb) = (self.starving(ja), self.starving(jb));
        jb.priority
            .cmp(&ja.priority)
            .then(sb.cmp(&sa))
            .then_with(|| {
                if sa && sb {
                    ja.waiting_since.cmp(&jb.waiting_since)
                } else {
                    Ordering::Equal
                }
            })
            .then_with(|| self.books.share_order(&ja.tenant, &jb.tenant))
            .then_with(|| tenant_order(ja, jb))
    }

    fn admit(&mut self, i: usize, fit: Fit) {
        let snapshot = self.snapshot;
        let job = &snapshot.waiting[i];
        let before = self.books.borrowed(&job.tenant);
        self.books.charge(&job.tenant, job.gpus);
        let borrowed = match fit {
            Fit::Borrowing { borrowed } => borrowed.saturating_sub(before).min(job.gpus),
            _ => 0,
        };
        self.outcome.admitted.push(Admitted {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            gpus: job.gpus,
            borrowed,
        });
        self.holding.push(Holding {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            gpus: job.gpus,
            priority: job.priority,
            state: HoldState::Running {
                since: self.snapshot.now,
                checkpoint: None,
            },
        });
        self.states[i] = State::Admitted;
    }

    /// Marks `i` as the job that reserves its tenant (and, when `pool`, its cohort).
    fn reserve(&mut self, i: usize, pool: bool) {
        let snapshot = self.snapshot;
        let job = &snapshot.waiting[i];
        if !self.starving(job) {
            return;
        }
        self.tenant_reserved.entry(job.tenant.clone()).or_insert(i);
        if pool && let Some(cohort) = self.cohort_of(&job.tenant) {
            self.pool_reserved.entry(cohort).or_insert(i);
        }
    }

    fn cohort_of(&self, tenant: &str) -> Option<String> {
        self.books.quota(tenant).and_then(|q| q.cohort.clone())
    }

    /// The job that reserved `i`'s tenant (or, with `pool`, its cohort) and comes before `i`.
    fn reserved_by(&self, i: usize, pool: bool) -> Option<usize> {
        let waiting = &self.snapshot.waiting;
        let tenant = &waiting[i].tenant;
        let by_tenant = self
            .tenant_reserved
            .get(tenant)
            .copied()
            .filter(|&k| k != i && tenant_order(&waiting[k], &waiting[i]) == Ordering::Less);
        let by_pool = || {
            self.cohort_of(tenant)
                .and_then(|c| self.pool_reserved.get(&c).copied())
                .filter(|&k| k != i && self.order(k, i) == Ordering::Less)
        };
        by_tenant.or_else(|| if pool { by_pool() } else { None })
    }

    /// Admits job `i` if it fits (in the borrowing pass, by borrowing too); else notes why
    /// not, and whether it reserves its place.
    fn consider(&mut self, i: usize, borrow: bool) {
        if let Some(k) = self.reserved_by(i, borrow) {
            self.states[i] = State::Done(Wait::Reserved(self.snapshot.waiting[k].id.clone()));
            return;
        }
        let snapshot = self.snapshot;
        let job = &snapshot.waiting[i];
        match self.books.fit(&job.tenant, job.gpus, &Released::default()) {
            Fit::Nominal => self.admit(i, Fit::Nominal),
            fit @ Fit::Borrowing { .. } if borrow => self.admit(i, fit),
            Fit::No(Shortfall::Never { ceiling }) => {
                self.states[i] = State::Done(Wait::Never { ceiling });
            }
            fit => {
                let shortfall = match fit {
                    Fit::No(shortfall) => Some(shortfall),
                    _ => None,
                };
                self.states[i] = State::Open(shortfall);
                self.reserve(i, borrow);
            }
        }
    }

    /// Waiting jobs, in order, take stopping jobs' GPUs or preempt running ones.
    fn preemption_pass(&mut self) {
        let borrowing = self.borrowing_holders();
        let mut order: Vec<usize> = (0..self.states.len())
            .filter(|&i| matches!(self.states[i], State::Open(_)))
            .collect();
        order.sort_by(|&a, &b| self.order(a, b));
        for i in order {
            if let Some(wait) = self.make_room(i, &borrowing) {
                self.states[i] = State::Done(wait);
            }
        }
    }

    /// Holders (indices) whose GPUs are beyond their tenant's nominal quota: a tenant's running
    /// jobs by priority, then oldest first, fill its nominal quota; the rest borrow.
    fn borrowing_holders(&self) -> HashSet<usize> {
        let mut by_tenant: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (h, holder) in self.holding.iter().enumerate() {
            if let HoldState::Running { .. } = holder.state {
                by_tenant.entry(&holder.tenant).or_default().push(h);
            }
        }
        let mut borrowing = HashSet::new();
        for (tenant, mut holders) in by_tenant {
            let nominal = self.books.quota(tenant).map_or(0, |q| q.nominal);
            holders.sort_by(|&a, &b| {
                let (ha, hb) = (&self.holding[a], &self.holding[b]);
                hb.priority
                    .cmp(&ha.priority)
                    .then(since(ha).cmp(&since(hb)))
                    .then(ha.id.cmp(&hb.id))
            });
            let mut used = 0u32;
            for h in holders {
                used = used.saturating_add(self.holding[h].gpus);
                if used > nominal {
                    borrowing.insert(h);
                }
            }
        }
        borrowing
    }

    /// Finds room for waiting job `i` in GPUs being given back, or by preempting; the wait it
    /// gets when it found some.
    fn make_room(&mut self, i: usize, borrowing: &HashSet<usize>) -> Option<Wait> {
        let snapshot = self.snapshot;
        let job = &snapshot.waiting[i];
        let releasing: Vec<usize> = (0..self.holding.len())
            .filter(|h| !self.taken.contains(h))
            .filter(|&h| self.holding[h].state == HoldState::Releasing)
            .filter(|&h| self.books.same_pool(&self.holding[h].tenant, &job.tenant))
            .collect();
        let fits = |chosen: &[usize], nominal_only: bool| {
            let mut released = Released::default();
            for &h in chosen {
                released.add(&self.holding[h].tenant, self.holding[h].gpus);
            }
            match self.books.fit(&job.tenant, job.gpus, &released) {
                Fit::Nominal => true,
                Fit::Borrowing { .. } => !nominal_only,
                Fit::No(_) => false,
            }
        };
        if let Some(claimed) = smallest_set(&releasing, &[], |set| fits(set, false)) {
            let names = claimed
                .iter()
                .map(|&h| self.holding[h].id.clone())
                .collect();
            self.taken.extend(claimed);
            return Some(Wait::Releasing(names));
        }
        if !snapshot.policy.preemption {
            return None;
        }
        let within_nominal = {
            let nominal = self.books.quota(&job.tenant).map_or(0, |q| q.nominal);
            self.books.held(&job.tenant).gpus.saturating_add(job.gpus) <= nominal
        };
        let mut candidates: Vec<(usize, Cause)> = (0..self.holding.len())
            .filter(|h| !self.taken.contains(h))
            .filter_map(|h| {
                let holder = &self.holding[h];
                let HoldState::Running { since, .. } = holder.state else {
                    return None;
                };
                let ran = snapshot.now.duration_since(since).as_secs();
                if ran < 0 || ran.unsigned_abs() < snapshot.policy.minimum_runtime_seconds {
                    return None;
                }
                if job.preempted_by.as_ref() == Some(&holder.id) {
                    return None;
                }
                let lower = holder.priority < job.priority;
                if holder.tenant == job.tenant {
                    return lower.then_some((h, Cause::Priority));
                }
                if !self.books.same_pool(&holder.tenant, &job.tenant) || !borrowing.contains(&h) {
                    return None;
                }
                if lower {
                    Some((h, Cause::Priority))
                } else {
                    within_nominal.then_some((h, Cause::Reclaim))
                }
            })
            .collect();
        candidates.sort_by(|&(a, _), &(b, _)| self.victim_order(a, b, &job.tenant));
        let victims: Vec<usize> = candidates.iter().map(|&(h, _)| h).collect();
        let cause = |h: usize| {
            candidates
                .iter()
                .find(|&&(c, _)| c == h)
                .map_or(Cause::Priority, |&(_, c)| c)
        };
        // A reclaim (a victim of equal or higher priority) is only for GPUs of the nominal quota.
        let chosen = smallest_set(&victims, &releasing, |set| {
            let reclaims = set.iter().any(|&h| cause(h) == Cause::Reclaim);
            fits(set, reclaims)
        })?;
        let mut names = Vec::new();
        for &h in &chosen {
            let holder = &self.holding[h];
            if holder.state == HoldState::Releasing {
                continue;
            }
            names.push(holder.id.clone());
            self.outcome.preemptions.push(Preemption {
                victim: holder.id.clone(),
                victim_tenant: holder.tenant.clone(),
                preemptor: job.id.clone(),
                preemptor_tenant: job.tenant.clone(),
                cause: cause(h),
            });
        }
        self.taken.extend(chosen);
        Some(Wait::Preempting(names))
    }

    /// Victims least worth keeping first: other tenants' borrowers, lower priority, less work
    /// lost since the latest checkpoint, the most recently started.
    fn victim_order(&self, a: usize, b: usize, tenant: &str) -> Ordering {
        let (ha, hb) = (&self.holding[a], &self.holding[b]);
        let now = self.snapshot.now;
        let lost = |h: &Holding| match h.state {
            HoldState::Running { since, checkpoint } => {
                let from = checkpoint.map_or(since, |c| c.max(since));
                now.duration_since(from).as_secs()
            }
            HoldState::Releasing => 0,
        };
        (ha.tenant == tenant)
            .cmp(&(hb.tenant == tenant))
            .then(ha.priority.cmp(&hb.priority))
            .then(lost(ha).cmp(&lost(hb)))
            .then(since(hb).cmp(&since(ha)))
            .then(ha.id.cmp(&hb.id))
    }

    fn finish(mut self) -> Outcome {
        let lent = self.books.lent();
        for quota in &self.snapshot.quotas {
            let held = self.books.held(&quota.name);
            self.outcome.usage.insert(
                quota.name.clone(),
                Usage {
                    in_use: held.gpus,
                    borrowed: self.books.borrowed(&quota.name),
                    lent: lent.get(&quota.name).copied().unwrap_or(0),
                    running: held.jobs,
                    queued: 0,
                },
            );
        }
        for (tenant, queue) in &self.queues {
            let waiting: Vec<usize> = queue
                .iter()
                .copied()
                .filter(|&i| self.states[i] != State::Admitted)
                .collect();
            let of = u32::try_from(waiting.len()).unwrap_or(u32::MAX);
            if let Some(usage) = self.outcome.usage.get_mut(tenant) {
                usage.queued = of;
            }
            for (n, &i) in waiting.iter().enumerate() {
                let job = &self.snapshot.waiting[i];
                let wait = match &self.states[i] {
                    State::Done(wait) => wait.clone(),
                    State::Open(shortfall) => {
                        Wait::Short(shortfall.unwrap_or(Shortfall::CohortUsed))
                    }
                    State::Admitted => continue,
                };
                let position = u32::try_from(n + 1).unwrap_or(u32::MAX);
                let (reason, message) = wait.explain(
                    job,
                    &self.books,
                    position,
                    of,
                    self.snapshot.policy.reserve_after_seconds,
                );
                self.outcome.queued.push(Queued {
                    id: job.id.clone(),
                    tenant: tenant.clone(),
                    position,
                    of,
                    reason,
                    message,
                });
            }
        }
        self.outcome
    }
}

/// A tenant's own order: priority, then FIFO.
fn tenant_order(a: &Waiting, b: &Waiting) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.created.cmp(&b.created))
        .then(a.id.cmp(&b.id))
}

fn since(holder: &Holding) -> Timestamp {
    match holder.state {
        HoldState::Running { since, .. } => since,
        HoldState::Releasing => Timestamp::MIN,
    }
}

/// The fewest of `candidates` (taken in their order, then pruned from the last back) that, with
/// all of `given`, satisfy `enough`; the chosen members of `given` are pruned the same way.
/// `None` when even all of them do not.
fn smallest_set(
    candidates: &[usize],
    given: &[usize],
    enough: impl Fn(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut chosen: Vec<usize> = given.to_vec();
    let mut satisfied = enough(&chosen) && !chosen.is_empty();
    for &c in candidates {
        if satisfied {
            break;
        }
        chosen.push(c);
        satisfied = enough(&chosen);
    }
    if !satisfied {
        return None;
    }
    let mut k = chosen.len();
    while k > 0 {
        k -= 1;
        let mut without = chosen.clone();
        without.remove(k);
        if enough(&without) {
            chosen = without;
        }
    }
    (!chosen.is_empty()).then_some(chosen)
}
