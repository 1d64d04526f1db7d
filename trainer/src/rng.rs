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

    /// A generator of its own, seeded by one draw from this one: for work that runs side by
    /// side (training shards) yet must draw the same numbers on every run.
    pub fn split(&mut self) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(self.next_u64()))
    }

    /// Raw 64-bit draw: the seed of an indexable stream ([`split_mix`]).
    pub fn next_u64(&mut self) -> u64 {
        self.0.random::<u64>()
    }
}

/// Output `index` (from 0) of the SplitMix64 generator seeded with `seed`: a pure function of
/// both, so a stream can be filled in any order by any number of threads. SplitMix64 passes
/// BigCrush; it is the generator `seed_from_u64` above expands seeds with.
#[inline(always)]
pub fn split_mix(seed: u64, index: u64) -> u64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 stream for seed 1234567 (Vigna's reference `splitmix64.c`).
    #[test]
    fn split_mix_is_the_reference_stream() {
        let want = [
            6_457_827_717_110_365_317u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
        ];
        for (i, w) in want.into_iter().enumerate() {
            assert_eq!(split_mix(1_234_567, i as u64), w);
        }
    }
}
