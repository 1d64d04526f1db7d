//! `attune-operator` as a process, configured as a platform team would run it (leader election
//! on, JSON logs, the default concurrency) for the benchmark's namespaces, with trainer pods left
//! to the scheduler (so they land on the simulated GPU nodes) and a model cache on a claim.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::cluster::Cluster;
use super::process::ProcessUsage;
use super::workload::Workload;

#[path = "../../../e2e/support/http.rs"]
mod http;

/// The running operator (killed on drop).
pub struct OperatorProcess {
    child: Child,
    /// `127.0.0.1:PORT` of its metrics and probes.
    metrics: String,
}

/// What the operator used.
#[derive(Debug, Default)]
pub struct Usage {
    /// Its peak RSS and CPU time.
    pub process: ProcessUsage,
    /// FineTuneJob reconciles (its `attune_reconciles_total`).
    pub reconciles: u64,
    /// Failed FineTuneJob reconciles (`attune_reconcile_errors_total`).
    pub reconcile_errors: u64,
}

/// A free port on 127.0.0.1 (bound, read, released).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl OperatorProcess {
    /// Starts `binary` for `workload`'s namespaces with its config (`configure` may add to it)
    /// and log in `out`, and waits until it leads.
    pub async fn start(
        cluster: &Cluster,
        workload: &Workload,
        binary: &Path,
        out: &Path,
        configure: impl FnOnce(&mut Value),
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out)?;
        let progress = format!("127.0.0.1:{}", free_port()?);
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let mut config = json!({
            "instance": workload.instance,
            "namespace": workload.operator_namespace,
            "watchNamespaces": workload.namespaces,
            "trainer": { "image": "attune-bench/simulated", "command": ["attune-trainer"] },
            "modelCache": { "volume": { "persistentVolumeClaim": { "claimName": "model-cache" } } },
            "hub": { "endpoint": "http://127.0.0.1:9" },
            "progress": { "url": format!("http://{progress}"), "listen": progress },
            "metrics": { "listen": metrics },
        });
        configure(&mut config);
        let config_file = out.join("config.yaml");
        std::fs::write(&config_file, config.to_string())?;
        let log = std::fs::File::create(out.join("operator.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_file)
            .env("KUBECONFIG", &cluster.operator_kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let operator = Self { child, metrics };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !operator
            .get("/readyz")
            .is_ok_and(|(status, _)| status == 200)
        {
            if Instant::now() > deadline {
                bail!(
                    "the operator did not lead within 60 s: see {}/operator.log",
                    out.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(operator)
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http::request(&self.metrics, "GET", path, &[], "")
    }

    /// What the process used so far.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let process = ProcessUsage::of(self.child.id())?;
        let (_, metrics) = self.get("/metrics")?;
        let counter = |name: &str| {
            metrics
                .lines()
                .filter(|l| l.starts_with(name) && l.contains("controller=\"finetunejob\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        Ok(Usage {
            process,
            reconciles: counter("attune_reconciles_total"),
            reconcile_errors: counter("attune_reconcile_errors_total"),
        })
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
