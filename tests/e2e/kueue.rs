//! The real Kueue of `tests/cluster/kueue`: without the operator, the fixture admits suspended
//! Jobs that name a queue within their ClusterQueue's GPU quota, holds the rest until quota
//! frees, and leaves Jobs without a queue alone; with it, a FineTuneJob with `spec.queueName`
//! (Kueue mode) is admitted by Kueue alone, its status shows Kueue's decision, and a job Kueue
//! preempts resumes in the same attempt when Kueue admits it again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    KueueQueue, Operator, QUEUE_NAME_LABEL, TRAINING_WAIT, TestNamespace, condition, done_event,
    end_pod, intents_and_models, job, phase, restricted, simulated_trainers, wait_for_job,
};

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

/// The trainer's Job of attempt 1 of FineTuneJob `name` (made once its model is cached).
fn attempt_job(ns: &TestNamespace, name: &str) -> Value {
    wait_for_job(ns, name, "the first attempt", TRAINING_WAIT, |j| {
        j["status"]["attempts"] == 1
    });
    ns.wait_for(
        &["job", &format!("{name}-1")],
        &format!("the Job of {name}'s first attempt"),
        |_| true,
    )
}

/// Condition `kind` of a FineTuneJob's status, or null.
fn ftj_condition<'v>(job: &'v Value, kind: &str) -> &'v Value {
    condition(job, kind).unwrap_or(&Value::Null)
}

/// The field managers that last wrote `spec.suspend` of Job `job` other than by its creation's
/// server-side apply: who released (or held) it.
fn suspend_writers(ns: &TestNamespace, job: &str) -> Vec<String> {
    let found = ns
        .get_json(&["job", job, "--show-managed-fields"])
        .unwrap_or_else(|| panic!("Job {job}"));
    found["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["operation"] == "Update" && !m["fieldsV1"]["f:spec"]["f:suspend"].is_null())
        .filter_map(|m| m["manager"].as_str().map(str::to_owned))
        .collect()
}

/// Ends the running trainer pod of FineTuneJob `name` as a successful trainer would.
fn finish(ns: &TestNamespace, name: &str) {
    let pod = running_pod(ns, &format!("{name}-1"));
    let pod = pod["metadata"]["name"].as_str().expect("a pod name");
    end_pod(ns, pod, 0, &done_event(name));
}

#[test]
fn kueue_mode_jobs_are_admitted_by_kueue_alone_and_show_its_decision() {
    let Some(ns) = TestNamespace::create("kueue-ftj") else {
        return;
    };
    // Room for one two-GPU job at a time.
    let Some(queue) = KueueQueue::create(&ns, "gpus", 2, "team") else {
        return;
    };
    let operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    let spec = json!({ "queueName": queue.name, "resources": { "gpus": 2 } });
    ns.apply(&job("first", "intents", 1, &spec))
        .expect_success();

    // The operator creates the Job held, for Kueue; Kueue admits it and releases it.
    let created = attempt_job(&ns, "first");
    assert_eq!(
        created["metadata"]["labels"][QUEUE_NAME_LABEL],
        queue.name.as_str(),
        "{}",
        created["metadata"]
    );
    queue.wait_for_workload("first-1", "the first job's Workload Admitted", |w| {
        is_true(w, "Admitted")
    });
    let running = wait_for_job(&ns, "first", "the first job Training", TRAINING_WAIT, |j| {
        phase(j) == "Running" && j["status"]["reason"] == "Training"
    });
    let admitted = ftj_condition(&running, "Admitted");
    assert_eq!(admitted["status"], "True", "{admitted}");
    assert_eq!(
        admitted["message"],
        format!("admitted by Kueue ClusterQueue {}", queue.cluster_queue),
        "{admitted}"
    );
    assert!(
        running["status"]["tenant"].is_null(),
        "a Kueue job counts against no Tenant: {}",
        running["status"]
    );
    let pod = running_pod(&ns, "first-1");
    assert_eq!(
        pod["spec"]["nodeSelector"]["attune.dev/node-pool"], "gpu",
        "Kueue's flavor placed the pod: {}",
        pod["spec"]
    );

    // Over the queue's quota: Queued with Kueue's words, and its Job stays held (Attune's own
    // admission would have let it run: this namespace has no Tenant).
    ns.apply(&job("second", "intents", 1, &spec))
        .expect_success();
    let queued = wait_for_job(
        &ns,
        "second",
        "the second job Queued by Kueue",
        TRAINING_WAIT,
        |j| {
            phase(j) == "Queued"
                && j["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("insufficient unused quota for nvidia.com/gpu"))
        },
    );
    assert_eq!(
        queued["status"]["reason"], "KueuePending",
        "{}",
        queued["status"]
    );
    assert_eq!(ftj_condition(&queued, "Admitted")["status"], "False");
    // Past the operator's next look at the queued job (5 s after its status changed): it still
    // does not release it.
    std::thread::sleep(Duration::from_secs(6));
    let held = attempt_job(&ns, "second");
    assert_eq!(
        held["spec"]["suspend"], true,
        "the operator released it: {}",
        held["spec"]
    );
    assert_eq!(
        phase(&ns.get_json(&["finetunejob", "second"]).expect("second")),
        "Queued"
    );

    // The first finishes; Kueue gives its quota to the second, which runs and finishes too.
    finish(&ns, "first");
    let first = wait_for_job(
        &ns,
        "first",
        "the first job to finish",
        TRAINING_WAIT,
        |j| matches!(phase(j), "Succeeded" | "Failed"),
    );
    assert_eq!(
        phase(&first),
        "Succeeded",
        "{}\n{}",
        first["status"],
        operator.log()
    );
    queue.wait_for_workload("second-1", "the second job's Workload Admitted", |w| {
        is_true(w, "Admitted")
    });
    wait_for_job(
        &ns,
        "second",
        "the second job Training",
        TRAINING_WAIT,
        |j| phase(j) == "Running" && j["status"]["reason"] == "Training",
    );
    finish(&ns, "second");
    let second = wait_for_job(
        &ns,
        "second",
        "the second job to finish",
        TRAINING_WAIT,
        |j| matches!(phase(j), "Succeeded" | "Failed"),
    );
    assert_eq!(
        phase(&second),
        "Succeeded",
        "{}\n{}",
        second["status"],
        operator.log()
    );
    for done in [&first, &second] {
        assert_eq!(done["status"]["attempts"], 1, "{}", done["status"]);
    }
    // Kueue released both Jobs; the operator never wrote their suspend field after creating
    // them held.
    for job in ["first-1", "second-1"] {
        let writers = suspend_writers(&ns, job);
        assert!(
            !writers.is_empty() && !writers.iter().any(|w| w == "attune-operator"),
            "spec.suspend of {job} last written by {writers:?}"
        );
    }
}

#[test]
fn a_job_kueue_preempts_waits_and_resumes_in_the_same_attempt() {
    let Some(ns) = TestNamespace::create("kueue-preempt") else {
        return;
    };
    let Some(queue) = KueueQueue::preempting(&ns, "gpus", 2, "team") else {
        return;
    };
    let urgent = queue
        .urgent
        .clone()
        .expect("a preempting queue's PriorityClass");
    let operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    let spec = json!({ "queueName": queue.name, "resources": { "gpus": 2 } });
    ns.apply(&job("victim", "intents", 1, &spec))
        .expect_success();
    wait_for_job(&ns, "victim", "the victim Training", TRAINING_WAIT, |j| {
        phase(j) == "Running" && j["status"]["reason"] == "Training"
    });

    // A higher-priority job of the same ClusterQueue: Kueue preempts the victim, whose Job it
    // suspends; the operator reports it and creates nothing.
    let urgent_spec = json!({
        "queueName": queue.name,
        "resources": { "gpus": 2, "priorityClassName": urgent },
    });
    ns.apply(&job("urgent", "intents", 1, &urgent_spec))
        .expect_success();
    let preempted = wait_for_job(&ns, "victim", "Kueue's preemption", TRAINING_WAIT, |j| {
        phase(j) == "Queued" && j["status"]["reason"] == "KueuePreempted"
    });
    let condition = ftj_condition(&preempted, "Preempted");
    assert_eq!(condition["status"], "True", "{}", preempted["status"]);
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("Preempted to accommodate")),
        "Kueue's words: {condition}"
    );
    wait_for_job(
        &ns,
        "urgent",
        "the urgent job Training",
        TRAINING_WAIT,
        |j| phase(j) == "Running" && j["status"]["reason"] == "Training",
    );
    assert_eq!(attempt_job(&ns, "victim")["spec"]["suspend"], true);

    // The urgent job finishes: Kueue admits the victim again, in its first attempt's Job.
    finish(&ns, "urgent");
    let resumed = wait_for_job(
        &ns,
        "victim",
        "the victim Training again",
        TRAINING_WAIT,
        |j| phase(j) == "Running" && j["status"]["reason"] == "Training",
    );
    assert_eq!(ftj_condition(&resumed, "Preempted")["status"], "False");
    finish(&ns, "victim");
    for name in ["urgent", "victim"] {
        let done = wait_for_job(&ns, name, "the job to finish", TRAINING_WAIT, |j| {
            matches!(phase(j), "Succeeded" | "Failed")
        });
        assert_eq!(
            phase(&done),
            "Succeeded",
            "{}\n{}",
            done["status"],
            operator.log()
        );
        assert_eq!(done["status"]["attempts"], 1, "{}", done["status"]);
    }
    assert!(
        ns.get_json(&["job", "victim-2"]).is_none(),
        "a preemption is no failed attempt"
    );
}
