//! Mixed precision: the compute dtype of the forward/backward pass, and dynamic loss scaling for
//! f16, as PyTorch's autocast + `GradScaler`. Master weights, gradients, optimizer moments and
//! the loss stay f32 whatever the precision (see `Classifier::weights_in`).

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Floating-point format of the training arithmetic (`training.precision`; the same names as
/// the FineTuneJob CRD's `hyperparameters.precision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    Fp32,
    /// bfloat16 matmuls and activations, f32 master weights. f32's range, so no loss scaling.
    Bf16,
    /// float16 matmuls and activations, f32 master weights, dynamic loss scaling.
    F16,
}

impl Precision {
    /// The dtype matmuls and activations run in.
    pub fn compute_dtype(self) -> DType {
        match self {
            Self::Fp32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

/// Dynamic loss scaling (torch.amp.GradScaler's defaults): f16 gradients underflow below 6e-8,
/// so the loss is multiplied by `scale` before the backward pass and the gradients divided by it
/// before the update. A step whose gradients overflowed (inf/NaN) is skipped and the scale
/// halved; after `growth_interval` good steps in a row it doubles. Constant 1 for f32/bf16.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LossScaler {
    pub scale: f64,
    /// Finite steps since the last change of `scale`.
    pub good_steps: u32,
    /// Whether the scale moves at all (f16 only).
    pub dynamic: bool,
}

/// torch.amp.GradScaler's `init_scale`.
const INIT_SCALE: f64 = 65536.0;
/// torch.amp.GradScaler's `growth_interval`.
const GROWTH_INTERVAL: u32 = 2000;

impl Default for LossScaler {
    fn default() -> Self {
        Self::new(Precision::Fp32)
    }
}

impl LossScaler {
    pub fn new(precision: Precision) -> Self {
        let dynamic = precision == Precision::F16;
        Self {
            scale: if dynamic { INIT_SCALE } else { 1.0 },
            good_steps: 0,
            dynamic,
        }
    }

    /// Records whether this step's (scaled) gradients were finite and adapts the scale; says
    /// whether the optimizer should apply the step. Non-finite gradients are only expected under
    /// f16 scaling (and then skipped); anywhere else, or once the scale has fallen below 1
    /// (overflow is then not the cause), training has diverged.
    pub fn update(&mut self, finite: bool, step: u64) -> Result<bool> {
        if !finite && (!self.dynamic || self.scale < 1.0) {
            return Err(Error::Diverged(format!(
                "non-finite gradients at step {step}: lower training.learningRate (or raise \
                 training.warmupSteps), or use training.precision fp32"
            )));
        }
        if !self.dynamic {
            return Ok(true);
        }
        if finite {
            self.good_steps += 1;
            if self.good_steps >= GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale /= 2.0;
            self.good_steps = 0;
        }
        Ok(finite)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn f16_scale_halves_on_overflow_and_grows_after_a_good_run() {
        let mut s = LossScaler::new(Precision::F16);
        assert_eq!(s.scale, INIT_SCALE);
        assert!(
            !s.update(false, 1).unwrap(),
            "an overflowing step is skipped"
        );
        assert_eq!(s.scale, INIT_SCALE / 2.0);
        for step in 0..u64::from(GROWTH_INTERVAL) - 1 {
            assert!(s.update(true, step).unwrap());
        }
        assert_eq!(s.scale, INIT_SCALE / 2.0);
        assert!(s.update(true, 0).unwrap());
        assert_eq!(s.scale, INIT_SCALE);
        assert_eq!(s.good_steps, 0);
    }

    #[test]
    fn f16_gives_up_once_the_scale_is_below_one() {
        let mut s = LossScaler::new(Precision::F16);
        let mut skipped = 0;
        let err = loop {
            match s.update(false, 7) {
                Ok(applied) => {
                    assert!(!applied);
                    skipped += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(skipped, 17, "65536 halves 17 times to 0.5");
        assert!(matches!(err, Error::Diverged(_)), "{err}");
    }

    #[test]
    fn fp32_and_bf16_never_scale_and_fail_on_non_finite_gradients() {
        for p in [Precision::Fp32, Precision::Bf16] {
            let mut s = LossScaler::new(p);
            assert!(s.update(true, 1).unwrap());
            assert_eq!(s.scale, 1.0);
            let err = s.update(false, 2).unwrap_err().to_string();
            assert!(
                err.contains("step 2") && err.contains("learningRate"),
                "{err}"
            );
        }
    }
}
