//! Class normalization: `(v − μ_c) / σ_c`, with the population σ of each class.
//!
//! Statistics are sufficient (count, mean, sum of squared deviations per class and window), so
//! they can be gathered in one streaming pass, merged across shards, and applied afterwards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Moments;

/// Per-class moments of one score (one window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassStats {
    classes: BTreeMap<u32, Moments>,
}

/// The summary of one class, as written to manifests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    /// Number of examples of the class.
    pub count: u64,
    /// Mean raw score of the class.
    pub mean: f64,
    /// Population standard deviation of the class's raw scores.
    pub std: f64,
}

impl ClassStats {
    /// Adds one example's raw score to its class.
    pub fn push(&mut self, class: u32, value: f64) {
        self.classes.entry(class).or_default().push(value);
    }

    /// Rebuilds statistics from per-class summaries as written to manifests (count, mean and
    /// population std), so shards can be normalized together without their scores.
    pub fn from_summaries(summaries: impl IntoIterator<Item = (u32, ClassSummary)>) -> Self {
        ClassStats {
            classes: summaries
                .into_iter()
                .map(|(c, s)| {
                    (
                        c,
                        Moments {
                            count: s.count,
                            mean: s.mean,
                            m2: s.std * s.std * s.count as f64,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Merges statistics gathered elsewhere (another shard or batch).
    pub fn merge(&mut self, other: &ClassStats) {
        for (&class, &m) in &other.classes {
            let e = self.classes.entry(class).or_default();
            *e = e.merge(m);
        }
    }

    /// The normalized score of `value` in `class`; 0 when the class has one member, zero spread,
    /// or was never seen (see [`ClassStats::degenerate_classes`]).
    pub fn normalize(&self, class: u32, value: f64) -> f64 {
        match self.classes.get(&class) {
            Some(m) if m.count > 1 && m.std() > 0.0 => (value - m.mean) / m.std(),
            _ => 0.0,
        }
    }

    /// Classes whose normalized score is forced to 0: one member, or every member equal.
    pub fn degenerate_classes(&self) -> Vec<(u32, ClassSummary)> {
        self.summaries()
            .into_iter()
            .filter(|(_, s)| s.count < 2 || s.std <= 0.0)
            .collect()
    }

    /// Count, mean and std per class.
    pub fn summaries(&self) -> Vec<(u32, ClassSummary)> {
        self.classes
            .iter()
            .map(|(&c, m)| {
                (
                    c,
                    ClassSummary {
                        count: m.count,
                        mean: m.mean,
                        std: m.std(),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merged_from_summaries_normalize_like_one_pass() {
        let values: Vec<(u32, f64)> = (0..50)
            .map(|i| {
                (
                    (i % 3) as u32,
                    (i as f64 * 0.37).sin() * 5.0 + i as f64 * 0.1,
                )
            })
            .collect();
        let mut whole = ClassStats::default();
        values.iter().for_each(|&(c, v)| whole.push(c, v));
        let mut merged = ClassStats::default();
        for part in values.chunks(13) {
            let mut s = ClassStats::default();
            part.iter().for_each(|&(c, v)| s.push(c, v));
            merged.merge(&ClassStats::from_summaries(s.summaries()));
        }
        for &(c, v) in &values {
            assert!((whole.normalize(c, v) - merged.normalize(c, v)).abs() < 1e-12);
        }
    }

    #[test]
    fn matches_numpy_population_std() {
        // numpy: v = [1, 2, 4]; (v - v.mean()) / v.std() -> [-1.069045, -0.267261, 1.336306]
        let mut s = ClassStats::default();
        for v in [1.0, 2.0, 4.0] {
            s.push(3, v);
        }
        s.push(5, 10.0);
        let got: Vec<f64> = [1.0, 2.0, 4.0].iter().map(|&v| s.normalize(3, v)).collect();
        let want = [-1.0690449676496976, -0.2672612419124244, 1.3363062095621219];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        assert_eq!(s.normalize(5, 10.0), 0.0);
        assert_eq!(s.degenerate_classes().len(), 1);
        assert_eq!(s.degenerate_classes()[0].0, 5);
    }

    #[test]
    fn merged_shards_equal_one_pass() {
        let values = [(0, 1.0), (1, 3.0), (0, 2.5), (1, -1.0), (0, 7.0), (1, 0.5)];
        let mut whole = ClassStats::default();
        let (mut a, mut b) = (ClassStats::default(), ClassStats::default());
        for (i, &(c, v)) in values.iter().enumerate() {
            whole.push(c, v);
            if i % 2 == 0 {
                a.push(c, v)
            } else {
                b.push(c, v)
            }
        }
        a.merge(&b);
        for &(c, v) in &values {
            assert!((a.normalize(c, v) - whole.normalize(c, v)).abs() < 1e-12);
        }
    }
}
