//! GPU accounting of one admission round: what each tenant and cohort uses, and whether a job
//! of `g` GPUs fits — within its tenant's nominal quota, by borrowing idle quota of its cohort,
//! or not (and why). Pure: the round charges admissions and looks ahead at releases here.

use std::collections::HashMap;
use std::fmt;

/// A FineTuneJob as admission knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID (a recreated job is another job).
    pub uid: String,
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A tenant's quota, from its `spec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// The Tenant's name.
    pub name: String,
    /// GPUs guaranteed to it.
    pub nominal: u32,
    /// Most GPUs it may borrow beyond `nominal`; `None`: as many as its cohort has idle.
    pub borrowing_limit: Option<u32>,
    /// Tenants of one cohort lend each other idle quota; `None` lends and borrows nothing.
    pub cohort: Option<String>,
    /// Its share of contended GPUs relative to the other tenants (at least 1).
    pub weight: u32,
    /// Most jobs it may run at once.
    pub max_running_jobs: Option<u32>,
}

/// Where a job of some GPUs stands against its tenant's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Within the tenant's nominal quota, and the cohort has the GPUs.
    Nominal,
    /// Beyond the nominal quota, borrowing `borrowed` GPUs of the cohort's idle quota (the
    /// tenant's whole excess once admitted).
    Borrowing {
        /// GPUs the tenant would use beyond its nominal quota.
        borrowed: u32,
    },
    /// Not now.
    No(Shortfall),
}

impl Fit {
    /// Whether the job may be admitted.
    pub fn fits(self) -> bool {
        !matches!(self, Self::No(_))
    }
}

/// Why a job does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// The tenant runs `maxRunningJobs` jobs.
    MaxRunningJobs {
        /// The limit.
        limit: u32,
    },
    /// The nominal quota has room, but other tenants of the cohort borrow its idle GPUs.
    LentOut,
    /// The nominal quota is used up and the tenant has no cohort to borrow from.
    QuotaUsed,
    /// Borrowing this much would pass the tenant's `borrowingLimit`.
    BorrowingLimit {
        /// The limit.
        limit: u32,
    },
    /// The cohort has no idle quota left for it.
    CohortUsed,
    /// More GPUs than the tenant can ever hold (nominal + borrowing limit, or the cohort).
    Never {
        /// The most GPUs the tenant can hold.
        ceiling: u32,
    },
}

/// The cohort a tenant lends and borrows in: its named cohort, or itself alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pool {
    Cohort(String),
    Alone(String),
}

fn pool(quota: &Quota) -> Pool {
    quota
        .cohort
        .clone()
        .map_or_else(|| Pool::Alone(quota.name.clone()), Pool::Cohort)
}

/// GPUs and jobs one tenant holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// GPUs.
    pub gpus: u32,
    /// Jobs.
    pub jobs: u32,
}

/// GPUs and jobs that are (or will soon be) given back, per tenant: looked ahead at when
/// deciding whether stopping jobs make room.
#[derive(Clone, Debug, Default)]
pub struct Released {
    by_tenant: HashMap<String, Held>,
}

impl Released {
    /// Adds a job of `tenant` holding `gpus`.
    pub fn add(&mut self, tenant: &str, gpus: u32) {
        let held = self.by_tenant.entry(tenant.to_owned()).or_default();
        held.gpus += gpus;
        held.jobs += 1;
    }

    fn of(&self, tenant: &str) -> Held {
        self.by_tenant.get(tenant).copied().unwrap_or_default()
    }
}

/// The books of one round: every tenant's quota and what it holds.
#[derive(Clone, Debug)]
pub struct Books {
    quotas: HashMap<String, Quota>,
    held: HashMap<String, Held>,
    pool_nominal: HashMap<Pool, u32>,
    pool_used: HashMap<Pool, u32>,
}

impl Books {
    /// Books with nothing held.
    pub fn new(quotas: &[Quota]) -> Self {
        let mut pool_nominal: HashMap<Pool, u32> = HashMap::new();
        for quota in quotas {
            *pool_nominal.entry(pool(quota)).or_default() += quota.nominal;
        }
        Self {
            quotas: quotas.iter().map(|q| (q.name.clone(), q.clone())).collect(),
            held: HashMap::new(),
            pool_nominal,
            pool_used: HashMap::new(),
        }
    }

    /// The quota of `tenant`, if it is known.
    pub fn quota(&self, tenant: &str) -> Option<&Quota> {
        self.quotas.get(tenant)
    }

    /// Counts a job of `tenant` holding `gpus`.
    pub fn charge(&mut self, tenant: &str, gpus: u32) {
        let Some(quota) = self.quotas.get(tenant) else {
            return;
        };
        *self.pool_used.entry(pool(quota)).or_default() += gpus;
        let held = self.held.entry(tenant.to_owned()).or_default();
        held.gpus += gpus;
        held.jobs += 1;
    }

    /// What `tenant` holds.
    pub fn held(&self, tenant: &str) -> Held {
        self.held.get(tenant).copied().unwrap_or_default()
    }

    /// Whether `a` and `b` lend to each other (one cohort, or the same tenant).
    pub fn same_pool(&self, a: &str, b: &str) -> bool {
        match (self.quotas.get(a), self.quotas.get(b)) {
            (Some(a), Some(b)) => pool(a) == pool(b),
            _ => false,
        }
    }

    /// GPUs the cohort of `tenant` is guaranteed in all, and uses.
    pub fn cohort(&self, tenant: &str) -> (u32, u32) {
        self.quotas.get(tenant).map_or((0, 0), |q| {
            let pool = pool(q);
            (
                self.pool_nominal.get(&pool).copied().unwrap_or(0),
                self.pool_used.get(&pool).copied().unwrap_or(0),
            )
        })
    }

    /// The most GPUs `tenant` can ever hold.
    pub fn ceiling(&self, tenant: &str) -> u32 {
        let Some(quota) = self.quotas.get(tenant) else {
            return 0;
        };
        if quota.cohort.is_none() {
            return quota.nominal;
        }
        let (cohort, _) = self.cohort(tenant);
        let limit = quota
            .borrowing_limit
            .map_or(u32::MAX, |l| quota.nominal.saturating_add(l));
        limit.min(cohort)
    }

    /// Whether a job of `tenant` asking for `gpus` fits now, given that what `released` holds
    /// is given back first.
    pub fn fit(&self, tenant: &str, gpus: u32, released: &Released) -> Fit {
        let Some(quota) = self.quotas.get(tenant) else {
            return Fit::No(Shortfall::Never { ceiling: 0 });
        };
        let ceiling = self.ceiling(tenant);
        if gpus > ceiling {
            return Fit::No(Shortfall::Never { ceiling });
        }
        let own = self.held(tenant);
        let freed = released.of(tenant);
        let pool = pool(quota);
        // GPUs another tenant gives back return to the cohort only as far as that tenant
        // borrowed them: the rest is its own nominal quota, which its waiting jobs take first.
        let pool_freed: u32 = released
            .by_tenant
            .iter()
            .filter(|(t, _)| self.quotas.get(*t).is_some_and(|q| self::pool(q) == pool))
            .map(|(t, h)| {
                if t == tenant {
                    h.gpus
                } else {
                    h.gpus.min(self.borrowed(t))
                }
            })
            .sum();
        let running = own.jobs.saturating_sub(freed.jobs);
        if let Some(limit) = quota.max_running_jobs
            && running >= limit
        {
            return Fit::No(Shortfall::MaxRunningJobs { limit });
        }
        let used = u64::from(own.gpus.saturating_sub(freed.gpus));
        let pool_used = u64::from(
            self.pool_used
                .get(&pool)
                .copied()
                .unwrap_or(0)
                .saturating_sub(pool_freed),
        );
        let pool_nominal = u64::from(self.pool_nominal.get(&pool).copied().unwrap_or(0));
        let after = used + u64::from(gpus);
        let nominal = u64::from(quota.nominal);
        let pool_room = pool_used + u64::from(gpus) <= pool_nominal;
        if after <= nominal {
            return if pool_room {
                Fit::Nominal
            } else {
                Fit::No(Shortfall::LentOut)
            };
        }
        if quota.cohort.is_none() {
            return Fit::No(Shortfall::QuotaUsed);
        }
        if let Some(limit) = quota.borrowing_limit
            && after > nominal + u64::from(limit)
        {
            return Fit::No(Shortfall::BorrowingLimit { limit });
        }
        if !pool_room {
            return Fit::No(Shortfall::CohortUsed);
        }
        Fit::Borrowing {
            borrowed: u32::try_from(after - nominal).unwrap_or(u32::MAX),
        }
    }

    /// `tenant`'s GPUs in use beyond its nominal quota.
    pub fn borrowed(&self, tenant: &str) -> u32 {
        let nominal = self.quotas.get(tenant).map_or(0, |q| q.nominal);
        self.held(tenant).gpus.saturating_sub(nominal)
    }

    /// GPUs of each tenant's idle nominal quota that borrowers of its cohort use: the cohort's
    /// borrowed GPUs spread over its lenders in proportion to their idle quota (largest
    /// remainder, so the parts add up).
    pub fn lent(&self) -> HashMap<String, u32> {
        let mut lent = HashMap::new();
        let mut pools: HashMap<Pool, Vec<&Quota>> = HashMap::new();
        for quota in self.quotas.values() {
            pools.entry(pool(quota)).or_default().push(quota);
        }
        for (_, mut members) in pools {
            members.sort_by(|a, b| a.name.cmp(&b.name));
            let borrowed: u64 = members
                .iter()
                .map(|q| u64::from(self.borrowed(&q.name)))
                .sum();
            let idle: Vec<u64> = members
                .iter()
                .map(|q| u64::from(q.nominal.saturating_sub(self.held(&q.name).gpus)))
                .collect();
            let total: u64 = idle.iter().sum();
            if borrowed == 0 || total == 0 {
                continue;
            }
            if borrowed >= total {
                for (quota, idle) in members.iter().zip(&idle) {
                    lent.insert(quota.name.clone(), u32::try_from(*idle).unwrap_or(u32::MAX));
                }
                continue;
            }
            let mut parts: Vec<(u64, u64, usize)> = idle
                .iter()
                .enumerate()
                .map(|(i, idle)| (borrowed * idle / total, borrowed * idle % total, i))
                .collect();
            let mut left = borrowed - parts.iter().map(|p| p.0).sum::<u64>();
            parts.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
            for part in &mut parts {
                if left == 0 {
                    break;
                }
                part.0 += 1;
                left -= 1;
            }
            for (share, _, i) in parts {
                lent.insert(
                    members[i].name.clone(),
                    u32::try_from(share).unwrap_or(u32::MAX),
                );
            }
        }
        lent
    }

    /// Compares the weighted shares of GPUs in use of `a` and `b` (used / weight).
    pub fn share_order(&self, a: &str, b: &str) -> std::cmp::Ordering {
        let weight = |t: &str| u64::from(self.quotas.get(t).map_or(1, |q| q.weight.max(1)));
        let used = |t: &str| u64::from(self.held(t).gpus);
        (used(a) * weight(b)).cmp(&(used(b) * weight(a)))
    }
}
