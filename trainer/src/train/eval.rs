//! Evaluation on detached weights: no autograd graph is recorded, which made evaluation 1.5×
//! faster in the prototype.

use candle_core::{D, Tensor};

use super::metrics::{EvalMetrics, accuracy_f1};
use crate::data::{Batcher, Encoded, batch::collate};
use crate::error::Result;
use crate::model::{Classifier, WeightMap, layers::cross_entropy};

/// Loss, accuracy and macro-F1 of `model` (with `weights`, normally detached) on `examples`.
pub fn evaluate(
    model: &Classifier,
    weights: &WeightMap,
    examples: &[Encoded],
    batcher: &Batcher,
    pad_id: u32,
) -> Result<EvalMetrics> {
    let batches = model.map_batches(&batcher.eval(examples), |idx| {
        let batch = collate(examples, idx, pad_id);
        let inputs = model.inputs(&batch)?;
        let logits = model.forward(weights, &inputs, None)?;
        let labels = Tensor::from_slice(&batch.labels, batch.size, &model.device)?;
        let loss = cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
        let preds = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok((loss, preds, batch.labels))
    })?;
    // Added up in batch order, whatever order the batches ran in.
    let mut loss_sum = 0f64;
    let mut targets = Vec::with_capacity(examples.len());
    let mut preds = Vec::with_capacity(examples.len());
    for (loss, batch_preds, labels) in batches {
        loss_sum += f64::from(loss) * labels.len() as f64;
        preds.extend(batch_preds);
        targets.extend(labels);
    }
    let (accuracy, macro_f1) = accuracy_f1(&targets, &preds);
    Ok(EvalMetrics {
        loss: if targets.is_empty() {
            0.0
        } else {
            loss_sum / targets.len() as f64
        },
        accuracy,
        macro_f1,
        samples: targets.len(),
    })
}
