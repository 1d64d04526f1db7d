//! Inverted dropout: the multipliers (0 with probability p, else 1/(1−p)) and where they are
//! drawn.
//!
//! On the CPU the masks come from the run's seeded generator, so that a resumed run drops
//! exactly what the uninterrupted one would. Each mask takes one seed from that generator and
//! element i is a pure function of (seed, i) (SplitMix64's i-th output): the elements are
//! filled by every thread at once, vectorised, and never depend on the thread count. Drawing
//! ~30 million values per MiniLM step one by one from the generator was 4 % of a step.

use candle_core::{DType, Device, Shape, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;

use super::fused::CHUNK;
use crate::error::Result;
use crate::rng::{TrainRng, split_mix};

/// Inverted dropout. `rng == None` means evaluation mode: the identity.
pub fn dropout(x: &Tensor, p: f32, rng: Option<&mut TrainRng>) -> Result<Tensor> {
    let Some(rng) = rng else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = draw_dropout(x.shape(), p, rng, x.device())?;
    Ok((x * mask.into_tensor(x.shape(), x.device(), x.dtype())?)?)
}

/// Inverted-dropout multipliers for one tensor: each 0 (probability `p`) or 1/(1−p).
#[derive(Debug, Clone)]
pub enum DropoutMask {
    /// From our seeded generator, in element order (CPU: candle's CPU RNG cannot be seeded,
    /// and a resumed run must draw exactly what the uninterrupted one did).
    Host(Vec<f32>),
    /// From the GPU's generator (curand, seeded per run by the runner), f32: drawing tens of
    /// millions of values per step on the host and copying them up would cost more than the
    /// step itself.
    Device(Tensor),
}

impl DropoutMask {
    pub(crate) fn into_host(self) -> Option<Vec<f32>> {
        match self {
            Self::Host(v) => Some(v),
            Self::Device(_) => None,
        }
    }

    /// The multipliers as a tensor of `shape` on `device` in `dtype`.
    pub fn into_tensor(self, shape: &Shape, device: &Device, dtype: DType) -> Result<Tensor> {
        let t = match self {
            Self::Host(v) => Tensor::from_vec(v, shape, device)?,
            Self::Device(t) => t.reshape(shape)?,
        };
        Ok(t.to_dtype(dtype)?)
    }
}

/// Draws a [`DropoutMask`] for a tensor of `shape`: on the host for the CPU, on the device
/// otherwise.
pub fn draw_dropout(
    shape: &Shape,
    p: f32,
    rng: &mut TrainRng,
    device: &Device,
) -> Result<DropoutMask> {
    if device.is_cpu() {
        return Ok(DropoutMask::Host(dropout_mask(shape.elem_count(), p, rng)));
    }
    Ok(DropoutMask::Device(device_mask(shape, p, device)?))
}

/// Multipliers from candle's generator on `device` (f32, as curand draws only f32/f64).
fn device_mask(shape: &Shape, p: f32, device: &Device) -> Result<Tensor> {
    let keep = Tensor::rand(0f32, 1f32, shape, device)?.ge(f64::from(p))?;
    let scale = 1.0 / (1.0 - f64::from(p));
    Ok(keep.to_dtype(DType::F32)?.affine(scale, 0.0)?)
}

/// `n` inverted-dropout multipliers, each 0 (probability `p`) or 1/(1−p), from one seed drawn
/// from `rng`.
pub fn dropout_mask(n: usize, p: f32, rng: &mut TrainRng) -> Vec<f32> {
    let seed = rng.next_u64();
    let keep = Keep {
        // Compare raw 32-bit draws against a threshold: one integer compare per element.
        threshold: (f64::from(p) * f64::from(u32::MAX)) as u32,
        scale: 1.0 / (1.0 - p),
    };
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| fill(chunk, seed, (c * CHUNK) as u64, keep));
    out
}

/// When an element is kept, and what it is multiplied by then.
#[derive(Debug, Clone, Copy)]
struct Keep {
    threshold: u32,
    scale: f32,
}

/// Elements `first..first + out.len()` of the mask seeded by `seed`. For AVX-512 and AVX2 too
/// (`multiversion`): the 64-bit multiplies of SplitMix64 vectorise there.
#[multiversion(targets = "simd")]
fn fill(out: &mut [f32], seed: u64, first: u64, keep: Keep) {
    for (i, v) in (first..).zip(out.iter_mut()) {
        let draw = (split_mix(seed, i) >> 32) as u32;
        *v = if draw > keep.threshold {
            keep.scale
        } else {
            0.0
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dropped_fraction(m: &[f32]) -> f64 {
        m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64
    }

    /// The GPU's masks are only drawn there; the same ops run on CPU tensors here.
    #[test]
    fn device_masks_drop_p_and_scale_the_rest() {
        let p = 0.1f32;
        let m = device_mask(&(200, 1000).into(), p, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let dropped = dropped_fraction(&m);
        // 200k Bernoulli(0.1) draws: the standard deviation of the fraction is 0.00067.
        assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
        let kept = 1.0 / (1.0 - p);
        assert!(m.iter().all(|&v| v == 0.0 || (v - kept).abs() < 1e-6));
    }

    #[test]
    fn host_masks_drop_p_everywhere_and_scale_the_rest() {
        let mut rng = TrainRng::new(7, 3);
        for p in [0.1f32, 0.5] {
            let m = dropout_mask(200_000, p, &mut rng);
            let dropped = dropped_fraction(&m);
            assert!(
                (dropped - f64::from(p)).abs() < 0.005,
                "p {p}: dropped {dropped}"
            );
            // Every parallel chunk drops its share too (no chunk repeats another's draws).
            for (c, chunk) in m.chunks(CHUNK).enumerate() {
                let d = dropped_fraction(chunk);
                assert!(
                    (d - f64::from(p)).abs() < 0.03,
                    "p {p}, chunk {c}: dropped {d}"
                );
            }
            assert_ne!(m[..CHUNK], m[CHUNK..2 * CHUNK]);
            let kept = 1.0 / (1.0 - p);
            assert!(m.iter().all(|&v| v == 0.0 || v == kept));
        }
    }

    /// Seeded training and bit-for-bit resume rest on this: the same generator state gives the
    /// same mask whatever the thread count, and the next mask is a different one.
    #[test]
    fn host_masks_follow_the_generator_not_the_threads() {
        let draw = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut rng = TrainRng::new(42, 3);
            pool.install(|| {
                let first = dropout_mask(3 * CHUNK + 17, 0.1, &mut rng);
                let second = dropout_mask(3 * CHUNK + 17, 0.1, &mut rng);
                (first, second)
            })
        };
        let (one_a, one_b) = draw(1);
        let (three_a, three_b) = draw(3);
        assert_eq!(one_a, three_a);
        assert_eq!(one_b, three_b);
        assert_ne!(one_a, one_b);
    }
}
