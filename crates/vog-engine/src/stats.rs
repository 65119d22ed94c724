//! Rank statistics used to judge scores: Spearman's correlation with its two-sided p-value.

pub use vog_core::rank::average_ranks;

/// Pearson's correlation; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's rank correlation and its two-sided p-value (t approximation with n − 2 degrees of
/// freedom, as `scipy.stats.spearmanr` computes it).
pub fn spearman(x: &[f64], y: &[f64]) -> (f64, f64) {
    assert_eq!(x.len(), y.len(), "spearman needs paired samples");
    let rho = pearson(&average_ranks(x), &average_ranks(y));
    let df = x.len() as f64 - 2.0;
    if !rho.is_finite() || df <= 0.0 {
        return (rho, f64::NAN);
    }
    if rho.abs() >= 1.0 {
        return (rho, 0.0);
    }
    let t = rho * (df / ((1.0 - rho) * (1.0 + rho))).sqrt();
    (rho, student_t_two_sided(t, df))
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// Regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 = G[1..]
        .iter()
        .enumerate()
        .map(|(i, g)| g / (x + i as f64 + 1.0))
        .sum::<f64>()
        + G[0];
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values: scipy 1.17.1, `scipy.stats.spearmanr(x, y)`.
    #[test]
    fn spearman_matches_scipy_with_ties() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let y = [2.0, 1.0, 4.0, 3.0, 7.0, 7.0, 6.0, 10.0, 8.0, 9.0];
        let (rho, p) = spearman(&x, &y);
        assert!((rho - 0.8997002046464955).abs() < 1e-12, "{rho}");
        assert!((p - 0.00039167359562948404).abs() / p < 1e-8, "{p}");
    }

    #[test]
    fn spearman_matches_scipy_negative() {
        let a = [
            0.12573, -0.132105, 0.640423, 0.1049, -0.535669, 0.361595, 1.304, 0.947081, -0.703735,
            -1.265421, -0.623274, 0.041326, -2.325031, -0.218792, -1.245911, -0.732267, -0.544259,
            -0.3163, 0.411631, 1.042513, -0.128535, 1.366463, -0.665195, 0.35151, 0.90347,
            0.094012, -0.743499, -0.921725, -0.457726, 0.220195,
        ];
        let b = [
            -1.047337, -0.169544, -0.351352, 0.509376, 0.37536, 0.246894, -1.045029, -0.413738,
            0.995096, 1.873058, -1.072083, 1.501526, 2.043385, 0.846949, 0.638229, -0.094243,
            1.621298, 2.055148, 1.678146, 1.00235, 0.395941, -1.618258, 0.195104, 0.551022,
            -1.559403, 0.366918, 0.652913, 0.97256, -1.0468, -0.727761,
        ];
        let (rho, p) = spearman(&a, &b);
        assert!((rho + 0.4509454949944383).abs() < 1e-12, "{rho}");
        assert!((p - 0.012383680845380725).abs() / p < 1e-8, "{p}");
    }

    #[test]
    fn gamma_and_beta_identities() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // I_x(1, 1) = x; t with 1 df is Cauchy: P(|T| > 1) = 0.5.
        assert!((incomplete_beta(1.0, 1.0, 0.3) - 0.3).abs() < 1e-12);
        assert!((student_t_two_sided(1.0, 1.0) - 0.5).abs() < 1e-12);
    }
}
