//! Simulated GPU nodes of one test: kwok Nodes shaped like the harness's GPU nodes
//! (tests/cluster/up), labelled and tainted with a pool of the test's own so that only its pods
//! land there; deleted when the test ends.

use serde_json::{Value, json};

use crate::support::TestNamespace;

/// Label (and taint key) of a test's node pool.
pub const POOL: &str = "attune.dev/e2e-pool";

/// `count` kwok nodes with `gpus` GPUs each (deleted on drop).
#[derive(Debug)]
pub struct GpuNodes<'a> {
    ns: &'a TestNamespace,
    /// The pool's name (the label's and taint's value).
    pub pool: String,
}

impl<'a> GpuNodes<'a> {
    /// Creates the nodes and waits until they are Ready.
    pub fn create(ns: &'a TestNamespace, count: u32, gpus: u32) -> Self {
        let pool = ns.name.clone();
        let items: Vec<Value> = (0..count)
            .map(|i| {
                let name = format!("{pool}-gpu-{i}");
                let capacity = json!({
                    "cpu": "64", "memory": "512Gi", "ephemeral-storage": "1Ti", "pods": "110",
                    "nvidia.com/gpu": gpus.to_string(),
                });
                json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
                        "labels": {
                            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64", "type": "kwok",
                            "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H200",
                            POOL: pool,
                        },
                    },
                    "spec": { "taints": [
                        { "key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule" },
                        { "key": POOL, "value": pool, "effect": "NoSchedule" },
                    ] },
                    // Simulated: nothing listens there.
                    "status": {
                        "addresses": [
                            { "type": "InternalIP", "address": format!("10.251.{}.{}", i / 250, i % 250 + 1) },
                            { "type": "Hostname", "address": name },
                        ],
                        "capacity": capacity, "allocatable": capacity,
                    },
                })
            })
            .collect();
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
        let nodes = Self { ns, pool };
        ns.cluster
            .kubectl_with_input(&["apply", "-f", "-"], Some(&list.to_string()))
            .expect_success();
        ns.cluster
            .kubectl(&[
                "wait",
                "--for=condition=Ready",
                "node",
                "-l",
                &nodes.selector(),
                "--timeout=60s",
            ])
            .expect_success();
        nodes
    }

    /// `attune.dev/e2e-pool=<pool>`.
    pub fn selector(&self) -> String {
        format!("{POOL}={}", self.pool)
    }

    /// What a FineTuneJob's `spec.resources` needs to run on these nodes.
    pub fn placement(&self) -> Value {
        json!({
            "nodeSelector": { POOL: self.pool },
            "tolerations": [{ "key": POOL, "operator": "Exists", "effect": "NoSchedule" }],
        })
    }
}

impl Drop for GpuNodes<'_> {
    fn drop(&mut self) {
        if let Err(error) = self
            .ns
            .cluster
            .kubectl(&["delete", "nodes", "-l", &self.selector(), "--wait=false"])
            .into_result()
        {
            eprintln!("cleanup: {error}");
        }
    }
}
