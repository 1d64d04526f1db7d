//! GELU (exact erf form), forward and backward each one threaded pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use multiversion::multiversion;
use rayon::prelude::*;

use super::{CHUNK, Real, contiguous};

fn gelu_elems<T: Real>(x: &[T]) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(CHUNK).for_each(gelu_chunk);
    out
}

#[multiversion(targets = "simd")]
fn gelu_chunk<T: Real>(c: &mut [T]) {
    c.iter_mut().for_each(|v| *v = *v * v.normal_cdf());
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
fn gelu_grad_elems<T: Real>(x: &[T], dy: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(o, (x, dy))| gelu_grad_chunk(o, x, dy));
    out
}

#[multiversion(targets = "simd")]
fn gelu_grad_chunk<T: Real>(o: &mut [T], x: &[T], dy: &[T]) {
    let inv_sqrt_2pi = T::lit(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    for ((o, &x), &dy) in o.iter_mut().zip(x).zip(dy) {
        let pdf = (T::lit(-0.5) * x * x).exp_fast() * inv_sqrt_2pi;
        *o = dy * (x.normal_cdf() + x * pdf);
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
