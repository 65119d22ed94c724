//! 2-d convolution and its input gradient as a GEMM per example (im2col / col2im around
//! [`gemm`], the matrix product candle itself uses), examples in parallel on rayon's pool.
//!
//! candle 0.11's `conv_transpose2d` (the input gradient of a convolution) parallelises over output
//! channels only, so the first layer of a one-channel model runs on one thread, and computes one
//! short dot product per kernel tap and pixel; it was 4× slower than PyTorch on a small MNIST CNN.
//! Here each example is one product `W[cout, k] × cols[k, pixels]` forward and
//! `Wᵀ[k, cout] × dY[cout, pixels]` backward, so the arithmetic of an example never depends on the
//! batch it came in or the number of threads: results are bit-identical across batch sizes and
//! thread counts.

use rayon::prelude::*;

/// Geometry of one convolution (square stride, padding and dilation, as `nn.Conv2d` accepts them
/// from the backend options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeom {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
    /// Channel groups.
    pub groups: usize,
}

impl Conv2dGeom {
    /// Output height and width for an `h × w` input, or `None` when the kernel does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let span = |k: usize| self.dilation * (k - 1) + 1;
        if kh == 0 || kw == 0 || self.stride == 0 || self.dilation == 0 {
            return None;
        }
        let (ph, pw) = (h + 2 * self.padding, w + 2 * self.padding);
        if ph < span(kh) || pw < span(kw) {
            return None;
        }
        Some((
            (ph - span(kh)) / self.stride + 1,
            (pw - span(kw)) / self.stride + 1,
        ))
    }

    /// Rows of one group's column matrix: input channels per group × kernel taps.
    fn k(&self) -> usize {
        self.cin / self.groups * self.kernel.0 * self.kernel.1
    }

    /// Whether the column matrix is the input itself (1×1 kernel, stride 1, no padding).
    fn pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == 1 && self.padding == 0
    }

    /// The forward pass over `batch` examples of `[cin, h, w]`: `[batch, cout, oh, ow]`.
    ///
    /// `weight` is `[cout, cin / groups, kh, kw]` contiguous; `bias` has `cout` values.
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        (h, w): (usize, usize),
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let (pixels, k, cout_g, cin_g) = (
            oh * ow,
            self.k(),
            self.cout / self.groups,
            self.cin / self.groups,
        );
        debug_assert_eq!(x.len(), batch * self.cin * h * w);
        debug_assert_eq!(weight.len(), self.cout * k);
        let mut y = vec![0.0f32; batch * self.cout * pixels];
        if batch == 0 || pixels == 0 {
            return y;
        }
        let cols_len = if self.pointwise() { 0 } else { k * pixels };
        y.par_chunks_mut(self.cout * pixels)
            .zip(x.par_chunks(self.cin * h * w))
            .for_each_init(
                || vec![0.0f32; cols_len],
                |cols, (y, x)| {
                    for g in 0..self.groups {
                        let xg = &x[g * cin_g * h * w..(g + 1) * cin_g * h * w];
                        let rhs: &[f32] = if self.pointwise() {
                            xg
                        } else {
                            self.im2col(xg, cin_g, (h, w), (oh, ow), cols);
                            cols
                        };
                        let yg = &mut y[g * cout_g * pixels..(g + 1) * cout_g * pixels];
                        let wg = &weight[g * cout_g * k..(g + 1) * cout_g * k];
                        // yg[cout_g, pixels] = wg[cout_g, k] × rhs[k, pixels]
                        matmul(yg, Mat::N(wg), Mat::N(rhs), (cout_g, pixels, k));
                    }
                    if let Some(b) = bias {
                        for (row, &b) in y.chunks_exact_mut(pixels).zip(b) {
                            row.iter_mut().for_each(|v| *v += b);
                        }
                    }
                },
            );
        y
    }

    /// The input gradient: `dy` is `[batch, cout, oh, ow]`, the result `[batch, cin, h, w]`
    /// (zero where no window reached, as for trailing rows a stride skips).
    pub fn input_grad(
        &self,
        dy: &[f32],
        batch: usize,
        (h, w): (usize, usize),
        weight: &[f32],
    ) -> Vec<f32> {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let (pixels, k, cout_g, cin_g) = (
            oh * ow,
            self.k(),
            self.cout / self.groups,
            self.cin / self.groups,
        );
        debug_assert_eq!(dy.len(), batch * self.cout * pixels);
        // Zeroed once here: col2im adds onto it, and each group's part is written by one task.
        let mut dx = vec![0.0f32; batch * self.cin * h * w];
        if batch == 0 || pixels == 0 {
            return dx;
        }
        let pointwise = self.pointwise();
        dx.par_chunks_mut(self.cin * h * w)
            .zip(dy.par_chunks(self.cout * pixels))
            .for_each_init(
                || vec![0.0f32; if pointwise { 0 } else { k * pixels }],
                |cols, (dx, dy)| {
                    for g in 0..self.groups {
                        let dyg = &dy[g * cout_g * pixels..(g + 1) * cout_g * pixels];
                        let wg = &weight[g * cout_g * k..(g + 1) * cout_g * k];
                        let dxg = &mut dx[g * cin_g * h * w..(g + 1) * cin_g * h * w];
                        // cols[k, pixels] = wgᵀ[k, cout_g] × dyg[cout_g, pixels]
                        let out: &mut [f32] = if pointwise { dxg } else { cols };
                        matmul(out, Mat::T(wg), Mat::N(dyg), (k, pixels, cout_g));
                        if !pointwise {
                            self.col2im(cols, cin_g, (h, w), (oh, ow), dxg);
                        }
                    }
                },
            );
        dx
    }

    /// The input position of tap `kpos` for output position `o` along an axis of `size`, `None`
    /// in the padding.
    fn tap(&self, o: usize, kpos: usize, size: usize) -> Option<usize> {
        (o * self.stride + kpos * self.dilation)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }

    /// The output positions `lo..hi` along an axis of `out` positions whose tap `kpos` falls
    /// inside an input of `size`, and the input position of `lo`.
    fn valid(&self, kpos: usize, size: usize, out: usize) -> (usize, usize, usize) {
        let off = kpos * self.dilation;
        // o * stride + off ≥ padding  ⇔  o ≥ ⌈(padding − off) / stride⌉
        let lo = self
            .padding
            .saturating_sub(off)
            .div_ceil(self.stride)
            .min(out);
        // o * stride + off − padding < size  ⇔  o * stride < size + padding − off
        let hi = (size + self.padding)
            .checked_sub(off)
            .map_or(0, |room| room.div_ceil(self.stride))
            .min(out)
            .max(lo);
        (
            lo,
            hi,
            (lo * self.stride + off).saturating_sub(self.padding),
        )
    }

    /// Unfolds one group's input `[cin_g, h, w]` into `cols[(c, ky, kx), (oy, ox)]`.
    fn im2col(
        &self,
        x: &[f32],
        cin_g: usize,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        cols: &mut [f32],
    ) {
        let (kh, kw) = self.kernel;
        let s = self.stride;
        let mut rows = cols.chunks_exact_mut(oh * ow);
        for c in 0..cin_g {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = rows.next().expect("k rows");
                    let (lo, hi, ix0) = self.valid(kx, w, ow);
                    for oy in 0..oh {
                        let out = &mut row[oy * ow..(oy + 1) * ow];
                        let Some(iy) = self.tap(oy, ky, h) else {
                            out.fill(0.0);
                            continue;
                        };
                        let line = &plane[iy * w..(iy + 1) * w];
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        if s == 1 {
                            out[lo..hi].copy_from_slice(&line[ix0..ix0 + hi - lo]);
                        } else {
                            for (v, ix) in out[lo..hi].iter_mut().zip((ix0..).step_by(s)) {
                                *v = line[ix];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Folds `cols[(c, ky, kx), (oy, ox)]` back onto the input `[cin_g, h, w]`, adding the taps
    /// of each input element in kernel order to `dx`, which the caller zeroes.
    fn col2im(
        &self,
        cols: &[f32],
        cin_g: usize,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        dx: &mut [f32],
    ) {
        let (kh, kw) = self.kernel;
        let s = self.stride;
        let mut rows = cols.chunks_exact(oh * ow);
        for c in 0..cin_g {
            let plane = &mut dx[c * h * w..(c + 1) * h * w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = rows.next().expect("k rows");
                    let (lo, hi, ix0) = self.valid(kx, w, ow);
                    for oy in 0..oh {
                        let Some(iy) = self.tap(oy, ky, h) else {
                            continue;
                        };
                        let line = &mut plane[iy * w..(iy + 1) * w];
                        let src = &row[oy * ow + lo..oy * ow + hi];
                        if s == 1 {
                            for (d, &v) in line[ix0..ix0 + hi - lo].iter_mut().zip(src) {
                                *d += v;
                            }
                        } else {
                            for (&v, ix) in src.iter().zip((ix0..).step_by(s)) {
                                line[ix] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A row-major matrix, or the transpose of one: `Mat::T(data)` is `[rows, cols]` read from data
/// stored as `[cols, rows]`.
#[derive(Clone, Copy)]
pub(crate) enum Mat<'a> {
    /// Stored as it is used.
    N(&'a [f32]),
    /// Stored transposed.
    T(&'a [f32]),
}

impl Mat<'_> {
    /// The slice and the (row, column) strides of a `rows × cols` matrix.
    fn layout(&self, rows: usize, cols: usize) -> (&[f32], isize, isize) {
        match *self {
            Mat::N(d) => (d, cols as isize, 1),
            Mat::T(d) => (d, 1, rows as isize),
        }
    }
}

/// `dst[m, n] = lhs[m, k] × rhs[k, n]` on the calling thread; `dst` is row-major.
pub(crate) fn matmul(
    dst: &mut [f32],
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    (m, n, k): (usize, usize, usize),
) {
    let (l, l_rs, l_cs) = lhs.layout(m, k);
    let (r, r_rs, r_cs) = rhs.layout(k, n);
    assert!(dst.len() >= m * n && l.len() >= m * k && r.len() >= k * n);
    // SAFETY: a `rows × cols` matrix read at `i * rs + j * cs` with the strides of `layout`
    // (row-major or its transpose) stays below `rows * cols`, inside its slice (checked above);
    // `dst` does not alias the inputs (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            l.as_ptr(),
            l_cs,
            l_rs,
            r.as_ptr(),
            r_cs,
            r_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn direct(
        g: &Conv2dGeom,
        x: &[f32],
        batch: usize,
        (h, w): (usize, usize),
        wt: &[f32],
    ) -> Vec<f64> {
        let (oh, ow) = g.output_size(h, w).unwrap();
        let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
        let (kh, kw) = g.kernel;
        let mut y = vec![0.0; batch * g.cout * oh * ow];
        for b in 0..batch {
            for co in 0..g.cout {
                let grp = co / cout_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0f64;
                        for c in 0..cin_g {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    if let (Some(iy), Some(ix)) =
                                        (g.tap(oy, ky, h), g.tap(ox, kx, w))
                                    {
                                        let xv =
                                            x[((b * g.cin + grp * cin_g + c) * h + iy) * w + ix];
                                        let wv = wt[((co * cin_g + c) * kh + ky) * kw + kx];
                                        s += f64::from(xv) * f64::from(wv);
                                    }
                                }
                            }
                        }
                        y[((b * g.cout + co) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn geometries() -> Vec<(Conv2dGeom, (usize, usize))> {
        let g = |cin, cout, kernel, stride, padding, dilation, groups| Conv2dGeom {
            cin,
            cout,
            kernel,
            stride,
            padding,
            dilation,
            groups,
        };
        vec![
            (g(1, 4, (3, 3), 1, 1, 1, 1), (6, 5)),
            (g(3, 4, (3, 2), 2, 1, 1, 1), (7, 6)),
            (g(4, 6, (3, 3), 1, 2, 2, 2), (5, 5)),
            (g(4, 4, (1, 1), 1, 0, 1, 4), (3, 4)),
            (g(2, 3, (1, 1), 2, 0, 1, 1), (5, 5)),
            (g(2, 2, (5, 5), 3, 0, 1, 1), (6, 7)),
        ]
    }

    #[test]
    fn forward_follows_the_definition() {
        for (i, (g, hw)) in geometries().into_iter().enumerate() {
            let batch = 3;
            let x = values(batch * g.cin * hw.0 * hw.1, i as u64);
            let wt = values(g.cout * g.k(), 100 + i as u64);
            let bias = values(g.cout, 200 + i as u64);
            let y = g.forward(&x, batch, hw, &wt, Some(&bias));
            let want = direct(&g, &x, batch, hw, &wt);
            let (oh, ow) = g.output_size(hw.0, hw.1).unwrap();
            for (j, (&a, &b)) in y.iter().zip(&want).enumerate() {
                let b = b + f64::from(bias[j / (oh * ow) % g.cout]);
                assert!(
                    (f64::from(a) - b).abs() < 1e-5,
                    "geometry {i} element {j}: {a} vs {b}"
                );
            }
        }
    }

    /// ⟨conv(x), dy⟩ = ⟨x, conv_input_grad(dy)⟩ for every x: the gradient, element by element,
    /// taken against the definition with unit vectors.
    #[test]
    fn input_gradient_is_the_adjoint() {
        for (i, (g, (h, w))) in geometries().into_iter().enumerate() {
            let batch = 2;
            let (oh, ow) = g.output_size(h, w).unwrap();
            let wt = values(g.cout * g.k(), 300 + i as u64);
            let dy = values(batch * g.cout * oh * ow, 400 + i as u64);
            let dx = g.input_grad(&dy, batch, (h, w), &wt);
            for e in 0..batch * g.cin * h * w {
                let mut x = vec![0.0f32; batch * g.cin * h * w];
                x[e] = 1.0;
                let y = direct(&g, &x, batch, (h, w), &wt);
                let want: f64 = y.iter().zip(&dy).map(|(a, &b)| a * f64::from(b)).sum();
                assert!(
                    (f64::from(dx[e]) - want).abs() < 1e-5,
                    "geometry {i} element {e}: {} vs {want}",
                    dx[e]
                );
            }
        }
    }

    #[test]
    fn an_example_gives_the_same_bits_in_any_batch() {
        let (g, hw) = geometries()[2];
        let per = g.cin * hw.0 * hw.1;
        let x = values(5 * per, 7);
        let wt = values(g.cout * g.k(), 8);
        let (oh, ow) = g.output_size(hw.0, hw.1).unwrap();
        let dy = values(5 * g.cout * oh * ow, 9);
        let all = g.input_grad(&dy, 5, hw, &wt);
        let one = g.input_grad(&dy[2 * g.cout * oh * ow..3 * g.cout * oh * ow], 1, hw, &wt);
        assert_eq!(one, all[2 * per..3 * per]);
        let fw_all = g.forward(&x, 5, hw, &wt, None);
        let fw_one = g.forward(&x[3 * per..4 * per], 1, hw, &wt, None);
        assert_eq!(fw_one, fw_all[3 * g.cout * oh * ow..4 * g.cout * oh * ow]);
    }
}
