//! 2-d max and average pooling with exact input gradients, in plain Rust.
//!
//! candle 0.11's own max-pool backward is wrong (it scales the gradient by the mean of the max mask:
//! 4× too small for 2×2 windows, and ties share rather than route the gradient) and has no backward
//! at all when kernel ≠ stride. These kernels follow PyTorch: a max window routes its gradient to
//! the first maximum in row-major scan order (padding never wins), and an average window spreads it
//! evenly over its divisor (`count_include_pad` as in PyTorch, default true).

use rayon::prelude::*;

/// Geometry of one pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Kernel size (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding (height, width) on both sides.
    pub padding: (usize, usize),
    /// Average pooling only: whether padded positions count in the divisor.
    pub count_include_pad: bool,
}

impl Pool2d {
    /// Output height and width for an input of `h × w`, or `None` when the window does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || h + 2 * ph < kh || w + 2 * pw < kw {
            return None;
        }
        Some(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }

    /// Max pooling over `planes` planes of `h × w`; returns the output and, per output value,
    /// the flat index (within its plane) of the input that won.
    pub fn max_forward(
        &self,
        x: &[f32],
        planes: usize,
        h: usize,
        w: usize,
    ) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let mut out = vec![0.0f32; planes * oh * ow];
        let mut arg = vec![0u32; planes * oh * ow];
        self.max_forward_into(x, (h, w), &mut out, &mut arg);
        (out, arg)
    }

    /// [`Pool2d::max_forward`] over `batch` examples of `channels` planes, examples in parallel.
    pub fn max_forward_par(
        &self,
        x: &[f32],
        batch: usize,
        channels: usize,
        h: usize,
        w: usize,
    ) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let per_out = (channels * oh * ow).max(1);
        let mut out = vec![0.0f32; batch * channels * oh * ow];
        let mut arg = vec![0u32; out.len()];
        out.par_chunks_mut(per_out)
            .zip(arg.par_chunks_mut(per_out))
            .zip(x.par_chunks((channels * h * w).max(1)))
            .for_each(|((out, arg), x)| self.max_forward_into(x, (h, w), out, arg));
        (out, arg)
    }

    fn max_forward_into(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        out: &mut [f32],
        arg: &mut [u32],
    ) {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        if self.kernel == (2, 2) && self.stride == (2, 2) && self.padding == (0, 0) {
            Self::max_forward_2x2(x, (h, w), (oh, ow), out, arg);
        } else {
            self.max_forward_general(x, (h, w), (oh, ow), out, arg);
        }
    }

    fn max_forward_general(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        out: &mut [f32],
        arg: &mut [u32],
    ) {
        let spans: Vec<_> = (0..ow).map(|ox| self.span(ox, 1, w)).collect();
        let mut o = 0;
        for plane in x.chunks_exact(h * w) {
            for oy in 0..oh {
                let rows = self.span(oy, 0, h);
                for cols in &spans {
                    let mut best = f32::NEG_INFINITY;
                    let mut best_at = u32::MAX;
                    for iy in rows.clone() {
                        let line = &plane[iy * w..(iy + 1) * w];
                        for ix in cols.clone() {
                            let v = line[ix];
                            // `>` keeps the first maximum; NaN propagates like PyTorch's.
                            if best_at == u32::MAX || v > best || v.is_nan() && !best.is_nan() {
                                best = v;
                                best_at = (iy * w + ix) as u32;
                            }
                        }
                    }
                    out[o] = best;
                    arg[o] = best_at;
                    o += 1;
                }
            }
        }
    }

    /// The common 2×2 window at stride 2 without padding: the same choice (the first maximum in
    /// row-major order, NaN wins) without the general loop's bookkeeping.
    fn max_forward_2x2(
        x: &[f32],
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        out: &mut [f32],
        arg: &mut [u32],
    ) {
        let mut o = 0;
        for plane in x.chunks_exact(h * w) {
            for oy in 0..oh {
                let (r0, r1) = (2 * oy * w, (2 * oy + 1) * w);
                for ox in 0..ow {
                    let taps = [r0 + 2 * ox, r0 + 2 * ox + 1, r1 + 2 * ox, r1 + 2 * ox + 1];
                    let (mut best, mut at) = (plane[taps[0]], taps[0]);
                    for &i in &taps[1..] {
                        let v = plane[i];
                        if v > best || v.is_nan() && !best.is_nan() {
                            best = v;
                            at = i;
                        }
                    }
                    out[o] = best;
                    arg[o] = at as u32;
                    o += 1;
                }
            }
        }
    }

    /// Gradient of max pooling: routes each output gradient to its winning input.
    pub fn max_backward(
        &self,
        grad: &[f32],
        arg: &[u32],
        planes: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let mut dx = vec![0.0f32; planes * h * w];
        Self::max_backward_into(grad, arg, planes, &mut dx);
        dx
    }

    /// [`Pool2d::max_backward`] over `batch` examples of `channels` planes, examples in parallel.
    pub fn max_backward_par(
        &self,
        grad: &[f32],
        arg: &[u32],
        batch: usize,
        channels: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let per = grad.len() / batch.max(1);
        per_example(grad, per, batch, channels * h * w, |i, grad, dx| {
            Self::max_backward_into(grad, &arg[i * per..(i + 1) * per], channels, dx)
        })
    }

    fn max_backward_into(grad: &[f32], arg: &[u32], planes: usize, dx: &mut [f32]) {
        let per_plane = grad.len() / planes.max(1);
        let plane_len = dx.len() / planes.max(1);
        for (p, plane) in dx
            .chunks_exact_mut(plane_len.max(1))
            .enumerate()
            .take(planes)
        {
            let range = p * per_plane..(p + 1) * per_plane;
            for (&g, &a) in grad[range.clone()].iter().zip(&arg[range]) {
                if a != u32::MAX {
                    plane[a as usize] += g;
                }
            }
        }
    }

    /// Average pooling over `planes` planes of `h × w`.
    pub fn avg_forward(&self, x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let mut out = vec![0.0f32; planes * oh * ow];
        self.avg_forward_into(x, (h, w), &mut out);
        out
    }

    /// [`Pool2d::avg_forward`] over `batch` examples of `channels` planes, examples in parallel.
    pub fn avg_forward_par(
        &self,
        x: &[f32],
        batch: usize,
        channels: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        per_example(
            x,
            channels * h * w,
            batch,
            channels * oh * ow,
            |_, x, out| self.avg_forward_into(x, (h, w), out),
        )
    }

    fn avg_forward_into(&self, x: &[f32], (h, w): (usize, usize), out: &mut [f32]) {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        let mut o = 0;
        for plane in x.chunks_exact(h * w) {
            for oy in 0..oh {
                let rows = self.span(oy, 0, h);
                for ox in 0..ow {
                    let cols = self.span(ox, 1, w);
                    // -0.0, as `Iterator::sum` starts (the earlier kernel summed with it).
                    let mut sum = -0.0f32;
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            sum += plane[iy * w + ix];
                        }
                    }
                    out[o] = sum / self.divisor(oy, ox, h, w);
                    o += 1;
                }
            }
        }
    }

    /// Gradient of average pooling.
    pub fn avg_backward(&self, grad: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let mut dx = vec![0.0f32; planes * h * w];
        self.avg_backward_into(grad, (h, w), &mut dx);
        dx
    }

    /// [`Pool2d::avg_backward`] over `batch` examples of `channels` planes, examples in parallel.
    pub fn avg_backward_par(
        &self,
        grad: &[f32],
        batch: usize,
        channels: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        per_example(
            grad,
            channels * oh * ow,
            batch,
            channels * h * w,
            |_, grad, dx| self.avg_backward_into(grad, (h, w), dx),
        )
    }

    fn avg_backward_into(&self, grad: &[f32], (h, w): (usize, usize), dx: &mut [f32]) {
        let (oh, ow) = self.output_size(h, w).expect("checked by the caller");
        for (plane, grad) in dx.chunks_exact_mut(h * w).zip(grad.chunks_exact(oh * ow)) {
            for oy in 0..oh {
                let rows = self.span(oy, 0, h);
                for ox in 0..ow {
                    let g = grad[oy * ow + ox] / self.divisor(oy, ox, h, w);
                    for iy in rows.clone() {
                        for ix in self.span(ox, 1, w) {
                            plane[iy * w + ix] += g;
                        }
                    }
                }
            }
        }
    }

    /// In-bounds input rows (`axis` 0) or columns (`axis` 1) of output window `o`.
    fn span(&self, o: usize, axis: usize, size: usize) -> std::ops::Range<usize> {
        let (k, s, p) = if axis == 0 {
            (self.kernel.0, self.stride.0, self.padding.0)
        } else {
            (self.kernel.1, self.stride.1, self.padding.1)
        };
        let start = (o * s).saturating_sub(p).min(size);
        let end = (o * s + k).saturating_sub(p).min(size);
        start..end
    }

    fn divisor(&self, oy: usize, ox: usize, h: usize, w: usize) -> f32 {
        if self.count_include_pad {
            // PyTorch clips the window to the padded input before counting.
            let y0 = (oy * self.stride.0) as isize - self.padding.0 as isize;
            let x0 = (ox * self.stride.1) as isize - self.padding.1 as isize;
            let y1 = (y0 + self.kernel.0 as isize).min((h + self.padding.0) as isize);
            let x1 = (x0 + self.kernel.1 as isize).min((w + self.padding.1) as isize);
            ((y1 - y0) * (x1 - x0)) as f32
        } else {
            (self.span(oy, 0, h).len() * self.span(ox, 1, w).len()) as f32
        }
    }
}

/// `f(example, its input, its output)` for `examples` examples in parallel: the input holds
/// `in_per` values per example, the output (returned, zeroed before `f`) `out_per`.
fn per_example(
    input: &[f32],
    in_per: usize,
    examples: usize,
    out_per: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0.0f32; examples * out_per];
    out.par_chunks_mut(out_per.max(1))
        .zip(input.par_chunks(in_per.max(1)))
        .enumerate()
        .for_each(|(i, (out, input))| f(i, input, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(k: usize, s: usize, p: usize) -> Pool2d {
        Pool2d {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            count_include_pad: true,
        }
    }

    #[test]
    fn the_2x2_path_chooses_as_the_general_one() {
        let (h, w) = (6, 8);
        let mut x: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 7919) % 13) as f32 - 6.0)
            .collect();
        x[5] = f32::NAN;
        x[w + 9] = f32::NAN;
        x[2 * h * w + 3] = f32::NAN;
        x[2 * h * w + 2] = f32::NAN;
        let (oh, ow) = (h / 2, w / 2);
        let (mut a, mut ia) = (vec![0.0; 3 * oh * ow], vec![0; 3 * oh * ow]);
        let (mut b, mut ib) = (a.clone(), ia.clone());
        Pool2d::max_forward_2x2(&x, (h, w), (oh, ow), &mut a, &mut ia);
        pool(2, 2, 0).max_forward_general(&x, (h, w), (oh, ow), &mut b, &mut ib);
        assert_eq!(ia, ib);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(a.iter().filter(|v| v.is_nan()).count() == 3);
    }

    #[test]
    fn max_ties_route_to_first_maximum() {
        let x = [1.0, 1.0, 1.0, 1.0];
        let p = pool(2, 2, 0);
        let (out, arg) = p.max_forward(&x, 1, 2, 2);
        assert_eq!(out, vec![1.0]);
        assert_eq!(arg, vec![0]);
        assert_eq!(
            p.max_backward(&[3.0], &arg, 1, 2, 2),
            vec![3.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn overlapping_windows_accumulate() {
        // 1×3 input, kernel 1×2 stride 1: the middle value wins both windows.
        let p = Pool2d {
            kernel: (1, 2),
            stride: (1, 1),
            padding: (0, 0),
            count_include_pad: true,
        };
        let (out, arg) = p.max_forward(&[0.0, 5.0, 1.0], 1, 1, 3);
        assert_eq!(out, vec![5.0, 5.0]);
        assert_eq!(
            p.max_backward(&[1.0, 2.0], &arg, 1, 1, 3),
            vec![0.0, 3.0, 0.0]
        );
    }

    #[test]
    fn avg_padding_counts_like_pytorch() {
        // 2×2 input of ones, kernel 3, stride 1, padding 1: every window covers 9 padded cells.
        let p = pool(3, 1, 1);
        let out = p.avg_forward(&[1.0; 4], 1, 2, 2);
        assert_eq!(out, vec![4.0 / 9.0; 4]);
        let mut q = p;
        q.count_include_pad = false;
        assert_eq!(q.avg_forward(&[1.0; 4], 1, 2, 2), vec![1.0; 4]);
    }
}

#[cfg(test)]
mod golden {
    //! PyTorch autograd reference: `tests/data/golden/make_golden.py` (`pooling_cases`).
    use super::*;

    fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    #[test]
    fn pool_gradients_match_torch_including_ties_and_overlap() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/golden/pool/pool.json"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let x: Vec<f32> = floats(&doc["input"])
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let shape: Vec<usize> = doc["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3]);
        let cases = doc["cases"].as_object().unwrap();
        assert_eq!(cases.len(), 5);
        for (name, case) in cases {
            let pool = match name.as_str() {
                "max_k2s2" | "avg_k2s2" => Pool2d {
                    kernel: (2, 2),
                    stride: (2, 2),
                    padding: (0, 0),
                    count_include_pad: true,
                },
                "max_k3s2p1" | "avg_k3s2p1" => Pool2d {
                    kernel: (3, 3),
                    stride: (2, 2),
                    padding: (1, 1),
                    count_include_pad: true,
                },
                "max_k3s1" => Pool2d {
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: (0, 0),
                    count_include_pad: true,
                },
                other => panic!("unknown case {other}"),
            };
            let up: Vec<f32> = floats(&case["upstream"])
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let (out, grad) = if name.starts_with("max") {
                let (out, arg) = pool.max_forward(&x, planes, h, w);
                let g = pool.max_backward(&up, &arg, planes, h, w);
                (out, g)
            } else {
                (
                    pool.avg_forward(&x, planes, h, w),
                    pool.avg_backward(&up, planes, h, w),
                )
            };
            for (i, (a, b)) in out.iter().zip(floats(&case["output"])).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-6,
                    "{name} output {i}: {a} vs {b}"
                );
            }
            let want = floats(&case["grad"]);
            assert_eq!(grad.len(), want.len());
            for (i, (a, b)) in grad.iter().zip(want).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-5,
                    "{name} grad {i}: {a} vs {b}"
                );
            }
        }
    }
}

#[cfg(test)]
mod candle_bug {
    use candle_core::{Device, Tensor, Var};

    /// Why this module exists: candle 0.11's own max-pool backward scales the gradient by the
    /// mean of the max mask (here 1/4) instead of routing it to the maximum. If this test starts
    /// failing after a candle upgrade, candle has fixed it; the hand-written pool stays correct
    /// either way.
    #[test]
    fn candle_0_11_maxpool_backward_is_still_wrong() {
        let x =
            Var::from_tensor(&Tensor::new(&[[[[1.0f32, 4.0], [2.0, 3.0]]]], &Device::Cpu).unwrap())
                .unwrap();
        let y = x.as_tensor().max_pool2d(2).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let ours = super::Pool2d {
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
            count_include_pad: true,
        };
        let (_, arg) = ours.max_forward(&[1.0, 4.0, 2.0, 3.0], 1, 2, 2);
        assert_eq!(
            ours.max_backward(&[1.0], &arg, 1, 2, 2),
            vec![0.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(
            g,
            vec![0.0, 0.25, 0.0, 0.0],
            "candle's max-pool backward changed"
        );
    }
}
