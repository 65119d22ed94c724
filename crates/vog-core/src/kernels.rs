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

/// The mean and sum of squared deviations of a group of values per element, two-pass:
/// `mean[i]` = Σ_j xs[j][i] · `inv`, `m2[i]` = Σ_j (xs[j][i] − mean[i])², with `inv` = 1 / the
/// group's size. Each pass runs over the group in order, so the sums have a fixed order.
#[inline(always)]
fn group_g<T: Copy + Into<f64>>(mean: &mut [f64], m2: &mut [f64], xs: &[&[T]], inv: f64) {
    let Some((first, rest)) = xs.split_first() else {
        return;
    };
    for (m, &v) in mean.iter_mut().zip(*first) {
        *m = v.into();
    }
    for x in rest {
        for (m, &v) in mean.iter_mut().zip(*x) {
            *m += v.into();
        }
    }
    for m in mean.iter_mut() {
        *m *= inv;
    }
    for ((s, &m), &v) in m2.iter_mut().zip(mean.iter()).zip(*first) {
        let d = v.into() - m;
        *s = d * d;
    }
    for x in rest {
        for ((s, &m), &v) in m2.iter_mut().zip(mean.iter()).zip(*x) {
            let d = v.into() - m;
            *s += d * d;
        }
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
    /// Mean and sum of squared deviations of a group of `f32` rows (see [`group_g`]).
    group_f32 / group_f32_avx2 = group_g(mean: &mut [f64], m2: &mut [f64], xs: &[&[f32]], inv: f64)
);
kernel!(
    /// Mean and sum of squared deviations of a group of `f64` rows (see [`group_g`]).
    group_f64 / group_f64_avx2 = group_g(mean: &mut [f64], m2: &mut [f64], xs: &[&[f64]], inv: f64)
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

/// The mean over `c` interleaved channels: `out[i]` = Σ_ch g[i·c + ch] / c (channels-last `g`).
pub fn channel_mean_last(out: &mut [f64], g: &[f32], c: usize) {
    let inv_c = 1.0 / c as f64;
    for (o, px) in out.iter_mut().zip(g.chunks_exact(c)) {
        *o = px.iter().map(|&v| f64::from(v)).sum::<f64>() * inv_c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::Lcg::new(seed);
        (0..n).map(|_| (r.unit_f32() - 0.5) * 1e-2).collect()
    }

    macro_rules! pipeline {
        ($xs:expr, $n:expr, $first32:ident, $first64:ident, $up32:ident, $up64:ident, $group32:ident, $group64:ident, $merge:ident, $sum:ident) => {{
            let (xs, n): (&[Vec<f32>], usize) = ($xs, $n);
            let (mut mean, mut m2) = (vec![7.0; n], vec![7.0; n]);
            let (mut mb, mut sb) = (vec![0.0; n], vec![0.0; n]);
            let a64: Vec<f64> = xs[3].iter().map(|&v| v as f64 * 3.0).collect();
            let b64: Vec<f64> = xs[4].iter().map(|&v| v as f64).collect();
            let three: Vec<&[f32]> = xs[..3].iter().map(|x| x.as_slice()).collect();
            let (mut wm, mut ws) = (vec![0.0; n], vec![0.0; n]);
            #[allow(unused_unsafe)]
            // SAFETY: the AVX2 variants run only when the CPU has AVX2 (checked by the caller).
            let total = unsafe {
                $first32(&mut wm, &mut ws, &xs[0]);
                $up32(&mut wm, &mut ws, &xs[1], 0.5);
                $first64(&mut mb, &mut sb, &a64);
                $up64(&mut mb, &mut sb, &b64, 0.5);
                $merge(&mut wm, &mut ws, &mb, &sb, 0.5, 1.0);
                $group32(&mut mean, &mut m2, &three, 1.0 / 3.0);
                $group64(&mut mb, &mut sb, &[&a64, &b64], 0.5);
                $merge(&mut mean, &mut m2, &mb, &sb, 0.4, 1.2);
                $merge(&mut mean, &mut m2, &wm, &ws, 0.4, 1.2);
                $sum(&m2, 0.2)
            };
            (mean, m2, total)
        }};
    }

    /// The group kernel is the two-pass formula.
    #[test]
    fn group_is_the_two_pass_formula() {
        let xs: Vec<Vec<f32>> = (0..3).map(|k| data(9, k as u64 + 11)).collect();
        let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let (mut mean, mut m2) = (vec![1.0; 9], vec![1.0; 9]);
        group_f32(&mut mean, &mut m2, &rows, 1.0 / 3.0);
        for i in 0..9 {
            let v: Vec<f64> = xs.iter().map(|x| f64::from(x[i])).collect();
            let mu = v.iter().sum::<f64>() / 3.0;
            let s: f64 = v.iter().map(|x| (x - mu).powi(2)).sum();
            assert!((mean[i] - mu).abs() <= 1e-15 * mu.abs().max(1e-12));
            assert!((m2[i] - s).abs() <= 1e-12 * s.max(1e-300));
        }
    }

    /// Every kernel gives the same bits through the baseline and the AVX2 build.
    #[test]
    fn baseline_and_avx2_agree_bit_for_bit() {
        for n in [1usize, 3, 4, 7, 64, 785] {
            let xs: Vec<Vec<f32>> = (0..5).map(|k| data(n, k as u64 + 1)).collect();
            let a = pipeline!(
                &xs, n, first_g, first_g, update_g, update_g, group_g, group_g, merge_g, sum_std_g
            );
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
                    group_f32_avx2,
                    group_f64_avx2,
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
