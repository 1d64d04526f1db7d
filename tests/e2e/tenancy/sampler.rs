//! Samples, in a thread of its own while a test drives the cluster, the GPUs every namespace's
//! trainer pods hold (every pod not Succeeded or Failed: pending, running and terminating pods
//! hold their GPUs) and what each Tenant's status reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::TestNamespace;

/// One sample.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since sampling began.
    pub at: f64,
    /// GPUs held by trainer pods, per namespace.
    pub pods: BTreeMap<String, u32>,
    /// `status.gpusInUse`, `gpusBorrowed`, `gpusLent` per Tenant (sampled every few rounds).
    pub tenants: BTreeMap<String, (u64, u64, u64)>,
}

/// The sampling thread; [`Sampler::stop`] returns what it saw.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

/// GPUs (any `*/gpu` limit) of one pod.
fn gpus(pod: &Value) -> u32 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["resources"]["limits"].as_object())
        .flat_map(|limits| limits.iter())
        .filter(|(name, _)| name.ends_with("/gpu"))
        .filter_map(|(_, q)| q.as_str()?.parse::<u32>().ok())
        .sum()
}

impl Sampler {
    /// Starts sampling the trainer pods of `namespaces` and the Tenants named `tenants`.
    pub fn start(ns: &TestNamespace, namespaces: Vec<String>, tenants: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cluster = ns.cluster;
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let begin = Instant::now();
            let mut samples = Vec::new();
            let mut round = 0u32;
            while !stopping.load(Ordering::Relaxed) {
                let mut sample = Sample {
                    at: begin.elapsed().as_secs_f64(),
                    pods: namespaces.iter().map(|n| (n.clone(), 0)).collect(),
                    ..Sample::default()
                };
                let pods = cluster.get_json(&["pods", "-A", "-l", "attune.dev/job"]);
                for pod in pods
                    .iter()
                    .flat_map(|l| l["items"].as_array().into_iter().flatten())
                {
                    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                    let done = matches!(
                        pod["status"]["phase"].as_str(),
                        Some("Succeeded" | "Failed")
                    );
                    if let (false, Some(held)) = (done, sample.pods.get_mut(namespace)) {
                        *held += gpus(pod);
                    }
                }
                if round.is_multiple_of(4) {
                    let list = cluster.get_json(&["tenants"]);
                    for tenant in list
                        .iter()
                        .flat_map(|l| l["items"].as_array().into_iter().flatten())
                    {
                        let name = tenant["metadata"]["name"].as_str().unwrap_or_default();
                        if tenants.iter().any(|t| t == name) {
                            let status = &tenant["status"];
                            let field = |f: &str| status[f].as_u64().unwrap_or(0);
                            sample.tenants.insert(
                                name.to_owned(),
                                (field("gpusInUse"), field("gpusBorrowed"), field("gpusLent")),
                            );
                        }
                    }
                }
                samples.push(sample);
                round += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the samples.
    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the sampler thread"))
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
