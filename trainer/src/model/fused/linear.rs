//! `x · wᵀ + b` as one autograd node.
//!
//! Composed from candle ops a linear layer is five nodes (reshape, transpose, matmul, broadcast
//! add, reshape), and candle's backward zero-fills a fresh buffer and adds into it for every
//! node's gradient: on MiniLM those fills and adds were a quarter of a training step. Here the
//! bias seeds the output and gemm accumulates onto it (no separate bias pass, no zero fill), and
//! the backward is three matmuls/reductions straight to dx, dw and db.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, bail};

use super::{Real, contiguous};

#[derive(Debug, Clone, Copy)]
pub struct Linear;

/// `out (m×n) += lhs (m×k) · rhsᵀ`, all row-major, rhs being n×k (a weight as stored).
fn gemm_nt_accumulate<T: Real + 'static>(
    out: &mut [T],
    lhs: &[T],
    rhs: &[T],
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(
        out.len() == m * n && lhs.len() == m * k && rhs.len() == n * k,
        "gemm shapes"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above bounds every access: gemm reads lhs[i·k + p] (i < m, p < k),
    // rhs[j·k + p] (j < n) — rhsᵀ seen with row stride 1 and column stride k — and reads and
    // writes out[i·n + j]. The slices do not alias (one is &mut). T is f32 or f64 (`Real`),
    // types gemm supports.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn linear_rows<T: Real + 'static>(x: &[T], w: &[T], b: &[T], k: usize) -> Vec<T> {
    let n = b.len();
    let rows = x.len() / k;
    let mut out = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
    gemm_nt_accumulate(&mut out, x, w, rows, n, k);
    out
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "attune-linear"
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
        let (n, k) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&k) || l3.dims() != [n] {
            bail!(
                "{}: input {dims:?}, weight {:?} and bias {:?} do not fit",
                self.name(),
                l2.dims(),
                l3.dims()
            );
        }
        let out = float_kernel!(
            self.name(),
            [(s1, l1, input), (s2, l2, weight), (s3, l3, bias)],
            linear_rows(input, weight, bias, k)
        );
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n;
        }
        Ok((out, Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let rows = x.elem_count() / k;
        let g = grad.reshape((rows, n))?;
        let dx = g.matmul(&w.detach())?.reshape(x.shape())?;
        let dw = g.t()?.matmul(&x.detach().reshape((rows, k))?)?;
        let db = g.sum(0)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
