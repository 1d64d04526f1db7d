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
