//! `spec.hyperparameters`: the optimisation settings, with the defaults most BERT-family
//! fine-tunes start from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Optimisation settings. Every field has a default, so `hyperparameters: {}` is a sensible run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Hyperparameters {
    /// Full passes over the training data.
    #[schemars(range(min = 1, max = 1000))]
    pub epochs: u32,
    /// Examples per forward/backward pass on each GPU.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self >= 1", "message": "must be at least 1, e.g. 16"}]))]
    #[schemars(range(max = 4096))]
    pub batch_size: u32,
    /// Batches whose gradients are summed before each optimizer step; the effective batch is
    /// `batchSize * gradientAccumulationSteps * gpus`.
    #[schemars(range(min = 1, max = 1024))]
    pub gradient_accumulation_steps: u32,
    /// Peak learning rate of AdamW, reached after warmup; BERT-family fine-tunes use 1e-5 to 5e-5.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self > 0.0 && self < 1.0", "message": "must be greater than 0 and less than 1, e.g. 2e-5"}]))]
    pub learning_rate: f64,
    /// Fraction of the optimizer steps spent warming the learning rate up linearly from 0;
    /// after warmup it decays linearly to 0.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self >= 0.0 && self < 1.0", "message": "must be at least 0 and less than 1, e.g. 0.06"}]))]
    pub warmup_ratio: f64,
    /// Decoupled weight decay of AdamW; never applied to biases and LayerNorm weights.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self >= 0.0 && self <= 1.0", "message": "must be between 0 and 1, e.g. 0.01"}]))]
    pub weight_decay: f64,
    /// Longest tokenized input; longer texts are truncated. At most 512 for BERT-family models.
    #[schemars(range(min = 8, max = 8192))]
    pub max_seq_length: u32,
    /// Gradients are clipped to this global L2 norm; 0 disables clipping.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self >= 0.0", "message": "must be at least 0 (0 disables clipping), e.g. 1.0"}]))]
    pub max_grad_norm: f64,
    /// Arithmetic of the forward and backward passes; master weights stay fp32. `bf16` and `f16`
    /// need a GPU.
    pub precision: Precision,
    /// Seed of weight initialisation, data order and dropout; the same seed and data give the
    /// same weights.
    pub seed: u64,
    /// Evaluate on the validation split every this many optimizer steps (and always at the end);
    /// 0 evaluates only at the end of each epoch.
    pub eval_every_steps: u32,
    /// Save a resumable checkpoint every this many optimizer steps; 0 saves only at epoch ends
    /// and on preemption.
    pub checkpoint_every_steps: u32,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 16,
            gradient_accumulation_steps: 1,
            learning_rate: 2e-5,
            warmup_ratio: 0.06,
            weight_decay: 0.01,
            max_seq_length: 128,
            max_grad_norm: 1.0,
            precision: Precision::Fp32,
            seed: 42,
            eval_every_steps: 0,
            checkpoint_every_steps: 500,
        }
    }
}

/// Floating-point format of the training arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere: slowest, runs on CPU and GPU.
    #[default]
    Fp32,
    /// bfloat16 mixed precision with fp32 master weights (Ampere or newer GPUs).
    Bf16,
    /// float16 mixed precision with fp32 master weights and loss scaling.
    F16,
}
