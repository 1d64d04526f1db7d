//! Training: optimizer, schedule, metrics, progress and the loop that ties them together.

pub mod eval;
pub mod metrics;
pub mod optimizer;
pub mod precision;
pub mod progress;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod shards;

pub use metrics::EvalMetrics;
pub use precision::{LossScaler, Precision};
pub use progress::{Event, Progress};
pub use report::{ReportConfig, Reporter, Token};
pub use runner::{Outcome, RunOptions, run};
