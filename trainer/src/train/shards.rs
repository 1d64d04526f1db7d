//! One batch's loss and gradients, computed in shards that run side by side on the CPU.
//!
//! Split across two threads, gemm reached 210–240 GFLOP/s here against 130–150 on one (MKL:
//! 265–300), and the small ops between the products ran on one thread. Two shards of the batch,
//! each its own forward and backward on a rayon thread (their ops still split when a thread is
//! free), took MiniLM training on two cores from 12.5–13.7 to 15.4–15.8 samples/s.
//!
//! The result depends on the shard count, never on the thread count: [`CPU_SHARDS`] is fixed,
//! each shard draws its dropout masks from a generator split off the run's in shard order, and
//! the gradients are added in shard order. So seeded runs and resumed runs still give the same
//! weights bit for bit with any number of threads. On a GPU a batch is one shard.

use candle_core::{Tensor, Var};

use crate::data::{Encoded, batch::collate};
use crate::error::Result;
use crate::model::{Classifier, WeightMap, layers::cross_entropy};
use crate::rng::TrainRng;

/// Shards per batch on the CPU.
pub const CPU_SHARDS: usize = 2;

/// What a batch needs besides its rows: the model, the weights to differentiate (variables, or
/// casts of them under mixed precision), the variables to collect gradients for, the tokenized
/// examples the rows index, the padding id and the loss scale.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub model: &'a Classifier,
    pub weights: &'a WeightMap,
    pub vars: &'a [Var],
    pub examples: &'a [Encoded],
    pub pad_id: u32,
    pub loss_scale: f64,
}

impl Step<'_> {
    /// Mean loss over the rows `idx`; the gradient of (mean loss × loss scale) added to `acc`
    /// (one slot per variable). `rng` = `Some` turns dropout on.
    pub fn accumulate(
        &self,
        idx: &[usize],
        mut rng: Option<&mut TrainRng>,
        acc: &mut [Option<Tensor>],
    ) -> Result<f64> {
        let shards = if self.model.device.is_cpu() {
            CPU_SHARDS.min(idx.len()).max(1)
        } else {
            1
        };
        let parts: Vec<(&[usize], Option<TrainRng>)> = idx
            .chunks(idx.len().div_ceil(shards).max(1))
            .map(|part| (part, rng.as_deref_mut().map(TrainRng::split)))
            .collect();
        let results = self.model.map_batches(&parts, |(part, rng)| {
            self.shard(part, idx.len(), rng.clone())
        })?;
        let mut loss = 0f64;
        for (part_loss, grads) in results {
            loss += part_loss;
            for (slot, g) in acc.iter_mut().zip(grads) {
                if let Some(g) = g {
                    *slot = Some(match slot.take() {
                        None => g,
                        Some(a) => (a + g)?,
                    });
                }
            }
        }
        Ok(loss)
    }

    /// One shard: its share of the batch's mean loss (summed over its rows, divided by the
    /// batch's `rows`) and that share's gradients, so the shards' results simply add up.
    fn shard(
        &self,
        part: &[usize],
        rows: usize,
        mut rng: Option<TrainRng>,
    ) -> Result<(f64, Vec<Option<Tensor>>)> {
        let batch = collate(self.examples, part, self.pad_id);
        let inputs = self.model.inputs(&batch)?;
        let labels = Tensor::from_slice(&batch.labels, batch.size, &self.model.device)?;
        let logits = self.model.forward(self.weights, &inputs, rng.as_mut())?;
        let share = (cross_entropy(&logits, &labels)? * (part.len() as f64 / rows as f64))?;
        let loss = f64::from(share.to_scalar::<f32>()?);
        let grads = if self.loss_scale == 1.0 {
            share.backward()?
        } else {
            (share * self.loss_scale)?.backward()?
        };
        let grads = self
            .vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect();
        Ok((loss, grads))
    }
}
