//! Tokenization with HuggingFace `tokenizers`: truncation to the max length here, padding later
//! per batch (dynamic padding wastes no compute on a batch of short texts).

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::Example;
use crate::error::{Error, Result};

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub label: u32,
}

/// A tokenizer configured for our use.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Id used to pad batches.
    pub pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; `pad_id` comes from the tokenizer's padding config, its pad token,
    /// or the model config's `pad_token_id`.
    pub fn from_file(path: &Path, max_length: usize, fallback_pad: u32) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| ["[PAD]", "<pad>"].iter().find_map(|t| inner.token_to_id(t)))
            .unwrap_or(fallback_pad);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self { inner, pad_id })
    }

    /// Tokenizes one text (or pair) with special tokens.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = match pair {
            Some(p) => self.inner.encode((text, p), true),
            None => self.inner.encode(text, true),
        }
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }

    /// Tokenizes examples.
    pub fn encode_all(&self, examples: &[Example]) -> Result<Vec<Encoded>> {
        examples
            .iter()
            .map(|e| {
                let (input_ids, token_type_ids) = self.encode(&e.text, e.text_pair.as_deref())?;
                Ok(Encoded {
                    input_ids,
                    token_type_ids,
                    label: e.label,
                })
            })
            .collect()
    }
}
