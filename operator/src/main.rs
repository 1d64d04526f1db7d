//! `attune-operator`: the operator's process entry point.

use anyhow::Context as _;
use attune_operator::telemetry::{self, LogFormat};
use clap::Parser;

/// The Attune operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Log format: `json` in the cluster, `text` in a terminal.
    #[arg(long, env = "ATTUNE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format).context("installing the log subscriber")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "attune-operator started; no reconcilers are enabled in this build"
    );
    Ok(())
}
