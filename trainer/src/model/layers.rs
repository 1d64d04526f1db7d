//! Differentiable building blocks.
//!
//! candle's fused `LayerNorm` and `softmax_last_dim` have no backward pass, so a model built from
//! them trains nothing, silently. Everything here is composed of primitive ops that carry
//! gradients; the softmax subtracts a *detached* max, which leaves the value and the gradient
//! unchanged (softmax is shift-invariant) but saves a backward branch.

use candle_core::{D, DType, Tensor};

use super::dropout::DropoutMask;
use crate::error::Result;

/// `x · wᵀ + b` over the last dimension, any number of leading dimensions. One fused node on
/// CPU (`fused::Linear`), composed elsewhere.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fused(x) && w.dtype() == x.dtype() && b.dtype() == x.dtype() {
        return Ok(x.contiguous()?.apply_op3(w, b, super::fused::Linear)?);
    }
    linear_composed(x, w, b)
}

/// [`linear`] from candle ops (any device).
pub fn linear_composed(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (last, lead) = dims
        .split_last()
        .ok_or_else(|| crate::error::Error::Model("linear: input has no dimensions".into()))?;
    let rows: usize = lead.iter().product();
    let out_features = w.dim(0)?;
    let y = x
        .reshape((rows, *last))?
        .matmul(&w.t()?)?
        .broadcast_add(b)?;
    let mut out_dims = lead.to_vec();
    out_dims.push(out_features);
    Ok(y.reshape(out_dims)?)
}

/// Whether the fused CPU kernels (`fused`) take `x`: f32/f64 on the CPU.
pub(crate) fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// The dtype reductions (LayerNorm, softmax, the loss) run in for values in `dtype`: f32 for
/// the 16-bit types (as PyTorch's autocast), else `dtype` itself.
pub fn accumulate_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// Runs `f` on `x` widened to `wide` and narrows the result back to `x`'s dtype (a no-op when
/// they agree). Both casts are differentiable.
fn widened(x: &Tensor, wide: DType, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if x.dtype() == wide {
        return f(x);
    }
    Ok(f(&x.to_dtype(wide)?)?.to_dtype(x.dtype())?)
}

/// LayerNorm as in PyTorch: biased variance, eps inside the square root. Fused on CPU
/// (`fused::LayerNorm`, with its own backward), composed elsewhere.
/// Under mixed precision `x` is 16-bit and `gamma`/`beta` f32: the norm runs in f32.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    widened(x, gamma.dtype(), |x| {
        if fused(x) {
            let x = x.contiguous()?;
            return Ok(x.apply_op3(gamma, beta, super::fused::LayerNorm { eps })?);
        }
        layer_norm_composed(x, gamma, beta, eps)
    })
}

/// LayerNorm from primitive ops (any device).
pub fn layer_norm_composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)? as f64;
    let mean = (x.sum_keepdim(D::Minus1)? / n)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / n)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Softmax over the last dimension. Fused on CPU (`fused::SoftmaxLast`, with its own backward),
/// composed elsewhere.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return Ok(x.contiguous()?.apply_op1(super::fused::SoftmaxLast)?);
    }
    softmax_last_composed(x)
}

/// Multi-head attention core: `softmax(q·kᵀ/√d + mask) · v` per head, with the dropout
/// multipliers (batch, heads, seq, seq in row-major order, from
/// [`super::dropout::draw_dropout`]) applied to the probabilities when given. `q`, `k`, `v` are
/// (batch, seq, hidden) projections, `mask` the additive (batch, 1, 1, seq) bias; returns the
/// (batch, seq, hidden) context. One fused node on CPU (`fused::Attention`), composed elsewhere.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    heads: usize,
    dropout: Option<DropoutMask>,
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let host = matches!(dropout, None | Some(DropoutMask::Host(_)));
    if fused(q) && mask.dtype() == q.dtype() && host {
        let op = super::fused::Attention {
            mask: mask.reshape((b, s))?,
            dropout: dropout.and_then(DropoutMask::into_host),
            heads,
            scale: 1.0 / ((h / heads) as f64).sqrt(),
        };
        return Ok(q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?);
    }
    attention_composed(q, k, v, mask, heads, dropout)
}

/// [`attention`] from candle ops (any device).
pub fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    heads: usize,
    dropout: Option<DropoutMask>,
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let d = h / heads;
    let split = |t: &Tensor| -> Result<Tensor> {
        Ok(t.reshape((b, s, heads, d))?.transpose(1, 2)?.contiguous()?)
    };
    // Scaling q rather than the scores touches (batch, seq, hidden) values instead of
    // (batch, heads, seq, seq): 4× fewer at 128 tokens.
    let q = split(&(q * (1.0 / (d as f64).sqrt()))?)?;
    let probs = masked_softmax(&q.matmul(&split(k)?.t()?)?, mask)?;
    let probs = match dropout {
        Some(m) => (&probs * m.into_tensor(probs.shape(), probs.device(), probs.dtype())?)?,
        None => probs,
    };
    Ok(probs
        .matmul(&split(v)?)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, s, h))?)
}

/// Attention probabilities: softmax over the last dimension of `scores` (batch, heads, query,
/// key) plus the additive `mask` (batch, 1, 1, key), computed in the mask's dtype (f32 under
/// mixed precision). Fused on CPU (`fused::MaskedSoftmax`).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    widened(scores, mask.dtype(), |scores| {
        if fused(scores) {
            return Ok(scores
                .contiguous()?
                .apply_op2(&mask.contiguous()?, super::fused::MaskedSoftmax)?);
        }
        masked_softmax_composed(scores, mask)
    })
}

/// [`masked_softmax`] from primitive ops (any device).
pub fn masked_softmax_composed(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    softmax_last_composed(&scores.broadcast_add(mask)?)
}

/// Softmax from primitive ops (any device).
pub fn softmax_last_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

/// Log-softmax over the last dimension.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Mean cross-entropy of `logits` (batch, classes) against class indices, as
/// `torch.nn.CrossEntropyLoss()`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let batch = logits.dim(0)? as f64;
    let lp = log_softmax_last(logits)?;
    let picked = lp.gather(&labels.unsqueeze(1)?, 1)?;
    Ok((picked.sum_all()? / -batch)?)
}

/// Additive attention bias (batch, 1, 1, seq): 0 for real tokens, the most negative f32 for
/// padding, as transformers builds it.
pub fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let m = mask.to_dtype(dtype)?;
    let bias = ((m - 1.0)? * f64::from(f32::MAX))?;
    Ok(bias.reshape((b, 1, 1, s))?)
}

/// GELU with the exact erf form (`hidden_act: gelu` in transformers). Fused on CPU
/// (`fused::Gelu`: candle's `gelu_erf` backward is nine single-threaded ops), candle's elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return Ok(x.contiguous()?.apply_op1(super::fused::Gelu)?);
    }
    gelu_composed(x)
}

/// candle's GELU (any device).
pub fn gelu_composed(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
}
