//! The stock control plane on simulated nodes: the scheduler places GPU pods on GPU nodes and
//! refuses impossible ones, and the Job controller completes a Job.

use serde_json::{Value, json};

use crate::support::{TestNamespace, pod, restricted};

/// A pod asking for `gpus` GPUs, tolerating the GPU nodes' taint.
fn gpu_pod(name: &str, gpus: u32) -> Value {
    pod(
        name,
        json!({
            "containers": [{
                "name": "train",
                "image": "attune-e2e/simulated",
                "resources": { "limits": { "nvidia.com/gpu": gpus } },
            }],
            "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule" }],
        }),
    )
}

fn pod_condition<'a>(pod: &'a Value, condition: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == condition)
}

#[test]
fn pod_asking_for_two_gpus_runs_on_a_gpu_node() {
    let Some(ns) = TestNamespace::create("gpu") else {
        return;
    };
    ns.apply(&gpu_pod("two-gpus", 2)).expect_success();
    let running = ns.wait_for(&["pod", "two-gpus"], "the pod to be Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let node = running["spec"]["nodeName"].as_str().unwrap_or_default();
    assert!(
        node.starts_with("attune-gpu-"),
        "scheduled onto '{node}', not a GPU node"
    );
}

#[test]
fn pod_asking_for_more_gpus_than_a_node_has_is_unschedulable() {
    let Some(ns) = TestNamespace::create("unschedulable") else {
        return;
    };
    ns.apply(&gpu_pod("nine-gpus", 9)).expect_success();
    let pending = ns.wait_for(&["pod", "nine-gpus"], "PodScheduled=False", |p| {
        pod_condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False")
    });
    let scheduled = pod_condition(&pending, "PodScheduled").expect("a PodScheduled condition");
    assert_eq!(
        scheduled["reason"], "Unschedulable",
        "PodScheduled: {scheduled}"
    );
    assert_eq!(pending["status"]["phase"], "Pending");
    assert!(
        pending["spec"]["nodeName"].is_null(),
        "bound to {}",
        pending["spec"]["nodeName"]
    );
}

#[test]
fn job_completes_when_its_pod_succeeds() {
    let Some(ns) = TestNamespace::create("job") else {
        return;
    };
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "once" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "work", "image": "attune-e2e/simulated" }],
            }},
        },
    });
    restricted(&mut job["spec"]["template"]["spec"]);
    ns.apply(&job).expect_success();
    let pods = ns.wait_for(
        &["pods", "-l", "batch.kubernetes.io/job-name=once"],
        "a Running pod of the Job",
        |list| {
            list["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|p| p["status"]["phase"] == "Running"))
        },
    );
    let pod = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("a pod name");
    ns.kubectl(&["annotate", "pod", pod, "attune.dev/test-outcome=succeeded"])
        .expect_success();
    let done = ns.wait_for(&["job", "once"], "the Job to complete", |j| {
        j["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
    });
    assert_eq!(
        done["status"]["succeeded"], 1,
        "Job status: {}",
        done["status"]
    );
}
