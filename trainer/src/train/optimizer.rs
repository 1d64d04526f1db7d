//! AdamW as `torch.optim.AdamW`, fused and in place.
//!
//! candle-nn's AdamW spends ~12 allocating tensor ops per parameter per step; here one pass over
//! each parameter updates weight, both moments and applies weight decay and gradient scaling
//! (clipping, accumulation averaging) in place, through a candle `InplaceOp2` on CPU. On other
//! devices the same kernel runs on a host copy (correct, not fast).

use std::cell::RefCell;

use candle_core::{CpuStorage, Layout, Tensor, Var};

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
            config,
            vars,
            moments,
            step: 0,
        }
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of `vars[i]` (None = no
    /// gradient, parameter untouched as in torch), multiplied by `grad_scale` first.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for ((var, grad), mom) in self.vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let Some(grad) = grad else { continue };
            let wd = if mom.decay { c.weight_decay } else { 0.0 };
            let scalars = StepScalars {
                decay_factor: (1.0 - lr * wd) as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                step_size: (lr / bc1) as f32,
                bc2_sqrt: bc2.sqrt() as f32,
                eps: c.eps as f32,
                grad_scale: grad_scale as f32,
            };
            if grad.dims() != var.dims() {
                return Err(Error::Model(format!(
                    "gradient shape {:?} does not match parameter {:?}",
                    grad.dims(),
                    var.dims()
                )));
            }
            let grad = grad.contiguous()?;
            if var.device().is_cpu() {
                let op = FusedStep {
                    scalars,
                    moments: RefCell::new(mom),
                };
                var.as_tensor().inplace_op2(&grad, &op)?;
            } else {
                let mut p = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                let g = grad.flatten_all()?.to_vec1::<f32>()?;
                update(&scalars, &mut p, &g, &mut mom.exp_avg, &mut mom.exp_avg_sq);
                let p = Tensor::from_vec(p, var.shape(), var.device())?;
                var.set(&p)?;
            }
        }
        Ok(())
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_`), times `scale`.
pub fn global_norm(grads: &[Option<Tensor>], scale: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        let sq = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
        total += f64::from(sq);
    }
    Ok(total.sqrt() * scale)
}

/// The factor torch's `clip_grad_norm_` multiplies gradients by.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}
