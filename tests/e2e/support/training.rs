//! Building blocks of the tests that run FineTuneJobs through the operator: the intents
//! dataset as a ConfigMap, an output claim, a job manifest, and waiting on a job's phase.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::pretty;
use super::manifests::repo_root;
use super::namespace::TestNamespace;

/// The base model the tests fine-tune: the real all-MiniLM-L6-v2, served by the harness's hub
/// endpoint (tests/cluster/up seeds it from the test assets).
pub const MINILM: &str = "hf://sentence-transformers/all-MiniLM-L6-v2";

/// How long a training test waits for its job: a fetch over loopback and a few steps of MiniLM
/// on two shared cores.
pub const TRAINING_WAIT: Duration = Duration::from_secs(600);

/// Creates ConfigMap `name` whose key `train.jsonl` holds `rows` (JSON lines).
pub fn data_config_map(ns: &TestNamespace, name: &str, rows: &str) {
    let map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": { "train.jsonl": rows },
    });
    ns.apply(&map).expect_success();
}

/// The project's intent-classification examples (examples/intents/train.jsonl).
pub fn intents() -> String {
    let path = repo_root().join("examples/intents/train.jsonl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What most jobs of the tests need: the intents as ConfigMap `intents` and an output claim
/// `models`.
pub fn intents_and_models(ns: &TestNamespace) {
    data_config_map(ns, "intents", &intents());
    claim(ns, "models");
}

/// Creates PersistentVolumeClaim `name` of the harness's default StorageClass.
pub fn claim(ns: &TestNamespace, name: &str) {
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
    });
    ns.apply(&claim).expect_success();
}

/// The local folder behind claim `name` (its PV's hostPath), once bound.
pub fn claim_dir(ns: &TestNamespace, name: &str) -> PathBuf {
    let claim = ns.wait_for(&["pvc", name], "the claim to bind", |c| {
        c["spec"]["volumeName"].is_string()
    });
    let volume = claim["spec"]["volumeName"].as_str().unwrap_or_default();
    let pv = ns
        .cluster
        .get_json(&["pv", volume])
        .unwrap_or_else(|| panic!("PV {volume} of claim {name} is gone"));
    PathBuf::from(
        pv["spec"]["hostPath"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("PV {volume} has no hostPath: {}", pretty(&pv))),
    )
}

/// A FineTuneJob on MiniLM that learns the rows of ConfigMap `data` (key `train.jsonl`) for
/// `epochs` on the CPU and publishes to claim `models`; `spec` is merged over it.
pub fn job(name: &str, data: &str, epochs: u32, spec: &Value) -> Value {
    let mut job = json!({
        "apiVersion": "attune.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": { "name": name },
        "spec": {
            "model": { "source": MINILM },
            "task": { "textClassification": {} },
            "dataset": {
                "source": { "configMap": { "name": data, "key": "train.jsonl" } },
                "validation": { "fraction": 0.2 },
            },
            "hyperparameters": {
                "epochs": epochs, "batchSize": 16, "learningRate": 0.0003, "warmupRatio": 0.0,
                "maxSeqLength": 32, "checkpointEverySteps": 1,
            },
            "resources": { "gpus": 0 },
            "output": { "destination": { "pvc": { "claimName": "models", "path": name } } },
        },
    });
    merge(&mut job["spec"], spec);
    job
}

/// JSON merge patch semantics: objects merge, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Polls the job until `done` holds for it (within `timeout`) and returns it; fails with the
/// last state seen.
pub fn wait_for_job(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let job = ns.get_json(&["finetunejob", name]);
        match job {
            Some(job) if done(&job) => return job,
            _ if Instant::now() > deadline => panic!(
                "timed out after {timeout:?} waiting for {what}; last FineTuneJob {name}:\n{}",
                job.map_or_else(|| "(not found)".to_owned(), |j| pretty(&j))
            ),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The job's phase.
pub fn phase(job: &Value) -> &str {
    job["status"]["phase"].as_str().unwrap_or_default()
}
