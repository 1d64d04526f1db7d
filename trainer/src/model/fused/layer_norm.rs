//! LayerNorm over the last dimension, with its backward fused into one pass.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, bail};
use multiversion::multiversion;
use rayon::prelude::*;

use super::{CHUNK, Real, contiguous, lane_sum, last_dim};

/// Mean and 1/std (biased variance, as PyTorch) of one row.
#[inline(always)]
fn row_stats<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::lit(row.len() as f64);
    let mean = lane_sum(row.len(), |i| row[i]) / n;
    let var = lane_sum(row.len(), |i| (row[i] - mean) * (row[i] - mean)) / n;
    (mean, (var + T::lit(eps)).sqrt().recip())
}

fn layer_norm_rows<T: Real>(x: &[T], g: &[T], b: &[T], eps: f64) -> Vec<T> {
    let dim = g.len();
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(o, row)| normalize_row(o, row, g, b, eps));
    out
}

/// One row of the forward pass, for AVX-512 and AVX2 too (see `softmax::softmax_row`).
#[multiversion(targets = "simd")]
fn normalize_row<T: Real>(o: &mut [T], row: &[T], g: &[T], b: &[T], eps: f64) {
    let (mean, rstd) = row_stats(row, eps);
    for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(g).zip(b) {
        *o = (v - mean) * rstd * g + b;
    }
}

/// LayerNorm's backward: `rows` rows of dx, then one row of dγ and one of dβ.
/// dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) with dx̂ = dy ⊙ γ; x̂ is recomputed (cheap)
/// rather than kept alive between the passes.
fn layer_norm_grad_rows<T: Real>(x: &[T], g: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let dim = g.len();
    let rows = x.len() / dim;
    let n = T::lit(dim as f64);
    let mut out = vec![T::zero(); (rows + 2) * dim];
    let (dx, params) = out.split_at_mut(rows * dim);
    let rows_per_task = (CHUNK / dim).max(1);
    let (dgamma, dbeta) = dx
        .par_chunks_mut(rows_per_task * dim)
        .zip(x.par_chunks(rows_per_task * dim))
        .zip(dy.par_chunks(rows_per_task * dim))
        .map(|((dx, x), dy)| {
            let mut dgamma = vec![T::zero(); dim];
            let mut dbeta = vec![T::zero(); dim];
            for ((dx, x), dy) in dx.chunks_mut(dim).zip(x.chunks(dim)).zip(dy.chunks(dim)) {
                grad_row(dx, x, dy, g, eps, n, (&mut dgamma, &mut dbeta));
            }
            (dgamma, dbeta)
        })
        .collect::<Vec<_>>()
        .into_iter()
        // Summed in task order, not with rayon's `reduce`, whose tree follows work stealing:
        // the same run must give the same bits (seeded training, bit-for-bit resume).
        .fold(
            (vec![T::zero(); dim], vec![T::zero(); dim]),
            |(mut g1, mut b1), (g2, b2)| {
                g1.iter_mut().zip(g2).for_each(|(a, b)| *a = *a + b);
                b1.iter_mut().zip(b2).for_each(|(a, b)| *a = *a + b);
                (g1, b1)
            },
        );
    params[..dim].copy_from_slice(&dgamma);
    params[dim..].copy_from_slice(&dbeta);
    out
}

/// One row of the backward: dx, and its dγ, dβ terms added to `acc`. For AVX-512 and AVX2 too
/// (see `softmax::softmax_row`).
#[multiversion(targets = "simd")]
fn grad_row<T: Real>(
    dx: &mut [T],
    x: &[T],
    dy: &[T],
    g: &[T],
    eps: f64,
    n: T,
    acc: (&mut [T], &mut [T]),
) {
    let (dgamma, dbeta) = acc;
    let (mean, rstd) = row_stats(x, eps);
    let dim = g.len();
    let (dx, x, dy) = (&mut dx[..dim], &x[..dim], &dy[..dim]);
    let (dgamma, dbeta) = (&mut dgamma[..dim], &mut dbeta[..dim]);
    let m1 = lane_sum(dim, |i| dy[i] * g[i]) / n;
    let m2 = lane_sum(dim, |i| dy[i] * g[i] * ((x[i] - mean) * rstd)) / n;
    for i in 0..dim {
        let xhat = (x[i] - mean) * rstd;
        dgamma[i] = dgamma[i] + dy[i] * xhat;
        dbeta[i] = dbeta[i] + dy[i];
        dx[i] = rstd * (dy[i] * g[i] - m1 - xhat * m2);
    }
}

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · gamma + beta`, biased
/// variance, as PyTorch.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm {
    pub eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "attune-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = float_kernel!(
            self.name(),
            [(s1, l1, input), (s2, l2, weight), (s3, l3, bias)],
            layer_norm_rows(input, weight, bias, self.eps)
        );
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dim = gamma.dim(0)?;
        let rows = x.elem_count() / dim;
        let packed =
            x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.get(rows)?;
        let dbeta = packed.get(rows + 1)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// LayerNorm's backward from (x, γ, dy); returns dx, dγ and dβ packed as rows (see
/// [`layer_norm_grad_rows`]).
#[derive(Debug, Clone, Copy)]
struct LayerNormGrad {
    eps: f64,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "attune-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = last_dim(l1);
        let rows = l1.shape().elem_count() / dim;
        let out = float_kernel!(
            self.name(),
            [(s1, l1, input), (s2, l2, weight), (s3, l3, grad)],
            layer_norm_grad_rows(input, weight, grad, self.eps)
        );
        Ok((out, Shape::from((rows + 2, dim))))
    }
}
