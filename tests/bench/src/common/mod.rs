//! What the benchmarks under `tests/bench` share: their common options, the harness cluster, the real operator as a
//! process, a process's memory and CPU from `/proc`, watches that stamp each event with the local
//! clock, the workload's namespaces and FineTuneJobs and the `done` reports that end their
//! simulated trainer pods, and quantiles. Each benchmark includes it with `#[path]`.

pub mod args;
pub mod cluster;
#[path = "../../../e2e/support/done_event.rs"]
pub mod done_event;
pub mod ending;
pub mod operator;
pub mod process;
pub mod stats;
pub mod watch;
pub mod workload;
