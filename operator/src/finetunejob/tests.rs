//! Unit tests of the pure parts: the attempt's Job and job file built from the examples, and
//! the decision for every state a job's children can be in.

use attune_crds::{CachedModel, FineTuneJob, Phase, TrainedModel};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::children::trainer_job;
use super::decide::{Action, AttemptView, Decision, Observed, decide};
use super::job_file::job_file;
use super::kueue::{KueueView, QUEUE_NAME_LABEL, Verdict};
use crate::config::OperatorConfig;
use crate::tenancy::Admission;

const NOW: i64 = 1_800_000_000;

fn example(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    serde_norway::from_str(&text).expect("yaml")
}

/// An example job as the API server stores it (defaults applied, uid, creation time).
fn stored(mut manifest: Value) -> FineTuneJob {
    manifest["metadata"]["uid"] = "uid-1".into();
    manifest["metadata"]["generation"] = 1.into();
    manifest["metadata"]["creationTimestamp"] = "2027-01-15T08:00:00Z".into();
    serde_json::from_value(manifest).expect("a FineTuneJob")
}

fn minimal() -> FineTuneJob {
    stored(example("finetunejob-minimal.yaml"))
}

/// The full example with PVC locations (object stores are not served yet).
fn full() -> FineTuneJob {
    let mut manifest = example("finetunejob-full.yaml");
    manifest["spec"]["dataset"]["source"] =
        json!({ "pvc": { "claimName": "datasets", "path": "reviews/train.csv" } });
    manifest["spec"]["output"]["destination"] =
        json!({ "pvc": { "claimName": "models", "path": "reviews" } });
    stored(manifest)
}

fn config() -> OperatorConfig {
    OperatorConfig::from_yaml(
        "trainer:\n  podDefaults:\n    nodeSelector: {pool: gpu, zone: a}\n    tolerations: [{key: spot, operator: Exists}]\n",
    )
    .expect("config")
}

fn cache(phase: &str, failed_at: Option<&str>) -> CachedModel {
    let mut status = json!({ "phase": phase, "resolvedRevision": "c0ffee".repeat(6) + "abcd" });
    if let Some(at) = failed_at {
        status["message"] = "the hub has no such model (404)".into();
        status["conditions"] = json!([{ "type": "Failed", "status": "True", "reason": "RepositoryNotFound", "message": "404", "lastTransitionTime": at }]);
    }
    serde_json::from_value(json!({
        "apiVersion": "attune.dev/v1alpha1", "kind": "CachedModel",
        "metadata": { "name": "minilm" },
        "spec": { "source": "hf://sentence-transformers/all-MiniLM-L6-v2", "revision": "main" },
        "status": status,
    }))
    .expect("cache")
}

fn batch_job(conditions: Value, suspend: bool) -> Job {
    serde_json::from_value(json!({
        "metadata": { "name": "news-topics-1", "uid": "job-uid" },
        "spec": { "suspend": suspend, "template": {} },
        "status": { "conditions": conditions },
    }))
    .expect("job")
}

fn pod(status: Value) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": "p" }, "status": status })).expect("pod")
}

fn terminated(exit_code: i32, message: &str) -> Pod {
    pod(json!({
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{ "name": "trainer", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": exit_code, "reason": "Error", "message": message } } }],
    }))
}

fn running(started: &str) -> Pod {
    pod(json!({
        "phase": "Running",
        "containerStatuses": [{ "name": "trainer", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": { "running": { "startedAt": started } } }],
    }))
}

fn attempt(number: u32, job: Job, pod: Option<Pod>) -> AttemptView {
    AttemptView { number, job, pod }
}

fn failed() -> Value {
    json!([{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded" }])
}

struct World {
    job: FineTuneJob,
    cache: Option<CachedModel>,
    attempts: Vec<AttemptView>,
    missing: Vec<String>,
    published: Option<TrainedModel>,
    admission: Admission,
    kueue: Option<KueueView>,
    now: i64,
}

impl World {
    fn new(job: FineTuneJob) -> Self {
        Self {
            job,
            cache: Some(cache("Ready", None)),
            attempts: Vec::new(),
            missing: Vec::new(),
            published: None,
            admission: Admission::Unmetered("no Tenant owns namespace team-a".to_owned()),
            kueue: None,
            now: NOW,
        }
    }

    fn decide(&self) -> Decision {
        decide(&Observed {
            job: &self.job,
            now: Timestamp::from_second(self.now).expect("now"),
            missing: self.missing.clone(),
            cache: self.cache.as_ref(),
            attempts: self.attempts.clone(),
            live: None,
            published: self.published.as_ref(),
            admission: self.admission.clone(),
            kueue: self.kueue.clone(),
        })
    }
}

/// Seconds since the epoch of an RFC 3339 time.
fn at(time: &str) -> i64 {
    time.parse::<Timestamp>().expect("a time").as_second()
}

fn reason(decision: &Decision) -> &str {
    decision.status.reason.as_deref().unwrap_or_default()
}

fn started(job: &mut FineTuneJob, at: &str) {
    job.status.get_or_insert_with(Default::default).start_time =
        Some(serde_json::from_value(json!(at)).expect("time"));
}

#[test]
fn the_minimal_example_becomes_a_restricted_gpu_job_with_the_crd_defaults() {
    let job = minimal();
    let batch = trainer_job(&job, &config(), 1, Some(&cache("Ready", None)));
    let json = serde_json::to_value(&batch).expect("json");
    assert_eq!(json["metadata"]["name"], "news-topics-1");
    assert_eq!(json["metadata"]["namespace"], "team-a");
    assert_eq!(json["metadata"]["labels"]["attune.dev/attempt"], "1");
    assert_eq!(
        json["metadata"]["ownerReferences"][0]["kind"],
        "FineTuneJob"
    );
    assert_eq!(json["metadata"]["ownerReferences"][0]["controller"], true);
    let spec = &json["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(
        spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([75])
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["nodeSelector"], json!({ "pool": "gpu", "zone": "a" }));
    assert_eq!(pod["terminationGracePeriodSeconds"], 300);
    let tolerations = pod["tolerations"].as_array().expect("tolerations");
    assert!(tolerations.iter().any(|t| t["key"] == "spot"));
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "nvidia.com/gpu" && t["operator"] == "Exists")
    );
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(container["resources"]["requests"]["nvidia.com/gpu"], "1");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        container["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..3], ["train", "--config", "/etc/attune/job.json"]);
    for (flag, value) in [
        ("--train-file", "/data/train/bbc/train.jsonl"),
        ("--output-dir", "/output/news-topics"),
        ("--checkpoint-dir", "/checkpoints"),
        ("--cache", "/models"),
    ] {
        let at = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"));
        assert_eq!(args[at + 1], value, "{flag}");
    }
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert!(env.contains(&("ATTUNE_DEVICE", "cuda")));
    assert!(env.contains(&("HF_HUB_OFFLINE", "1")));
    assert!(env.contains(&(
        "ATTUNE_PROGRESS_URL",
        "http://attune-operator.attune-system.svc:8081/v1/namespaces/team-a/finetunejobs/news-topics/progress"
    )));
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let cache_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == "/models")
        .expect("cache mount");
    assert_eq!(cache_mount["readOnly"], true);
    let dataset = mounts
        .iter()
        .find(|m| m["mountPath"] == "/data/train")
        .expect("dataset");
    assert_eq!(dataset["readOnly"], true);

    let file = job_file(&job.spec, "c0ffee");
    assert_eq!(
        file["model"],
        json!({ "id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "c0ffee" })
    );
    let training = &file["training"];
    assert_eq!(training["learningRate"], 2e-5);
    assert_eq!(training["batchSize"], 16);
    assert_eq!(training["epochs"], 3);
    assert_eq!(training["warmupRatio"], 0.06);
    assert_eq!(training["checkpointEvery"], 500);
    assert_eq!(training["precision"], "fp32");
    assert_eq!(file["data"]["validationSplit"], 0.1);
    assert_eq!(file["data"]["maxLength"], 128);
    assert_eq!(file["data"]["labels"], Value::Null);
}

#[test]
fn the_full_example_carries_placement_resources_and_a_scoped_cache() {
    let job = full();
    let mut scoped = cache("Ready", None);
    scoped.spec.tenant = Some("team-a".into());
    let batch = serde_json::to_value(trainer_job(&job, &config(), 2, Some(&scoped))).expect("json");
    let pod = &batch["spec"]["template"]["spec"];
    assert_eq!(batch["metadata"]["name"], "reviews-sentiment-2");
    assert_eq!(pod["priorityClassName"], "ml-batch");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        50
    );
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-H200");
    assert_eq!(pod["nodeSelector"]["pool"], "gpu");
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("t")
            .iter()
            .any(|t| t["key"] == "dedicated")
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["resources"]["limits"],
        json!({ "nvidia.com/gpu": "2", "cpu": "8", "memory": "32Gi" })
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--validation-file", "/data/validation/validation.csv"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--cache", "/models/tenants/team-a"]),
        "{args:?}"
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    let validation = volumes
        .iter()
        .find(|v| v["name"] == "validation")
        .expect("validation volume");
    assert_eq!(validation["configMap"]["items"][0]["key"], "validation.csv");

    let file = job_file(&job.spec, "abc");
    assert_eq!(
        file["data"]["labels"],
        json!(["negative", "neutral", "positive"])
    );
    assert_eq!(file["data"]["textPairField"], "title");
    assert_eq!(file["data"]["format"], "csv");
    assert_eq!(file["training"]["precision"], "bf16");
    assert_eq!(file["training"]["gradientAccumulation"], 2);
    assert_eq!(file["training"]["evalEvery"], 200);
}

#[test]
fn the_model_is_cached_before_anything_runs() {
    let mut world = World::new(minimal());
    world.cache = None;
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::EnsureCachedModel]);
    assert_eq!(decision.status.phase, Some(Phase::CachingModel));

    world.cache = Some(cache("Downloading", None));
    let decision = world.decide();
    assert!(decision.actions.is_empty());
    assert_eq!(decision.status.phase, Some(Phase::CachingModel));
}

#[test]
fn a_fetch_failure_fails_waiting_jobs_and_newer_jobs_retry_it() {
    let mut world = World::new(minimal());
    world.cache = Some(cache("Failed", Some("2027-01-15T09:00:00Z")));
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "ModelFetchFailed");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("RepositoryNotFound")
    );

    world.cache = Some(cache("Failed", Some("2027-01-15T07:00:00Z")));
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::RetryFetch]);
    assert_eq!(decision.status.phase, Some(Phase::CachingModel));
}

#[test]
fn missing_references_and_object_stores_are_named() {
    let mut world = World::new(minimal());
    world.missing = vec!["PersistentVolumeClaim datasets".into()];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Pending));
    assert_eq!(reason(&decision), "MissingReference");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("PersistentVolumeClaim datasets not found in namespace team-a")
    );
    assert!(decision.actions.is_empty());
    assert!(decision.requeue.is_some());

    let world = World::new(stored(example("finetunejob-full.yaml")));
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "UnsupportedLocation");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("spec.dataset.source.objectStore")
    );
}

#[test]
fn the_first_attempt_starts_once_the_model_is_ready() {
    let decision = World::new(minimal()).decide();
    assert_eq!(decision.actions, [Action::CreateAttempt(1)]);
    assert_eq!(decision.status.attempts, 1);
    assert!(decision.status.start_time.is_some());
    assert_eq!(decision.status.observed_generation, Some(1));
}

#[test]
fn bad_data_fails_at_once_and_crashes_retry_until_the_backoff_limit() {
    let mut world = World::new(minimal());
    world.attempts = vec![attempt(
        1,
        batch_job(failed(), false),
        Some(terminated(
            4,
            "error: /data/train/bbc/train.jsonl line 7: missing field `label`",
        )),
    )];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "InvalidDataset");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("line 7")
    );
    assert!(decision.actions.is_empty());

    world.attempts = vec![attempt(
        1,
        batch_job(failed(), false),
        Some(terminated(137, "")),
    )];
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::CreateAttempt(2)]);
    assert_eq!(decision.status.attempts, 2);
    assert_eq!(reason(&decision), "Retrying");

    // backoffLimit 3: attempt 4 is the last.
    world.attempts = vec![attempt(
        4,
        batch_job(failed(), false),
        Some(terminated(1, "error: boom")),
    )];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "BackoffLimitExceeded");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("error: boom")
    );
}

fn done_message() -> String {
    json!({
        "event": "done", "step": 30, "preempted": false,
        "metrics": { "loss": 0.3, "accuracy": 0.91, "macroF1": 0.9, "samples": 100 },
        "exportDir": "/output/news-topics/model",
        "model": {
            "files": [{ "path": "model.safetensors", "sha256": "a".repeat(64), "sizeBytes": 10 },
                      { "path": "config.json", "sha256": "b".repeat(64), "sizeBytes": 2 }],
            "datasetDigest": format!("sha256:{}", "c".repeat(64)),
            "baseModel": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
            "resolvedRevision": "c0ffee", "labels": ["business", "sport"],
        },
    })
    .to_string()
}

#[test]
fn success_publishes_a_trained_model_with_provenance() {
    let mut world = World::new(minimal());
    let complete = json!([{ "type": "Complete", "status": "True" }]);
    world.attempts = vec![attempt(
        1,
        batch_job(complete, false),
        Some(terminated(0, &done_message())),
    )];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Succeeded));
    let [Action::Publish(model)] = decision.actions.as_slice() else {
        panic!("expected a Publish: {:?}", decision.actions);
    };
    assert_eq!(model.metadata.name.as_deref(), Some("news-topics"));
    assert_eq!(model.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(model.spec.uri, "pvc://models/news-topics/model");
    assert_eq!(model.spec.dataset_digest, "c".repeat(64));
    assert_eq!(model.spec.base_model.resolved_revision, "c0ffee");
    assert_eq!(model.spec.producer.job_uid, "uid-1");
    assert_eq!(model.spec.metrics.eval_accuracy, Some(0.91));
    let labels = model
        .spec
        .task
        .text_classification
        .as_ref()
        .and_then(|t| t.labels.clone());
    assert_eq!(
        labels,
        Some(vec!["business".to_owned(), "sport".to_owned()])
    );
    let exported = decision.status.exported_model.expect("exported");
    assert_eq!(exported.size_bytes, 12);
    assert!(decision.status.completion_time.is_some());

    // Published already by another job of the same output name.
    let mut other = (**model).clone();
    other.spec.producer.job_uid = "someone-else".into();
    world.published = Some(other);
    let decision = world.decide();
    assert_eq!(reason(&decision), "OutputNameTaken");
}

#[test]
fn an_unschedulable_pod_is_reported_with_the_schedulers_words() {
    let mut world = World::new(minimal());
    let unschedulable = pod(
        json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }] }),
    );
    world.attempts = vec![attempt(1, batch_job(json!([]), false), Some(unschedulable))];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Pending));
    assert_eq!(reason(&decision), "Unschedulable");
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Insufficient nvidia.com/gpu")
    );
}

#[test]
fn a_finished_pod_whose_job_is_not_complete_yet_is_exporting() {
    let mut world = World::new(minimal());
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(terminated(0, &done_message())),
    )];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Exporting));
    assert!(decision.actions.is_empty());
}

#[test]
fn suspension_holds_the_attempt_and_release_resumes_it() {
    let mut world = World::new(minimal());
    world.job.spec.run_policy.suspend = true;
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:01:00Z")),
    )];
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::Suspend(1, true)]);
    assert_eq!(decision.status.phase, Some(Phase::Suspended));

    world.job.spec.run_policy.suspend = false;
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::Suspend(1, false)]);

    // Suspended before it ever started: nothing is created.
    let mut world = World::new(minimal());
    world.job.spec.run_policy.suspend = true;
    let decision = world.decide();
    assert!(decision.actions.is_empty());
    assert_eq!(decision.status.phase, Some(Phase::Suspended));
}

#[test]
fn deadlines_and_stalls_stop_the_attempt() {
    let mut world = World::new(minimal());
    world.job.spec.run_policy.active_deadline_seconds = Some(60);
    started(&mut world.job, "2027-01-15T08:00:00Z");
    world.now = at("2027-01-15T08:02:00Z");
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:00:10Z")),
    )];
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "DeadlineExceeded");
    assert!(
        matches!(&decision.actions[..], [Action::StopAttempt(1, why)] if why.contains("activeDeadlineSeconds")),
        "{:?}",
        decision.actions
    );

    let mut world = World::new(minimal());
    world.job.spec.run_policy.progress_deadline_seconds = Some(30);
    started(&mut world.job, "2027-01-15T08:00:00Z");
    world.now = at("2027-01-15T08:01:00Z");
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:00:10Z")),
    )];
    let decision = world.decide();
    assert!(
        matches!(&decision.actions[..], [Action::StopAttempt(1, why), Action::CreateAttempt(2)] if why.contains("no training step")),
        "{:?}",
        decision.actions
    );
    let stalled = crate::conditions::find(&decision.status.conditions, "Stalled").expect("Stalled");
    assert_eq!(stalled.status, "True");

    world.now = at("2027-01-15T08:00:20Z");
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Running));
}

#[test]
fn a_finished_job_is_never_rerun_and_is_cleaned_after_its_ttl() {
    let mut world = World::new(minimal());
    world.job.spec.run_policy.ttl_seconds_after_finished = Some(100);
    let status = world.job.status.get_or_insert_with(Default::default);
    status.phase = Some(Phase::Succeeded);
    status.completion_time =
        Some(serde_json::from_value(json!("2027-01-15T08:00:00Z")).expect("t"));
    world.now = at("2027-01-15T08:01:00Z");
    let decision = world.decide();
    assert!(decision.actions.is_empty());
    assert_eq!(decision.requeue.map(|d| d.as_secs()), Some(40));
    world.now = at("2027-01-15T08:02:00Z");
    assert_eq!(world.decide().actions, [Action::DeleteChildren]);
}

fn queued(position: u32) -> Admission {
    Admission::Queued {
        tenant: Some("team-a".to_owned()),
        reason: "QuotaExhausted".to_owned(),
        message: format!("position {position} of 3 in tenant team-a's queue: no GPUs"),
        position: Some(position),
    }
}

fn granted() -> Admission {
    Admission::Granted {
        tenant: "team-a".to_owned(),
        gpus: 1,
        borrowed: 1,
    }
}

fn condition<'a>(
    decision: &'a Decision,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    crate::conditions::find(&decision.status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", decision.status.conditions))
}

#[test]
fn a_job_queues_under_its_tenant_until_admission_grants_it() {
    let mut world = World::new(minimal());
    world.admission = queued(2);
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(reason(&decision), "QuotaExhausted");
    assert_eq!(decision.status.queue_position, Some(2));
    assert_eq!(decision.status.tenant.as_deref(), Some("team-a"));
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("the first attempt waits: position 2"),
        "{:?}",
        decision.status.message
    );
    assert_eq!(condition(&decision, "Admitted").status, "False");

    world.admission = granted();
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::CreateAttempt(1)]);
    assert_eq!(decision.status.queue_position, None);
    let admitted = condition(&decision, "Admitted");
    assert_eq!(admitted.status, "True");
    assert!(
        admitted
            .message
            .contains("tenant team-a's quota: 1 GPUs, 1 of them borrowed"),
        "{}",
        admitted.message
    );

    // A job that waits for its model does not queue for GPUs yet.
    world.cache = Some(cache("Pending", None));
    world.admission = queued(1);
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::CachingModel));
    assert_eq!(condition(&decision, "Admitted").reason, "WaitingForModel");
}

#[test]
fn a_namespace_no_tenant_owns_fails_its_jobs_under_reject() {
    let mut world = World::new(minimal());
    world.admission =
        Admission::Refused("no Tenant owns namespace team-a: create a Tenant".to_owned());
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "NoTenant");
    assert!(decision.actions.is_empty());
}

#[test]
fn a_preempted_attempt_is_held_and_resumes_only_when_granted() {
    let mut world = World::new(minimal());
    started(&mut world.job, "2027-01-15T08:00:00Z");
    world.admission = Admission::Preempted {
        tenant: "team-a".to_owned(),
        by: "team-a/urgent".to_owned(),
        message: "preempted by team-a/urgent: it has a higher priority".to_owned(),
    };
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:01:00Z")),
    )];
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::Suspend(1, true)]);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(reason(&decision), "Preempted");
    let preempted = condition(&decision, "Preempted");
    assert_eq!(preempted.status, "True");
    assert!(
        preempted.message.contains("team-a/urgent"),
        "{}",
        preempted.message
    );

    // Held, waiting: nothing moves; the Preempted condition stays.
    world.job.status = Some(decision.status);
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    world.admission = queued(1);
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(condition(&decision, "Preempted").status, "True");

    // Granted again: the same attempt resumes from its checkpoint.
    world.admission = granted();
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::Suspend(1, false)]);
    assert_eq!(condition(&decision, "Preempted").status, "False");
    assert_eq!(condition(&decision, "Admitted").status, "True");
}

#[test]
fn the_deadline_does_not_count_time_queued_after_a_preemption() {
    let mut world = World::new(minimal());
    world.job.spec.run_policy.active_deadline_seconds = Some(60);
    started(&mut world.job, "2027-01-15T08:00:00Z");
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:00:05Z")),
    )];
    // Preempted 30 s in: the pause opens.
    world.now = at("2027-01-15T08:00:30Z");
    world.admission = Admission::Preempted {
        tenant: "team-a".to_owned(),
        by: "team-a/urgent".to_owned(),
        message: "preempted by team-a/urgent".to_owned(),
    };
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(decision.status.paused_seconds, 0);
    let paused_since = decision.status.paused_since.clone().expect("a pause");
    assert_eq!(paused_since.0.as_second(), at("2027-01-15T08:00:30Z"));

    // Queued for ten minutes, far past the deadline of wall-clock time: still waiting.
    world.job.status = Some(decision.status);
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    world.admission = queued(1);
    world.now = at("2027-01-15T08:10:30Z");
    let decision = world.decide();
    assert_eq!(
        decision.status.phase,
        Some(Phase::Queued),
        "{:?}",
        decision.status.reason
    );

    // Resumed: ten minutes paused; 20 s later 50 s have counted, 40 s later 70 s.
    world.admission = granted();
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::Suspend(1, false)]);
    assert_eq!(decision.status.paused_seconds, 600);
    assert_eq!(decision.status.paused_since, None);
    world.job.status = Some(decision.status);
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:10:35Z")),
    )];
    world.now = at("2027-01-15T08:10:50Z");
    let decision = world.decide();
    assert_ne!(
        decision.status.phase,
        Some(Phase::Failed),
        "{:?}",
        decision.status.message
    );
    world.now = at("2027-01-15T08:11:10Z");
    let decision = world.decide();
    assert_eq!(reason(&decision), "DeadlineExceeded");
}

#[test]
fn retries_wait_for_admission_like_first_attempts() {
    let mut world = World::new(minimal());
    world.admission = queued(1);
    world.attempts = vec![attempt(
        1,
        batch_job(failed(), false),
        Some(terminated(137, "")),
    )];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert!(
        decision
            .status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("attempt 2 (attempt 1 failed"),
        "{:?}",
        decision.status.message
    );
    world.admission = granted();
    assert_eq!(world.decide().actions, [Action::CreateAttempt(2)]);

    // A stalled attempt the operator stopped is over, even when the retry waits.
    let mut stopped = batch_job(json!([]), true);
    stopped.metadata.annotations = Some(
        [(
            super::decide::STOPPED_ANNOTATION.to_owned(),
            "no training step for 40 s".to_owned(),
        )]
        .into(),
    );
    world.attempts = vec![attempt(1, stopped, None)];
    world.admission = queued(1);
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    world.admission = granted();
    assert_eq!(world.decide().actions, [Action::CreateAttempt(2)]);
}

#[test]
fn references_into_other_namespaces_are_refused() {
    let mut world = World::new(minimal());
    if let Some(pvc) = world.job.spec.output.destination.pvc.as_mut() {
        pvc.claim_name = "team-b/models".to_owned();
    }
    let decision = world.decide();
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&decision), "CrossNamespaceReference");
    let message = decision.status.message.unwrap_or_default();
    assert!(
        message.starts_with("spec.output.destination.pvc.claimName: `team-b/models`"),
        "{message}"
    );
    assert!(decision.actions.is_empty());
}

/// A job in Kueue mode, and what Kueue says of its latest attempt.
fn kueue_world(verdict: Verdict, active: bool) -> World {
    let mut world = World::new(minimal());
    world.job.spec.queue_name = Some("gpus".to_owned());
    world.admission = Admission::Unmetered("Kueue admits this job".to_owned());
    world.kueue = Some(KueueView {
        workload: Some("job-news-topics-1-ab12c".to_owned()),
        active,
        verdict,
    });
    world
}

/// Kueue's `verdict` on Workload `w`.
fn said(verdict: Verdict) -> Option<KueueView> {
    Some(KueueView {
        workload: Some("w".to_owned()),
        active: true,
        verdict,
    })
}

fn kueue_pending() -> Verdict {
    Verdict::Pending {
        reason: "KueuePending".to_owned(),
        message: "couldn't assign flavors to pod set main: insufficient unused quota for \
                  nvidia.com/gpu in flavor gpu, 1 more needed"
            .to_owned(),
    }
}

#[test]
fn kueue_mode_creates_the_job_held_with_the_queue_label() {
    let mut job = minimal();
    job.spec.queue_name = Some("gpus".to_owned());
    let batch = trainer_job(&job, &config(), 1, None);
    assert_eq!(batch.spec.as_ref().and_then(|s| s.suspend), Some(true));
    assert_eq!(
        batch.labels().get(QUEUE_NAME_LABEL).map(String::as_str),
        Some("gpus")
    );
    // On the Job only: Kueue's pod integration must not take the pod too.
    let template = batch
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref());
    assert!(
        template
            .and_then(|m| m.labels.as_ref())
            .is_some_and(|l| !l.contains_key(QUEUE_NAME_LABEL))
    );

    let plain = trainer_job(&minimal(), &config(), 1, None);
    assert_eq!(plain.spec.as_ref().and_then(|s| s.suspend), Some(false));
    assert!(!plain.labels().contains_key(QUEUE_NAME_LABEL));
}

#[test]
fn kueue_mode_skips_attunes_quota_and_waits_for_kueue() {
    let mut world = kueue_world(Verdict::NotInstalled, true);
    world.kueue.as_mut().expect("a view").workload = None;
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Pending));
    assert!(
        decision.status.message.as_deref().is_some_and(|m| m
            == "Kueue is not installed: spec.queueName needs Kueue (the cluster serves no \
                 kueue.x-k8s.io Workloads); install Kueue or remove spec.queueName"),
        "{:?}",
        decision.status.message
    );

    let world = kueue_world(kueue_pending(), true);
    let decision = world.decide();
    assert_eq!(decision.actions, [Action::CreateAttempt(1)]);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert!(
        decision.status.start_time.is_none(),
        "the deadline counts from Kueue's admission"
    );
    assert!(decision.requeue.is_some());
}

#[test]
fn kueue_mode_never_releases_the_job_itself() {
    // Held, Kueue has no quota: the Job stays held, the status quotes Kueue.
    let mut world = kueue_world(kueue_pending(), true);
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(reason(&decision), "KueuePending");
    let admitted = condition(&decision, "Admitted");
    assert_eq!(admitted.status, "False");
    assert!(
        admitted.message.contains("insufficient unused quota"),
        "{}",
        admitted.message
    );
    assert_eq!(
        decision.requeue,
        Some(std::time::Duration::from_secs(5)),
        "the Workload is not watched"
    );
    // Once the status shows Kueue's words, it is looked at less often.
    world.job.status = Some(decision.status.clone());
    assert_eq!(
        world.decide().requeue,
        Some(std::time::Duration::from_secs(30))
    );

    // Kueue admitted it but has not released the Job yet: still no Suspend from the operator.
    world.kueue = said(Verdict::Admitted {
        cluster_queue: "team-gpus".to_owned(),
    });
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(reason(&decision), "Starting");

    // Released by Kueue: it runs, admitted by Kueue's ClusterQueue.
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:01:00Z")),
    )];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        condition(&decision, "Admitted").message,
        "admitted by Kueue ClusterQueue team-gpus"
    );
    assert!(decision.status.start_time.is_some());

    // Preempted by Kueue: Queued with Kueue's words, the same attempt, nothing done by Attune.
    world.job.status = Some(decision.status);
    world.kueue = said(Verdict::Evicted {
        preempted: true,
        message: "Preempted to accommodate a workload (UID: 42)".to_owned(),
    });
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), true),
        Some(running("2027-01-15T08:01:00Z")),
    )];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.phase, Some(Phase::Queued));
    assert_eq!(reason(&decision), "KueuePreempted");
    assert_eq!(decision.status.attempts, 1);
    assert_eq!(condition(&decision, "Preempted").status, "True");

    // Admitted again: resumes in the same attempt; still Kueue's doing.
    world.job.status = Some(decision.status);
    world.kueue = said(Verdict::Admitted {
        cluster_queue: "team-gpus".to_owned(),
    });
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:03:00Z")),
    )];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.attempts, 1);
    assert_eq!(condition(&decision, "Preempted").status, "False");
}

#[test]
fn kueue_mode_suspends_through_the_workload() {
    let mut world = kueue_world(
        Verdict::Admitted {
            cluster_queue: "q".to_owned(),
        },
        true,
    );
    world.job.spec.run_policy.suspend = true;
    world.attempts = vec![attempt(
        1,
        batch_job(json!([]), false),
        Some(running("2027-01-15T08:01:00Z")),
    )];
    let decision = world.decide();
    assert_eq!(
        decision.actions,
        [Action::ActivateWorkload(
            "job-news-topics-1-ab12c".to_owned(),
            false
        )]
    );
    assert_eq!(decision.status.phase, Some(Phase::Suspended));

    // Resumed: the Workload this suspension deactivated is activated again.
    world.job.status = Some(decision.status);
    world.job.spec.run_policy.suspend = false;
    world.kueue = Some(KueueView {
        workload: Some("job-news-topics-1-ab12c".to_owned()),
        active: false,
        verdict: Verdict::Evicted {
            preempted: false,
            message: "The workload is deactivated".to_owned(),
        },
    });
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    let decision = world.decide();
    assert_eq!(
        decision.actions,
        [Action::ActivateWorkload(
            "job-news-topics-1-ab12c".to_owned(),
            true
        )]
    );

    // A Workload someone else deactivated stays so.
    let mut world = kueue_world(
        Verdict::Evicted {
            preempted: false,
            message: "deactivated".to_owned(),
        },
        false,
    );
    world.attempts = vec![attempt(1, batch_job(json!([]), true), None)];
    let decision = world.decide();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(reason(&decision), "KueueEvicted");
}
