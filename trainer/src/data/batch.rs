//! Batching: length-bucketed, seeded batch order per epoch, dynamic padding.
//!
//! An epoch's batch order is a pure function of (seed, epoch), so a resumed run only needs the
//! epoch and the batch index to continue exactly where it stopped.

use super::Encoded;
use crate::rng::TrainRng;

/// Batches sorted within buckets of this many batches: similar lengths share a batch (little
/// padding) while the order stays random.
const BUCKET_BATCHES: usize = 50;

/// A padded batch, row-major (size × seq_len).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Batch {
    pub size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub labels: Vec<u32>,
}

/// Pads the examples at `indices` to their longest length.
pub fn collate(examples: &[Encoded], indices: &[usize], pad_id: u32) -> Batch {
    let seq_len = indices
        .iter()
        .map(|&i| examples[i].input_ids.len())
        .max()
        .unwrap_or(0);
    let n = indices.len() * seq_len;
    let mut b = Batch {
        size: indices.len(),
        seq_len,
        input_ids: Vec::with_capacity(n),
        token_type_ids: Vec::with_capacity(n),
        attention_mask: Vec::with_capacity(n),
        labels: Vec::with_capacity(indices.len()),
    };
    for &i in indices {
        let e = &examples[i];
        let pad = seq_len - e.input_ids.len();
        b.input_ids.extend_from_slice(&e.input_ids);
        b.input_ids.extend(std::iter::repeat_n(pad_id, pad));
        b.token_type_ids.extend_from_slice(&e.token_type_ids);
        b.token_type_ids.extend(std::iter::repeat_n(0, pad));
        b.attention_mask
            .extend(std::iter::repeat_n(1, e.input_ids.len()));
        b.attention_mask.extend(std::iter::repeat_n(0, pad));
        b.labels.push(e.label);
    }
    b
}

/// Produces the batch order of each epoch.
#[derive(Debug, Clone)]
pub struct Batcher {
    pub seed: u64,
    pub batch_size: usize,
}

impl Batcher {
    /// Example indices of every batch of `epoch`, in training order.
    pub fn epoch(&self, examples: &[Encoded], epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = TrainRng::new(self.seed, 1000 + epoch);
        let mut order: Vec<usize> = (0..examples.len()).collect();
        rng.shuffle(&mut order);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for bucket in order.chunks(self.batch_size * BUCKET_BATCHES) {
            let mut bucket = bucket.to_vec();
            bucket.sort_by_key(|&i| examples[i].input_ids.len());
            batches.extend(bucket.chunks(self.batch_size).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut batches);
        batches
    }

    /// Evaluation batches: sorted by length (least padding), no randomness.
    pub fn eval(&self, examples: &[Encoded]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.sort_by_key(|&i| examples[i].input_ids.len());
        order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }
}
