//! `ai.vog.ConvInputGrad`: the input gradient of a 2-D convolution at stride 1 and dilation 1
//! without groups, computed directly: per input pixel the sum over output channels and kernel
//! taps, as shifted rows of `dY` scaled by one weight each. Meant for gradients of few channels
//! (an image's: 1 or 3), where ONNX Runtime's `ConvTranspose` spends its time in a matrix product
//! of 9–27 rows and a fold, and a convolution producing them would compute mostly padding in its
//! blocked layout.

use std::ops::{AddAssign, Mul};

/// Values the kernel runs on.
pub trait Scalar: Copy + Default + AddAssign + Mul<Output = Self> + Send + Sync {}
impl Scalar for f32 {}
impl Scalar for f64 {}

/// Sizes of one call, checked by [`ConvInputGrad::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvInputGrad {
    /// Examples.
    pub n: usize,
    /// Output channels (of the convolution: the channels of `dY`).
    pub m: usize,
    /// Input channels (of `dX`).
    pub c: usize,
    /// Input height and width.
    pub hw: (usize, usize),
    /// Output height and width.
    pub ohw: (usize, usize),
    /// Kernel height and width.
    pub k: (usize, usize),
    /// Padding before the first row and column.
    pub pad: (usize, usize),
}

impl ConvInputGrad {
    /// The call for `dY` shaped `dy` (`[N, M, oh, ow]`), weights `w` (`[M, C, kh, kw]`), the
    /// input's shape `x` (`[N, C, H, W]`) and pads `[top, left, bottom, right]`; an error when
    /// they do not describe a stride-1 convolution's gradient.
    pub fn new(dy: &[usize], w: &[usize], x: &[usize], pads: &[usize]) -> Result<Self, String> {
        let fail = || {
            format!(
                "ConvInputGrad: dY {dy:?}, weights {w:?}, input {x:?} and pads {pads:?} are not a \
                 stride-1 2-D convolution's"
            )
        };
        let four = |v: &[usize]| <[usize; 4]>::try_from(v).map_err(|_| fail());
        let ([n, m, oh, ow], [wm, c, kh, kw]) = (four(dy)?, four(w)?);
        let ([xn, xc, h, wd], [pt, pl, pb, pr]) = (four(x)?, four(pads)?);
        // At stride 1: out = in + pads − k + 1 on each axis; pads of at most k − 1 (a pad past
        // that would only add zeros around the output).
        let fits = |out: usize, inp: usize, p0: usize, p1: usize, k: usize| {
            k >= 1 && p0 < k && p1 < k && inp + p0 + p1 + 1 >= k && out == inp + p0 + p1 + 1 - k
        };
        if wm != m || xn != n || xc != c || !fits(oh, h, pt, pb, kh) || !fits(ow, wd, pl, pr, kw) {
            return Err(fail());
        }
        Ok(ConvInputGrad {
            n,
            m,
            c,
            hw: (h, wd),
            ohw: (oh, ow),
            k: (kh, kw),
            pad: (pt, pl),
        })
    }

    /// Values of one example's `dY` and `dX`.
    pub fn per_example(&self) -> (usize, usize) {
        (
            self.m * self.ohw.0 * self.ohw.1,
            self.c * self.hw.0 * self.hw.1,
        )
    }

    /// `dX` of the examples in `dy` (whole examples) into `dx`, every value written. Each value
    /// is its sum over output channels, then kernel rows, then kernel columns, in that order,
    /// whatever the batch or the thread: results do not depend on how the work is split.
    pub fn run<T: Scalar>(&self, dy: &[T], w: &[T], dx: &mut [T]) {
        let (per_dy, per_dx) = self.per_example();
        assert_eq!(w.len(), self.m * self.c * self.k.0 * self.k.1);
        assert!(per_dy > 0 && per_dx > 0 && dy.len().is_multiple_of(per_dy));
        assert_eq!(dy.len() / per_dy * per_dx, dx.len());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { self.run_avx2(dy, w, dx) };
        }
        self.run_portable(dy, w, dx)
    }

    /// The same code compiled for AVX2: eight lanes per step instead of four. No fused
    /// multiply-add (Rust does not contract `a * b + c`), so the values are the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2<T: Scalar>(&self, dy: &[T], w: &[T], dx: &mut [T]) {
        self.run_portable(dy, w, dx)
    }

    /// Each `dY` plane goes into a zero-bordered copy `Hp × Wp` (`Hp = H + kh − 1`,
    /// `Wp = W + kw − 1`), where every tap of every input pixel reads inside, at the pixel's
    /// position shifted by the tap. The gradient is then made in rows of `Wp` (whose last
    /// `kw − 1` values belong to no pixel and are dropped), [`CHUNK`] values at a time: those
    /// stay in registers over all channels and taps and are stored once.
    #[inline(always)]
    fn run_portable<T: Scalar>(&self, dy: &[T], w: &[T], dx: &mut [T]) {
        let ((h, wd), (oh, ow), (kh, kw), (pt, pl)) = (self.hw, self.ohw, self.k, self.pad);
        let (hp, wp) = (h + kh - 1, wd + kw - 1);
        let (top, left) = (kh - 1 - pt, kw - 1 - pl);
        let chunks = (h * wp).div_ceil(CHUNK);
        // Room past the plane for the last chunk's reads (zeros, never kept).
        let stride = hp * wp + kw - 1 + CHUNK;
        // The borders stay zero; every example rewrites the same interior.
        let mut padded = vec![T::default(); self.m * stride];
        let mut acc = vec![T::default(); chunks * CHUNK];
        let (per_dy, per_dx) = self.per_example();
        for (dy, dx) in dy.chunks_exact(per_dy).zip(dx.chunks_exact_mut(per_dx)) {
            for (g, p) in dy
                .chunks_exact(oh * ow)
                .zip(padded.chunks_exact_mut(stride))
            {
                for (row, dst) in g.chunks_exact(ow).zip(p[top * wp + left..].chunks_mut(wp)) {
                    dst[..ow].copy_from_slice(row);
                }
            }
            for (ci, plane) in dx.chunks_exact_mut(h * wd).enumerate() {
                for (j, out) in acc.chunks_exact_mut(CHUNK).enumerate() {
                    let mut a = [T::default(); CHUNK];
                    for (mi, p) in padded.chunks_exact(stride).enumerate() {
                        let taps = &w[(mi * self.c + ci) * kh * kw..][..kh * kw];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let wv = taps[ky * kw + kx];
                                let at = (kh - 1 - ky) * wp + (kw - 1 - kx) + j * CHUNK;
                                let src: &[T; CHUNK] =
                                    p[at..at + CHUNK].try_into().expect("CHUNK values");
                                for (a, &s) in a.iter_mut().zip(src) {
                                    *a += wv * s;
                                }
                            }
                        }
                    }
                    out.copy_from_slice(&a);
                }
                for (dst, src) in plane.chunks_exact_mut(wd).zip(acc.chunks(wp)) {
                    dst.copy_from_slice(&src[..wd]);
                }
            }
        }
    }
}

/// Gradient values kept in registers at a time (eight vectors of f32 under AVX2: enough
/// independent sums to hide the additions' latency).
const CHUNK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one input pixel at a time, in f64: `dX[c, y, x] = Σ_m Σ_ky Σ_kx
    /// W[m, c, ky, kx] · dY[m, y + pt − ky, x + pl − kx]` over taps that land inside `dY`.
    fn reference(k: &ConvInputGrad, dy: &[f64], w: &[f64]) -> Vec<f64> {
        let ((h, wd), (oh, ow), (kh, kw), (pt, pl)) = (k.hw, k.ohw, k.k, k.pad);
        let mut dx = vec![0.0; k.n * k.c * h * wd];
        for n in 0..k.n {
            for c in 0..k.c {
                for y in 0..h {
                    for x in 0..wd {
                        let mut s = 0.0;
                        for m in 0..k.m {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (oy, ox) = (
                                        (y + pt) as isize - ky as isize,
                                        (x + pl) as isize - kx as isize,
                                    );
                                    if oy < 0 || ox < 0 || oy as usize >= oh || ox as usize >= ow {
                                        continue;
                                    }
                                    s += w[((m * k.c + c) * kh + ky) * kw + kx]
                                        * dy[((n * k.m + m) * oh + oy as usize) * ow + ox as usize];
                                }
                            }
                        }
                        dx[((n * k.c + c) * h + y) * wd + x] = s;
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn matches_the_definition_over_geometries() {
        let mut r = vog_core::Lcg::new(11);
        let mut next = || (r.next_u64() >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
        // (C, M, H, W, kh, kw, pads): same padding, none, uneven, a kernel wider than the pad,
        // rows shorter than a vector, a 1×1 kernel.
        type Geometry = (usize, usize, usize, usize, usize, usize, [usize; 4]);
        let cases: [Geometry; 6] = [
            (1, 16, 28, 28, 3, 3, [1, 1, 1, 1]),
            (3, 8, 9, 13, 3, 3, [0, 0, 0, 0]),
            (2, 5, 7, 11, 5, 3, [2, 0, 1, 2]),
            (3, 4, 6, 6, 7, 7, [3, 3, 3, 3]),
            (1, 3, 3, 2, 2, 2, [1, 1, 0, 0]),
            (2, 6, 5, 5, 1, 1, [0, 0, 0, 0]),
        ];
        for (c, m, h, wd, kh, kw, pads) in cases {
            let n = 3;
            let (oh, ow) = (
                h + pads[0] + pads[2] + 1 - kh,
                wd + pads[1] + pads[3] + 1 - kw,
            );
            let k = ConvInputGrad::new(&[n, m, oh, ow], &[m, c, kh, kw], &[n, c, h, wd], &pads)
                .expect("geometry");
            let dy: Vec<f64> = (0..n * m * oh * ow).map(|_| next()).collect();
            let w: Vec<f64> = (0..m * c * kh * kw).map(|_| next()).collect();
            let want = reference(&k, &dy, &w);
            let mut got = vec![f64::NAN; want.len()];
            k.run(&dy, &w, &mut got);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-12,
                    "{c}×{h}×{wd}, k {kh}×{kw}, pads {pads:?}: [{i}] {g} vs {e}"
                );
            }
            // In f32, an example alone gives the same bits as inside the batch.
            let (dy32, w32): (Vec<f32>, Vec<f32>) = (
                dy.iter().map(|&v| v as f32).collect(),
                w.iter().map(|&v| v as f32).collect(),
            );
            let mut all = vec![0.0f32; want.len()];
            k.run(&dy32, &w32, &mut all);
            let (per_dy, per_dx) = k.per_example();
            let mut one = vec![0.0f32; per_dx];
            k.run(&dy32[per_dy..2 * per_dy], &w32, &mut one);
            assert!(one == all[per_dx..2 * per_dx], "example 1 alone");
        }
    }

    #[test]
    fn shapes_that_are_not_a_stride_one_gradient_are_refused() {
        let ok = ConvInputGrad::new(&[2, 4, 5, 5], &[4, 1, 3, 3], &[2, 1, 5, 5], &[1, 1, 1, 1]);
        assert!(ok.is_ok());
        for (dy, w, x, pads) in [
            (
                vec![2, 4, 5, 5],
                vec![3, 1, 3, 3],
                vec![2, 1, 5, 5],
                vec![1, 1, 1, 1],
            ),
            (
                vec![2, 4, 5, 5],
                vec![4, 1, 3, 3],
                vec![2, 2, 5, 5],
                vec![1, 1, 1, 1],
            ),
            (
                vec![2, 4, 3, 3],
                vec![4, 1, 3, 3],
                vec![2, 1, 5, 5],
                vec![1, 1, 1, 1],
            ),
            (
                vec![2, 4, 5],
                vec![4, 1, 3, 3],
                vec![2, 1, 5, 5],
                vec![1, 1, 1, 1],
            ),
            (
                vec![2, 4, 5, 5],
                vec![4, 1, 3, 3],
                vec![2, 1, 5, 5],
                vec![1, 1],
            ),
        ] {
            assert!(
                ConvInputGrad::new(&dy, &w, &x, &pads).is_err(),
                "{dy:?} {w:?} {x:?}"
            );
        }
    }
}
