//! The trainer's job file, rendered from a FineTuneJob's spec into a ConfigMap. The CRD's
//! defaults (already applied by the API server) are what the trainer gets, never the trainer's
//! own: every setting the spec has is written out.

use attune_crds::{DataFormat, DataSource, FineTuneJobSpec, Precision};
use serde_json::{Value, json};

/// Where the pod sees each volume. The paths also travel as command-line flags (see
/// [`super::trainer_job`]), so whatever maps volumes (a kubelet, or the test harness's runner
/// that rewrites paths in arguments) sees them.
pub mod paths {
    /// The ConfigMap with the job file.
    pub const CONFIG_DIR: &str = "/etc/attune";
    /// The job file inside it.
    pub const JOB_FILE: &str = "job.json";
    /// The training data volume.
    pub const TRAIN_DIR: &str = "/data/train";
    /// The separate validation data volume, when the spec names one.
    pub const VALIDATION_DIR: &str = "/data/validation";
    /// The output destination volume.
    pub const OUTPUT_DIR: &str = "/output";
    /// The job's checkpoint volume.
    pub const CHECKPOINT_DIR: &str = "/checkpoints";
    /// The model cache, read-only.
    pub const MODEL_CACHE_DIR: &str = "/models";
    /// The progress token Secret.
    pub const TOKEN_DIR: &str = "/var/run/attune/progress";
}

/// The file a data source puts under `dir`.
pub fn data_file(source: &DataSource, dir: &str) -> Option<String> {
    if let Some(pvc) = &source.pvc {
        return Some(format!("{dir}/{}", pvc.path));
    }
    source
        .config_map
        .as_ref()
        .map(|key| format!("{dir}/{}", key.key))
}

/// The model folder (org/name) a `hf://` source names.
pub fn repo_id(source: &str) -> &str {
    source.trim_start_matches("hf://")
}

/// The output folder inside the pod; the trainer writes the export to `<it>/model`.
pub fn output_dir(spec: &FineTuneJobSpec) -> Option<String> {
    spec.output
        .destination
        .pvc
        .as_ref()
        .map(|pvc| format!("{}/{}", paths::OUTPUT_DIR, pvc.path.trim_end_matches('/')))
}

/// The trainer's job file for `spec`, training from `resolved_revision`.
pub fn job_file(spec: &FineTuneJobSpec, resolved_revision: &str) -> Value {
    let task = spec.task.text_classification.clone().unwrap_or_else(|| {
        // The CRD's exactly-one-of rule makes this unreachable for a stored object.
        attune_crds::TextClassificationTask {
            labels: None,
            num_labels: None,
            text_field: "text".to_owned(),
            text_pair_field: None,
            label_field: "label".to_owned(),
        }
    });
    let labels = task.labels.clone().or_else(|| {
        task.num_labels
            .map(|n| (0..n).map(|i| i.to_string()).collect())
    });
    let h = &spec.hyperparameters;
    let validation = &spec.dataset.validation;
    json!({
        "model": { "id": repo_id(&spec.model.source), "revision": resolved_revision },
        "data": {
            "trainFile": data_file(&spec.dataset.source, paths::TRAIN_DIR),
            "validationFile": validation.source.as_ref().and_then(|s| data_file(s, paths::VALIDATION_DIR)),
            "format": match spec.dataset.format { DataFormat::Jsonl => "jsonl", DataFormat::Csv => "csv" },
            "textField": task.text_field,
            "textPairField": task.text_pair_field,
            "labelField": task.label_field,
            "labels": labels,
            "validationSplit": validation.fraction.unwrap_or(0.1),
            "maxLength": h.max_seq_length,
            "skipBadRows": false,
        },
        "training": {
            "epochs": h.epochs,
            "batchSize": h.batch_size,
            "gradientAccumulation": h.gradient_accumulation_steps,
            "learningRate": h.learning_rate,
            "weightDecay": h.weight_decay,
            "warmupRatio": h.warmup_ratio,
            "maxGradNorm": h.max_grad_norm,
            "seed": h.seed,
            "evalEvery": h.eval_every_steps,
            "checkpointEvery": h.checkpoint_every_steps,
            "precision": match h.precision { Precision::Fp32 => "fp32", Precision::Bf16 => "bf16", Precision::F16 => "f16" },
        },
        "outputDir": output_dir(spec),
        "checkpointDir": paths::CHECKPOINT_DIR,
    })
}
