//! The one seeded random number generator of a run.
//!
//! candle's CPU `rand` cannot be seeded, so dropout masks and head initialisation draw from this
//! generator instead. Its whole state is four `u64`s, saved in every checkpoint so that a resumed
//! run draws exactly the numbers an uninterrupted one would.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Seeded, serialisable RNG.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrainRng(Xoshiro256PlusPlus);

impl TrainRng {
    /// A generator seeded from `seed` and a `stream` tag, so independent uses (init, dropout, data
    /// order) don't share a sequence.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mixed = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self(Xoshiro256PlusPlus::seed_from_u64(mixed))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0.random::<f32>()
    }

    /// Standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1: f64 = self.0.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.0.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Uniform index in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// Raw 32-bit draw, for fast dropout masks.
    pub fn next_u32(&mut self) -> u32 {
        self.0.random::<u32>()
    }
}
