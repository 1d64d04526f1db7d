//! Update rules: a started job's spec is frozen except `suspend` and the deadlines; published
//! records never change.

use serde_json::{Value, json};

use crate::support::{read_yaml_documents, repo_root, validate};

fn started_job() -> Value {
    let mut job =
        read_yaml_documents(&repo_root().join("examples/finetunejob-minimal.yaml")).remove(0);
    job["status"] = json!({"phase": "Running", "startTime": "2026-11-28T10:00:00Z"});
    job
}

fn frozen_errors(new: &Value, old: &Value) -> usize {
    validate(new, Some(old))
        .iter()
        .filter(|e| e.message.contains("spec is frozen"))
        .count()
}

#[test]
fn started_job_rejects_hyperparameter_changes() {
    let old = started_job();
    let mut new = old.clone();
    new["spec"]["hyperparameters"] = json!({"learningRate": 5e-5});
    assert_eq!(frozen_errors(&new, &old), 1);
}

#[test]
fn started_job_accepts_suspend_and_deadline_changes() {
    let old = started_job();
    let mut new = old.clone();
    new["spec"]["runPolicy"] =
        json!({"suspend": true, "activeDeadlineSeconds": 3600, "progressDeadlineSeconds": 600});
    assert_eq!(validate(&new, Some(&old)).len(), 0);
}

#[test]
fn job_not_yet_started_accepts_spec_changes() {
    let mut old = started_job();
    old["status"] = json!({"phase": "Queued"});
    let mut new = old.clone();
    new["spec"]["hyperparameters"] = json!({"epochs": 1});
    assert_eq!(validate(&new, Some(&old)).len(), 0);
}

#[test]
fn trained_model_is_immutable() {
    let old = json!({
        "apiVersion": "attune.dev/v1alpha1", "kind": "TrainedModel",
        "metadata": {"name": "m", "namespace": "team-a"},
        "spec": {
            "version": "1", "uri": "pvc://models/m/1", "files": [],
            "baseModel": {"source": "hf://bert-base-uncased", "revision": "main", "resolvedRevision": "abc"},
            "task": {"textClassification": {"labels": ["a", "b"]}},
            "datasetDigest": "0".repeat(64), "hyperparameters": {}, "metrics": {"evalAccuracy": 0.9},
            "producer": {"jobName": "j", "jobUid": "u", "completionTime": "2026-11-28T10:00:00Z"}
        }
    });
    assert!(
        validate(&old, None).is_empty(),
        "{:#?}",
        validate(&old, None)
    );
    let mut new = old.clone();
    new["spec"]["uri"] = json!("pvc://models/other");
    assert!(
        validate(&new, Some(&old))
            .iter()
            .any(|e| e.message.contains("immutable"))
    );
}
