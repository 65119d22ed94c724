//! Element-wise kernels of the VoG accumulator, compiled twice on x86-64: for the baseline
//! instruction set and for AVX2, chosen at run time. They use neither fused multiply-adds nor
//! reassociation (sums run in four fixed lanes), so every build and machine gives the same bits.

/// `kernel!(name / name_avx2 = body(args) -> ret)`: the entry `name`, which runs `body` compiled
/// for AVX2 (`name_avx2`) when the CPU has it and for the baseline instruction set otherwise.
/// `body` is `#[inline(always)]`, so each twin gets its own code generation.
macro_rules! kernel {
    ($(#[$doc:meta])* $name:ident / $avx2:ident = $body:ident ($($p:ident: $t:ty),*) $(-> $r:ty)?) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2($($p: $t),*) $(-> $r)? {
            $body($($p),*)
        }

        $(#[$doc])*
        pub(crate) fn $name($($p: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { $avx2($($p),*) };
                }
            }
            $body($($p),*)
        }
    };
}

/// The first value of a running mean and sum of squared deviations.
#[inline(always)]
fn first_g<T: Copy + Into<f64>>(mean: &mut [f64], m2: &mut [f64], x: &[T]) {
    for ((m, s), &v) in mean.iter_mut().zip(m2.iter_mut()).zip(x) {
        *m = v.into();
        *s = 0.0;
    }
}

/// Welford's update with `inv` = 1 / (values so far, this one included).
#[inline(always)]
fn update_g<T: Copy + Into<f64>>(mean: &mut [f64], m2: &mut [f64], x: &[T], inv: f64) {
    for ((m, s), &v) in mean.iter_mut().zip(m2.iter_mut()).zip(x) {
        let v: f64 = v.into();
        let d = v - *m;
        *m += d * inv;
        *s += d * (v - *m);
    }
}

/// Σ √(max(m2 · inv, 0)), in four lanes.
#[inline(always)]
fn sum_std_g(m2: &[f64], inv: f64) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = m2.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &s) in lanes.iter_mut().zip(c) {
            *l += (s * inv).max(0.0).sqrt();
        }
    }
    for (l, &s) in lanes.iter_mut().zip(rest) {
        *l += (s * inv).max(0.0).sqrt();
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// Chan's combination of two disjoint sets into `a`: `fb` = n_b / n, `fab` = n_a · n_b / n.
#[inline(always)]
fn merge_g(mean_a: &mut [f64], m2_a: &mut [f64], mean_b: &[f64], m2_b: &[f64], fb: f64, fab: f64) {
    for (((ma, sa), &mb), &sb) in mean_a.iter_mut().zip(m2_a.iter_mut()).zip(mean_b).zip(m2_b) {
        let d = mb - *ma;
        *ma += d * fb;
        *sa += sb + d * d * fab;
    }
}

/// The mean over `c` channels of `hw` values each: `out[i]` = Σ_ch g[ch·hw + i] / c.
#[inline(always)]
fn channel_mean_g(out: &mut [f64], g: &[f32], c: usize, inv_c: f64) {
    let hw = out.len();
    out.iter_mut()
        .zip(&g[..hw])
        .for_each(|(a, &v)| *a = f64::from(v));
    for ch in g.chunks_exact(hw).take(c).skip(1) {
        out.iter_mut()
            .zip(ch)
            .for_each(|(a, &v)| *a += f64::from(v));
    }
    out.iter_mut().for_each(|a| *a *= inv_c);
}

kernel!(
    /// Starts running statistics at `x` (a segment's first checkpoint).
    first_f32 / first_f32_avx2 = first_g(mean: &mut [f64], m2: &mut [f64], x: &[f32])
);
kernel!(
    /// Starts running statistics at `x`.
    first_f64 / first_f64_avx2 = first_g(mean: &mut [f64], m2: &mut [f64], x: &[f64])
);
kernel!(
    /// Folds `x` in; `inv` = 1 / count including it.
    update_f32 / update_f32_avx2 = update_g(mean: &mut [f64], m2: &mut [f64], x: &[f32], inv: f64)
);
kernel!(
    /// Folds `x` in; `inv` = 1 / count including it.
    update_f64 / update_f64_avx2 = update_g(mean: &mut [f64], m2: &mut [f64], x: &[f64], inv: f64)
);
kernel!(
    /// The mean over `c` channels of `out.len()` values each (channel-first `g`).
    channel_mean / channel_mean_avx2 = channel_mean_g(out: &mut [f64], g: &[f32], c: usize, inv_c: f64)
);
kernel!(
    /// Σ √(max(m2 · inv, 0)): the sum of population standard deviations with `inv` = 1 / count.
    sum_std / sum_std_avx2 = sum_std_g(m2: &[f64], inv: f64) -> f64
);
kernel!(
    /// Merges set `b` into set `a` element-wise (see [`merge_g`]).
    merge / merge_avx2 = merge_g(
        mean_a: &mut [f64],
        m2_a: &mut [f64],
        mean_b: &[f64],
        m2_b: &[f64],
        fb: f64,
        fab: f64
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-2
            })
            .collect()
    }

    macro_rules! pipeline {
        ($xs:expr, $n:expr, $first32:ident, $first64:ident, $up32:ident, $up64:ident, $merge:ident, $sum:ident) => {{
            let (xs, n): (&[Vec<f32>], usize) = ($xs, $n);
            let (mut mean, mut m2) = (vec![7.0; n], vec![7.0; n]);
            let (mut mb, mut sb) = (vec![0.0; n], vec![0.0; n]);
            let a64: Vec<f64> = xs[3].iter().map(|&v| v as f64 * 3.0).collect();
            let b64: Vec<f64> = xs[4].iter().map(|&v| v as f64).collect();
            #[allow(unused_unsafe)]
            // SAFETY: the AVX2 variants run only when the CPU has AVX2 (checked by the caller).
            let total = unsafe {
                $first32(&mut mean, &mut m2, &xs[0]);
                for (k, x) in xs.iter().enumerate().skip(1).take(2) {
                    $up32(&mut mean, &mut m2, x, 1.0 / (k + 1) as f64);
                }
                $first64(&mut mb, &mut sb, &a64);
                $up64(&mut mb, &mut sb, &b64, 0.5);
                $merge(&mut mean, &mut m2, &mb, &sb, 0.4, 1.2);
                $sum(&m2, 0.2)
            };
            (mean, m2, total)
        }};
    }

    /// Every kernel gives the same bits through the baseline and the AVX2 build.
    #[test]
    fn baseline_and_avx2_agree_bit_for_bit() {
        for n in [1usize, 3, 4, 7, 64, 785] {
            let xs: Vec<Vec<f32>> = (0..5).map(|k| data(n, k as u64 + 1)).collect();
            let a = pipeline!(&xs, n, first_g, first_g, update_g, update_g, merge_g, sum_std_g);
            let plain: f64 = a.1.iter().map(|&s| (s * 0.2).max(0.0).sqrt()).sum();
            assert!((plain - a.2).abs() <= 1e-12 * plain.abs().max(1e-300));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let b = pipeline!(
                    &xs,
                    n,
                    first_f32_avx2,
                    first_f64_avx2,
                    update_f32_avx2,
                    update_f64_avx2,
                    merge_avx2,
                    sum_std_avx2
                );
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.0), bits(&b.0));
                assert_eq!(bits(&a.1), bits(&b.1));
                assert_eq!(a.2.to_bits(), b.2.to_bits());
            }
        }
    }
}
