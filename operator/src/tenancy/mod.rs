//! Tenancy: GPU quotas per Tenant, fair-share queueing and checkpoint-aware preemption.
//!
//! - [`ownership`]: which Tenant a job's namespace belongs to.
//! - [`usage`]: the GPUs each job holds, read from its trainer Jobs and pods.
//! - [`quota`] and [`admission`]: the pure core — one round from a snapshot to the jobs
//!   admitted, preempted and queued ([`reasons`] says why each waits).
//! - [`ledger`]: what admission remembers between rounds, and what a job's reconcile asks it
//!   ([`verdict::Admission`]).
//! - [`scheduler`]: the loop that runs the rounds, and [`report`]: Tenant status and Events.
//! - [`config`]: the `tenancy` section of the configuration file.

pub mod admission;
pub mod config;
pub mod ledger;
pub mod ownership;
pub mod quota;
pub mod reasons;
pub mod report;
pub mod scheduler;
#[cfg(test)]
mod tests;
pub mod usage;
pub mod verdict;

pub use config::TenancyConfig;
pub use ledger::Ledger;
pub use verdict::Admission;
