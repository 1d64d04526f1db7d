//! The real Kueue of `tests/cluster/kueue`, without the operator: the fixture the operator's Kueue
//! mode is tested against admits suspended Jobs that name a queue within their ClusterQueue's GPU
//! quota, holds the rest until quota frees, and leaves Jobs without a queue alone.

use serde_json::{Value, json};

use crate::support::{KueueQueue, QUEUE_NAME_LABEL, TestNamespace, condition, end_pod, restricted};

/// A Job of one pod asking for `gpus` GPUs; `queue` names a LocalQueue (created suspended, as
/// Attune creates its Jobs in Kueue mode), `None` leaves it to the Job controller alone.
fn gpu_job(name: &str, gpus: u32, queue: Option<&str>) -> Value {
    let labels = queue.map_or_else(|| json!({}), |q| json!({ QUEUE_NAME_LABEL: q }));
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "suspend": queue.is_some(),
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "train",
                    "image": "attune-e2e/simulated",
                    "resources": { "limits": { "nvidia.com/gpu": gpus } },
                }],
                "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }],
            }},
        },
    });
    restricted(&mut job["spec"]["template"]["spec"]);
    job
}

fn is_true(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == "True")
}

/// The Running pod of Job `job`, once there is one.
fn running_pod(ns: &TestNamespace, job: &str) -> Value {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let pods = ns.wait_for(
        &["pods", "-l", &selector],
        &format!("a Running pod of Job {job}"),
        |list| {
            list["items"]
                .as_array()
                .is_some_and(|pods| pods.iter().any(|p| p["status"]["phase"] == "Running"))
        },
    );
    pods["items"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["status"]["phase"] == "Running"))
        .cloned()
        .expect("the Running pod just seen")
}

#[test]
fn kueue_admits_queued_gpu_jobs_within_quota_and_the_next_one_when_quota_frees() {
    let Some(ns) = TestNamespace::create("kueue") else {
        return;
    };
    let Some(queue) = KueueQueue::create(&ns, "gpus", 4, "team") else {
        return;
    };

    // Within quota (3 of 4 GPUs): admitted, unsuspended, placed by the flavor.
    ns.apply(&gpu_job("first", 3, Some(&queue.name)))
        .expect_success();
    let admitted = queue.wait_for_workload("first", "the first Job's Workload Admitted", |w| {
        is_true(w, "Admitted")
    });
    let admission = &admitted["status"]["admission"];
    assert_eq!(
        admission["clusterQueue"],
        queue.cluster_queue.as_str(),
        "admission: {admission}"
    );
    assert_eq!(
        admission["podSetAssignments"][0]["flavors"]["nvidia.com/gpu"],
        queue.flavor.as_str(),
        "admission: {admission}"
    );
    ns.wait_for(&["job", "first"], "Kueue to unsuspend the first Job", |j| {
        j["spec"]["suspend"] == false
    });
    let pod = running_pod(&ns, "first");
    assert_eq!(
        pod["spec"]["nodeSelector"]["attune.dev/node-pool"], "gpu",
        "the flavor's node labels in the pod: {}",
        pod["spec"]
    );

    // Over quota (3 + 2 > 4): pending, and its Job stays suspended.
    ns.apply(&gpu_job("second", 2, Some(&queue.name)))
        .expect_success();
    let pending = queue.wait_for_workload("second", "the second Job's Workload pending", |w| {
        condition(w, "QuotaReserved").is_some_and(|c| c["status"] == "False")
    });
    let reserved = condition(&pending, "QuotaReserved").expect("QuotaReserved");
    assert_eq!(reserved["reason"], "Pending", "QuotaReserved: {reserved}");
    assert!(
        reserved["message"]
            .as_str()
            .is_some_and(|m| m.contains("insufficient unused quota for nvidia.com/gpu")),
        "QuotaReserved: {reserved}"
    );
    let second = ns.get_json(&["job", "second"]).expect("Job second");
    assert_eq!(
        second["spec"]["suspend"], true,
        "the pending Job runs: {}",
        second["spec"]
    );

    // The first one finishes: its quota goes to the second.
    let pod_name = pod["metadata"]["name"].as_str().expect("a pod name");
    end_pod(&ns, pod_name, 0, "done");
    let finished = queue.wait_for_workload("first", "the first Job's Workload Finished", |w| {
        is_true(w, "Finished")
    });
    let succeeded = condition(&finished, "Finished").expect("Finished");
    assert_eq!(succeeded["reason"], "Succeeded", "Finished: {succeeded}");
    queue.wait_for_workload("second", "the second Job's Workload Admitted", |w| {
        is_true(w, "Admitted")
    });
    ns.wait_for(
        &["job", "second"],
        "Kueue to unsuspend the second Job",
        |j| j["spec"]["suspend"] == false,
    );
    running_pod(&ns, "second");
}

#[test]
fn kueue_leaves_jobs_without_a_queue_name_alone() {
    let Some(ns) = TestNamespace::create("kueue-none") else {
        return;
    };
    // The queue starts Kueue; the Job does not use it.
    let Some(_queue) = KueueQueue::create(&ns, "gpus", 1, "team") else {
        return;
    };
    ns.apply(&gpu_job("plain", 2, None)).expect_success();
    let pod = running_pod(&ns, "plain");
    let pod_name = pod["metadata"]["name"].as_str().expect("a pod name");
    end_pod(&ns, pod_name, 0, "done");
    let done = ns.wait_for(&["job", "plain"], "the Job to complete", |j| {
        is_true(j, "Complete")
    });
    assert_eq!(done["spec"]["suspend"], false, "Job spec: {}", done["spec"]);
    let workloads = ns.get_json(&["workloads"]).expect("the Workload list");
    assert_eq!(
        workloads["items"],
        json!([]),
        "Kueue made Workloads for a Job without a queue"
    );
}
