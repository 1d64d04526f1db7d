//! The `TrainedModel` a succeeded job publishes: the trainer's own account of the export (files,
//! digests, dataset digest, labels) plus the job's spec and the base model's commit.

use attune_crds::{
    BaseModelRef, ExportedModel, FineTuneJob, Metrics, ProducerRef, TrainedModel, TrainedModelSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::outcome::DoneReport;
use crate::names;

/// The TrainedModel's name: `spec.output.name`, else the job's.
pub fn trained_model_name(job: &FineTuneJob) -> String {
    job.spec
        .output
        .name
        .clone()
        .unwrap_or_else(|| job.name_any())
}

/// Where the export lives, e.g. `pvc://models/news-topics/model`.
pub fn export_uri(job: &FineTuneJob) -> Option<String> {
    let pvc = job.spec.output.destination.pvc.as_ref()?;
    Some(format!(
        "pvc://{}/{}/model",
        pvc.claim_name,
        pvc.path.trim_end_matches('/')
    ))
}

/// The final metrics: the last evaluation and the last training loss.
pub fn final_metrics(report: &DoneReport, train_loss: Option<f64>) -> Metrics {
    Metrics {
        train_loss,
        eval_loss: report.metrics.as_ref().map(|m| m.loss),
        eval_accuracy: report.metrics.as_ref().map(|m| m.accuracy),
        eval_f1: report.metrics.as_ref().map(|m| m.macro_f1),
    }
}

/// The record of what `job` produced, or why it cannot be made.
pub fn trained_model(
    job: &FineTuneJob,
    report: &DoneReport,
    metrics: Metrics,
    resolved_revision: &str,
    completed: &Time,
) -> Result<TrainedModel, String> {
    let export = report
        .model
        .as_ref()
        .ok_or("the trainer finished without reporting an export")?;
    let uri = export_uri(job).ok_or("the output destination is not a PVC")?;
    if export.files.is_empty() {
        return Err(
            "the trainer's report lists no exported files (its termination message \
                    leaves the list out past 4096 bytes); the export is at its destination, \
                    but no TrainedModel can vouch for it"
                .to_owned(),
        );
    }
    let digest = export
        .dataset_digest
        .trim_start_matches("sha256:")
        .to_owned();
    let mut task = job.spec.task.clone();
    if let Some(classification) = &mut task.text_classification
        && classification.labels.is_none()
        && classification.num_labels.is_none()
    {
        classification.labels = Some(export.labels.clone());
    }
    let mut model = TrainedModel::new(
        &trained_model_name(job),
        TrainedModelSpec {
            version: job.spec.output.version.clone(),
            uri,
            files: export.files.clone(),
            base_model: BaseModelRef {
                source: job.spec.model.source.clone(),
                revision: job.spec.model.revision.clone(),
                resolved_revision: export
                    .resolved_revision
                    .clone()
                    .unwrap_or_else(|| resolved_revision.to_owned()),
            },
            task,
            dataset_digest: digest,
            hyperparameters: job.spec.hyperparameters.clone(),
            metrics,
            producer: ProducerRef {
                job_name: job.name_any(),
                job_uid: job.uid().unwrap_or_default(),
                completion_time: completed.clone(),
            },
        },
    );
    model.metadata.namespace = job.namespace();
    model.metadata.labels = Some(
        [
            (
                names::JOB_LABEL.to_owned(),
                names::job_label_value(&job.name_any()),
            ),
            (
                names::MANAGED_BY_LABEL.to_owned(),
                names::MANAGER.to_owned(),
            ),
        ]
        .into(),
    );
    Ok(model)
}

/// `status.exportedModel` for a published model.
pub fn exported(model: &TrainedModel) -> ExportedModel {
    ExportedModel {
        uri: model.spec.uri.clone(),
        size_bytes: model.spec.files.iter().map(|f| f.size_bytes).sum(),
        files: model.spec.files.clone(),
    }
}
