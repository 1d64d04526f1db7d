//! AdamW as `torch.optim.AdamW`, fused and in place.
//!
//! candle-nn's AdamW spends ~12 allocating tensor ops per parameter per step; here one pass over
//! each parameter updates weight, both moments and applies weight decay and gradient scaling
//! (clipping, accumulation averaging) in place, through a candle `InplaceOp2` on CPU. On a GPU the
//! same update runs as candle tensor ops over flat device-resident state ([`flat`]), so no
//! parameter crosses to the host during training; the moments are copied back only for a
//! checkpoint ([`AdamW::sync_to_host`]).

mod flat;

use std::cell::RefCell;

use candle_core::{CpuStorage, Layout, Tensor, Var};
use multiversion::multiversion;

use crate::error::{Error, Result};

/// Hyper-parameters (torch defaults except lr and weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter's optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    /// Weight decay applies (not for biases and LayerNorm weights).
    pub decay: bool,
}

/// AdamW over a fixed list of variables.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub vars: Vec<Var>,
    pub moments: Vec<Moments>,
    /// Optimizer steps taken so far (torch's `state['step']`).
    pub step: u64,
    /// The state of parameters on a GPU: the truth for the moments while training there, made
    /// from `moments` on first use.
    on_device: Option<flat::FlatState>,
}

/// Scalars of one update, shared by all parameters.
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    decay_factor: f32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    grad_scale: f32,
}

/// For AVX-512 and AVX2 too, chosen at run time (the default x86-64 target has only SSE2).
#[multiversion(targets = "simd")]
fn update(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (b1, b2) = (s.beta1, s.beta2);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * s.grad_scale;
        *p *= s.decay_factor;
        *m += (g - *m) * (1.0 - b1);
        *v = *v * b2 + (1.0 - b2) * g * g;
        let denom = v.sqrt() / s.bc2_sqrt + s.eps;
        *p -= s.step_size * *m / denom;
    }
}

struct FusedStep<'a> {
    scalars: StepScalars,
    moments: RefCell<&'a mut Moments>,
}

impl candle_core::InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "attune-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("attune-adamw: non-contiguous parameter or gradient");
        };
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("attune-adamw: parameters and gradients must be f32");
        };
        let mut mom = self.moments.borrow_mut();
        let Moments {
            exp_avg,
            exp_avg_sq,
            ..
        } = &mut **mom;
        update(
            &self.scalars,
            &mut p[p0..p1],
            &g[g0..g1],
            exp_avg,
            exp_avg_sq,
        );
        Ok(())
    }
}

impl AdamW {
    /// A fresh optimizer; `decay[i]` says whether `vars[i]` gets weight decay.
    pub fn new(config: AdamWConfig, vars: Vec<Var>, decay: &[bool]) -> Self {
        let moments = vars
            .iter()
            .zip(decay)
            .map(|(v, &decay)| Moments {
                exp_avg: vec![0.0; v.elem_count()],
                exp_avg_sq: vec![0.0; v.elem_count()],
                decay,
            })
            .collect();
        Self {
            on_device: None,
            config,
            vars,
            moments,
            step: 0,
        }
    }

    /// Copies device-resident moments into `moments` (before a checkpoint reads them).
    pub fn sync_to_host(&mut self) -> Result<()> {
        match &self.on_device {
            Some(state) => state.write_moments(&self.vars, &mut self.moments),
            None => Ok(()),
        }
    }

    /// Forgets the device state, so the next step starts from `moments` and the variables
    /// (after a restore).
    pub fn reload_from_host(&mut self) {
        self.on_device = None;
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of `vars[i]` (None = no
    /// gradient, parameter untouched as in torch), multiplied by `grad_scale` first.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let scalars = |decay: bool| StepScalars {
            decay_factor: (1.0 - lr * if decay { c.weight_decay } else { 0.0 }) as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: c.eps as f32,
            grad_scale: grad_scale as f32,
        };
        for (var, grad) in self.vars.iter().zip(grads) {
            if let Some(grad) = grad
                && grad.dims() != var.dims()
            {
                return Err(Error::Model(format!(
                    "gradient shape {:?} does not match parameter {:?}",
                    grad.dims(),
                    var.dims()
                )));
            }
        }
        if self.vars.first().is_some_and(|v| !v.device().is_cpu()) {
            let state = match self.on_device.take() {
                Some(state) => state,
                None => flat::FlatState::new(&self.vars, &self.moments)?,
            };
            let state = self.on_device.insert(state);
            return state.step(&self.vars, grads, &scalars(true));
        }
        for ((var, grad), mom) in self.vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let Some(grad) = grad else { continue };
            let op = FusedStep {
                scalars: scalars(mom.decay),
                moments: RefCell::new(mom),
            };
            var.as_tensor().inplace_op2(&grad.contiguous()?, &op)?;
        }
        Ok(())
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_`), times `scale`.
/// On the CPU each tensor's sum of squares (f32) is added in f64; on a GPU all gradients are
/// concatenated and reduced at once (a handful of launches instead of three per tensor). Either
/// way the device is read once.
pub fn global_norm(grads: &[Option<Tensor>], scale: f64) -> Result<f64> {
    let present: Vec<Tensor> = grads.iter().flatten().cloned().collect();
    let Some(first) = present.first() else {
        return Ok(0.0);
    };
    let total = if first.device().is_cpu() {
        let sums = present
            .iter()
            .map(|g| g.sqr()?.sum_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let sums = Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
        sums.into_iter().map(f64::from).sum()
    } else {
        f64::from(
            flat::concat(&present)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()?,
        )
    };
    Ok(total.sqrt() * scale)
}

/// The factor torch's `clip_grad_norm_` multiplies gradients by.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::rng::TrainRng;

    /// The GPU path (flat tensor ops) computes the fused CPU kernel's update, with and without
    /// weight decay, and leaves a parameter without a gradient alone (run here on CPU tensors).
    #[test]
    fn flat_update_matches_the_fused_kernel() {
        let mut rng = TrainRng::new(5, 5);
        let mut draw = |n: usize, abs: bool| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    if abs {
                        rng.normal().abs()
                    } else {
                        rng.normal()
                    }
                })
                .collect()
        };
        let sizes = [(3000, true), (700, false), (50, true)];
        let vars: Vec<Var> = sizes
            .iter()
            .map(|&(n, _)| Var::from_vec(draw(n, false), n, &Device::Cpu).unwrap())
            .collect();
        let moments: Vec<Moments> = sizes
            .iter()
            .map(|&(n, decay)| Moments {
                exp_avg: draw(n, false),
                exp_avg_sq: draw(n, true),
                decay,
            })
            .collect();
        // The last parameter has no gradient.
        let grads: Vec<Option<Tensor>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(n, _))| {
                (i < 2).then(|| Tensor::from_vec(draw(n, false), n, &Device::Cpu).unwrap())
            })
            .collect();
        let s = |decay: bool| StepScalars {
            decay_factor: if decay { 0.999 } else { 1.0 },
            beta1: 0.9,
            beta2: 0.999,
            step_size: 1e-3,
            bc2_sqrt: 0.05,
            eps: 1e-8,
            grad_scale: 0.5,
        };
        let before: Vec<Vec<f32>> = vars
            .iter()
            .map(|v| v.as_tensor().to_vec1().unwrap())
            .collect();
        let mut state = flat::FlatState::new(&vars, &moments).unwrap();
        state.step(&vars, &grads, &s(true)).unwrap();
        assert!(
            !state.tracks_graph(),
            "the state records a graph: each step would keep the last one alive"
        );
        let mut after = moments.clone();
        state.write_moments(&vars, &mut after).unwrap();
        for (i, var) in vars.iter().enumerate() {
            let (mut p, mut m) = (before[i].clone(), moments[i].clone());
            if let Some(g) = &grads[i] {
                let g = g.to_vec1::<f32>().unwrap();
                update(&s(m.decay), &mut p, &g, &mut m.exp_avg, &mut m.exp_avg_sq);
            }
            let got = var.as_tensor().to_vec1::<f32>().unwrap();
            for (name, want, got) in [
                ("param", &p, &got),
                ("exp_avg", &m.exp_avg, &after[i].exp_avg),
                ("exp_avg_sq", &m.exp_avg_sq, &after[i].exp_avg_sq),
            ] {
                let worst = want
                    .iter()
                    .zip(got)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "parameter {i} {name}: relative difference {worst}"
                );
            }
            assert_eq!(
                got != before[i],
                grads[i].is_some(),
                "parameter {i} updated"
            );
        }
    }
}
