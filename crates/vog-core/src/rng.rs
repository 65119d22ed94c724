//! A tiny deterministic generator for self-tests, tests and synthetic data (Knuth's MMIX linear
//! congruential generator). Same seed, same numbers, on every platform; not for statistics.

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
