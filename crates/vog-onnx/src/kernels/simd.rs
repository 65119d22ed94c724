//! Explicit vector code (x86-64, AVX2 chosen at run time) for the hot loop of a tiling 2×2 max
//! pool's backward: eight windows per step, four in rows narrower than eight. The same
//! comparisons as the portable `window_row`, element for element, so the results are identical.

use std::arch::x86_64::*;

/// A row of `gy.len()` 2×2 windows: top row `t` and bottom row `u` (at least `2 · gy.len()`
/// values each), written whole into `dt` and `du`. False, with nothing written, without AVX2
/// or with fewer than four windows.
pub(super) fn windows_2x2(
    relu: bool,
    t: &[f32],
    u: &[f32],
    gy: &[f32],
    dt: &mut [f32],
    du: &mut [f32],
) -> bool {
    let n = gy.len();
    if n < 4 || !std::arch::is_x86_feature_detected!("avx2") {
        return false;
    }
    assert!(t.len() >= 2 * n && u.len() >= 2 * n && dt.len() >= 2 * n && du.len() >= 2 * n);
    // SAFETY: AVX2 is present (checked above); every access below is within `2 · n` values of
    // the four rows and `n` of `gy` (lengths checked above).
    unsafe { row(relu, t, u, gy, dt, du, n) };
    true
}

/// Groups of eight (or four) windows, the last one ending at the row's end and overlapping the
/// one before when `n` is not a multiple: its windows are computed again, to the same values.
#[target_feature(enable = "avx2")]
unsafe fn row(
    relu: bool,
    t: &[f32],
    u: &[f32],
    gy: &[f32],
    dt: &mut [f32],
    du: &mut [f32],
    n: usize,
) {
    let lanes = if n >= 8 { 8 } else { 4 };
    let (tp, up, gp) = (t.as_ptr(), u.as_ptr(), gy.as_ptr());
    let (dtp, dup) = (dt.as_mut_ptr(), du.as_mut_ptr());
    let mut c = 0;
    while c < n {
        let at = c.min(n - lanes);
        // SAFETY: `at + lanes ≤ n`, so the windows' `2 · lanes` values lie within the rows.
        unsafe {
            if lanes == 8 {
                eight(
                    relu,
                    tp.add(2 * at),
                    up.add(2 * at),
                    gp.add(at),
                    dtp.add(2 * at),
                    dup.add(2 * at),
                );
            } else {
                four(
                    relu,
                    tp.add(2 * at),
                    up.add(2 * at),
                    gp.add(at),
                    dtp.add(2 * at),
                    dup.add(2 * at),
                );
            }
        }
        c = at + lanes;
    }
}

/// The choice of `window_row` on vectors: taps `a b` (top), `p q` (bottom); a later value wins
/// its pair when greater or NaN, then the bottom pair's winner wins the same way. Evaluates to
/// the gradient of each tap. `$v` names the width's intrinsics (`_mm256` or `_mm`).
macro_rules! choose {
    ($v:ident, $a:expr, $b:expr, $p:expr, $q:expr, $g:expr, $relu:expr) => {{
        intrinsics!($v);
        let (a, b, p, q, g) = ($a, $b, $p, $q, $g);
        let b_wins = or(cmp::<_CMP_GT_OQ>(b, a), cmp::<_CMP_UNORD_Q>(b, b));
        let m1 = blendv(a, b, b_wins);
        let q_wins = or(cmp::<_CMP_GT_OQ>(q, p), cmp::<_CMP_UNORD_Q>(q, q));
        let m2 = blendv(p, q, q_wins);
        let low = or(cmp::<_CMP_GT_OQ>(m2, m1), cmp::<_CMP_UNORD_Q>(m2, m2));
        let top = blendv(m1, m2, low);
        let g = if $relu {
            and(g, cmp::<_CMP_GT_OQ>(top, setzero()))
        } else {
            g
        };
        (
            andnot(or(low, b_wins), g),
            andnot(low, and(b_wins, g)),
            and(low, andnot(q_wins, g)),
            and(and(low, q_wins), g),
        )
    }};
}

/// Local names for one width's intrinsics.
macro_rules! intrinsics {
    (_mm256) => {
        use _mm256_and_ps as and;
        use _mm256_andnot_ps as andnot;
        use _mm256_blendv_ps as blendv;
        use _mm256_cmp_ps as cmp;
        use _mm256_or_ps as or;
        use _mm256_setzero_ps as setzero;
    };
    (_mm) => {
        use _mm_and_ps as and;
        use _mm_andnot_ps as andnot;
        use _mm_blendv_ps as blendv;
        use _mm_cmp_ps as cmp;
        use _mm_or_ps as or;
        use _mm_setzero_ps as setzero;
    };
}

/// Even and odd values of 16 at `x`: per-lane shuffles, then the 64-bit quarters in order.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn split8(x: *const f32) -> (__m256, __m256) {
    // SAFETY: the caller guarantees 16 values at `x`.
    let (lo, hi) = unsafe { (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))) };
    let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
    let odd = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
    let even = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(even));
    let odd = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(odd));
    (_mm256_castpd_ps(even), _mm256_castpd_ps(odd))
}

/// `x0 y0 x1 y1 …`: sixteen values to `out`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn merge8(x: __m256, y: __m256, out: *mut f32) {
    let (lo, hi) = (_mm256_unpacklo_ps(x, y), _mm256_unpackhi_ps(x, y));
    // SAFETY: the caller guarantees room for 16 values at `out`.
    unsafe {
        _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(lo, hi));
        _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
    }
}

/// Eight windows: sixteen values of each row.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn eight(
    relu: bool,
    t: *const f32,
    u: *const f32,
    gy: *const f32,
    dt: *mut f32,
    du: *mut f32,
) {
    // SAFETY: the caller guarantees 16 values at `t`, `u`, `dt`, `du` and 8 at `gy`, all that
    // the loads and stores below touch.
    unsafe {
        let ((a, b), (p, q)) = (split8(t), split8(u));
        let (a, b, p, q) = choose!(_mm256, a, b, p, q, _mm256_loadu_ps(gy), relu);
        merge8(a, b, dt);
        merge8(p, q, du);
    }
}

/// Four windows: eight values of each row.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn four(
    relu: bool,
    t: *const f32,
    u: *const f32,
    gy: *const f32,
    dt: *mut f32,
    du: *mut f32,
) {
    // SAFETY: the caller guarantees 8 values at `t`, `u`, `dt`, `du` and 4 at `gy`, all that
    // the loads and stores below touch.
    unsafe {
        let (t0, t1, u0, u1) = (
            _mm_loadu_ps(t),
            _mm_loadu_ps(t.add(4)),
            _mm_loadu_ps(u),
            _mm_loadu_ps(u.add(4)),
        );
        let (a, b) = (
            _mm_shuffle_ps::<0b10_00_10_00>(t0, t1),
            _mm_shuffle_ps::<0b11_01_11_01>(t0, t1),
        );
        let (p, q) = (
            _mm_shuffle_ps::<0b10_00_10_00>(u0, u1),
            _mm_shuffle_ps::<0b11_01_11_01>(u0, u1),
        );
        let (a, b, p, q) = choose!(_mm, a, b, p, q, _mm_loadu_ps(gy), relu);
        _mm_storeu_ps(dt, _mm_unpacklo_ps(a, b));
        _mm_storeu_ps(dt.add(4), _mm_unpackhi_ps(a, b));
        _mm_storeu_ps(du, _mm_unpacklo_ps(p, q));
        _mm_storeu_ps(du.add(4), _mm_unpackhi_ps(p, q));
    }
}
