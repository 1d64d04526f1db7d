//! Softmax over the last dimension, plain and with the attention mask folded in.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use multiversion::multiversion;
use rayon::prelude::*;

use super::{CHUNK, Real, contiguous, lane_max, lane_sum, last_dim};

/// Softmax of each row of `x` (rows of `dim`), after adding `bias` when given: one bias row of
/// `dim` per `rows_per_bias` consecutive rows (the attention mask: one per sequence, shared by
/// all heads and query positions).
fn softmax_rows<T: Real>(x: &[T], dim: usize, bias: Option<(&[T], usize)>) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(dim)
        .enumerate()
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(r, row)| {
            let bias = bias.map(|(bias, per)| &bias[(r / per) * dim..][..dim]);
            softmax_row(row, bias);
        });
    out
}

/// Softmax of one row in place, after adding `bias` (same length) when given. Compiled for
/// AVX-512 and AVX2 as well (`multiversion`, chosen at run time: the default x86-64 target has
/// only SSE2); the exponentials are a loop of their own so that they vectorise, and so do the
/// max and the sum (`lane_max`, `lane_sum`).
#[multiversion(targets = "simd")]
pub(super) fn softmax_row<T: Real>(row: &mut [T], bias: Option<&[T]>) {
    if let Some(b) = bias {
        row.iter_mut().zip(b).for_each(|(v, &b)| *v = *v + b);
    }
    let max = lane_max(row);
    row.iter_mut().for_each(|v| *v = (*v - max).exp_fast());
    let sum = lane_sum(row.len(), |i| row[i]);
    let inv = sum.recip();
    row.iter_mut().for_each(|v| *v = *v * inv);
}

/// dx = y ⊙ (dy − Σ dy ⊙ y), row by row.
fn softmax_grad_rows<T: Real>(y: &[T], dy: &[T], dim: usize) -> Vec<T> {
    let mut out = dy.to_vec();
    out.par_chunks_mut(dim)
        .zip(y.par_chunks(dim))
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(dx, y)| softmax_backward_row(dx, y, T::one()));
    out
}

/// One row of softmax's backward in place: `g` holds dy and becomes scale · y ⊙ (dy − Σ dy ⊙ y).
/// For AVX-512 and AVX2 too (see `softmax_row`).
#[multiversion(targets = "simd")]
pub(super) fn softmax_backward_row<T: Real>(g: &mut [T], y: &[T], scale: T) {
    let y = &y[..g.len()];
    let dot = lane_sum(g.len(), |i| g[i] * y[i]);
    for (g, &pv) in g.iter_mut().zip(y) {
        *g = scale * pv * (*g - dot);
    }
}

/// Softmax over the last dimension.
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "attune-softmax-last"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = last_dim(l);
        let out = float_kernel!(self.name(), [(s, l, input)], softmax_rows(input, dim, None));
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// Softmax over the last dimension of attention scores (batch, heads, query, key) after adding
/// the additive mask (batch, 1, 1, key): saves materialising the broadcast sum. The mask gets no
/// gradient.
#[derive(Debug, Clone, Copy)]
pub struct MaskedSoftmax;

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "attune-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, q, k) = l1.shape().dims4()?;
        if l2.dims() != [b, 1, 1, k] {
            bail!(
                "{}: mask must be ({b}, 1, 1, {k}), is {:?}",
                self.name(),
                l2.dims()
            );
        }
        let out = float_kernel!(
            self.name(),
            [(s1, l1, scores), (s2, l2, mask)],
            softmax_rows(scores, k, Some((mask, h * q)))
        );
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?),
            None,
        ))
    }
}

/// Softmax's backward from its output `y` and the incoming gradient.
#[derive(Debug, Clone, Copy)]
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "attune-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = last_dim(l1);
        let out = float_kernel!(
            self.name(),
            [(s1, l1, output), (s2, l2, grad)],
            softmax_grad_rows(output, grad, dim)
        );
        Ok((out, l1.shape().clone()))
    }
}
