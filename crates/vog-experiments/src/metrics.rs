//! Ranking metrics of every score of a run against a known-bad flag, their summary over seeds,
//! and the paired decile test of `vog reproduce`.
//!
//! Scores are oriented as `vog evaluate` orients them (higher means harder: `margin_mean`,
//! `confidence` and `correct_ratio` negated) and examples where a score is undefined (NaN) are
//! left out of that score, so the AUROC and AUPRC here equal `vog evaluate`'s.

use vog_core::rank::{auroc, average_precision, orientation};
use vog_core::SplitMix64;
use vog_engine::stats::student_t_two_sided;
use vog_engine::RunResult;

/// Panel scores that read the true label: undefined at test time, and a label leak if given.
pub use vog_core::rank::NEEDS_TRUE_LABELS as NEEDS_LABELS;

/// One score of every example of a run, oriented so that higher means harder (NaN: undefined).
#[derive(Debug, Clone)]
pub struct ScoreColumn {
    /// Column name as in `scores.csv` (`vog_all_norm`, `msp_last`, …).
    pub name: String,
    /// One value per example, in row order.
    pub values: Vec<f64>,
}

/// Every VoG window (raw and class-normalized, every target) and every panel score of `r`,
/// oriented; without `NEEDS_LABELS` when `label_free`; columns undefined everywhere are dropped.
pub fn score_columns(r: &RunResult, label_free: bool) -> Vec<ScoreColumn> {
    let mut cols = Vec::new();
    for (w, window) in r.windows.iter().enumerate() {
        cols.push(ScoreColumn {
            name: format!("vog_{}", window.name),
            values: r.examples.iter().map(|e| e.vog[w]).collect(),
        });
        cols.push(ScoreColumn {
            name: format!("vog_{}_norm", window.name),
            values: r
                .examples
                .iter()
                .map(|e| e.vog_norm[w].unwrap_or(f64::NAN))
                .collect(),
        });
    }
    for (j, name) in r.extra_columns.iter().enumerate() {
        if label_free && NEEDS_LABELS.contains(&name.as_str()) {
            continue;
        }
        let sign = orientation(name);
        cols.push(ScoreColumn {
            name: name.clone(),
            values: r.examples.iter().map(|e| sign * e.extra[j]).collect(),
        });
    }
    cols.retain(|c| c.values.iter().any(|v| v.is_finite()));
    cols
}

/// How well one score finds the bad examples of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Area under the ROC curve (ties count half); `None` without both classes.
    pub auroc: Option<f64>,
    /// Average precision; `None` without bad examples.
    pub auprc: Option<f64>,
    /// Share of bad examples among the tenth with the highest scores.
    pub top: f64,
    /// Share of bad examples among the tenth with the lowest scores.
    pub bottom: f64,
}

/// The finite values of `values` and their flags.
fn defined(values: &[f64], bad: &[bool]) -> (Vec<f64>, Vec<bool>) {
    values
        .iter()
        .zip(bad)
        .filter(|(v, _)| v.is_finite())
        .map(|(&v, &b)| (v, b))
        .unzip()
}

/// The metrics of one score (`values` oriented, one per example) against `bad`.
pub fn metrics(values: &[f64], bad: &[bool]) -> Metrics {
    let (s, b) = defined(values, bad);
    let (top, bottom) = decile_rates(&s, &b);
    Metrics {
        auroc: auroc(&s, &b),
        auprc: average_precision(&s, &b),
        top,
        bottom,
    }
}

/// Example indices from the highest score to the lowest; ties keep row order.
fn descending(s: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    order
}

/// Bad rate among the `⌊n/10⌋` (at least one) highest and lowest scores.
pub fn decile_rates(s: &[f64], bad: &[bool]) -> (f64, f64) {
    rates_in_order(&descending(s), bad)
}

/// [`decile_rates`] of examples already in descending score order.
fn rates_in_order(order: &[usize], bad: &[bool]) -> (f64, f64) {
    if order.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let k = (order.len() / 10).max(1);
    let rate = |rows: &[usize]| rows.iter().filter(|&&r| bad[r]).count() as f64 / k as f64;
    (rate(&order[..k]), rate(&order[order.len() - k..]))
}

/// Mean and sample standard deviation of per-seed values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanSd {
    /// Mean over the values.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub sd: f64,
    /// How many values.
    pub n: usize,
}

impl MeanSd {
    /// The summary of `v`'s finite values (`None` when there are none).
    pub fn of(v: &[f64]) -> Option<MeanSd> {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(MeanSd { mean, sd, n })
    }
}

/// "Top-decile bad rate > bottom-decile bad rate", over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecileGap {
    /// Mean over seeds of the top-decile bad rate.
    pub top: f64,
    /// Mean over seeds of the bottom-decile bad rate.
    pub bottom: f64,
    /// Mean over seeds of top − bottom.
    pub gap: f64,
    /// 95% bootstrap interval of `gap` (examples resampled within each seed).
    pub low: f64,
    /// Upper end of that interval.
    pub high: f64,
    /// One-sided paired t-test over seeds of gap > 0 (`None` with fewer than two seeds).
    pub p: Option<f64>,
}

/// The decile gap of one score over seeds: each seed's `(values, bad)`; `draws` bootstrap
/// resamples from `seed`. A resample draws every seed's examples with replacement and takes
/// the deciles of the resampled multiset (in the original score order, so ties stay stable).
pub fn decile_gap(per_seed: &[(Vec<f64>, Vec<bool>)], draws: usize, seed: u64) -> DecileGap {
    let prepared: Vec<(Vec<usize>, Vec<bool>)> = per_seed
        .iter()
        .map(|(v, b)| {
            let (s, b) = defined(v, b);
            (descending(&s), b)
        })
        .collect();
    let gaps: Vec<(f64, f64)> = prepared
        .iter()
        .map(|(order, bad)| rates_in_order(order, bad))
        .collect();
    let d: Vec<f64> = gaps.iter().map(|(t, b)| t - b).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut rng = SplitMix64::new(seed);
    let mut boot = Vec::with_capacity(draws);
    let mut counts = Vec::new();
    for _ in 0..draws {
        let mut total = 0.0;
        for (order, bad) in &prepared {
            let n = order.len();
            counts.clear();
            counts.resize(n, 0u32);
            for _ in 0..n {
                counts[rng.below(n)] += 1;
            }
            let k = (n / 10).max(1);
            // Walk the score order from either end, taking each example as often as drawn.
            let rate = |rows: &mut dyn Iterator<Item = &usize>| {
                let (mut taken, mut hits) = (0usize, 0usize);
                for &r in rows {
                    let c = (counts[r] as usize).min(k - taken);
                    taken += c;
                    if bad[r] {
                        hits += c;
                    }
                    if taken == k {
                        break;
                    }
                }
                hits as f64 / k as f64
            };
            total += rate(&mut order.iter()) - rate(&mut order.iter().rev());
        }
        boot.push(total / prepared.len().max(1) as f64);
    }
    boot.sort_by(f64::total_cmp);
    let at = |q: f64| boot[((q * (draws as f64 - 1.0)).round() as usize).min(draws - 1)];
    let p = (d.len() >= 2).then(|| {
        let s = MeanSd::of(&d).expect("finite gaps");
        if s.sd == 0.0 {
            return if s.mean > 0.0 { 0.0 } else { 1.0 };
        }
        let t = s.mean / (s.sd / (s.n as f64).sqrt());
        let two = student_t_two_sided(t, (s.n - 1) as f64);
        if t > 0.0 {
            two / 2.0
        } else {
            1.0 - two / 2.0
        }
    });
    DecileGap {
        top: mean(&gaps.iter().map(|g| g.0).collect::<Vec<_>>()),
        bottom: mean(&gaps.iter().map(|g| g.1).collect::<Vec<_>>()),
        gap: mean(&d),
        low: if draws > 0 { at(0.025) } else { f64::NAN },
        high: if draws > 0 { at(0.975) } else { f64::NAN },
        p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_take_a_tenth_from_each_end_with_stable_ties() {
        let s: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let bad: Vec<bool> = (0..20).map(|i| i >= 19 || i == 0).collect();
        // Top two: 19 (bad), 18; bottom two: 1, 0 (bad).
        assert_eq!(decile_rates(&s, &bad), (0.5, 0.5));
        // All tied: the top tenth is the first rows, the bottom the last.
        let flat = vec![1.0; 10];
        let first = [
            true, false, false, false, false, false, false, false, false, false,
        ];
        assert_eq!(decile_rates(&flat, &first), (1.0, 0.0));
    }

    #[test]
    fn metrics_skip_undefined_values() {
        let m = metrics(&[0.9, f64::NAN, 0.1, 0.8], &[true, true, false, false]);
        assert_eq!(m.auroc, Some(1.0));
        assert_eq!(m.auprc, Some(1.0));
    }

    #[test]
    fn mean_and_sample_sd() {
        let s = MeanSd::of(&[1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!((s.mean, s.n), (2.0, 3));
        assert!((s.sd - 1.0).abs() < 1e-12);
        assert!(MeanSd::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn a_score_that_sorts_the_bad_to_the_top_has_a_clear_gap() {
        let per_seed: Vec<(Vec<f64>, Vec<bool>)> = (0..5)
            .map(|s| {
                let v: Vec<f64> = (0..200).map(|i| ((i * 7 + s) % 200) as f64).collect();
                let b: Vec<bool> = v.iter().map(|&x| x >= 170.0).collect();
                (v, b)
            })
            .collect();
        let g = decile_gap(&per_seed, 200, 1);
        assert_eq!((g.top, g.bottom, g.gap), (1.0, 0.0, 1.0));
        assert!(g.low > 0.9 && g.high <= 1.0, "{g:?}");
        assert_eq!(g.p, Some(0.0));
        // A score unrelated to the flag: the interval covers zero.
        let noise: Vec<(Vec<f64>, Vec<bool>)> = (0..5u64)
            .map(|s| {
                let mut r = SplitMix64::new(s);
                let v: Vec<f64> = (0..400).map(|_| r.uniform()).collect();
                let b: Vec<bool> = (0..400).map(|_| r.uniform() < 0.2).collect();
                (v, b)
            })
            .collect();
        let g = decile_gap(&noise, 500, 2);
        assert!(g.low < 0.0 && g.high > 0.0, "{g:?}");
        assert!(g.p.unwrap() > 0.01, "{g:?}");
    }
}
