//! Fused, multi-threaded CPU kernels that keep their backward pass.
//!
//! candle's own fused softmax and LayerNorm have no backward; composing them (and GELU's
//! backward) from primitive ops is correct but costs 5–12 allocating, mostly single-pass ops
//! each way. These custom ops do one threaded pass forward and one backward (the backward is
//! itself a fused op, applied without tracking: we never need second derivatives), so autograd
//! still reaches every parameter. f32/f64 on CPU only; `layers` falls back to the composed ops
//! for other dtypes and devices.
//!
//! One file per op; this module holds what they share: the float types and the dispatch from
//! candle's storages to generic kernels.

use candle_core::{Layout, bail};
use num_traits::Float;

/// Elements per parallel task for element-wise kernels: large enough that scheduling is noise.
pub(crate) const CHUNK: usize = 1 << 14;

/// The float types the kernels take, with the special functions they need.
pub(crate) trait Real: Float + Send + Sync + std::iter::Sum {
    /// Φ(x), the standard normal CDF.
    fn normal_cdf(self) -> Self;
    /// eˣ, in a form the compiler can vectorise (for f32).
    fn exp_fast(self) -> Self;
    fn lit(v: f64) -> Self;
}

/// eˣ for f32 without a libm call, after Cephes' `expf`: x = n·ln2 + r with |r| ≤ ln2/2, a
/// degree-7 polynomial for eʳ, and 2ⁿ built from the exponent bits. Branch-free (rounding by the
/// 1.5·2²³ trick, clamping by min/max), so loops over it vectorise; glibc's `expf` was 9 % of a
/// training step (softmax, GELU). Relative error < 3e-7 (`tests::exp_fast_matches_std`);
/// inputs below −87.3 give ~1e-38 instead of 0, which every caller multiplies away.
///
/// 2ⁿ comes from the bits of the rounded sum, not from `n as i32`: Rust's saturating float →
/// int cast has no vector instruction, so LLVM split every vector into 16 scalar conversions
/// (over half of GELU's and softmax's time).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³
    let x = x.clamp(-87.3, 88.7);
    // |n| ≤ 128 sits in the low mantissa bits of `rounded`: its bits are ROUND's + n.
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let er = p * r * r + r + 1.0;
    let biased = rounded
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    er * f32::from_bits(biased << 23)
}

impl Real for f32 {
    /// Through Numerical Recipes' `erfcc` (fractional error < 1.2e-7, one `exp`): libm's
    /// `erff` was 10 % of a MiniLM training step. Φ(x) = erfc(−x/√2) / 2, taken from the tail
    /// on each side so neither side cancels.
    #[inline(always)]
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
        let half_tail = 0.5 * t * exp_f32(poly - z * z);
        if self >= 0.0 {
            1.0 - half_tail
        } else {
            half_tail
        }
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
    fn lit(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    /// Exact (libm): f64 is what the finite-difference tests use.
    #[inline(always)]
    fn normal_cdf(self) -> Self {
        0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2))
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn lit(v: f64) -> Self {
        v
    }
}

/// Running sums kept by [`lane_sum`]: one AVX-512 register of f32.
const LANES: usize = 16;

/// Σ term(i) for i < n, in a fixed order that vectorises: element i goes to running sum
/// i mod [`LANES`], and the running sums are then added pairwise. A left-to-right sum is one
/// dependent add per element (it was half of softmax's time); this order is as deterministic
/// (it depends on n only, never on threads), just not the same bits.
#[inline(always)]
pub(crate) fn lane_sum<T: Real>(n: usize, term: impl Fn(usize) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let full = n - n % LANES;
    for base in (0..full).step_by(LANES) {
        for (lane, a) in acc.iter_mut().enumerate() {
            *a = *a + term(base + lane);
        }
    }
    for (a, i) in acc.iter_mut().zip(full..n) {
        *a = *a + term(i);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            acc[lane] = acc[lane] + acc[lane + width];
        }
    }
    acc[0]
}

/// The largest element (−∞ for none), [`LANES`] at a time. Max is exact in any order, so
/// this is the same value as a left-to-right fold, without the dependent chain.
#[inline(always)]
pub(crate) fn lane_max<T: Real>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = a.max(v);
    }
    acc.into_iter().fold(T::neg_infinity(), T::max)
}

/// The contiguous slice behind a layout, or a clear error naming the op and operand.
pub(crate) fn contiguous<'a, T>(
    v: &'a [T],
    l: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [T]> {
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

pub(crate) fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1).max(1)
}

// After `float_kernel!`, so the op modules see it.
mod attention;
mod gelu;
mod layer_norm;
mod linear;
mod softmax;

pub use attention::Attention;
pub use gelu::Gelu;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use softmax::{MaskedSoftmax, SoftmaxLast};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_matches_std() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert!(exp_f32(-1000.0) < 1e-37 && exp_f32(-1000.0) >= 0.0);
    }

    #[test]
    fn normal_cdf_f32_matches_the_exact_one() {
        let mut worst = 0f64;
        for i in -1000..=1000 {
            let x = i as f32 * 0.01;
            let exact = f64::from(x).normal_cdf();
            worst = worst.max((f64::from(x.normal_cdf()) - exact).abs());
        }
        assert!(worst < 2e-7, "max absolute error {worst:e}");
    }
}
