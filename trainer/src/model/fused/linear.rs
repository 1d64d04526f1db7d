//! `x · wᵀ + b` as one autograd node.
//!
//! Composed from candle ops a linear layer is five nodes (reshape, transpose, matmul, broadcast
//! add, reshape), and candle's backward zero-fills a fresh buffer and adds into it for every
//! node's gradient: on MiniLM those fills and adds were a quarter of a training step. Here the
//! bias seeds the output and gemm accumulates onto it (no separate bias pass, no zero fill), and
//! the backward is two matmuls and a threaded column sum straight to dx, dw and db.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{Real, contiguous, last_dim};

#[derive(Debug, Clone, Copy)]
pub struct Linear;

/// A read-only matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`, so heads
/// and transposes are read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<T> Strided<'_, T> {
    /// Whether a (rows, cols) matrix lies within `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// One matrix product `out (m×n) = scale · lhs (m×k) · rhs (k×n)` (`+ out` when
/// `accumulate`), through gemm; `parallel` lets gemm use every rayon thread (off when the caller
/// already runs products in parallel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub accumulate: bool,
    pub parallel: bool,
}

impl Gemm {
    /// Writes row i of the result at `out[i·out_row_stride..][..n]`.
    pub fn run<T: Real + 'static>(
        &self,
        out: &mut [T],
        out_row_stride: usize,
        lhs: Strided<'_, T>,
        rhs: Strided<'_, T>,
        scale: T,
    ) {
        let Self { m, n, k, .. } = *self;
        let out_view = Strided {
            data: &*out,
            row_stride: out_row_stride,
            col_stride: 1,
        };
        assert!(
            out_view.holds(m, n) && lhs.holds(m, k) && rhs.holds(k, n),
            "gemm operands out of bounds"
        );
        let threads = rayon::current_num_threads();
        let parallelism = if self.parallel && threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let s = |v: usize| v as isize;
        // SAFETY: the assert above bounds every element gemm touches: out (i, j) at
        // i·out_row_stride + j, lhs (i, p) and rhs (p, j) at their strides, for i < m, j < n,
        // p < k. `out` is borrowed mutably, so it aliases neither input. T is f32 or f64
        // (`Real`), types gemm supports.
        #[allow(unsafe_code)]
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                s(out_row_stride),
                self.accumulate,
                lhs.data.as_ptr(),
                s(lhs.col_stride),
                s(lhs.row_stride),
                rhs.data.as_ptr(),
                s(rhs.col_stride),
                s(rhs.row_stride),
                T::one(),
                scale,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

fn linear_rows<T: Real + 'static>(x: &[T], w: &[T], b: &[T], k: usize) -> Vec<T> {
    let n = b.len();
    let rows = x.len() / k;
    let mut out = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
    // out += x · wᵀ, wᵀ read in place from the (n, k) weight.
    let product = Gemm {
        m: rows,
        n,
        k,
        accumulate: true,
        parallel: true,
    };
    let x = Strided {
        data: x,
        row_stride: k,
        col_stride: 1,
    };
    let w_t = Strided {
        data: w,
        row_stride: 1,
        col_stride: k,
    };
    product.run(&mut out, n, x, w_t, T::one());
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
        let db = g.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Column sums of a (rows, n) matrix: the bias gradient. candle's `sum(0)` walks the matrix
/// on one thread in a strided order (7 % of a MiniLM training step); here each task owns a
/// block of columns and adds the rows in order, so the result is the same for any number of
/// threads.
#[derive(Debug, Clone, Copy)]
struct ColumnSum;

/// Columns per task: 64 f32 are one 256-byte stretch of each row.
const COLUMNS_PER_TASK: usize = 64;

fn column_sums<T: Real>(g: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n];
    out.par_chunks_mut(COLUMNS_PER_TASK)
        .enumerate()
        .for_each(|(block, acc)| {
            let (c0, width) = (block * COLUMNS_PER_TASK, acc.len());
            for row in g.chunks_exact(n) {
                for (a, &v) in acc.iter_mut().zip(&row[c0..c0 + width]) {
                    *a = *a + v;
                }
            }
        });
    out
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "attune-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = last_dim(l);
        let out = float_kernel!(self.name(), [(s, l, g)], column_sums(g, n));
        Ok((out, Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several column blocks, the last one partial: every column is its rows added in order.
    #[test]
    fn column_sums_add_each_column_in_row_order() {
        let (rows, n) = (37, 2 * COLUMNS_PER_TASK + 22);
        let g: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let want: Vec<f32> = (0..n)
            .map(|c| (0..rows).fold(0.0, |acc, r| acc + g[r * n + c]))
            .collect();
        assert_eq!(column_sums(&g, n), want);
    }
}
