//! The job configuration: one serde struct, read from a JSON or YAML file (the operator mounts
//! one) and/or overridden by CLI flags. Field names are camelCase, like Kubernetes resources.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::error::{Error, Result};

/// Which base model to start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSource {
    /// A Hub id (`org/name`, resolved in the HF cache) or a local folder path.
    pub id: String,
    /// Branch, tag or commit (Hub ids only).
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn default_revision() -> String {
    "main".into()
}

/// Optimisation hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: u64,
    /// Stop after this many optimizer steps (overrides `epochs` for the schedule length).
    pub max_steps: Option<u64>,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Warmup steps; when absent, `warmupRatio` × total steps.
    pub warmup_steps: Option<u64>,
    pub warmup_ratio: f64,
    /// Clip the global gradient norm to this; 0 disables.
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub seed: u64,
    /// Evaluate every N optimizer steps (and always at the end); 0 = only at the end.
    pub eval_every: u64,
    /// Checkpoint every N optimizer steps; 0 = only on SIGTERM and at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept (oldest deleted first).
    pub keep_checkpoints: usize,
    /// Dropout in training mode; `false` makes training deterministic w.r.t. PyTorch.
    pub dropout: bool,
    /// Emit a `step` progress line every N optimizer steps.
    pub log_every: u64,
    /// Compute precision: `fp32`, or `bf16`/`f16` mixed precision with f32 master weights
    /// (meant for GPUs; on the CPU it runs, slower than fp32).
    pub precision: crate::train::Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            max_steps: None,
            batch_size: 16,
            gradient_accumulation: 1,
            learning_rate: 5e-5,
            weight_decay: 0.01,
            warmup_steps: None,
            warmup_ratio: 0.0,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            seed: 42,
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            dropout: true,
            log_every: 1,
            precision: crate::train::Precision::Fp32,
        }
    }
}

/// The whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobConfig {
    pub model: ModelSource,
    pub data: DataConfig,
    #[serde(default)]
    pub training: TrainConfig,
    /// Where the final export goes.
    pub output_dir: PathBuf,
    /// Where checkpoints go (resume reads the newest valid one); default `<outputDir>/checkpoints`.
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
}

impl JobConfig {
    /// Reads a JSON or YAML file (by extension; YAML is a superset, so anything else is parsed
    /// as YAML).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let cfg: Self = if is_json {
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        } else {
            serde_norway::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        };
        Ok(cfg)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let t = &self.training;
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if t.batch_size == 0 {
            return bad("training.batchSize must be > 0");
        }
        if t.gradient_accumulation == 0 {
            return bad("training.gradientAccumulation must be > 0");
        }
        if t.epochs == 0 && t.max_steps.is_none() {
            return bad("training.epochs must be > 0 (or set maxSteps)");
        }
        if t.learning_rate.is_nan() || t.learning_rate <= 0.0 {
            return bad("training.learningRate must be > 0");
        }
        if self.data.max_length < 2 {
            return bad("data.maxLength must be >= 2");
        }
        Ok(())
    }

    /// The checkpoint folder.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.output_dir.join("checkpoints"))
    }
}
