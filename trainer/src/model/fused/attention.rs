//! Multi-head self-attention core, `softmax(q·kᵀ·scale + mask) · v` with dropout on the
//! probabilities, as one autograd node from the (batch, seq, hidden) projections to the
//! (batch, seq, hidden) context.
//!
//! Composed, this is ~15 nodes per layer (head split reshapes/transposes/copies, kᵀ, two
//! matmuls, mask add, softmax, dropout, merge), three of them (batch, heads, seq, seq); candle's
//! backward zero-fills and adds a buffer per node. Here gemm reads each head in place through
//! strides, batches run in parallel, and the probabilities are recomputed in the backward pass
//! instead of being kept (one extra q·kᵀ per head, no (batch, heads, seq, seq) tensor alive
//! between the passes).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, WithDType, bail};
use multiversion::multiversion;
use rayon::prelude::*;

use super::linear::{Gemm, Strided};
use super::softmax::{softmax_backward_row, softmax_row};
use super::{Real, contiguous};

/// The attention of one layer: the additive key mask (batch, seq), the dropout multipliers
/// (batch, heads, seq, seq; 0 or 1/(1−p)) when training, the head count and the score scale.
#[derive(Debug, Clone)]
pub struct Attention {
    pub mask: Tensor,
    pub dropout: Option<Vec<f32>>,
    pub heads: usize,
    pub scale: f64,
}

/// Shapes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    seq: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
}

/// A tensor's values on the host, in `T` (converted if needed).
fn host<T: WithDType>(t: &Tensor) -> candle_core::Result<Vec<T>> {
    t.flatten_all()?.to_dtype(T::DTYPE)?.to_vec1::<T>()
}

impl Attention {
    /// dq, dk, dv for the upstream gradient `grad`, computed on host copies in `T`.
    fn grads<T: Real + WithDType + 'static>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grad: &Tensor,
        d: Dims,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (dq, dk, dv) = backward(
            &host::<T>(q)?,
            &host::<T>(k)?,
            &host::<T>(v)?,
            &host::<T>(&self.mask)?,
            self.dropout.as_deref(),
            &host::<T>(grad)?,
            d,
            T::lit(self.scale),
        );
        let t = |x: Vec<T>| Tensor::from_vec(x, q.shape(), q.device());
        Ok((t(dq)?, t(dk)?, t(dv)?))
    }

    fn dims(&self, shape: &Shape) -> candle_core::Result<Dims> {
        let (batch, seq, hidden) = shape.dims3()?;
        if self.heads == 0 || !hidden.is_multiple_of(self.heads) {
            bail!(
                "attune-attention: hidden {hidden} is not a multiple of {} heads",
                self.heads
            );
        }
        if self.mask.dims() != [batch, seq] {
            bail!(
                "attune-attention: mask {:?}, expected ({batch}, {seq})",
                self.mask.dims()
            );
        }
        if let Some(d) = &self.dropout
            && d.len() != batch * self.heads * seq * seq
        {
            bail!("attune-attention: dropout mask has {} values", d.len());
        }
        Ok(Dims {
            seq,
            hidden,
            heads: self.heads,
            head_dim: hidden / self.heads,
        })
    }
}

/// Head `h` of one sequence's (seq, hidden) rows, as a (seq, head_dim) matrix.
fn head<'a, T>(rows: &'a [T], h: usize, d: &Dims) -> Strided<'a, T> {
    Strided {
        data: &rows[h * d.head_dim..],
        row_stride: d.hidden,
        col_stride: 1,
    }
}

/// The same head transposed: (head_dim, seq).
fn head_t<'a, T>(rows: &'a [T], h: usize, d: &Dims) -> Strided<'a, T> {
    Strided {
        data: &rows[h * d.head_dim..],
        row_stride: 1,
        col_stride: d.hidden,
    }
}

/// A row-major (n, n) matrix, or its transpose.
fn square<T>(m: &[T], n: usize, transposed: bool) -> Strided<'_, T> {
    let (row_stride, col_stride) = if transposed { (1, n) } else { (n, 1) };
    Strided {
        data: m,
        row_stride,
        col_stride,
    }
}

/// P = softmax(scale · q·kᵀ + mask) of head `h` into `p` (seq × seq).
fn probabilities<T: Real + 'static>(
    p: &mut [T],
    q: &[T],
    k: &[T],
    mask: &[T],
    h: usize,
    d: &Dims,
    scale: T,
) {
    let s = d.seq;
    product(s, s, d.head_dim).run(p, s, head(q, h, d), head_t(k, h, d), scale);
    for row in p.chunks_mut(s) {
        softmax_row(row, Some(mask));
    }
}

/// Multiplies `p` by head `h`'s dropout multipliers of sequence `b`, if any.
fn apply_dropout<T: Real>(p: &mut [T], dropout: Option<&[f32]>, b: usize, h: usize, d: &Dims) {
    if let Some(drop) = dropout {
        let n = d.seq * d.seq;
        multiply(p, &drop[(b * d.heads + h) * n..][..n]);
    }
}

/// `p ⊙= m`, for AVX-512 and AVX2 too (see `softmax_row`).
#[multiversion(targets = "simd")]
fn multiply<T: Real>(p: &mut [T], m: &[f32]) {
    p.iter_mut()
        .zip(m)
        .for_each(|(v, &m)| *v = *v * T::lit(f64::from(m)));
}

fn forward<T: Real + WithDType + 'static>(
    q: &[T],
    k: &[T],
    v: &[T],
    mask: &[T],
    dropout: Option<&[f32]>,
    d: Dims,
    scale: T,
) -> Vec<T> {
    let rows = d.seq * d.hidden;
    let mut out = vec![T::zero(); q.len()];
    out.par_chunks_mut(rows).enumerate().for_each(|(b, out)| {
        let (q, k, v) = (
            &q[b * rows..][..rows],
            &k[b * rows..][..rows],
            &v[b * rows..][..rows],
        );
        let mask = &mask[b * d.seq..][..d.seq];
        let mut p = vec![T::zero(); d.seq * d.seq];
        for h in 0..d.heads {
            probabilities(&mut p, q, k, mask, h, &d, scale);
            apply_dropout(&mut p, dropout, b, h, &d);
            // ctx_h = P · v_h, written into head h's columns of the output rows.
            gemm_into_head(out, h, &d, square(&p, d.seq, false), head(v, h, &d), d.seq);
        }
    });
    out
}

/// A single-threaded product (batches already run in parallel), overwriting its output.
fn product(m: usize, n: usize, k: usize) -> Gemm {
    Gemm {
        m,
        n,
        k,
        accumulate: false,
        parallel: false,
    }
}

/// `out[:, head h] = lhs · rhs` where `out` is one sequence's (seq, hidden) rows and `inner` the
/// shared dimension.
fn gemm_into_head<T: Real + 'static>(
    out: &mut [T],
    h: usize,
    d: &Dims,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
    inner: usize,
) {
    product(d.seq, d.head_dim, inner).run(&mut out[h * d.head_dim..], d.hidden, lhs, rhs, T::one());
}

/// dq, dk, dv (each like q) from the upstream gradient `dout`.
#[allow(clippy::too_many_arguments)]
fn backward<T: Real + WithDType + 'static>(
    q: &[T],
    k: &[T],
    v: &[T],
    mask: &[T],
    dropout: Option<&[f32]>,
    dout: &[T],
    d: Dims,
    scale: T,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = d.seq * d.hidden;
    let (mut dq, mut dk, mut dv) = (
        vec![T::zero(); q.len()],
        vec![T::zero(); q.len()],
        vec![T::zero(); q.len()],
    );
    dq.par_chunks_mut(rows)
        .zip(dk.par_chunks_mut(rows).zip(dv.par_chunks_mut(rows)))
        .enumerate()
        .for_each(|(b, (dq, (dk, dv)))| {
            let (q, k, v, dout) = (
                &q[b * rows..][..rows],
                &k[b * rows..][..rows],
                &v[b * rows..][..rows],
                &dout[b * rows..][..rows],
            );
            let mask = &mask[b * d.seq..][..d.seq];
            let n = d.seq * d.seq;
            let (mut p, mut pd, mut dp) =
                (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
            for h in 0..d.heads {
                probabilities(&mut p, q, k, mask, h, &d, scale);
                pd.copy_from_slice(&p);
                apply_dropout(&mut pd, dropout, b, h, &d);
                // dv_h = Pdᵀ · dout_h;  dPd = dout_h · v_hᵀ.
                gemm_into_head(
                    dv,
                    h,
                    &d,
                    square(&pd, d.seq, true),
                    head(dout, h, &d),
                    d.seq,
                );
                product(d.seq, d.seq, d.head_dim).run(
                    &mut dp,
                    d.seq,
                    head(dout, h, &d),
                    head_t(v, h, &d),
                    T::one(),
                );
                apply_dropout(&mut dp, dropout, b, h, &d);
                // dS = scale · P ⊙ (dP − Σ_j dP ⊙ P), row by row.
                for (dp_row, p_row) in dp.chunks_mut(d.seq).zip(p.chunks(d.seq)) {
                    softmax_backward_row(dp_row, p_row, scale);
                }
                // dq_h = dS · k_h;  dk_h = dSᵀ · q_h.
                gemm_into_head(dq, h, &d, square(&dp, d.seq, false), head(k, h, &d), d.seq);
                gemm_into_head(dk, h, &d, square(&dp, d.seq, true), head(q, h, &d), d.seq);
            }
        });
    (dq, dk, dv)
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attune-attention"
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
        let d = self.dims(l1.shape())?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            bail!("attune-attention: q, k and v must have one shape");
        }
        let drop = self.dropout.as_deref();
        let out = float_kernel!(
            self.name(),
            [(s1, l1, q), (s2, l2, k), (s3, l3, v)],
            forward(q, k, v, &host(&self.mask)?, drop, d, Real::lit(self.scale))
        );
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(q.shape())?;
        let (dq, dk, dv) = match q.dtype() {
            candle_core::DType::F32 => self.grads::<f32>(q, k, v, grad, d)?,
            candle_core::DType::F64 => self.grads::<f64>(q, k, v, grad, d)?,
            other => bail!("attune-attention: {other:?} not supported"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
