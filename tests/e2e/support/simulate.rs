//! Trainer pods simulated by kwok: an operator whose trainer pods land on the simulated GPU
//! nodes (fetch pods still run for real on the local runner), and a test that ends those pods
//! the way the trainer would, with its exit code and termination message.

use serde_json::{Value, json};

use super::namespace::TestNamespace;

/// Changes a test operator's configuration so that trainer pods go to the simulated GPU nodes
/// and fetch pods to the local runner.
pub fn simulated_trainers(config: &mut Value) {
    let local_runner = config["trainer"]["podDefaults"].take();
    config["trainer"]["podDefaults"] = json!({});
    config["modelCache"]["fetchPodDefaults"] = local_runner;
}

/// The `done` event a trainer writes as its termination message, for job `name`.
pub fn done_event(name: &str) -> String {
    json!({
        "event": "done", "step": 10, "preempted": false,
        "metrics": { "loss": 0.2, "accuracy": 0.9, "macroF1": 0.88, "samples": 12 },
        "exportDir": format!("/output/{name}/model"),
        "model": {
            "files": [{ "path": "model.safetensors", "sha256": "a".repeat(64), "sizeBytes": 1024 }],
            "datasetDigest": "b".repeat(64),
            "baseModel": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
            "resolvedRevision": "35bcf39a18c158b204f1a5f62e8572d5f6a93a81",
            "labels": ["book_flight", "check_weather", "play_music", "set_alarm"],
        },
    })
    .to_string()
}

/// Ends pod `pod` as a trainer would: exit `code` with `message` as its termination message.
pub fn end_pod(ns: &TestNamespace, pod: &str, code: i32, message: &str) {
    let outcome = if code == 0 { "succeeded" } else { "failed" };
    ns.kubectl(&[
        "annotate",
        "pod",
        pod,
        &format!("attune.dev/test-exit-code={code}"),
        &format!("attune.dev/test-message={message}"),
        &format!("attune.dev/test-outcome={outcome}"),
    ])
    .expect_success();
}

/// The Running trainer pods of the namespace, by name.
pub fn running_trainer_pods(ns: &TestNamespace) -> Vec<String> {
    ns.get_json(&["pods", "-l", "attune.dev/job"])
        .and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}
