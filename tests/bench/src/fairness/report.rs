//! The table: each mode that ran side by side, then each tenant's share against its weight.

use crate::common::operator::Usage;
use crate::common::process::ProcessUsage;
use crate::common::stats::secs;
use crate::metrics::Figures;
use crate::observe::PodsRan;
use crate::plan::TenantPlan;

/// What one mode measured.
#[derive(Debug)]
pub struct Outcome {
    /// `Attune` or `Kueue`, as the column's title.
    pub mode: String,
    pub figures: Figures,
    pub jobs: usize,
    /// `job: reason: message` of each failed job.
    pub failures: Vec<String>,
    pub pods: PodsRan,
    pub operator: Usage,
    /// Kueue's manager: its peak RSS so far, and the CPU it used during this mode.
    pub kueue: Option<ProcessUsage>,
}

/// The run as a whole.
#[derive(Debug)]
pub struct Report {
    pub gpu_nodes: (usize, u64),
    pub tenants: Vec<TenantPlan>,
    pub run_seconds: u64,
    pub outcomes: Vec<Outcome>,
}

fn mib(usage: &ProcessUsage) -> String {
    format!("{:.1} MiB", usage.peak_rss_mib())
}

impl Report {
    fn row(&self, measure: &str, value: impl Fn(&Outcome) -> String) {
        let values: String = self
            .outcomes
            .iter()
            .map(|o| format!(" {:>14} |", value(o)))
            .collect();
        println!("| {measure:<50} |{values}");
    }

    /// Prints the tables on stdout.
    pub fn print(&self) {
        let jobs = self.outcomes.first().map_or(0, |o| o.jobs);
        println!(
            "\nfairness: {jobs} FineTuneJobs of {} tenants on {} simulated GPU nodes ({} GPUs), \
             each pod ended {} s after it ran\n",
            self.tenants.len(),
            self.gpu_nodes.0,
            self.gpu_nodes.1,
            self.run_seconds
        );
        let titles: String = self
            .outcomes
            .iter()
            .map(|o| format!(" {:>14} |", o.mode))
            .collect();
        println!("| {:<50} |{titles}", "measure");
        let rules: String = self
            .outcomes
            .iter()
            .map(|_| format!("{}|", "-".repeat(16)))
            .collect();
        println!("|{}|{rules}", "-".repeat(52));
        self.row("first create → every job finished (makespan)", |o| {
            format!("{:.1} s", o.figures.makespan)
        });
        self.row("first create → every job's pod Running", |o| {
            format!("{:.1} s", o.figures.all_started)
        });
        self.row("GPU utilisation, mean over the makespan", |o| {
            format!("{:.1} %", o.figures.utilisation * 100.0)
        });
        self.row("queue wait (create → pod Running), p50", |o| {
            secs(o.figures.wait_p50)
        });
        self.row("queue wait (create → pod Running), p99", |o| {
            secs(o.figures.wait_p99)
        });
        self.row("trainer pods per job (> 1: preempted, run again)", |o| {
            format!("{:.2}", o.pods.pods as f64 / o.pods.jobs.max(1) as f64)
        });
        self.row("trainer pods Kueue admitted", |o| {
            format!("{} of {}", o.pods.kueue, o.pods.pods)
        });
        self.row("time with ≥ 2 tenants waiting (contended)", |o| {
            format!("{:.1} s", o.figures.contended)
        });
        self.row("fairness while contended, Jain's index (1 = fair)", |o| {
            format!("{:.3}", o.figures.jain)
        });
        self.row("worst tenant's share / its weight's share", |o| {
            let worst = o
                .figures
                .fair_ratio
                .iter()
                .copied()
                .fold(f64::MAX, f64::min);
            format!("{worst:.2}")
        });
        self.row("jobs Failed", |o| o.failures.len().to_string());
        self.row("operator peak RSS (VmHWM)", |o| mib(&o.operator.process));
        self.row("operator CPU time", |o| secs(o.operator.process.cpu));
        self.row("operator reconciles per job (failed in all)", |o| {
            let usage = &o.operator;
            let per_job = usage.reconciles as f64 / o.jobs.max(1) as f64;
            format!("{per_job:.1} ({})", usage.reconcile_errors)
        });
        self.row("Kueue peak RSS (VmHWM)", |o| {
            o.kueue.as_ref().map_or("-".into(), mib)
        });
        self.row("Kueue CPU time in this mode", |o| {
            o.kueue.as_ref().map_or("-".into(), |k| secs(k.cpu))
        });
        println!(
            "\nEach tenant's GPU-seconds while contended, over its weight's part of the GPUs the \
             waiting tenants held (1.00 = fair):\n"
        );
        for (i, tenant) in self.tenants.iter().enumerate() {
            self.row(
                &format!(
                    "tenant {} (weight {}, nominal {} GPUs)",
                    tenant.name, tenant.weight, tenant.nominal
                ),
                |o| {
                    o.figures
                        .fair_ratio
                        .get(i)
                        .map_or("-".into(), |r| format!("{r:.2}"))
                },
            );
        }
        for outcome in &self.outcomes {
            for failure in outcome.failures.iter().take(5) {
                println!("\n{}: Failed: {failure}", outcome.mode);
            }
        }
    }
}
