//! Reference implementations of vog's own ONNX operators ([`crate::VOG_DOMAIN`]), written
//! against plain slices so that any runtime can wrap them (the ONNX backend registers them with
//! ONNX Runtime) and tests can check them without one.

mod conv;
#[cfg(target_arch = "x86_64")]
mod simd;

pub use conv::{ConvInputGrad, Scalar};

/// Element types the kernels run on.
pub trait Element: Copy + PartialOrd + std::ops::AddAssign + Default {
    /// Whether the value is NaN (PyTorch's max pool lets NaN win a window).
    fn is_nan(self) -> bool;
    /// The value when `keep`, else +0, through its bits (no branch).
    fn keep(self, keep: bool) -> Self;
    /// A row of `gy.len()` tiling 2×2 windows of a max pool's backward (as `window_row`
    /// computes them) in explicit vector code; false, with nothing written, where this type or
    /// CPU has none.
    #[inline(always)]
    fn windows_2x2_simd(
        _relu: bool,
        _t: &[Self],
        _u: &[Self],
        _gy: &[Self],
        _dt: &mut [Self],
        _du: &mut [Self],
    ) -> bool {
        false
    }
}

macro_rules! element {
    ($t:ty, $bits:ty $(, $simd:path)?) => {
        impl Element for $t {
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn keep(self, keep: bool) -> Self {
                <$t>::from_bits(self.to_bits() & <$bits>::from(keep).wrapping_neg())
            }
            $(
                #[inline(always)]
                fn windows_2x2_simd(
                    relu: bool,
                    t: &[Self],
                    u: &[Self],
                    gy: &[Self],
                    dt: &mut [Self],
                    du: &mut [Self],
                ) -> bool {
                    $simd(relu, t, u, gy, dt, du)
                }
            )?
        }
    };
}
#[cfg(target_arch = "x86_64")]
element!(f32, u32, simd::windows_2x2);
#[cfg(not(target_arch = "x86_64"))]
element!(f32, u32);
element!(f64, u64);

/// Window geometry of a max pool: per spatial axis the kernel size, stride, padding at the start
/// and dilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Window size per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// Padding before the first element per spatial axis.
    pub pads_begin: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilations: Vec<usize>,
}

impl PoolGeometry {
    /// Reads ONNX `MaxPool`-style attributes (`pads` holds all begins, then all ends); missing
    /// strides and dilations default to 1, missing pads to 0.
    pub fn from_attributes(
        kernel: &[i64],
        strides: Option<&[i64]>,
        pads: Option<&[i64]>,
        dilations: Option<&[i64]>,
    ) -> Result<Self, String> {
        let r = kernel.len();
        if !(1..=3).contains(&r) {
            return Err(format!(
                "MaxPoolGrad: {r} spatial axes (kernel_shape {kernel:?}); 1 to 3 are supported"
            ));
        }
        let list = |name: &str, v: Option<&[i64]>, len: usize, default: i64, min: i64| {
            let v = v.map_or_else(|| vec![default; len], <[i64]>::to_vec);
            if v.len() != len || v.iter().any(|&x| x < min) {
                return Err(format!(
                    "MaxPoolGrad: `{name}` {v:?} does not fit kernel_shape {kernel:?}"
                ));
            }
            Ok(v.into_iter().map(|x| x as usize).collect::<Vec<_>>())
        };
        let pads = list("pads", pads, 2 * r, 0, 0)?;
        Ok(PoolGeometry {
            kernel: list("kernel_shape", Some(kernel), r, 1, 1)?,
            strides: list("strides", strides, r, 1, 1)?,
            pads_begin: pads[..r].to_vec(),
            dilations: list("dilations", dilations, r, 1, 1)?,
        })
    }

    /// The same geometry over three spatial axes (leading unit axes added).
    fn as_3d(&self) -> [[usize; 4]; 3] {
        let lead = 3 - self.kernel.len();
        let mut g = [[1, 1, 0, 1]; 3];
        for (i, slot) in g.iter_mut().enumerate().skip(lead) {
            let a = i - lead;
            *slot = [
                self.kernel[a],
                self.strides[a],
                self.pads_begin[a],
                self.dilations[a],
            ];
        }
        g
    }
}

/// `ai.vog.MaxPoolGrad`: the gradient of a max pool with respect to its input `x`
/// (`[N, C, spatial…]`) given the gradient `dy` of its output (`[N, C, pooled…]`). Each element
/// of `dy` is added at the first maximum of its window in `x` (scan order; NaN wins, as in
/// PyTorch), so overlapping windows accumulate. With `relu`, `x` is a ReLU's output and the
/// gradient also goes through that ReLU: it passes only where the maximum is positive. `dx`
/// (shaped like `x`) is overwritten.
pub fn max_pool_grad<T: Element>(
    x: &[T],
    x_shape: &[usize],
    dy: &[T],
    dy_shape: &[usize],
    geometry: &PoolGeometry,
    relu: bool,
    dx: &mut [T],
) -> Result<(), String> {
    let r = geometry.kernel.len();
    if x_shape.len() != r + 2 || dy_shape.len() != r + 2 || x_shape[..2] != dy_shape[..2] {
        return Err(format!(
            "MaxPoolGrad: input {x_shape:?} and output gradient {dy_shape:?} do not fit a pool \
             over {r} spatial axes"
        ));
    }
    let count = |s: &[usize]| s.iter().product::<usize>();
    if x.len() != count(x_shape) || dy.len() != count(dy_shape) || dx.len() != x.len() {
        return Err("MaxPoolGrad: buffer lengths do not match the shapes".into());
    }
    let pad3 = |s: &[usize]| {
        let mut d = [1usize; 3];
        d[3 - r..].copy_from_slice(&s[2..]);
        d
    };
    let (xi, yo) = (pad3(x_shape), pad3(dy_shape));
    let g = geometry.as_3d();
    let (plane_in, plane_out) = (xi.iter().product::<usize>(), yo.iter().product::<usize>());
    if plane_in == 0 {
        return Ok(());
    }
    let planes = x
        .chunks_exact(plane_in)
        .zip(dy.chunks_exact(plane_out.max(1)))
        .zip(dx.chunks_exact_mut(plane_in));
    // Tiling windows (kernel = stride, no padding or dilation, one depth slice): the common
    // `MaxPool2d(k)`, written without per-element bounds checks.
    let tiling = xi[0] == 1
        && g[1..]
            .iter()
            .all(|&[k, s, p, d]| k == s && p == 0 && d == 1)
        && yo[1] * g[1][0] <= xi[1]
        && yo[2] * g[2][0] <= xi[2];
    if tiling {
        let (kh, kw) = (g[1][0], g[2][0]);
        for ((xp, yp), dp) in planes {
            if (kh, kw) == (2, 2) {
                tile_plane_2x2(xp, yp, dp, xi[1], xi[2], yo[1], yo[2], relu);
            } else {
                tile_plane(xp, yp, dp, xi[2], yo[1], yo[2], kh, kw, relu);
            }
        }
        return Ok(());
    }
    // Per axis and output position: the first input index of the window and the range of kernel
    // taps inside the input.
    let taps = |axis: usize| -> Vec<(isize, usize, usize)> {
        let [k, s, p, d] = g[axis];
        (0..yo[axis])
            .map(|o| {
                let start = (o * s) as isize - p as isize;
                let inside = |t: usize| {
                    let i = start + (t * d) as isize;
                    i >= 0 && (i as usize) < xi[axis]
                };
                let lo = (0..k).find(|&t| inside(t)).unwrap_or(k);
                let hi = (lo..k).rev().find(|&t| inside(t)).map_or(lo, |t| t + 1);
                (start, lo, hi)
            })
            .collect()
    };
    let (td, th, tw) = (taps(0), taps(1), taps(2));
    let (dd, dh, dw) = (g[0][3], g[1][3], g[2][3]);
    for ((xp, yp), dp) in planes {
        dp.iter_mut().for_each(|v| *v = T::default());
        let mut o = 0;
        for &(d0, dlo, dhi) in &td {
            for &(h0, hlo, hhi) in &th {
                for &(w0, wlo, whi) in &tw {
                    let mut best = usize::MAX;
                    let mut top = T::default();
                    for a in dlo..dhi {
                        let d = (d0 + (a * dd) as isize) as usize;
                        for b in hlo..hhi {
                            let row = (d * xi[1] + (h0 + (b * dh) as isize) as usize) * xi[2];
                            for c in wlo..whi {
                                let at = row + (w0 + (c * dw) as isize) as usize;
                                let v = xp[at];
                                if best == usize::MAX || v > top || v.is_nan() {
                                    best = at;
                                    top = v;
                                }
                            }
                        }
                    }
                    if best != usize::MAX && (!relu || top > T::default()) {
                        dp[best] += yp[o];
                    }
                    o += 1;
                }
            }
        }
    }
    Ok(())
}

/// [`tile_plane`] for 2×2 windows, as element-wise selects over a row of windows (no branches,
/// so the data-dependent comparisons cannot mispredict and the loop vectorizes).
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile_plane_2x2<T: Element>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    relu: bool,
) {
    let zero = T::default();
    for r in 0..oh {
        let (top, bottom) = x[2 * r * w..(2 * r + 2) * w].split_at(w);
        let (dtop, dbottom) = dx[2 * r * w..(2 * r + 2) * w].split_at_mut(w);
        let gy = &dy[r * ow..(r + 1) * ow];
        // Eight windows at a time (four in rows narrower than eight) through fixed-size arrays,
        // which the compiler turns into vector code. The last group ends at the row's end and
        // may overlap the one before: its windows are computed again, to the same values, and
        // written whole (nothing accumulates), so the overlap changes nothing.
        if T::windows_2x2_simd(relu, top, bottom, gy, dtop, dbottom) {
            dtop[2 * ow..].iter_mut().for_each(|v| *v = zero);
            dbottom[2 * ow..].iter_mut().for_each(|v| *v = zero);
            continue;
        }
        let mut row = |c: usize, n: usize| {
            let span = 2 * c..2 * (c + n);
            let (t, u, g) = (&top[span.clone()], &bottom[span.clone()], &gy[c..c + n]);
            let (dt, du) = (&mut dtop[span.clone()], &mut dbottom[span]);
            match n {
                LANES => window_row::<T, LANES>(relu, t, u, g, dt, du),
                HALF => window_row::<T, HALF>(relu, t, u, g, dt, du),
                _ => window_row::<T, 1>(relu, t, u, g, dt, du),
            }
        };
        let lanes = [LANES, HALF].into_iter().find(|&n| n <= ow).unwrap_or(1);
        let mut c = 0;
        while c < ow {
            let at = c.min(ow - lanes);
            row(at, lanes);
            c = at + lanes;
        }
        dtop[2 * ow..].iter_mut().for_each(|v| *v = zero);
        dbottom[2 * ow..].iter_mut().for_each(|v| *v = zero);
    }
    dx[2 * oh * w..h * w].iter_mut().for_each(|v| *v = zero);
}

/// Windows per step of [`tile_plane_2x2`], and in rows narrower than that.
const LANES: usize = 8;
const HALF: usize = 4;

/// `N` consecutive 2×2 windows: rows `t` (top) and `u` (bottom) of `2N` values, their output
/// gradients `gy`, written whole into `dt` and `du`.
/// With `relu`, a window whose maximum is not positive passes nothing.
#[inline(always)]
fn window_row<T: Element, const N: usize>(
    relu: bool,
    t: &[T],
    u: &[T],
    gy: &[T],
    dt: &mut [T],
    du: &mut [T],
) {
    let (mut a, mut b, mut p, mut q) = (
        [T::default(); N],
        [T::default(); N],
        [T::default(); N],
        [T::default(); N],
    );
    for i in 0..N {
        a[i] = t[2 * i];
        b[i] = t[2 * i + 1];
        p[i] = u[2 * i];
        q[i] = u[2 * i + 1];
    }
    for i in 0..N {
        // Scan order a, b, p, q; a later value wins when greater or NaN. Non-short-circuit
        // operators and bit masks keep this free of branches.
        let b_wins = (b[i] > a[i]) | b[i].is_nan();
        let m1 = if b_wins { b[i] } else { a[i] };
        let q_wins = (q[i] > p[i]) | q[i].is_nan();
        let m2 = if q_wins { q[i] } else { p[i] };
        let low = (m2 > m1) | m2.is_nan();
        let top = if low { m2 } else { m1 };
        let g = gy[i].keep(!relu | (top > T::default()));
        a[i] = g.keep(!low & !b_wins);
        b[i] = g.keep(!low & b_wins);
        p[i] = g.keep(low & !q_wins);
        q[i] = g.keep(low & q_wins);
    }
    for i in 0..N {
        dt[2 * i] = a[i];
        dt[2 * i + 1] = b[i];
        du[2 * i] = p[i];
        du[2 * i + 1] = q[i];
    }
}

/// One plane of a tiling max pool's backward: every window is written whole (its gradient at the
/// first maximum, zeros elsewhere); rows and columns no window covers are zeroed.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile_plane<T: Element>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    relu: bool,
) {
    for r in 0..oh {
        let gy = &dy[r * ow..(r + 1) * ow];
        for (c, &g) in gy.iter().enumerate() {
            // Branch-free first maximum (the comparisons are data-dependent and would mispredict).
            let first = (r * kh) * w + c * kw;
            let (mut best, mut top) = (first, x[first]);
            for a in 0..kh {
                let row = (r * kh + a) * w + c * kw;
                for (b, &v) in x[row..row + kw].iter().enumerate() {
                    let wins = v > top || v.is_nan();
                    best = if wins { row + b } else { best };
                    top = if wins { v } else { top };
                }
            }
            let g = g.keep(!relu || top > T::default());
            for a in 0..kh {
                let row = (r * kh + a) * w + c * kw;
                for (b, d) in dx[row..row + kw].iter_mut().enumerate() {
                    *d = if row + b == best { g } else { T::default() };
                }
            }
        }
        // Columns right of the last window.
        for a in 0..kh {
            let row = (r * kh + a) * w;
            dx[row + ow * kw..row + w]
                .iter_mut()
                .for_each(|v| *v = T::default());
        }
    }
    // Rows below the last window.
    dx[oh * kh * w..].iter_mut().for_each(|v| *v = T::default());
}

/// `ai.vog.ReluGrad`: the input gradient of a ReLU from its output `y` and the gradient `dy` of
/// that output, `dy · [y > 0]`: `dy` where `y > 0`, else `dy · 0` (so +0, −0 or NaN exactly as
/// `Greater` + `CastLike` + `Mul` give it). `dx` is overwritten; all three have one length.
pub fn relu_grad<T: Element + Scalar>(dy: &[T], y: &[T], dx: &mut [T]) -> Result<(), String> {
    if dy.len() != y.len() || dx.len() != y.len() {
        return Err(format!(
            "ReluGrad: dY has {} values, Y {} and dX {}; they must be equal",
            dy.len(),
            y.len(),
            dx.len()
        ));
    }
    let zero = T::default();
    for ((dx, &g), &y) in dx.iter_mut().zip(dy).zip(y) {
        *dx = if y > zero { g } else { g * zero };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_grad_is_the_multiply_by_the_mask_bit_for_bit() {
        let y = [1.5f32, 0.0, -0.0, -2.0, f32::NAN, 3.0, -1.0, 0.5];
        let dy = [-2.0f32, 3.0, -4.0, f32::INFINITY, 5.0, f32::NAN, -0.0, -7.0];
        let mut dx = [9.0f32; 8];
        relu_grad(&dy, &y, &mut dx).unwrap();
        for i in 0..8 {
            let mask = if y[i] > 0.0 { 1.0f32 } else { 0.0 };
            let want = dy[i] * mask;
            assert_eq!(dx[i].to_bits(), want.to_bits(), "element {i}");
        }
        assert!(relu_grad(&dy[..7], &y, &mut dx).is_err());
        let mut short = [0.0f64; 2];
        assert!(relu_grad(&[1.0f64; 3], &[1.0; 3], &mut short).is_err());
    }

    fn geo(k: &[i64], s: &[i64], p: &[i64]) -> PoolGeometry {
        PoolGeometry::from_attributes(k, Some(s), Some(p), None).unwrap()
    }

    #[test]
    fn two_by_two_routes_to_the_first_maximum() {
        // One 4×4 plane, 2×2 windows, stride 2; the top-left window ties (two 5s).
        let x = [
            5.0f32, 5.0, 1.0, 2.0, //
            0.0, 1.0, 3.0, 0.0, //
            -1.0, -2.0, 0.0, 0.0, //
            -3.0, -0.5, 0.0, 0.0,
        ];
        let dy = [10.0f32, 20.0, 30.0, 40.0];
        let mut dx = [7.0f32; 16];
        let g = geo(&[2, 2], &[2, 2], &[0, 0, 0, 0]);
        max_pool_grad(&x, &[1, 1, 4, 4], &dy, &[1, 1, 2, 2], &g, false, &mut dx).unwrap();
        let mut want = [0.0f32; 16];
        want[0] = 10.0; // first of the tied 5s
        want[6] = 20.0; // the 3
        want[13] = 30.0; // −0.5
        want[10] = 40.0; // first of four zeros
        assert_eq!(dx, want);
    }

    #[test]
    fn overlapping_windows_and_padding_accumulate() {
        // 1-D, kernel 3, stride 1, pad 1: all three windows over [1, 3, 2] hold the 3.
        let x = [1.0f64, 3.0, 2.0];
        let dy = [1.0f64, 2.0, 4.0];
        let mut dx = [0.0f64; 3];
        let g = geo(&[3], &[1], &[1, 1]);
        max_pool_grad(&x, &[1, 1, 3], &dy, &[1, 1, 3], &g, false, &mut dx).unwrap();
        assert_eq!(dx, [0.0, 7.0, 0.0]);
    }

    /// Window by window as PyTorch's CPU kernel scans it: a later value wins when greater or NaN.
    fn reference(
        x: &[f32],
        (n, h, w): (usize, usize, usize),
        dy: &[f32],
        (k, s, p): (usize, usize, usize),
        relu: bool,
    ) -> Vec<f32> {
        let out = |d: usize| (d + 2 * p - k) / s + 1;
        let (oh, ow) = (out(h), out(w));
        let mut dx = vec![0.0f32; x.len()];
        for plane in 0..n {
            for r in 0..oh {
                for c in 0..ow {
                    let mut best: Option<(usize, f32)> = None;
                    for a in 0..k {
                        for b in 0..k {
                            let (i, j) = (
                                (r * s + a) as isize - p as isize,
                                (c * s + b) as isize - p as isize,
                            );
                            if i < 0 || j < 0 || i as usize >= h || j as usize >= w {
                                continue;
                            }
                            let at = plane * h * w + i as usize * w + j as usize;
                            let v = x[at];
                            if best.is_none_or(|(_, m)| v > m || v.is_nan()) {
                                best = Some((at, v));
                            }
                        }
                    }
                    if let Some((at, m)) = best {
                        if !relu || m > 0.0 {
                            dx[at] += dy[plane * oh * ow + r * ow + c];
                        }
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn every_path_matches_a_window_by_window_scan() {
        let mut r = vog_core::Lcg::new(9);
        // Few distinct values, so that windows tie often; some negative, one in 16 NaN.
        let mut next = || match r.next_u64() >> 60 {
            15 => f32::NAN,
            v => v as f32 - 5.0,
        };
        // Row widths that leave no, a narrow and a wide remainder beside the 8-window steps.
        for (h, w) in [
            (4, 4),
            (5, 7),
            (28, 28),
            (3, 19),
            (6, 32),
            (4, 30),
            (6, 12),
            (8, 14),
        ] {
            let n = 3;
            let x: Vec<f32> = (0..n * h * w).map(|_| next()).collect();
            // (kernel, stride, pad): tiling 2×2 (vector path), tiling 3×3, overlapping, padded.
            for (k, s, p) in [(2, 2, 0), (3, 3, 0), (3, 1, 0), (3, 2, 1)] {
                if h + 2 * p < k || w + 2 * p < k {
                    continue;
                }
                let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
                let dy: Vec<f32> = (0..n * oh * ow).map(|i| 1.0 + i as f32).collect();
                let (k64, s64, p64) = (k as i64, s as i64, p as i64);
                let g = geo(&[k64, k64], &[s64, s64], &[p64, p64, p64, p64]);
                for relu in [false, true] {
                    let mut dx = vec![f32::NAN; x.len()];
                    max_pool_grad(&x, &[n, 1, h, w], &dy, &[n, 1, oh, ow], &g, relu, &mut dx)
                        .unwrap();
                    let want = reference(&x, (n, h, w), &dy, (k, s, p), relu);
                    assert_eq!(
                        dx, want,
                        "{h}×{w}, kernel {k}, stride {s}, pad {p}, relu {relu}"
                    );
                }
            }
        }
    }

    /// The vector code (where this CPU has it) writes exactly what the portable code writes,
    /// for every row width it takes, with ties, NaNs and both ReLU settings.
    #[test]
    fn vector_windows_match_the_portable_ones() {
        let mut r = vog_core::Lcg::new(3);
        let mut next = || match r.next_u64() >> 59 {
            31 => f32::NAN,
            v => (v % 8) as f32 - 3.0,
        };
        let mut ran = 0;
        for n in 1..=40 {
            let (t, u): (Vec<f32>, Vec<f32>) = (0..2 * n).map(|_| (next(), next())).unzip();
            let gy: Vec<f32> = (0..n)
                .map(|i| if i % 7 == 3 { f32::NAN } else { i as f32 - 2.5 })
                .collect();
            for relu in [false, true] {
                let (mut dt, mut du) = (vec![9.0f32; 2 * n], vec![9.0f32; 2 * n]);
                if !f32::windows_2x2_simd(relu, &t, &u, &gy, &mut dt, &mut du) {
                    assert!(dt.iter().chain(&du).all(|&v| v == 9.0), "nothing written");
                    continue;
                }
                ran += 1;
                let (mut want_t, mut want_u) = (vec![0.0f32; 2 * n], vec![0.0f32; 2 * n]);
                for c in 0..n {
                    let s = 2 * c..2 * c + 2;
                    window_row::<f32, 1>(
                        relu,
                        &t[s.clone()],
                        &u[s.clone()],
                        &gy[c..c + 1],
                        &mut want_t[s.clone()],
                        &mut want_u[s],
                    );
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&dt),
                    bits(&want_t),
                    "top row, {n} windows, relu {relu}"
                );
                assert_eq!(
                    bits(&du),
                    bits(&want_u),
                    "bottom row, {n} windows, relu {relu}"
                );
            }
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert_eq!(ran, 2 * 37, "every width from four up took the vector code");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let g = geo(&[2, 2], &[2, 2], &[0, 0, 0, 0]);
        let mut dx = [0.0f32; 4];
        assert!(max_pool_grad(
            &[0.0f32; 4],
            &[1, 4],
            &[0.0],
            &[1, 1, 1, 1],
            &g,
            false,
            &mut dx
        )
        .is_err());
        assert!(max_pool_grad(
            &[0.0f32; 4],
            &[1, 1, 2, 2],
            &[0.0; 2],
            &[1, 2, 1, 1],
            &g,
            false,
            &mut dx
        )
        .is_err());
        assert!(PoolGeometry::from_attributes(&[2, 2], Some(&[0, 2]), None, None).is_err());
        assert!(PoolGeometry::from_attributes(&[2, 2, 2, 2], None, None, None).is_err());
    }
}
