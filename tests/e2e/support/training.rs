//! Building blocks of the tests that run FineTuneJobs through the operator: the intents
//! dataset as a ConfigMap, an output claim, a job manifest, and waiting on a job's phase.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cluster::pretty;
use super::manifests::repo_root;
use super::namespace::TestNamespace;
use super::operator::Operator;

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

/// The texts of [`intents`].
pub fn intents_texts() -> Vec<String> {
    intents()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            row["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
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

/// Waits (within [`TRAINING_WAIT`]) until job `name` has finished, and returns it; fails the
/// test with its status and the tail of `operator`'s log unless it succeeded.
pub fn wait_succeeded(ns: &TestNamespace, operator: &Operator, name: &str) -> Value {
    let done = wait_for_job(ns, name, "the job to finish", TRAINING_WAIT, |j| {
        matches!(phase(j), "Succeeded" | "Failed")
    });
    let log = operator.log();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    assert_eq!(
        phase(&done),
        "Succeeded",
        "status: {}\noperator log tail: {}",
        done["status"],
        tail.join("\n")
    );
    done
}

/// The job's phase.
pub fn phase(job: &Value) -> &str {
    job["status"]["phase"].as_str().unwrap_or_default()
}

/// Lowercase hex SHA-256 of a file.
fn sha256_file(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
}

/// Condition `type_` of a job, or null.
fn condition<'a>(job: &'a Value, type_: &str) -> &'a Value {
    job["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Checks that job `done` (made by [`job`] with output claim `models`) succeeded in one attempt
/// with a truthful status — progress at 100 %, metrics, times, conditions — and published a
/// TrainedModel whose provenance names base-model commit `commit` and `labels`, and whose
/// every file is in the export on the claim with the size and SHA-256 it lists. Returns the
/// TrainedModel.
pub fn assert_published(ns: &TestNamespace, done: &Value, commit: &str, labels: &Value) -> Value {
    let name = done["metadata"]["name"].as_str().expect("the job's name");
    let status = &done["status"];
    assert_eq!(phase(done), "Succeeded", "{status}");
    assert_eq!(status["attempts"], 1, "{status}");
    assert_eq!(status["progress"]["percent"], 100, "{status}");
    assert!(
        status["progress"]["totalSteps"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert!(status["startTime"].is_string() && status["completionTime"].is_string());
    assert_eq!(status["observedGeneration"], done["metadata"]["generation"]);
    let accuracy = status["metrics"]["evalAccuracy"]
        .as_f64()
        .expect("accuracy");
    assert!((0.0..=1.0).contains(&accuracy), "{status}");
    for (type_, value) in [
        ("Admitted", "True"),
        ("ModelCached", "True"),
        ("Succeeded", "True"),
        ("Running", "False"),
    ] {
        assert_eq!(condition(done, type_)["status"], value, "{type_}: {status}");
    }

    let model = ns
        .get_json(&["trainedmodel", name])
        .expect("a TrainedModel named after the job");
    let spec = &model["spec"];
    assert_eq!(spec["uri"], format!("pvc://models/{name}/model"));
    assert_eq!(spec["baseModel"]["resolvedRevision"], commit);
    assert_eq!(spec["baseModel"]["revision"], "main");
    assert_eq!(spec["producer"]["jobName"], name);
    assert_eq!(spec["producer"]["jobUid"], done["metadata"]["uid"]);
    let digest = spec["datasetDigest"].as_str().expect("dataset digest");
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{digest}"
    );
    assert_eq!(spec["task"]["textClassification"]["labels"], *labels);
    assert_eq!(
        spec["hyperparameters"]["epochs"],
        done["spec"]["hyperparameters"]["epochs"]
    );
    assert_eq!(
        spec["metrics"]["evalAccuracy"],
        status["metrics"]["evalAccuracy"]
    );
    let export = claim_dir(ns, "models").join(name).join("model");
    let files = spec["files"].as_array().expect("files");
    let names: Vec<&str> = files.iter().filter_map(|f| f["path"].as_str()).collect();
    for required in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(names.contains(&required), "{required} not in {names:?}");
    }
    for file in files {
        let path = export.join(file["path"].as_str().expect("path"));
        assert_eq!(file["sha256"], sha256_file(&path), "{}", path.display());
        let size = std::fs::metadata(&path).expect("size").len();
        assert_eq!(file["sizeBytes"], size, "{}", path.display());
    }
    assert_eq!(status["exportedModel"]["uri"], spec["uri"]);
    assert_eq!(status["exportedModel"]["files"], spec["files"]);
    model
}

/// The `start` event of the trainer that ran in `pod` on the local runner (read from its
/// `trainer.log`): `resumedFrom` and `startStep` say whether and where it resumed.
pub fn start_event(pod: &Value) -> Value {
    let dir = pod["metadata"]["annotations"]["attune.dev/local-runner-dir"]
        .as_str()
        .unwrap_or_else(|| panic!("pod {} ran on no local runner", pod["metadata"]["name"]));
    let path = PathBuf::from(dir).join("trainer.log");
    let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    log.lines()
        .find(|l| l.contains("\"event\":\"start\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no start event in {}:\n{log}", path.display()))
}
