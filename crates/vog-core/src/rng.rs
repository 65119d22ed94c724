//! Tiny deterministic generators: [`Lcg`] for self-tests, tests and synthetic data (Knuth's MMIX
//! linear congruential generator), [`SplitMix64`] for training and the experiments (shuffles,
//! weight initialisation, label noise). Same seed, same numbers, on every platform.

/// Knuth's MMIX LCG: `state ← state · 6364136223846793005 + 1442695040888963407 (mod 2⁶⁴)`.
///
/// ```
/// let mut a = vog_core::Lcg::new(7);
/// let mut b = vog_core::Lcg::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((0.0..1.0).contains(&a.unit_f32()));
/// ```
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// Advances and returns the new state (its high bits are the random ones).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// Uniform in [0, 1) from the top 24 bits (every value exactly representable).
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `n` values uniform in [`low`, `high`).
    pub fn uniform_f32(&mut self, n: usize, low: f32, high: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.unit_f32() * (high - low) + low)
            .collect()
    }
}

/// splitmix64 (Steele, Lea and Flood): the stream the candle trainer and `vog reproduce` share.
///
/// ```
/// let mut a = vog_core::SplitMix64::new(2022);
/// let mut v: Vec<u32> = (0..10).collect();
/// a.shuffle(&mut v);
/// assert_eq!(v.len(), 10);
/// assert!((0.0..1.0).contains(&a.uniform()));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    /// An integer in `0..n` (`next_u64() % n`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1) from the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates, from the last element down.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod splitmix_tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 0 (the published reference sequence).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220A8397B1DCDAF);
        assert_eq!(r.next_u64(), 0x6E789E6AA1B965F4);
    }
}
