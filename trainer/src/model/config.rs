//! The parts of a HuggingFace `config.json` our encoders need, normalised across families.

use serde::Deserialize;
use std::path::Path;

use crate::error::{Error, Result};

/// Which encoder family, and so which weight names and head layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum Family {
    /// BERT and MiniLM (`bert.` prefix, pooler + linear head).
    Bert,
    /// RoBERTa and XLM-RoBERTa (`roberta.` prefix, dense + out_proj head, offset positions).
    Roberta,
    /// DistilBERT (`distilbert.` prefix, pre_classifier + classifier head).
    DistilBert,
}

impl Family {
    /// The weight-name prefix transformers' `*ForSequenceClassification` puts on encoder weights.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::DistilBert => "distilbert",
        }
    }

    /// The `architectures` entry an export declares.
    pub fn architecture(self, xlm: bool) -> &'static str {
        match (self, xlm) {
            (Self::Bert, _) => "BertForSequenceClassification",
            (Self::Roberta, false) => "RobertaForSequenceClassification",
            (Self::Roberta, true) => "XLMRobertaForSequenceClassification",
            (Self::DistilBert, _) => "DistilBertForSequenceClassification",
        }
    }
}

/// Encoder hyper-parameters, with DistilBERT's field names mapped onto BERT's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub family: Family,
    /// `model_type` as written in config.json (bert, roberta, xlm-roberta, distilbert).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_dropout: f32,
    pub attention_dropout: f32,
    /// Dropout before the classifier (BERT/RoBERTa `classifier_dropout`, DistilBERT
    /// `seq_classif_dropout`).
    pub classifier_dropout: f32,
    pub initializer_range: f32,
    pub pad_token_id: u32,
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: usize,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_dropout_prob: Option<f32>,
    attention_probs_dropout_prob: Option<f32>,
    classifier_dropout: Option<f32>,
    initializer_range: Option<f32>,
    pad_token_id: Option<u32>,
    hidden_act: Option<String>,
    activation: Option<String>,
    // DistilBERT names.
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    dropout: Option<f32>,
    attention_dropout: Option<f32>,
    seq_classif_dropout: Option<f32>,
}

fn need<T>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| Error::Model(format!("config.json lacks `{field}`")))
}

impl ModelConfig {
    /// Reads `config.json` from a model folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value = crate::error::read_json(path)?;
        Self::from_value(&value).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }

    /// Parses an already-loaded `config.json`.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        let raw: Raw = serde_json::from_value(value.clone())
            .map_err(|e| Error::Model(format!("config.json: {e}")))?;
        let model_type = raw.model_type.clone().unwrap_or_else(|| "bert".into());
        let act = raw.hidden_act.as_deref().or(raw.activation.as_deref());
        if let Some(act) = act
            && act != "gelu"
        {
            return Err(Error::Model(format!(
                "activation `{act}` is not supported (only gelu)"
            )));
        }
        let family = match model_type.as_str() {
            "bert" => Family::Bert,
            "roberta" | "xlm-roberta" => Family::Roberta,
            "distilbert" => Family::DistilBert,
            other => {
                return Err(Error::Model(format!(
                    "model_type `{other}` is not supported (bert, roberta, xlm-roberta, distilbert)"
                )));
            }
        };
        let cfg = if family == Family::DistilBert {
            let dropout = raw.dropout.unwrap_or(0.1);
            Self {
                family,
                model_type,
                vocab_size: raw.vocab_size,
                hidden_size: need(raw.dim, "dim")?,
                num_layers: need(raw.n_layers, "n_layers")?,
                num_heads: need(raw.n_heads, "n_heads")?,
                intermediate_size: need(raw.hidden_dim, "hidden_dim")?,
                max_position_embeddings: raw.max_position_embeddings,
                type_vocab_size: 0,
                layer_norm_eps: 1e-12,
                hidden_dropout: dropout,
                attention_dropout: raw.attention_dropout.unwrap_or(0.1),
                classifier_dropout: raw.seq_classif_dropout.unwrap_or(0.2),
                initializer_range: raw.initializer_range.unwrap_or(0.02),
                pad_token_id: raw.pad_token_id.unwrap_or(0),
            }
        } else {
            let hidden_dropout = raw.hidden_dropout_prob.unwrap_or(0.1);
            Self {
                family,
                model_type,
                vocab_size: raw.vocab_size,
                hidden_size: need(raw.hidden_size, "hidden_size")?,
                num_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
                num_heads: need(raw.num_attention_heads, "num_attention_heads")?,
                intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
                max_position_embeddings: raw.max_position_embeddings,
                type_vocab_size: raw.type_vocab_size.unwrap_or(2),
                layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
                hidden_dropout,
                attention_dropout: raw.attention_probs_dropout_prob.unwrap_or(0.1),
                classifier_dropout: raw.classifier_dropout.unwrap_or(hidden_dropout),
                initializer_range: raw.initializer_range.unwrap_or(0.02),
                pad_token_id: raw.pad_token_id.unwrap_or(if family == Family::Roberta {
                    1
                } else {
                    0
                }),
            }
        };
        if cfg.num_heads == 0 || cfg.hidden_size % cfg.num_heads != 0 {
            return Err(Error::Model(format!(
                "hidden size {} is not divisible by {} heads",
                cfg.hidden_size, cfg.num_heads
            )));
        }
        Ok(cfg)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}
