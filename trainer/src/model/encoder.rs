//! The transformer encoders (BERT/RoBERTa share one layout; DistilBERT differs in names and in
//! having no token types), written on the differentiable ops of `layers`.

use std::collections::HashMap;

use candle_core::Tensor;

use super::config::{Family, ModelConfig};
use super::dropout::{draw_dropout, dropout};
use super::layers::{accumulate_dtype, attention, attention_bias, gelu, layer_norm, linear};
use crate::error::{Error, Result};
use crate::rng::TrainRng;

/// Named weights of one model (variables while training, detached copies for evaluation).
pub type WeightMap = HashMap<String, Tensor>;

pub(crate) fn w<'a>(weights: &'a WeightMap, name: &str) -> Result<&'a Tensor> {
    weights
        .get(name)
        .ok_or_else(|| Error::Model(format!("weight {name} missing")))
}

/// Host-side token tensors of one padded batch.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// (batch, seq) token ids.
    pub input_ids: Tensor,
    /// (batch, seq) token type ids.
    pub token_type_ids: Tensor,
    /// (batch, seq) position ids (RoBERTa offsets them past the padding index).
    pub position_ids: Tensor,
    /// (batch, seq) 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

struct Ctx<'a> {
    weights: &'a WeightMap,
    cfg: &'a ModelConfig,
    rng: Option<&'a mut TrainRng>,
}

impl Ctx<'_> {
    fn lin(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        linear(
            x,
            w(self.weights, &format!("{name}.weight"))?,
            w(self.weights, &format!("{name}.bias"))?,
        )
    }
    fn norm(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        layer_norm(
            x,
            w(self.weights, &format!("{name}.weight"))?,
            w(self.weights, &format!("{name}.bias"))?,
            self.cfg.layer_norm_eps,
        )
    }
    fn drop(&mut self, x: &Tensor, p: f32) -> Result<Tensor> {
        dropout(x, p, self.rng.as_deref_mut())
    }

    fn embed(&self, table: &str, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let t = w(self.weights, table)?;
        Ok(t.index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, t.dim(1)?))?)
    }

    /// Multi-head self-attention; `names` are the q, k, v, out projections.
    fn attention(&mut self, x: &Tensor, bias: &Tensor, names: [&str; 4]) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let heads = self.cfg.num_heads;
        let q = self.lin(x, names[0])?;
        let k = self.lin(x, names[1])?;
        let v = self.lin(x, names[2])?;
        let p = self.cfg.attention_dropout;
        let dropout = match self.rng.as_deref_mut() {
            Some(rng) if p > 0.0 => {
                Some(draw_dropout(&(b, heads, s, s).into(), p, rng, x.device())?)
            }
            _ => None,
        };
        let ctx = attention(&q, &k, &v, bias, heads, dropout)?;
        self.lin(&ctx, names[3])
    }
}

/// Runs the encoder; returns the last hidden state (batch, seq, hidden).
/// `rng` is `Some` in training mode (dropout active) and `None` for evaluation.
pub fn encode(
    cfg: &ModelConfig,
    weights: &WeightMap,
    inputs: &Inputs,
    rng: Option<&mut TrainRng>,
) -> Result<Tensor> {
    let mut c = Ctx { weights, cfg, rng };
    let p = cfg.family.prefix();
    let dtype = w(weights, &format!("{p}.embeddings.word_embeddings.weight"))?.dtype();
    let bias = attention_bias(&inputs.attention_mask, accumulate_dtype(dtype))?;
    let hd = cfg.hidden_dropout;
    let mut x = c.embed(
        &format!("{p}.embeddings.word_embeddings.weight"),
        &inputs.input_ids,
    )?;
    x = (x + c.embed(
        &format!("{p}.embeddings.position_embeddings.weight"),
        &inputs.position_ids,
    )?)?;
    if cfg.family != Family::DistilBert {
        x = (x + c.embed(
            &format!("{p}.embeddings.token_type_embeddings.weight"),
            &inputs.token_type_ids,
        )?)?;
    }
    x = c.norm(&x, &format!("{p}.embeddings.LayerNorm"))?;
    x = c.drop(&x, hd)?;
    for i in 0..cfg.num_layers {
        x = match cfg.family {
            Family::Bert | Family::Roberta => {
                let l = format!("{p}.encoder.layer.{i}");
                let a = c.attention(
                    &x,
                    &bias,
                    [
                        &format!("{l}.attention.self.query"),
                        &format!("{l}.attention.self.key"),
                        &format!("{l}.attention.self.value"),
                        &format!("{l}.attention.output.dense"),
                    ],
                )?;
                let a = c.drop(&a, hd)?;
                let a = c.norm(&(a + &x)?, &format!("{l}.attention.output.LayerNorm"))?;
                let f = gelu(&c.lin(&a, &format!("{l}.intermediate.dense"))?)?;
                let f = c.lin(&f, &format!("{l}.output.dense"))?;
                let f = c.drop(&f, hd)?;
                c.norm(&(f + a)?, &format!("{l}.output.LayerNorm"))?
            }
            Family::DistilBert => {
                let l = format!("{p}.transformer.layer.{i}");
                let a = c.attention(
                    &x,
                    &bias,
                    [
                        &format!("{l}.attention.q_lin"),
                        &format!("{l}.attention.k_lin"),
                        &format!("{l}.attention.v_lin"),
                        &format!("{l}.attention.out_lin"),
                    ],
                )?;
                let a = c.norm(&(a + &x)?, &format!("{l}.sa_layer_norm"))?;
                let f = gelu(&c.lin(&a, &format!("{l}.ffn.lin1"))?)?;
                let f = c.lin(&f, &format!("{l}.ffn.lin2"))?;
                let f = c.drop(&f, hd)?;
                c.norm(&(f + a)?, &format!("{l}.output_layer_norm"))?
            }
        };
    }
    Ok(x)
}

/// The sequence-classification head on top of the encoder output; returns logits.
pub fn classify(
    cfg: &ModelConfig,
    weights: &WeightMap,
    hidden: &Tensor,
    rng: Option<&mut TrainRng>,
) -> Result<Tensor> {
    let mut c = Ctx { weights, cfg, rng };
    let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
    let p = cfg.classifier_dropout;
    match cfg.family {
        Family::Bert => {
            let pooled = c.lin(&first, "bert.pooler.dense")?.tanh()?;
            let pooled = c.drop(&pooled, p)?;
            c.lin(&pooled, "classifier")
        }
        Family::Roberta => {
            let x = c.drop(&first, p)?;
            let x = c.lin(&x, "classifier.dense")?.tanh()?;
            let x = c.drop(&x, p)?;
            c.lin(&x, "classifier.out_proj")
        }
        Family::DistilBert => {
            let x = c.lin(&first, "pre_classifier")?.relu()?;
            let x = c.drop(&x, p)?;
            c.lin(&x, "classifier")
        }
    }
}
