//! AdamW for parameters on a GPU, over one flat copy of all of them.
//!
//! At MiniLM's size a training step on an H200 is bound by kernel launches, not by bytes: per
//! parameter the update is ~14 candle ops, so ~1,400 launches for 101 parameters. Here the
//! parameters, both moments and the weight-decay mask live in single flat tensors, so a step is
//! one concatenation of the gradients, ~15 element-wise ops over 22.7M values, and one copy back
//! into each variable.

use candle_core::{DType, Tensor, Var};

use super::{Moments, StepScalars};
use crate::error::Result;

/// The flat optimizer state: the truth for the moments while training runs on the device.
#[derive(Debug)]
pub(super) struct FlatState {
    /// Master copy of every parameter, in `vars` order (equal to the variables after a step).
    params: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// 1 where weight decay applies, 0 elsewhere.
    decay: Tensor,
}

/// The tensors flattened and concatenated, in order, detached: made from variables, the result
/// would otherwise record the graph, and each step's state would keep every earlier step's
/// alive (seen on an H200: 47 GB after one epoch).
pub(super) fn concat(parts: &[Tensor]) -> Result<Tensor> {
    let flat = parts
        .iter()
        .map(|t| t.detach().flatten_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}

/// `(offset, length)` of each variable in the flat tensors.
fn spans(vars: &[Var]) -> Vec<(usize, usize)> {
    let mut offset = 0;
    vars.iter()
        .map(|v| {
            let span = (offset, v.elem_count());
            offset += span.1;
            span
        })
        .collect()
}

impl FlatState {
    /// The state for `vars` (all on one device) from the host moments.
    pub(super) fn new(vars: &[Var], moments: &[Moments]) -> Result<Self> {
        let device = vars
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let host = |f: &dyn Fn(&Moments) -> Vec<f32>| -> Result<Tensor> {
            let all: Vec<f32> = moments.iter().flat_map(f).collect();
            let n = all.len();
            Ok(Tensor::from_vec(all, n, &device)?)
        };
        let params: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        Ok(Self {
            params: concat(&params)?,
            exp_avg: host(&|m| m.exp_avg.clone())?,
            exp_avg_sq: host(&|m| m.exp_avg_sq.clone())?,
            decay: host(&|m| vec![if m.decay { 1.0 } else { 0.0 }; m.exp_avg.len()])?,
        })
    }

    /// Whether any state tensor records the autograd graph (it must not).
    #[cfg(test)]
    pub(super) fn tracks_graph(&self) -> bool {
        [&self.params, &self.exp_avg, &self.exp_avg_sq, &self.decay]
            .iter()
            .any(|t| t.track_op())
    }

    /// Copies the moments into the host vectors (for a checkpoint).
    pub(super) fn write_moments(&self, vars: &[Var], moments: &mut [Moments]) -> Result<()> {
        for ((off, n), m) in spans(vars).into_iter().zip(moments) {
            m.exp_avg = self.exp_avg.narrow(0, off, n)?.to_vec1()?;
            m.exp_avg_sq = self.exp_avg_sq.narrow(0, off, n)?.to_vec1()?;
        }
        Ok(())
    }

    /// One AdamW update of every variable with a gradient; `s.decay_factor` is the factor for
    /// the parameters with weight decay. A variable without a gradient keeps its value and its
    /// moments, as in torch.
    pub(super) fn step(
        &mut self,
        vars: &[Var],
        grads: &[Option<Tensor>],
        s: &StepScalars,
    ) -> Result<()> {
        let spans = spans(vars);
        let grad_parts = grads
            .iter()
            .zip(&spans)
            .map(|(g, &(_, n))| match g {
                Some(g) => Ok(g.to_dtype(DType::F32)?),
                None => Ok(Tensor::zeros(n, DType::F32, self.params.device())?),
            })
            .collect::<Result<Vec<_>>>()?;
        let g = concat(&grad_parts)?.affine(f64::from(s.grad_scale), 0.0)?;
        let (b1, b2) = (f64::from(s.beta1), f64::from(s.beta2));
        let mut m = (self.exp_avg.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
        let mut v = (self.exp_avg_sq.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
        let denom = v
            .sqrt()?
            .affine(1.0 / f64::from(s.bc2_sqrt), f64::from(s.eps))?;
        let factor = self.decay.affine(f64::from(s.decay_factor) - 1.0, 1.0)?;
        let mut p =
            ((&self.params * factor)? - m.div(&denom)?.affine(f64::from(s.step_size), 0.0)?)?;
        for (g, &(off, n)) in grads.iter().zip(&spans) {
            if g.is_none() {
                // One range: the flat tensors have one dimension.
                #[allow(clippy::single_range_in_vec_init)]
                let keep = |new: Tensor, old: &Tensor| {
                    new.slice_assign(&[off..off + n], &old.narrow(0, off, n)?)
                };
                p = keep(p, &self.params)?;
                m = keep(m, &self.exp_avg)?;
                v = keep(v, &self.exp_avg_sq)?;
            }
        }
        for ((var, g), &(off, n)) in vars.iter().zip(grads).zip(&spans) {
            if g.is_some() {
                var.set(&p.narrow(0, off, n)?.reshape(var.shape())?)?;
            }
        }
        (self.params, self.exp_avg, self.exp_avg_sq) = (p, m, v);
        Ok(())
    }
}
