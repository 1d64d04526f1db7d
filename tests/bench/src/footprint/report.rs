//! The benchmark's table: latencies, times, the operator's memory and CPU, and API writes per
//! job and per transition against the targets of issue 10 §10.

use std::time::Duration;

use crate::common::operator::Usage;
use crate::common::stats::{quantile, secs};
use crate::writes::WriteDelta;

/// One stretch of the run.
#[derive(Debug)]
pub struct Phase {
    /// What happened, e.g. `create → Running`.
    pub name: &'static str,
    /// From its first request to its last observed state.
    pub took: Duration,
    /// The writes meanwhile.
    pub writes: WriteDelta,
    /// Job transitions meanwhile (changes of phase or reason).
    pub transitions: u64,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Report {
    /// FineTuneJobs created.
    pub jobs: usize,
    /// Creates in flight at once.
    pub parallel: usize,
    /// Creates per second, when paced.
    pub rate: Option<f64>,
    /// Simulated GPU nodes and their GPUs.
    pub gpu_nodes: (usize, u64),
    /// Time to issue every create.
    pub creating: Duration,
    /// Apply → Job created, per job.
    pub latencies: Vec<Duration>,
    /// From the first create until the last Job appeared.
    pub jobs_created: Duration,
    /// From the first create until the last trainer pod ran.
    pub pods_running: Duration,
    /// The stretches, in order.
    pub phases: Vec<Phase>,
    /// The operator's use of the machine.
    pub operator: Usage,
    /// Jobs that failed (`job: reason: message`); a successful run has none.
    pub failures: Vec<String>,
}

/// Milliseconds, or seconds from 10 s on.
fn ms(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        secs(d)
    }
}

impl Report {
    fn row(measure: &str, value: &str, target: &str) {
        println!("| {measure:<52} | {value:>12} | {target:<9} |");
    }

    /// Prints the tables on stdout.
    pub fn print(&self) {
        let mut latencies = self.latencies.clone();
        latencies.sort();
        let jobs = self.jobs.max(1) as f64;
        let pace = self
            .rate
            .map_or_else(|| "a burst".to_owned(), |r| format!("{r} a second"));
        println!(
            "\nattune-operator footprint: {} FineTuneJobs ({pace}, {} creates in flight) on {} \
             simulated GPU nodes ({} GPUs)\n",
            self.jobs, self.parallel, self.gpu_nodes.0, self.gpu_nodes.1
        );
        println!("| {:<52} | {:>12} | {:<9} |", "measure", "value", "target");
        println!("|{}|{}|{}|", "-".repeat(54), "-".repeat(14), "-".repeat(11));
        Self::row("creates issued in", &secs(self.creating), "");
        for (name, q, target) in [
            ("apply → Job created, p50", 0.5, ""),
            ("apply → Job created, p99", 0.99, "< 200 ms"),
            ("apply → Job created, max", 1.0, ""),
        ] {
            Self::row(name, &ms(quantile(&latencies, q)), target);
        }
        Self::row(
            "first create → the last Job created",
            &secs(self.jobs_created),
            "",
        );
        Self::row(
            "first create → every trainer pod Running",
            &secs(self.pods_running),
            "",
        );
        for phase in &self.phases {
            Self::row(&format!("{}, every job", phase.name), &secs(phase.took), "");
        }
        Self::row("jobs Failed", &self.failures.len().to_string(), "0");
        let usage = &self.operator;
        Self::row(
            "operator peak RSS (VmHWM)",
            &format!("{:.1} MiB", usage.process.peak_rss_mib()),
            "< 64 MiB",
        );
        Self::row(
            "operator CPU time (user + system)",
            &secs(usage.process.cpu),
            "",
        );
        Self::row(
            "FineTuneJob reconciles per job (failed in all)",
            &format!(
                "{:.1} ({})",
                usage.reconciles as f64 / jobs,
                usage.reconcile_errors
            ),
            "",
        );
        let mut total = WriteDelta::default();
        let writes_rows = |name: &str, writes: u64, transitions: u64| {
            let writes = writes as f64;
            Self::row(
                &format!("operator writes per job, {name}"),
                &format!("{:.2}", writes / jobs),
                "",
            );
            Self::row(
                &format!(
                    "  per job transition ({:.2} transitions per job)",
                    transitions as f64 / jobs
                ),
                &format!("{:.2}", writes / (transitions.max(1) as f64)),
                "≤ 3",
            );
        };
        for phase in &self.phases {
            writes_rows(phase.name, phase.writes.operator(), phase.transitions);
            total.add(&phase.writes);
        }
        if self.phases.len() > 1 {
            let transitions = self.phases.iter().map(|p| p.transitions).sum();
            writes_rows("whole run", total.operator(), transitions);
        }
        for failure in self.failures.iter().take(10) {
            println!("\nFailed: {failure}");
        }
        println!(
            "\nAPI writes by resource over the whole run (apiserver_request_total; the operator's \
             from the audit log):\n"
        );
        println!(
            "| {:<36} | {:<6} | {:>11} | {:>8} | {:>12} |",
            "resource", "verb", "all clients", "operator", "operator/job"
        );
        println!(
            "|{}|{}|{}|{}|{}|",
            "-".repeat(38),
            "-".repeat(8),
            "-".repeat(13),
            "-".repeat(10),
            "-".repeat(14)
        );
        for ((resource, verb), (all, operator)) in &total.rows {
            println!(
                "| {resource:<36} | {verb:<6} | {all:>11} | {operator:>8} | {:>12.2} |",
                *operator as f64 / jobs
            );
        }
    }
}
