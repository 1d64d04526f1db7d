//! Why a job waits, as the `reason` (one word) and `message` (with the numbers and what would
//! change it) of its status while Queued.

use super::admission::Waiting;
use super::quota::{Books, JobId, Shortfall};

/// The `reason` of a Queued job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not looked at by an admission round yet.
    Queued,
    /// Its tenant's nominal quota is used and it may not borrow (no cohort).
    QuotaExhausted,
    /// Its tenant's nominal quota has room, but borrowers of the cohort use it.
    QuotaLentOut,
    /// Borrowing more would pass the tenant's borrowing limit.
    BorrowingLimitReached,
    /// The cohort has no idle quota left.
    CohortExhausted,
    /// Its tenant runs `maxRunningJobs` jobs.
    MaxRunningJobs,
    /// It asks for more GPUs than its tenant can ever hold.
    ExceedsQuota,
    /// A job that waited longer holds the place it needs.
    Reserved,
    /// GPUs of stopping jobs come to it.
    WaitingForRelease,
    /// Running jobs are being preempted to make room for it.
    Preempting,
    /// Two Tenants claim its namespace.
    TenantConflict,
    /// The Tenant the configuration names for namespaces no Tenant owns does not exist.
    TenantNotFound,
}

impl Reason {
    /// The word in `status.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::QuotaExhausted => "QuotaExhausted",
            Self::QuotaLentOut => "QuotaLentOut",
            Self::BorrowingLimitReached => "BorrowingLimitReached",
            Self::CohortExhausted => "CohortExhausted",
            Self::MaxRunningJobs => "MaxRunningJobs",
            Self::ExceedsQuota => "ExceedsQuota",
            Self::Reserved => "Reserved",
            Self::WaitingForRelease => "WaitingForRelease",
            Self::Preempting => "Preempting",
            Self::TenantConflict => "TenantConflict",
            Self::TenantNotFound => "TenantNotFound",
        }
    }
}

/// Where a waiting job stands at the end of a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// It does not fit.
    Short(Shortfall),
    /// It never fits: the most its tenant can hold.
    Never {
        /// That most.
        ceiling: u32,
    },
    /// The job that reserved the place before it.
    Reserved(JobId),
    /// Stopping jobs whose GPUs it gets.
    Releasing(Vec<JobId>),
    /// Running jobs preempted for it.
    Preempting(Vec<JobId>),
}

fn names(ids: &[JobId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Wait {
    /// The reason and message of `job`, at `position` of `of` in its tenant's queue.
    pub fn explain(
        &self,
        job: &Waiting,
        books: &Books,
        position: u32,
        of: u32,
        reserve_after: u64,
    ) -> (Reason, String) {
        let tenant = &job.tenant;
        let quota = books.quota(tenant);
        let nominal = quota.map_or(0, |q| q.nominal);
        let held = books.held(tenant);
        let gpus = job.gpus;
        let (reason, why) = match self {
            Self::Short(Shortfall::MaxRunningJobs { limit }) => (
                Reason::MaxRunningJobs,
                format!(
                    "tenant {tenant} runs {} jobs (maxRunningJobs {limit})",
                    held.jobs
                ),
            ),
            Self::Short(Shortfall::LentOut) => {
                let (_, used) = books.cohort(tenant);
                (
                    Reason::QuotaLentOut,
                    format!(
                        "tenant {tenant} uses {} of its {nominal} GPUs, but other tenants of its \
                         cohort borrow the rest ({used} in use there); they come back as those \
                         jobs end or are preempted",
                        held.gpus
                    ),
                )
            }
            Self::Short(Shortfall::QuotaUsed) => (
                Reason::QuotaExhausted,
                format!(
                    "tenant {tenant} uses {} of its {nominal} GPUs and this job needs {gpus}",
                    held.gpus
                ),
            ),
            Self::Short(Shortfall::BorrowingLimit { limit }) => (
                Reason::BorrowingLimitReached,
                format!(
                    "tenant {tenant} uses {} GPUs (nominal {nominal}, borrowing limit {limit}) \
                     and this job needs {gpus}",
                    held.gpus
                ),
            ),
            Self::Short(Shortfall::CohortUsed) => {
                let (cohort_nominal, used) = books.cohort(tenant);
                (
                    Reason::CohortExhausted,
                    format!(
                        "tenant {tenant} uses {} of its {nominal} GPUs and its cohort has none \
                         idle to lend ({used} of {cohort_nominal} in use); this job needs {gpus}",
                        held.gpus
                    ),
                )
            }
            Self::Short(Shortfall::Never { ceiling }) | Self::Never { ceiling } => (
                Reason::ExceedsQuota,
                format!(
                    "asks for {gpus} GPUs, more than tenant {tenant} can ever hold ({ceiling}): \
                     lower spec.resources.gpus, or raise the Tenant's quota"
                ),
            ),
            Self::Reserved(by) => (
                Reason::Reserved,
                format!(
                    "{by} goes first (it has waited over {reserve_after} s, or room is being \
                     made for it) and no later job overtakes it"
                ),
            ),
            Self::Releasing(from) => (
                Reason::WaitingForRelease,
                format!(
                    "the GPUs of stopping jobs come to this job: {}",
                    names(from)
                ),
            ),
            Self::Preempting(victims) => (
                Reason::Preempting,
                format!(
                    "preempting {} to make room; waiting for their trainers to checkpoint and stop",
                    names(victims)
                ),
            ),
        };
        (
            reason,
            format!("position {position} of {of} in tenant {tenant}'s queue: {why}"),
        )
    }
}
