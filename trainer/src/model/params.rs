//! The full list of parameters of each `*ForSequenceClassification`, under the exact names
//! transformers uses, so loading, checkpoints and export all speak HuggingFace.

use super::config::{Family, ModelConfig};

/// How a parameter is initialised when the checkpoint lacks it (transformers' `_init_weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal(0, std): linear and embedding weights.
    Normal(f32),
    /// All zeros: biases.
    Zeros,
    /// All ones: LayerNorm weights.
    Ones,
}

/// One parameter: name, shape, initialiser, and whether AdamW applies weight decay to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// False for biases and LayerNorm weights (transformers' Trainer convention).
    pub decay: bool,
    /// A LayerNorm parameter: stays f32 under mixed precision, as PyTorch's autocast runs
    /// LayerNorm in f32 (bf16 has 8 bits of mantissa, too few for a variance).
    pub norm: bool,
}

struct Specs {
    out: Vec<ParamSpec>,
    std: f32,
}

impl Specs {
    fn linear(&mut self, name: &str, out_f: usize, in_f: usize) {
        self.out.push(ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![out_f, in_f],
            init: Init::Normal(self.std),
            decay: true,
            norm: false,
        });
        self.out.push(ParamSpec {
            name: format!("{name}.bias"),
            shape: vec![out_f],
            init: Init::Zeros,
            decay: false,
            norm: false,
        });
    }
    fn norm(&mut self, name: &str, dim: usize) {
        self.out.push(ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![dim],
            init: Init::Ones,
            decay: false,
            norm: true,
        });
        self.out.push(ParamSpec {
            name: format!("{name}.bias"),
            shape: vec![dim],
            init: Init::Zeros,
            decay: false,
            norm: true,
        });
    }
    fn embedding(&mut self, name: &str, rows: usize, dim: usize) {
        self.out.push(ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![rows, dim],
            init: Init::Normal(self.std),
            decay: true,
            norm: false,
        });
    }
}

/// Every parameter of the classifier, encoder first, in a stable order.
pub fn param_specs(cfg: &ModelConfig, num_labels: usize) -> Vec<ParamSpec> {
    let mut s = Specs {
        out: Vec::new(),
        std: cfg.initializer_range,
    };
    let h = cfg.hidden_size;
    let p = cfg.family.prefix();
    s.embedding(
        &format!("{p}.embeddings.word_embeddings"),
        cfg.vocab_size,
        h,
    );
    s.embedding(
        &format!("{p}.embeddings.position_embeddings"),
        cfg.max_position_embeddings,
        h,
    );
    match cfg.family {
        Family::Bert | Family::Roberta => {
            s.embedding(
                &format!("{p}.embeddings.token_type_embeddings"),
                cfg.type_vocab_size,
                h,
            );
            s.norm(&format!("{p}.embeddings.LayerNorm"), h);
            for i in 0..cfg.num_layers {
                let l = format!("{p}.encoder.layer.{i}");
                s.linear(&format!("{l}.attention.self.query"), h, h);
                s.linear(&format!("{l}.attention.self.key"), h, h);
                s.linear(&format!("{l}.attention.self.value"), h, h);
                s.linear(&format!("{l}.attention.output.dense"), h, h);
                s.norm(&format!("{l}.attention.output.LayerNorm"), h);
                s.linear(&format!("{l}.intermediate.dense"), cfg.intermediate_size, h);
                s.linear(&format!("{l}.output.dense"), h, cfg.intermediate_size);
                s.norm(&format!("{l}.output.LayerNorm"), h);
            }
        }
        Family::DistilBert => {
            s.norm(&format!("{p}.embeddings.LayerNorm"), h);
            for i in 0..cfg.num_layers {
                let l = format!("{p}.transformer.layer.{i}");
                for n in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                    s.linear(&format!("{l}.attention.{n}"), h, h);
                }
                s.norm(&format!("{l}.sa_layer_norm"), h);
                s.linear(&format!("{l}.ffn.lin1"), cfg.intermediate_size, h);
                s.linear(&format!("{l}.ffn.lin2"), h, cfg.intermediate_size);
                s.norm(&format!("{l}.output_layer_norm"), h);
            }
        }
    }
    match cfg.family {
        Family::Bert => {
            s.linear(&format!("{p}.pooler.dense"), h, h);
            s.linear("classifier", num_labels, h);
        }
        Family::Roberta => {
            s.linear("classifier.dense", h, h);
            s.linear("classifier.out_proj", num_labels, h);
        }
        Family::DistilBert => {
            s.linear("pre_classifier", h, h);
            s.linear("classifier", num_labels, h);
        }
    }
    s.out
}
