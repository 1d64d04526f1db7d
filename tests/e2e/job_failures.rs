//! FineTuneJobs that cannot run say why in their status: a bad dataset row (file and line), a
//! missing claim, more GPUs than any node has.

use serde_json::json;

use crate::support::{
    Operator, TRAINING_WAIT, TestNamespace, claim, data_config_map, intents, intents_and_models,
    job, phase, wait_for_job,
};

#[test]
fn a_bad_dataset_row_fails_the_job_naming_file_and_line() {
    let Some(ns) = TestNamespace::create("bad-row") else {
        return;
    };
    let _operator = Operator::start(&ns);
    let mut rows = intents();
    rows.push_str("{\"text\": \"a row without its label\"}\n");
    data_config_map(&ns, "broken", &rows);
    claim(&ns, "models");
    ns.apply(&job("broken", "broken", 1, &json!({})))
        .expect_success();
    let failed = wait_for_job(&ns, "broken", "the job to fail", TRAINING_WAIT, |j| {
        matches!(phase(j), "Succeeded" | "Failed")
    });
    let status = &failed["status"];
    assert_eq!(phase(&failed), "Failed", "{status}");
    assert_eq!(status["reason"], "InvalidDataset", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("train.jsonl") && message.contains("61"),
        "the message should name the file and line 61: {message}"
    );
    assert_eq!(status["attempts"], 1, "bad data is not retried: {status}");
    let events = ns
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=broken",
        ])
        .expect_success();
    assert!(events.contains("InvalidDataset"), "{events}");
}

#[test]
fn a_missing_claim_is_named_and_the_job_starts_once_it_exists() {
    let Some(ns) = TestNamespace::create("missing") else {
        return;
    };
    let _operator = Operator::start(&ns);
    data_config_map(&ns, "intents", &intents());
    ns.apply(&job("waits", "intents", 1, &json!({})))
        .expect_success();
    let waiting = wait_for_job(&ns, "waits", "the missing claim", TRAINING_WAIT, |j| {
        j["status"]["reason"] == "MissingReference"
    });
    assert_eq!(phase(&waiting), "Pending");
    let message = waiting["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PersistentVolumeClaim models") && message.contains(&ns.name),
        "{message}"
    );
    claim(&ns, "models");
    wait_for_job(&ns, "waits", "the job to go on", TRAINING_WAIT, |j| {
        j["status"]["reason"] != "MissingReference" && phase(j) != "Pending"
    });
}

#[test]
fn more_gpus_than_any_node_has_is_reported_unschedulable() {
    let Some(ns) = TestNamespace::create("too-many-gpus") else {
        return;
    };
    let _operator = Operator::start(&ns);
    intents_and_models(&ns);
    ns.apply(&job(
        "huge",
        "intents",
        1,
        &json!({ "resources": { "gpus": 16 } }),
    ))
    .expect_success();
    // Until the checkpoint claim binds, the scheduler names that instead: wait for the GPUs.
    let stuck = wait_for_job(&ns, "huge", "the scheduler's verdict", TRAINING_WAIT, |j| {
        j["status"]["reason"] == "Unschedulable"
            && j["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Insufficient nvidia.com/gpu"))
    });
    assert_eq!(phase(&stuck), "Pending");
    let message = stuck["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");
}

#[test]
fn an_unknown_model_fails_the_job_with_the_fetchs_reason() {
    let Some(ns) = TestNamespace::create("no-model") else {
        return;
    };
    let _operator = Operator::start(&ns);
    intents_and_models(&ns);
    let spec = json!({ "model": { "source": format!("hf://e2e/{}-absent", ns.name) } });
    ns.apply(&job("absent", "intents", 1, &spec))
        .expect_success();
    let failed = wait_for_job(&ns, "absent", "the fetch to fail", TRAINING_WAIT, |j| {
        phase(j) == "Failed"
    });
    let status = &failed["status"];
    assert_eq!(status["reason"], "ModelFetchFailed", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("RepositoryNotFound") && message.contains("spec.model.source"),
        "{message}"
    );
    assert_eq!(status["attempts"], 0, "nothing trained: {status}");
}

#[test]
fn a_job_the_api_server_refuses_fails_with_its_words_and_no_retry_loop() {
    let Some(ns) = TestNamespace::create("refused") else {
        return;
    };
    let _operator = Operator::start(&ns);
    intents_and_models(&ns);
    // Accepted in a FineTuneJob (core types carry no limits there), refused in a pod.
    let affinity = json!({ "resources": { "affinity": { "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 0, "preference": {
            "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] } }] } } } });
    ns.apply(&job("refused", "intents", 1, &affinity))
        .expect_success();
    let failed = wait_for_job(&ns, "refused", "the refusal", TRAINING_WAIT, |j| {
        phase(j) == "Failed"
    });
    let status = &failed["status"];
    assert_eq!(status["reason"], "JobRejected", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("weight"), "the server's words: {message}");
    let jobs = ns
        .get_json(&["jobs", "-l", "attune.dev/job=refused"])
        .expect("jobs");
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(0), "{jobs}");
}
