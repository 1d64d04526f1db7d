//! Attune's own admission against Kueue's (issue 13 §9), measured, not asserted: on a harness
//! cluster with many simulated GPU nodes, the same workload — FineTuneJobs of several tenants
//! with weights, nominal GPU quotas in one cohort, mixed GPU counts and priorities — runs once
//! under Attune's Tenants and once in Kueue mode (`spec.queueName`, an equivalent
//! ClusterQueue per tenant with Kueue's fair sharing), each with the real `attune-operator` as a
//! process and the real Kueue manager of `tests/cluster/kueue`. Trainer pods are run by kwok and
//! ended with a `done` report a fixed time after they started running. The table shows, per
//! mode: the makespan, when every job had started, GPU utilisation, queue-wait quantiles,
//! fairness while tenants competed (share of GPUs against weight), RSS and CPU of the operator
//! and of Kueue, and failed jobs.
//!
//! `tests/bench/fairness` brings up the cluster and Kueue, builds and runs this, and tears the
//! cluster down; see its header for the options.

#[path = "../common/mod.rs"]
mod common;
mod metrics;
mod observe;
mod plan;
mod report;
mod setup;

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::common::args::RunArgs;
use crate::common::cluster::{Cluster, setting};
use crate::common::operator::OperatorProcess;
use crate::common::process::ProcessUsage;
use crate::common::workload::{NewJob, Workload, job};
use crate::observe::Observer;
use crate::plan::Plan;
use crate::report::{Outcome, Report};

/// Who admits the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Attune's own admission under Tenants.
    Attune,
    /// Kueue: jobs name a LocalQueue.
    Kueue,
}

/// Runs one workload under Attune's admission and under Kueue's on the harness cluster of
/// `KUBECONFIG`.
#[derive(Debug, Parser)]
struct Args {
    /// FineTuneJobs to create per mode.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Tenants (weights 1, 2, 3, 4 repeating).
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Seconds each trainer pod runs before it is ended.
    #[arg(long, default_value_t = 20)]
    run_seconds: u64,
    /// Seed of the jobs' sizes and priorities.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Creates (and pod endings) in flight at once.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// The modes to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "attune,kueue"
    )]
    modes: Vec<Mode>,
    /// The operator (its files in one folder per mode under `--out`).
    #[command(flatten)]
    run: RunArgs,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Attune => "attune",
            Self::Kueue => "kueue",
        }
    }
}

/// The pid of Kueue's manager (`ATTUNE_KUEUE_PID_FILE` of `tests/cluster/kueue`'s env file).
fn kueue_pid() -> anyhow::Result<u32> {
    let file = setting("ATTUNE_KUEUE_PID_FILE")?;
    let pid = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    pid.trim()
        .parse()
        .with_context(|| format!("{file} holds no pid"))
}

/// Ends each trainer pod `run_for` after it started running, until dropped.
async fn end_when_due(
    observer: &Observer,
    workload: &Workload,
    run_for: Duration,
    parallel: usize,
) -> anyhow::Result<Infallible> {
    let mut ended = std::collections::HashSet::new();
    loop {
        let due: Vec<_> = observer
            .due(run_for)
            .into_iter()
            .filter(|p| ended.insert(format!("{}/{}", p.namespace, p.pod)))
            .collect();
        workload.end_trainer_pods(&due, parallel).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the plan's jobs in `mode` and measures them.
async fn run(mode: Mode, cluster: &Cluster, plan: &Plan, args: &Args) -> anyhow::Result<Outcome> {
    let suffixes: Vec<String> = plan.tenants.iter().map(|t| t.name.clone()).collect();
    let workload = Workload::new(cluster, &format!("fair-{}", mode.name()), &suffixes);
    workload
        .prepare()
        .await
        .context("preparing the namespaces")?;
    let kueue = match mode {
        Mode::Attune => {
            setup::tenants(
                &cluster.client,
                &workload.instance,
                &plan.tenants,
                &workload.namespaces,
            )
            .await?;
            None
        }
        Mode::Kueue => {
            setup::kueue_queues(
                &cluster.client,
                &workload.instance,
                &plan.tenants,
                &workload.namespaces,
            )
            .await?;
            let pid = kueue_pid()?;
            Some((pid, ProcessUsage::of(pid)?))
        }
    };
    let out = args.run.out.join(mode.name());
    let operator = OperatorProcess::start(cluster, &workload, &args.run.operator, &out, |_| {})
        .await
        .context("starting the operator")?;
    let observer = Observer::start(cluster, &workload.namespaces);
    let jobs: Vec<NewJob> = plan
        .jobs
        .iter()
        .map(|planned| {
            let class = if planned.high {
                setup::HIGH
            } else {
                setup::LOW
            };
            let resources = json!({ "gpus": planned.gpus, "priorityClassName": class });
            let mut manifest = job(&planned.name, resources);
            if mode == Mode::Kueue {
                manifest["spec"]["queueName"] = json!(setup::LOCAL_QUEUE);
            }
            NewJob {
                namespace: workload.namespaces[planned.tenant].clone(),
                name: planned.name.clone(),
                manifest,
            }
        })
        .collect();
    let tenants: HashMap<String, usize> = plan
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.tenant))
        .collect();

    eprintln!("fairness: {}: creating {} jobs", mode.name(), jobs.len());
    let start = Instant::now();
    let stall = args.run.stall();
    let run_for = Duration::from_secs(args.run_seconds);
    let finished = async {
        let created = workload.create_jobs(jobs, args.parallel, None).await?;
        observer.wait_finished(plan.jobs.len(), stall).await?;
        anyhow::Ok(created)
    };
    let created = tokio::select! {
        created = finished => created?,
        ending = end_when_due(&observer, &workload, run_for, args.parallel) => match ending? {},
    };
    let (spans, times) = observer.times(start, &created, &tenants);
    let weights: Vec<u32> = plan.tenants.iter().map(|t| t.weight).collect();
    let gpus = cluster.gpu_nodes().await?.1;
    let kueue = match kueue {
        Some((pid, before)) => {
            let after = ProcessUsage::of(pid)?;
            Some(ProcessUsage {
                peak_rss_kib: after.peak_rss_kib,
                cpu: after.cpu.saturating_sub(before.cpu),
            })
        }
        None => None,
    };
    let pods = observer.pods_ran();
    if mode == Mode::Kueue && pods.kueue < pods.pods {
        anyhow::bail!(
            "Kueue admitted only {} of the {} trainer pods that ran (the others lack Kueue's \
             label kueue.x-k8s.io/cluster-queue-name): the operator's Kueue mode did not hand \
             every Job to Kueue",
            pods.kueue,
            pods.pods
        );
    }
    Ok(Outcome {
        mode: match mode {
            Mode::Attune => "Attune".into(),
            Mode::Kueue => "Kueue".into(),
        },
        figures: metrics::measure(&spans, &times, &weights, gpus),
        jobs: plan.jobs.len(),
        failures: observer.failures(),
        pods,
        operator: operator.usage()?,
        kueue,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // kube's TLS stack: the workspace enables two crypto providers, so name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::from_env().await?;
    let gpu_nodes = cluster.gpu_nodes().await?;
    let gpus = u32::try_from(gpu_nodes.1).context("GPUs")?;
    let plan = Plan::new(args.tenants.max(1), args.jobs, gpus, args.seed);
    setup::priority_classes(&cluster.client).await?;
    let mut report = Report {
        gpu_nodes,
        tenants: plan.tenants.clone(),
        run_seconds: args.run_seconds,
        outcomes: Vec::new(),
    };
    for mode in &args.modes {
        let outcome = run(*mode, &cluster, &plan, &args)
            .await
            .with_context(|| format!("the {} run", mode.name()))?;
        report.outcomes.push(outcome);
    }
    report.print();
    Ok(())
}
