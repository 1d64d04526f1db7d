//! The Attune operator: admits FineTuneJobs under their tenant's GPU quota, caches base models,
//! runs the trainer as batch/v1 Jobs and publishes the results.
//!
//! Today the crate holds the process plumbing (logging); the reconcilers land with their issues.

pub mod telemetry;
