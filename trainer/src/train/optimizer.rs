//! AdamW as `torch.optim.AdamW`, fused and in place.
//!
//! candle-nn's AdamW spends ~12 allocating tensor ops per parameter per step; here one pass over
//! each parameter updates weight, both moments and applies weight decay and gradient scaling
//! (clipping, accumulation averaging) in place, through a candle `InplaceOp2` on CPU. On a GPU the
//! same update runs as candle tensor ops on device-resident moments, so no parameter crosses to
//! the host during training; the moments are copied back only for a checkpoint
//! ([`AdamW::sync_to_host`]).

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
    /// Device copies of `moments` (exp_avg, exp_avg_sq) for parameters not on the CPU: the
    /// truth while training there, made from `moments` on first use.
    on_device: Vec<Option<(Tensor, Tensor)>>,
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
            on_device: vec![None; vars.len()],
            config,
            vars,
            moments,
            step: 0,
        }
    }

    /// Copies device-resident moments into `moments` (before a checkpoint reads them).
    pub fn sync_to_host(&mut self) -> Result<()> {
        for (dev, mom) in self.on_device.iter().zip(self.moments.iter_mut()) {
            if let Some((m, v)) = dev {
                mom.exp_avg = m.flatten_all()?.to_vec1()?;
                mom.exp_avg_sq = v.flatten_all()?.to_vec1()?;
            }
        }
        Ok(())
    }

    /// Forgets device copies, so the next step starts from `moments` (after a restore).
    pub fn reload_from_host(&mut self) {
        self.on_device.iter_mut().for_each(|d| *d = None);
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of `vars[i]` (None = no
    /// gradient, parameter untouched as in torch), multiplied by `grad_scale` first.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (((var, grad), mom), dev) in self
            .vars
            .iter()
            .zip(grads)
            .zip(self.moments.iter_mut())
            .zip(self.on_device.iter_mut())
        {
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
            if var.device().is_cpu() {
                let op = FusedStep {
                    scalars,
                    moments: RefCell::new(mom),
                };
                var.as_tensor().inplace_op2(&grad.contiguous()?, &op)?;
            } else {
                let (m, v) = match dev.take() {
                    Some(mv) => mv,
                    None => (
                        Tensor::from_slice(&mom.exp_avg, var.shape(), var.device())?,
                        Tensor::from_slice(&mom.exp_avg_sq, var.shape(), var.device())?,
                    ),
                };
                *dev = Some(device_update(&scalars, var, grad, &m, &v)?);
            }
        }
        Ok(())
    }
}

/// [`update`] as candle tensor ops on the parameter's device; returns the new moments.
fn device_update(
    s: &StepScalars,
    var: &Var,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (b1, b2) = (f64::from(s.beta1), f64::from(s.beta2));
    let g = grad.affine(f64::from(s.grad_scale), 0.0)?;
    let m = (m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
    let v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
    let denom = v
        .sqrt()?
        .affine(1.0 / f64::from(s.bc2_sqrt), f64::from(s.eps))?;
    let p = (var.as_tensor().affine(f64::from(s.decay_factor), 0.0)?
        - (m.div(&denom)?.affine(f64::from(s.step_size), 0.0))?)?;
    var.set(&p)?;
    Ok((m, v))
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_`), times `scale`.
/// One read from the device for all tensors: the per-tensor sums are stacked before the copy,
/// then added in f64.
pub fn global_norm(grads: &[Option<Tensor>], scale: f64) -> Result<f64> {
    let sums = grads
        .iter()
        .flatten()
        .map(|g| g.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    if sums.is_empty() {
        return Ok(0.0);
    }
    let sums = Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
    let total: f64 = sums.into_iter().map(f64::from).sum();
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

    /// The GPU path's tensor ops compute the fused CPU kernel's update (run here on CPU tensors).
    #[test]
    fn device_update_matches_the_fused_kernel() {
        let n = 4096;
        let mut rng = TrainRng::new(5, 5);
        let mut draw = |abs: bool| -> Vec<f32> {
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
        let (p, g, m, v) = (draw(false), draw(false), draw(false), draw(true));
        let s = StepScalars {
            decay_factor: 0.999,
            beta1: 0.9,
            beta2: 0.999,
            step_size: 1e-3,
            bc2_sqrt: 0.05,
            eps: 1e-8,
            grad_scale: 0.5,
        };
        let (mut hp, mut hm, mut hv) = (p.clone(), m.clone(), v.clone());
        update(&s, &mut hp, &g, &mut hm, &mut hv);

        let t = |x: &[f32]| Tensor::from_slice(x, n, &Device::Cpu).unwrap();
        let var = Var::from_slice(&p, n, &Device::Cpu).unwrap();
        let (dm, dv) = device_update(&s, &var, &t(&g), &t(&m), &t(&v)).unwrap();
        for (name, host, dev) in [
            ("param", hp, var.as_tensor().clone()),
            ("exp_avg", hm, dm),
            ("exp_avg_sq", hv, dv),
        ] {
            let dev = dev.to_vec1::<f32>().unwrap();
            let worst = host
                .iter()
                .zip(&dev)
                .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{name}: relative difference {worst}");
        }
        assert_ne!(var.as_tensor().to_vec1::<f32>().unwrap(), p, "no update");
    }
}
