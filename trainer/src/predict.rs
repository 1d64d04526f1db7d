//! Inference with an exported model: logits and the top label with its softmax score.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::data::{Encoded, TextTokenizer, batch::collate};
use crate::error::{Error, Result};
use crate::model::{Classifier, WeightMap, layers::softmax_last};
use crate::rng::TrainRng;

/// A loaded export.
#[derive(Debug)]
pub struct Predictor {
    pub model: Classifier,
    weights: WeightMap,
    tokenizer: TextTokenizer,
    pub labels: Vec<String>,
}

/// The top class of one input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub score: f32,
}

fn read_labels(dir: &Path) -> Result<Vec<String>> {
    let cfg: serde_json::Value = crate::error::read_json(&dir.join("config.json"))?;
    let map = cfg
        .get("id2label")
        .and_then(|v| v.as_object())
        .ok_or_else(|| Error::Model(format!("{}: config.json has no id2label", dir.display())))?;
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .map(|(k, v)| {
            let id = k
                .parse()
                .map_err(|_| Error::Model(format!("id2label key `{k}` is not a number")))?;
            Ok((id, v.as_str().unwrap_or_default().to_string()))
        })
        .collect::<Result<_>>()?;
    pairs.sort();
    Ok(pairs.into_iter().map(|(_, l)| l).collect())
}

impl Predictor {
    /// Loads an export folder (config.json with id2label, model.safetensors, tokenizer.json).
    pub fn load(dir: &Path, max_length: usize, device: &Device) -> Result<Self> {
        let labels = read_labels(dir)?;
        let mut rng = TrainRng::new(0, 0);
        let model = Classifier::from_dir(dir, labels.len(), &mut rng, device)?;
        if !model.params.initialised.is_empty() {
            return Err(Error::Model(format!(
                "{} is not a trained classifier: missing {}",
                dir.display(),
                model.params.initialised.join(", ")
            )));
        }
        let tokenizer = TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            max_length,
            model.config.pad_token_id,
        )?;
        let weights = model.detached()?;
        Ok(Self {
            model,
            weights,
            tokenizer,
            labels,
        })
    }

    /// Raw logits of each text, in input order.
    pub fn logits(&self, texts: &[String], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let encoded: Vec<Encoded> = texts
            .iter()
            .map(|t| {
                let (input_ids, token_type_ids) = self.tokenizer.encode(t, None)?;
                Ok(Encoded {
                    input_ids,
                    token_type_ids,
                    label: 0,
                })
            })
            .collect::<Result<_>>()?;
        let idx: Vec<usize> = (0..encoded.len()).collect();
        let chunks: Vec<&[usize]> = idx.chunks(batch_size.max(1)).collect();
        let batches = self.model.map_batches(&chunks, |chunk| {
            let batch = collate(&encoded, chunk, self.tokenizer.pad_id);
            let inputs = self.model.inputs(&batch)?;
            let logits = self.model.forward(&self.weights, &inputs, None)?;
            Ok(logits.to_vec2::<f32>()?)
        })?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// Top label and softmax score for each logits row.
    pub fn top(&self, logits: &[Vec<f32>]) -> Result<Vec<Prediction>> {
        logits
            .iter()
            .map(|row| {
                let t = Tensor::from_slice(row, row.len(), &Device::Cpu)?;
                let p = softmax_last(&t)?.to_vec1::<f32>()?;
                let (best, score) = p
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
                Ok(Prediction {
                    label: self.labels.get(best).cloned().unwrap_or_default(),
                    score,
                })
            })
            .collect()
    }
}
