//! Fused, multi-threaded CPU kernels that keep their backward pass.
//!
//! candle's own fused softmax and LayerNorm have no backward; composing them (and GELU's
//! backward) from primitive ops is correct but costs 5–12 allocating, mostly single-pass ops
//! each way. These custom ops do one threaded pass forward and one backward (the backward is
//! itself a fused op, applied without tracking: we never need second derivatives), so autograd
//! still reaches every parameter. f32/f64 on CPU only; `layers` falls back to the composed ops
//! for other dtypes and devices.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use num_traits::Float;
use rayon::prelude::*;

/// Elements per parallel task for element-wise kernels: large enough that scheduling is noise.
const CHUNK: usize = 1 << 14;

/// The float types the kernels take, with the one special function they need.
trait Real: Float + Send + Sync + std::iter::Sum {
    /// Φ(x), the standard normal CDF.
    fn normal_cdf(self) -> Self;
    fn lit(v: f64) -> Self;
}

impl Real for f32 {
    /// Through Numerical Recipes' `erfcc` (fractional error < 1.2e-7, one `exp`): libm's
    /// `erff` was 10 % of a MiniLM training step. Φ(x) = erfc(−x/√2) / 2, taken from the tail
    /// on each side so neither side cancels.
    fn normal_cdf(self) -> Self {
        let z = self.abs() * std::f32::consts::FRAC_1_SQRT_2;
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -1.265_512_2
            + t * (1.000_023_7
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_204
                                    + t * (1.488_515_9
                                        + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let half_tail = 0.5 * t * (poly - z * z).exp();
        if self >= 0.0 {
            1.0 - half_tail
        } else {
            half_tail
        }
    }
    fn lit(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    /// Exact (libm): f64 is what the finite-difference tests use.
    fn normal_cdf(self) -> Self {
        0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2))
    }
    fn lit(v: f64) -> Self {
        v
    }
}

/// The contiguous slice behind a layout, or a clear error naming the op and operand.
fn contiguous<'a, T>(v: &'a [T], l: &Layout, op: &str, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: {what} must be contiguous"),
    }
}

/// Runs a generic kernel body on f32 or f64 storages (all operands of one dtype).
macro_rules! float_kernel {
    ($op:expr, [$(($s:expr, $l:expr, $v:ident)),+], $body:expr) => {
        match ($($s,)+) {
            ($(CpuStorage::F32($v),)+) => {
                $(let $v = contiguous($v, $l, $op, stringify!($v))?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($v),)+) => {
                $(let $v = contiguous($v, $l, $op, stringify!($v))?;)+
                CpuStorage::F64($body)
            }
            _ => bail!("{}: f32 or f64 operands of one dtype only", $op),
        }
    };
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1).max(1)
}

/// Softmax of each row of `x` (rows of `dim`), after adding `bias` when given: one bias row of
/// `dim` per `rows_per_bias` consecutive rows (the attention mask: one per sequence, shared by
/// all heads and query positions).
fn softmax_rows<T: Real>(x: &[T], dim: usize, bias: Option<(&[T], usize)>) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(dim)
        .enumerate()
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(r, row)| {
            if let Some((bias, per)) = bias {
                let b = &bias[(r / per) * dim..][..dim];
                row.iter_mut().zip(b).for_each(|(v, &b)| *v = *v + b);
            }
            let max = row.iter().copied().fold(T::neg_infinity(), T::max);
            let mut sum = T::zero();
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum = sum + *v;
            }
            let inv = sum.recip();
            row.iter_mut().for_each(|v| *v = *v * inv);
        });
    out
}

/// dx = y ⊙ (dy − Σ dy ⊙ y), row by row.
fn softmax_grad_rows<T: Real>(y: &[T], dy: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(dim)
        .zip(y.par_chunks(dim).zip(dy.par_chunks(dim)))
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(dx, (y, dy))| {
            let s: T = y.iter().zip(dy).map(|(&a, &b)| a * b).sum();
            for ((o, &a), &b) in dx.iter_mut().zip(y).zip(dy) {
                *o = a * (b - s);
            }
        });
    out
}

/// Mean and 1/std (biased variance, as PyTorch) of one row.
fn row_stats<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::lit(row.len() as f64);
    let mean = row.iter().copied().sum::<T>() / n;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / n;
    (mean, (var + T::lit(eps)).sqrt().recip())
}

fn layer_norm_rows<T: Real>(x: &[T], g: &[T], b: &[T], eps: f64) -> Vec<T> {
    let dim = g.len();
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .with_min_len(CHUNK / dim + 1)
        .for_each(|(o, row)| {
            let (mean, rstd) = row_stats(row, eps);
            for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(g).zip(b) {
                *o = (v - mean) * rstd * g + b;
            }
        });
    out
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
                let (mean, rstd) = row_stats(x, eps);
                let mut m1 = T::zero();
                let mut m2 = T::zero();
                for i in 0..dim {
                    let xhat = (x[i] - mean) * rstd;
                    let dxhat = dy[i] * g[i];
                    m1 = m1 + dxhat;
                    m2 = m2 + dxhat * xhat;
                    dgamma[i] = dgamma[i] + dy[i] * xhat;
                    dbeta[i] = dbeta[i] + dy[i];
                }
                let (m1, m2) = (m1 / n, m2 / n);
                for i in 0..dim {
                    let xhat = (x[i] - mean) * rstd;
                    dx[i] = rstd * (dy[i] * g[i] - m1 - xhat * m2);
                }
            }
            (dgamma, dbeta)
        })
        .reduce(
            || (vec![T::zero(); dim], vec![T::zero(); dim]),
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

fn gelu_elems<T: Real>(x: &[T]) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v = *v * v.normal_cdf()));
    out
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
fn gelu_grad_elems<T: Real>(x: &[T], dy: &[T]) -> Vec<T> {
    let inv_sqrt_2pi = T::lit(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(o, (x, dy))| {
            for ((o, &x), &dy) in o.iter_mut().zip(x).zip(dy) {
                let pdf = (T::lit(-0.5) * x * x).exp() * inv_sqrt_2pi;
                *o = dy * (x.normal_cdf() + x * pdf);
            }
        });
    out
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

/// GELU with the exact erf form (`hidden_act: gelu` in transformers).
#[derive(Debug, Clone, Copy)]
pub struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "attune-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = float_kernel!(self.name(), [(s, l, input)], gelu_elems(input));
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

/// GELU's backward from its input and the incoming gradient.
#[derive(Debug, Clone, Copy)]
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "attune-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = float_kernel!(
            self.name(),
            [(s1, l1, input), (s2, l2, grad)],
            gelu_grad_elems(input, grad)
        );
        Ok((out, l1.shape().clone()))
    }
}
