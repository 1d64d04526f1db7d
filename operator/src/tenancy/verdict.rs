//! What admission says about one job, as the FineTuneJob reconciler reads it: the only way a
//! trainer Job gets created or resumed is an [`Admission::Granted`] (or a job no quota
//! applies to), and the only way admission stops a running one is [`Admission::Preempted`].

/// The admission state of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// No quota applies (a namespace no Tenant owns under `Admit`, or a Kueue job); why.
    Unmetered(String),
    /// The job may start or resume now: GPUs of `tenant` are reserved for it.
    Granted {
        /// Its tenant.
        tenant: String,
        /// GPUs reserved.
        gpus: u32,
        /// Of those, borrowed from the cohort.
        borrowed: u32,
    },
    /// The job waits (or, running already, keeps running).
    Queued {
        /// Its tenant, when it has one.
        tenant: Option<String>,
        /// `status.reason` while it waits.
        reason: String,
        /// `status.message` while it waits.
        message: String,
        /// Its place in its tenant's queue, 1 being next.
        position: Option<u32>,
    },
    /// The job runs but must stop (checkpoint and give its GPUs back) for job `by`.
    Preempted {
        /// Its tenant.
        tenant: String,
        /// `namespace/name` of the job it makes room for.
        by: String,
        /// Why, for people.
        message: String,
    },
    /// The job may not run in its namespace; why, and what to do.
    Refused(String),
}

impl Admission {
    /// Whether a trainer Job may be created or released now.
    pub fn grants(&self) -> bool {
        matches!(self, Self::Unmetered(_) | Self::Granted { .. })
    }

    /// The Tenant whose quota the job runs under.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Granted { tenant, .. } | Self::Preempted { tenant, .. } => Some(tenant),
            Self::Queued { tenant, .. } => tenant.as_deref(),
            Self::Unmetered(_) | Self::Refused(_) => None,
        }
    }
}
