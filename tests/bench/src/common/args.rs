//! The command-line options every benchmark takes: which operator to run, where its files go,
//! and when a run counts as stalled.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The operator and the stall limit.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The operator binary.
    #[arg(long)]
    pub operator: PathBuf,
    /// Folder for the operator's config and log.
    #[arg(long)]
    pub out: PathBuf,
    /// Fail when nothing progresses for this long (seconds).
    #[arg(long, default_value_t = 120)]
    pub stall_seconds: u64,
}

impl RunArgs {
    /// `--stall-seconds` as a duration.
    pub fn stall(&self) -> Duration {
        Duration::from_secs(self.stall_seconds)
    }
}
