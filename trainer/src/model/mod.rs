//! BERT-family sequence classifiers with trainable HuggingFace-named weights.
//!
//! The model is data, not a struct tree: a name → tensor map plus a config. Training uses the
//! variables themselves; evaluation uses [`Classifier::detached`] copies that share storage (so
//! they see every optimizer update) but build no autograd graph.

pub mod config;
pub mod dropout;
pub mod encoder;
pub mod fused;
pub mod layers;
pub mod params;
pub mod weights;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

pub use config::{Family, ModelConfig};
pub use encoder::{Inputs, WeightMap};
pub use params::ParamSpec;
pub use weights::Params;

use crate::data::Batch;
use crate::error::Result;
use crate::rng::TrainRng;

/// A classifier: config + parameters.
#[derive(Debug)]
pub struct Classifier {
    pub config: ModelConfig,
    pub params: Params,
    pub num_labels: usize,
    pub device: Device,
}

impl Classifier {
    /// Loads the encoder (and head, if present and sized for `num_labels`) from a HuggingFace
    /// model folder (`config.json` + `model.safetensors`); missing weights are initialised from
    /// `rng`.
    pub fn from_dir(
        dir: &Path,
        num_labels: usize,
        rng: &mut TrainRng,
        device: &Device,
    ) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let path = dir.join("model.safetensors");
        if !path.exists() {
            return Err(crate::error::Error::Model(format!(
                "{} not found (only safetensors checkpoints are supported)",
                path.display()
            )));
        }
        let source = weights::read_safetensors(&path, device)?;
        Self::from_source(config, num_labels, &source, rng, device)
    }

    /// Builds from an in-memory name → tensor map (tests, checkpoints).
    pub fn from_source(
        config: ModelConfig,
        num_labels: usize,
        source: &std::collections::HashMap<String, Tensor>,
        rng: &mut TrainRng,
        device: &Device,
    ) -> Result<Self> {
        let params = weights::build_params(&config, num_labels, source, rng, device)?;
        Ok(Self {
            config,
            params,
            num_labels,
            device: device.clone(),
        })
    }

    /// The weights as tracked variables (for training).
    pub fn weights(&self) -> Result<WeightMap> {
        self.params.tensors()
    }

    /// Detached views of the weights, sharing storage: forward passes on them record no graph.
    pub fn detached(&self) -> Result<WeightMap> {
        Ok(self
            .params
            .tensors()?
            .into_iter()
            .map(|(k, t)| (k, t.detach()))
            .collect())
    }

    /// The weights for a forward pass computing in `dtype` (mixed precision): casts of the f32
    /// variables, except LayerNorm parameters, which stay f32. The casts carry gradients back
    /// to the f32 master weights; they are copies, so take them once per step. For f32 (or the
    /// variables' own dtype) this is [`Classifier::weights`].
    pub fn weights_in(&self, dtype: DType) -> Result<WeightMap> {
        self.cast(self.weights()?, dtype)
    }

    /// [`Classifier::detached`] in `dtype`, as [`Classifier::weights_in`] casts.
    pub fn detached_in(&self, dtype: DType) -> Result<WeightMap> {
        self.cast(self.detached()?, dtype)
    }

    fn cast(&self, mut weights: WeightMap, dtype: DType) -> Result<WeightMap> {
        for spec in self.params.specs.iter().filter(|s| !s.norm) {
            if let Some(t) = weights.get_mut(&spec.name)
                && t.dtype() != dtype
            {
                *t = t.to_dtype(dtype)?;
            }
        }
        Ok(weights)
    }

    /// Turns a padded host batch into input tensors (position ids per family).
    pub fn inputs(&self, batch: &Batch) -> Result<Inputs> {
        let shape = (batch.size, batch.seq_len);
        let positions: Vec<u32> = match self.config.family {
            Family::Roberta => {
                // transformers' create_position_ids_from_input_ids: padding_idx + cumsum(mask).
                let pad = self.config.pad_token_id;
                let mut out = Vec::with_capacity(batch.input_ids.len());
                for row in batch.attention_mask.chunks(batch.seq_len) {
                    let mut n = 0u32;
                    for &m in row {
                        n += m;
                        out.push(if m == 1 { pad + n } else { pad });
                    }
                }
                out
            }
            _ => (0..batch.size)
                .flat_map(|_| 0..batch.seq_len as u32)
                .collect(),
        };
        let d = &self.device;
        Ok(Inputs {
            input_ids: Tensor::from_slice(&batch.input_ids, shape, d)?,
            token_type_ids: Tensor::from_slice(&batch.token_type_ids, shape, d)?,
            position_ids: Tensor::from_vec(positions, shape, d)?,
            attention_mask: Tensor::from_slice(&batch.attention_mask, shape, d)?,
        })
    }

    /// Logits (batch, num_labels), in f32 (f64 for f64 weights) whatever the compute dtype of
    /// `weights`, so the loss is always taken in full precision. `rng` = `Some` turns dropout
    /// on (training mode).
    pub fn forward(
        &self,
        weights: &WeightMap,
        inputs: &Inputs,
        mut rng: Option<&mut TrainRng>,
    ) -> Result<Tensor> {
        let hidden = encoder::encode(&self.config, weights, inputs, rng.as_deref_mut())?;
        let logits = encoder::classify(&self.config, weights, &hidden, rng)?;
        Ok(logits.to_dtype(layers::accumulate_dtype(logits.dtype()))?)
    }

    /// `f` applied to every batch (of an inference pass, or a training batch's shards), results
    /// in batch order. On the CPU the batches run side by side, one per rayon thread (the ops
    /// inside still split their work when a thread is free): on two cores predict went from
    /// 45–50 to 57–61 samples/s against batch after batch with every op split across both
    /// (gemm scales poorly from one thread to two; the small ops between products ran on one).
    /// Each batch's result is the same either way. On a GPU the batches run in order, on the
    /// one stream.
    pub fn map_batches<B: Sync, T: Send>(
        &self,
        batches: &[B],
        f: impl Fn(&B) -> Result<T> + Sync + Send,
    ) -> Result<Vec<T>> {
        if self.device.is_cpu() {
            batches.par_iter().map(f).collect()
        } else {
            batches.iter().map(f).collect()
        }
    }

    /// Encoder output only (for comparing with transformers' `last_hidden_state`).
    pub fn hidden_states(&self, weights: &WeightMap, inputs: &Inputs) -> Result<Tensor> {
        encoder::encode(&self.config, weights, inputs, None)
    }
}
