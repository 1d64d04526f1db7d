//! What a trainer pod's end means: its exit code, the kubelet's reason and the termination
//! message the trainer wrote (its error line, or on success its `done` event).

use attune_crds::ModelFile;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::progress::EvalFigures;

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    /// Exit code (128 + N when killed by signal N).
    pub exit_code: i32,
    /// The kubelet's reason, e.g. `OOMKilled`, `Error`, `Completed`.
    pub reason: Option<String>,
    /// The termination message (the trainer's last words).
    pub message: String,
}

/// The first terminated container of `pod`.
pub fn termination(pod: &Pod) -> Option<Termination> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
        .map(|t| Termination {
            exit_code: t.exit_code,
            reason: t.reason.clone(),
            message: t.message.clone().unwrap_or_default().trim().to_owned(),
        })
}

/// A failed attempt, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Whether another attempt could succeed (a crash, a kill) or not (bad input).
    pub retriable: bool,
    /// The status reason.
    pub reason: &'static str,
    /// What happened and what to do, for `status.message`.
    pub message: String,
}

/// Judges a failed trainer container by the exit codes of trainer/README.md.
pub fn classify(termination: &Termination) -> Failure {
    let said = if termination.message.is_empty() {
        String::new()
    } else {
        format!(": {}", termination.message)
    };
    let code = termination.exit_code;
    let (retriable, reason, message) = match code {
        _ if termination.reason.as_deref() == Some("OOMKilled") => (
            true,
            "OOMKilled",
            "the trainer ran out of memory: raise spec.resources.memory or lower \
             hyperparameters.batchSize / maxSeqLength"
                .to_owned(),
        ),
        2 | 3 => (
            false,
            "InvalidConfiguration",
            format!("the trainer rejected its configuration (exit {code}){said}"),
        ),
        4 => (
            false,
            "InvalidDataset",
            format!("the dataset is unusable (exit 4){said}"),
        ),
        5 => (
            false,
            "ModelUnusable",
            format!("the base model or its tokenizer is unusable (exit 5){said}"),
        ),
        6 => (
            false,
            "TrainingDiverged",
            format!(
                "training diverged (exit 6){said}: lower hyperparameters.learningRate or use fp32"
            ),
        ),
        137 => (
            true,
            "Killed",
            format!("the trainer was killed (exit 137){said}"),
        ),
        _ => (
            true,
            "TrainerFailed",
            format!("the trainer exited with code {code}{said}"),
        ),
    };
    Failure {
        retriable,
        reason,
        message,
    }
}

/// The export as the trainer's `done` event reports it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    /// Every file of the export with its digest and size; the trainer leaves the list out of
    /// its termination message when it would pass 4096 bytes (its `omitted` field says so).
    #[serde(default)]
    pub files: Vec<ModelFile>,
    /// SHA-256 of the training data, lowercase hex.
    pub dataset_digest: String,
    /// The commit of the base model.
    pub resolved_revision: Option<String>,
    /// The labels, in the order of the classifier's outputs (left out like `files`).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// The trainer's `done` event, from a succeeded pod's termination message.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoneReport {
    /// The last step.
    pub step: u64,
    /// The final evaluation.
    pub metrics: Option<EvalFigures>,
    /// What was exported (absent when nothing was).
    pub model: Option<ExportReport>,
}

/// Parses a `done` event out of a termination message.
pub fn done_report(message: &str) -> Result<DoneReport, String> {
    #[derive(Deserialize)]
    struct Tagged {
        event: String,
    }
    let tagged: Tagged = serde_json::from_str(message)
        .map_err(|e| format!("the termination message is not a progress event ({e})"))?;
    if tagged.event != "done" {
        return Err(format!(
            "the termination message is a `{}` event, not `done`",
            tagged.event
        ));
    }
    serde_json::from_str(message).map_err(|e| format!("the `done` event is malformed ({e})"))
}

/// How long a pod may wait for its new checkpoint claim to bind before the scheduler's
/// "unbound immediate PersistentVolumeClaims" counts as a problem: a provisioner takes a moment,
/// one that never binds the claim is one.
const CLAIM_BINDING_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Why a pod that has not started cannot start at `now`: the scheduler's verdict or a container
/// that waits on something that will not come by itself (an image, a Secret key).
pub fn start_problem(pod: &Pod, now: jiff::Timestamp) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let binding = |message: Option<&str>| {
        message.is_some_and(|m| m.contains("unbound immediate PersistentVolumeClaims"))
            && pod
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|created| now.duration_since(created.0) < CLAIM_BINDING_GRACE)
    };
    if let Some(unschedulable) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && !binding(c.message.as_deref())
    }) {
        return Some((
            "Unschedulable".to_owned(),
            format!(
                "the trainer pod cannot be scheduled: {}",
                unschedulable
                    .message
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
        ));
    }
    status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref())
        .filter(|w| {
            matches!(
                w.reason.as_deref(),
                Some(
                    "ErrImagePull"
                        | "ImagePullBackOff"
                        | "InvalidImageName"
                        | "CreateContainerConfigError"
                        | "CreateContainerError"
                )
            )
        })
        .map(|w| {
            (
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default(),
            )
        })
}

/// When the pod's containers started running, if they did.
pub fn running_since(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(exit_code: i32, reason: Option<&str>, message: &str) -> Termination {
        Termination {
            exit_code,
            reason: reason.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    #[test]
    fn bad_input_is_final_and_crashes_are_retried() {
        let bad_row = classify(&ended(
            4,
            Some("Error"),
            "error: /data/train/x.jsonl line 3: no field `label`",
        ));
        assert!(!bad_row.retriable);
        assert_eq!(bad_row.reason, "InvalidDataset");
        assert!(
            bad_row.message.contains("x.jsonl line 3"),
            "{}",
            bad_row.message
        );
        assert!(!classify(&ended(3, None, "")).retriable);
        assert_eq!(classify(&ended(5, None, "")).reason, "ModelUnusable");
        assert_eq!(classify(&ended(6, None, "")).reason, "TrainingDiverged");
        let oom = classify(&ended(137, Some("OOMKilled"), ""));
        assert!(oom.retriable);
        assert_eq!(oom.reason, "OOMKilled");
        assert_eq!(classify(&ended(137, Some("Error"), "")).reason, "Killed");
        let crash = classify(&ended(1, None, "error: I/O"));
        assert!(crash.retriable);
        assert!(crash.message.contains("code 1: error: I/O"));
    }

    #[test]
    fn a_claim_still_binding_is_no_problem_for_a_minute() {
        let pod = |created: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "p", "creationTimestamp": created },
                "status": { "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: pod has unbound immediate \
                                PersistentVolumeClaims. preemption: not eligible",
                }] },
            }))
            .expect("a Pod")
        };
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        assert_eq!(start_problem(&pod("2026-12-01T09:59:30Z"), now), None);
        let (reason, message) =
            start_problem(&pod("2026-12-01T09:58:00Z"), now).expect("a problem after a minute");
        assert_eq!(reason, "Unschedulable");
        assert!(message.contains("unbound immediate"), "{message}");
    }

    #[test]
    fn the_done_event_is_read_from_the_termination_message() {
        let report = done_report(
            r#"{"event":"done","step":12,"preempted":false,"metrics":{"loss":0.4,"accuracy":0.9,"macroF1":0.8,"samples":10},"exportDir":"/output/m/model","model":{"files":[{"path":"config.json","sha256":"00","sizeBytes":5}],"datasetDigest":"ab","baseModel":"o/n","revision":"main","resolvedRevision":"c0ffee","labels":["a","b"]}}"#,
        )
        .expect("done");
        assert_eq!(report.step, 12);
        let model = report.model.expect("model");
        assert_eq!(model.files[0].size_bytes, 5);
        assert_eq!(model.labels, ["a", "b"]);
        assert!(done_report("error: boom").is_err());
        let not_done = done_report(r#"{"event":"step"}"#).expect_err("step");
        assert!(not_done.contains("`step` event"), "{not_done}");
    }
}
