//! The operator's footprint at scale (issue 10 §10), measured, not asserted: on a harness cluster
//! with many simulated GPU nodes, the real `attune-operator` runs as a process while this program
//! creates N FineTuneJobs on a model already in the cache, lets kwok run their trainer pods, ends
//! them as a trainer would, and prints a table:
//!
//! * apply → Job created, p50/p99: from the moment each create call returned to the moment a
//!   watch on batch Jobs saw that job's Job (local clocks; `creationTimestamp` has 1 s steps);
//! * time until every trainer pod runs and every job says so (`Running`/`Training`), and until
//!   every job is done (`Succeeded`; a `Failed` one is listed) once its pod ended with a `done`
//!   report;
//! * the operator's peak RSS (`VmHWM`) and CPU time, from `/proc`;
//! * API writes: every write the API server served (`apiserver_request_total`, by resource and
//!   verb) next to the operator's own (its audit-log entries), per job and per job transition (a
//!   change of phase or reason that a watch on the jobs saw).
//!
//! `tests/bench/footprint` brings up the cluster (with `ATTUNE_AUDIT_WRITES=1`), builds and runs
//! this, and tears the cluster down; see its header for the options.

#[path = "../common/mod.rs"]
mod common;
mod observe;
mod report;
mod writes;

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

use serde_json::json;

use crate::common::args::RunArgs;
use crate::common::cluster::Cluster;
use crate::common::operator::OperatorProcess;
use crate::common::workload::{NewJob, Workload, job};
use crate::observe::Observer;
use crate::report::{Phase, Report};
use crate::writes::WriteCounter;

/// Measures attune-operator with N FineTuneJobs on the harness cluster of `KUBECONFIG`.
#[derive(Debug, Parser)]
struct Args {
    /// FineTuneJobs to create.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Creates in flight at once (a burst of `kubectl apply`s).
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Creates per second, paced (default: as fast as `--parallel` allows, a burst). A burst
    /// measures the queue the API server and the operator work through; a pace below their
    /// throughput measures how fast the operator answers one `kubectl apply`.
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    run: RunArgs,
    /// Stop once every job runs: do not end the pods and wait for Succeeded.
    #[arg(long)]
    no_finish: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // kube's TLS stack: the workspace enables two crypto providers, so name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::from_env().await?;
    let counter = WriteCounter::from_env()?;
    let workload = Workload::new(&cluster, "footprint", &[]);
    workload
        .prepare()
        .await
        .context("preparing the namespace")?;
    let operator = OperatorProcess::start(
        &cluster,
        &workload,
        &args.run.operator,
        &args.run.out,
        |_| {},
    )
    .await
    .context("starting the operator")?;
    let namespace = &workload.namespaces[0];
    let observer = Observer::start(&cluster, namespace);
    let stall = args.run.stall();
    let mut report = Report {
        jobs: args.jobs,
        parallel: args.parallel,
        rate: args.rate,
        gpu_nodes: cluster.gpu_nodes().await?,
        ..Report::default()
    };

    let before = counter.snapshot().await?;
    let started = Instant::now();
    let jobs = (0..args.jobs)
        .map(|i| {
            let name = format!("job-{i}");
            NewJob {
                namespace: namespace.clone(),
                manifest: job(&name, json!({ "gpus": 1 })),
                name,
            }
        })
        .collect();
    let created = workload.create_jobs(jobs, args.parallel, args.rate).await?;
    report.creating = started.elapsed();
    observer
        .wait(
            "every trainer pod Running and every job Training",
            stall,
            |s| s.running(args.jobs),
        )
        .await?;
    let running = counter.snapshot().await?;
    report.phases.push(Phase {
        name: "create → Running",
        took: started.elapsed(),
        writes: running.since(&before)?,
        transitions: observer.transitions(),
    });
    report.latencies = observer.job_latencies(&created);
    report.jobs_created = observer.last_job_after(started);
    report.pods_running = observer.all_pods_running_after(started);

    if !args.no_finish {
        let finishing = Instant::now();
        let transitions = observer.transitions();
        workload
            .end_trainer_pods(&observer.trainer_pods(), args.parallel)
            .await?;
        observer
            .wait("every job Succeeded or Failed", stall, |s| {
                s.finished(args.jobs)
            })
            .await?;
        let done = counter.snapshot().await?;
        report.phases.push(Phase {
            name: "pods ended → done",
            took: finishing.elapsed(),
            writes: done.since(&running)?,
            transitions: observer.transitions() - transitions,
        });
    }
    report.failures = observer.failures();
    report.operator = operator.usage()?;
    drop(operator);
    report.print();
    Ok(())
}
