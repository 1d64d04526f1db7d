//! Learning-rate schedule: transformers' `get_linear_schedule_with_warmup`.

/// Linear warmup from 0 to the base rate, then linear decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LinearSchedule {
    /// Rate for the optimizer step that follows `done` completed steps (the first step uses
    /// `lr(0)`, which is 0 with warmup, exactly as in transformers).
    pub fn lr(&self, done: u64) -> f64 {
        let factor = if done < self.warmup_steps {
            done as f64 / self.warmup_steps.max(1) as f64
        } else {
            let left = self.total_steps.saturating_sub(done) as f64;
            (left / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64).max(0.0)
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = LinearSchedule {
            base_lr: 1.0,
            warmup_steps: 2,
            total_steps: 6,
        };
        let got: Vec<f64> = (0..7).map(|i| s.lr(i)).collect();
        assert_eq!(got, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]);
    }
}
