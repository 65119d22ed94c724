//! Float64 forwards and inputs for the cases of `tests/rules/main.rs`: ops that ONNX Runtime runs in
//! float32 only are differenced through these.

/// A 2-D pool with `ceil_mode` over `[planes, H, W]`, as ONNX Runtime and PyTorch compute it:
/// the last window starts inside the input or its left padding; an average's divisor counts the
/// explicit padding with `include_pad`, never the end the last windows reach past it.
pub(crate) fn pool2d(
    x: &[f64],
    [planes, h, w]: [usize; 3],
    k: usize,
    s: usize,
    p: usize,
    avg: bool,
    include_pad: bool,
) -> Vec<f64> {
    let out = |n: usize| {
        let mut o = (n + 2 * p - k).div_ceil(s) + 1;
        if (o - 1) * s >= n + p {
            o -= 1;
        }
        o
    };
    let (oh, ow) = (out(h), out(w));
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks(h * w).take(planes) {
        for i in 0..oh {
            for j in 0..ow {
                let (h0, w0) = ((i * s) as i64 - p as i64, (j * s) as i64 - p as i64);
                let (h1, w1) = (
                    (h0 + k as i64).min((h + p) as i64),
                    (w0 + k as i64).min((w + p) as i64),
                );
                let padded = ((h1 - h0) * (w1 - w0)) as f64;
                let (a0, b0) = (h0.max(0) as usize, w0.max(0) as usize);
                let (a1, b1) = (h1.min(h as i64) as usize, w1.min(w as i64) as usize);
                let cells = (a0..a1).flat_map(|a| (b0..b1).map(move |b| plane[a * w + b]));
                y.push(if avg {
                    let n = ((a1 - a0) * (b1 - b0)) as f64;
                    cells.sum::<f64>() / if include_pad { padded } else { n }
                } else {
                    cells.fold(f64::NEG_INFINITY, f64::max)
                });
            }
        }
    }
    y
}

/// `Selu` with float32 attributes, as the graph has them.
pub(crate) fn selu(x: f64, alpha: f32, gamma: f32) -> f64 {
    let (a, g) = (f64::from(alpha), f64::from(gamma));
    if x > 0.0 {
        g * x
    } else {
        g * a * x.exp_m1()
    }
}

/// `Celu` with a float32 `alpha`.
pub(crate) fn celu(x: f64, alpha: f32) -> f64 {
    let a = f64::from(alpha);
    x.max(0.0) + (a * (x / a).exp_m1()).min(0.0)
}

/// `n` = 12 points spread evenly over `[lo, hi)` (offset, so that none falls on a round value):
/// every piece of a piecewise op gets some.
pub(crate) fn spread(lo: f64, hi: f64) -> Vec<f64> {
    (0..12)
        .map(|i| lo + (i as f64 + 0.37) * (hi - lo) / 12.0)
        .collect()
}

/// Keeps values at least `gap` away from every point in `kinks` (where an op has no derivative).
pub(crate) fn away_from(mut x: Vec<f64>, kinks: &[f64], gap: f64) -> Vec<f64> {
    for v in x.iter_mut() {
        for &k in kinks {
            if (*v - k).abs() < gap {
                *v = k + if *v >= k { gap } else { -gap };
            }
        }
    }
    x
}

/// A 2-D convolution with `auto_pad = SAME_UPPER` (or `SAME_LOWER`) in float64: `x` is
/// `[n, cin, h, w]`, `weight` `[cout, cin, k, k]`, output `[n, cout, ⌈h/s⌉, ⌈w/s⌉]`.
pub(crate) fn conv2d_same(
    x: &[f64],
    [n, cin, h, w]: [usize; 4],
    weight: &[f64],
    [cout, k]: [usize; 2],
    s: usize,
    d: usize,
    lower: bool,
) -> Vec<f64> {
    let begin = |len: usize| {
        let o = len.div_ceil(s);
        let total = ((o - 1) * s + (k - 1) * d + 1).saturating_sub(len);
        if lower {
            total - total / 2
        } else {
            total / 2
        }
    };
    let (oh, ow, ph, pw) = (h.div_ceil(s), w.div_ceil(s), begin(h), begin(w));
    let mut y = Vec::with_capacity(n * cout * oh * ow);
    for b in 0..n {
        for o in 0..cout {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cin {
                        for a in 0..k {
                            for c in 0..k {
                                let (r, q) = (
                                    (i * s + a * d) as i64 - ph as i64,
                                    (j * s + c * d) as i64 - pw as i64,
                                );
                                if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                    acc += weight[((o * cin + ci) * k + a) * k + c]
                                        * x[((b * cin + ci) * h + r as usize) * w + q as usize];
                                }
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    y
}

/// A 2-D pool with `SAME` padding (`upper`: SAME_UPPER) over `[planes, h, w]`: windows `k` at
/// strides `s`, ⌈n/s⌉ outputs per axis, the total padding split with the smaller half before
/// (UPPER) or after (LOWER); max, or average over the real cells or over the whole window.
#[allow(clippy::too_many_arguments)]
pub(crate) fn same_pool2d(
    x: &[f64],
    [planes, h, w]: [usize; 3],
    k: [usize; 2],
    s: [usize; 2],
    upper: bool,
    avg: bool,
    include_pad: bool,
) -> Vec<f64> {
    let axis = |n: usize, k: usize, s: usize| {
        let o = n.div_ceil(s);
        let total = ((o - 1) * s + k).saturating_sub(n);
        let begin = if upper { total / 2 } else { total - total / 2 };
        (o, begin as i64)
    };
    let ((oh, ph), (ow, pw)) = (axis(h, k[0], s[0]), axis(w, k[1], s[1]));
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks(h * w).take(planes) {
        for i in 0..oh {
            for j in 0..ow {
                let (h0, w0) = ((i * s[0]) as i64 - ph, (j * s[1]) as i64 - pw);
                let rows = h0.max(0) as usize..((h0 + k[0] as i64).min(h as i64)) as usize;
                let cols = w0.max(0) as usize..((w0 + k[1] as i64).min(w as i64)) as usize;
                let cells: Vec<f64> = rows
                    .flat_map(|a| cols.clone().map(move |b| plane[a * w + b]))
                    .collect();
                y.push(if !avg {
                    cells.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                } else if include_pad {
                    cells.iter().sum::<f64>() / (k[0] * k[1]) as f64
                } else {
                    cells.iter().sum::<f64>() / cells.len() as f64
                });
            }
        }
    }
    y
}

/// A 2-D transposed convolution in float64, as the operator defines it: `x` `[n, cin, h, w]`,
/// `weight` `[cin, cout, k, k]`, stride `s`; the full output (`s·(i − 1) + k` per axis, plus
/// `output_padding` zeros at the end) cropped by `begin` and to `out` (a negative `begin`, or
/// an `out` past the full output, reads zeros).
pub(crate) fn conv_transpose2d(
    x: &[f64],
    [n, cin, h, w]: [usize; 4],
    weight: &[f64],
    [cout, k]: [usize; 2],
    s: usize,
    begin: [i64; 2],
    out: [usize; 2],
) -> Vec<f64> {
    let (fh, fw) = (s * (h - 1) + k, s * (w - 1) + k);
    let mut full = vec![0.0; n * cout * fh * fw];
    for b in 0..n {
        for ci in 0..cin {
            for i in 0..h {
                for j in 0..w {
                    let v = x[((b * cin + ci) * h + i) * w + j];
                    for o in 0..cout {
                        for a in 0..k {
                            for c in 0..k {
                                full[((b * cout + o) * fh + i * s + a) * fw + j * s + c] +=
                                    v * weight[((ci * cout + o) * k + a) * k + c];
                            }
                        }
                    }
                }
            }
        }
    }
    let mut y = Vec::with_capacity(n * cout * out[0] * out[1]);
    for b in 0..n {
        for o in 0..cout {
            for i in 0..out[0] {
                for j in 0..out[1] {
                    let (r, q) = (i as i64 + begin[0], j as i64 + begin[1]);
                    let inside = r >= 0 && q >= 0 && (r as usize) < fh && (q as usize) < fw;
                    y.push(if inside {
                        full[((b * cout + o) * fh + r as usize) * fw + q as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    y
}

/// An ONNX recurrent op (`LSTM`, `GRU`, `RNN`, default activations) in float64, as the operator
/// defines it, batch first: `x` `[b, t, i]` → `Y` `[b, t, directions, h]`. Weights `[D, g·h, i]`,
/// recurrences `[D, g·h, h]`, biases `[D, 2·g·h]` (gates `iofc`, `zrh`), initial states
/// `[D, b, h]`; rows past `lens` keep their state and output zeros (forward direction).
pub(crate) struct Recurrent {
    pub(crate) kind: &'static str,
    pub(crate) dims: [usize; 4], // b, t, i, h
    pub(crate) reverse: Vec<bool>,
    pub(crate) w: Vec<f64>,
    pub(crate) r: Vec<f64>,
    pub(crate) bias: Vec<f64>,
    pub(crate) h0: Option<Vec<f64>>,
    pub(crate) c0: Option<Vec<f64>>,
    pub(crate) lens: Option<Vec<usize>>,
    pub(crate) linear_before_reset: bool,
}

impl Recurrent {
    pub(crate) fn run(&self, x: &[f64]) -> Vec<f64> {
        let [b, t, i, h] = self.dims;
        let g = match self.kind {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        };
        let dn = self.reverse.len();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut y = vec![0.0; b * t * dn * h];
        for (d, &rev) in self.reverse.iter().enumerate() {
            let w = &self.w[d * g * h * i..(d + 1) * g * h * i];
            let r = &self.r[d * g * h * h..(d + 1) * g * h * h];
            let (wb, rb) = (
                &self.bias[d * 2 * g * h..d * 2 * g * h + g * h],
                &self.bias[d * 2 * g * h + g * h..(d + 1) * 2 * g * h],
            );
            for row in 0..b {
                let state = |s: &Option<Vec<f64>>| {
                    s.as_ref().map_or(vec![0.0; h], |v| {
                        v[(d * b + row) * h..(d * b + row + 1) * h].to_vec()
                    })
                };
                let (mut hs, mut cs) = (state(&self.h0), state(&self.c0));
                let len = self.lens.as_ref().map_or(t, |l| l[row]);
                let steps: Vec<usize> = if rev {
                    (0..t).rev().collect()
                } else {
                    (0..t).collect()
                };
                for step in steps {
                    if step >= len {
                        continue; // state kept, output zero
                    }
                    let xs = &x[(row * t + step) * i..(row * t + step + 1) * i];
                    let lin = |m: &[f64], v: &[f64], k: usize, n: usize| -> f64 {
                        (0..n).map(|j| m[k * n + j] * v[j]).sum()
                    };
                    let xw: Vec<f64> = (0..g * h).map(|k| lin(w, xs, k, i) + wb[k]).collect();
                    let hr: Vec<f64> = (0..g * h).map(|k| lin(r, &hs, k, h) + rb[k]).collect();
                    match self.kind {
                        "LSTM" => {
                            for k in 0..h {
                                let (ig, og, fg, cg) = (
                                    sig(xw[k] + hr[k]),
                                    sig(xw[h + k] + hr[h + k]),
                                    sig(xw[2 * h + k] + hr[2 * h + k]),
                                    (xw[3 * h + k] + hr[3 * h + k]).tanh(),
                                );
                                cs[k] = fg * cs[k] + ig * cg;
                                hs[k] = og * cs[k].tanh();
                            }
                        }
                        "GRU" => {
                            let z: Vec<f64> = (0..h).map(|k| sig(xw[k] + hr[k])).collect();
                            let rr: Vec<f64> = (0..h).map(|k| sig(xw[h + k] + hr[h + k])).collect();
                            let rh: Vec<f64> = (0..h).map(|k| rr[k] * hs[k]).collect();
                            let cand: Vec<f64> = (0..h)
                                .map(|k| {
                                    let inner = if self.linear_before_reset {
                                        rr[k] * hr[2 * h + k]
                                    } else {
                                        lin(&r[2 * h * h..], &rh, k, h) + rb[2 * h + k]
                                    };
                                    (xw[2 * h + k] + inner).tanh()
                                })
                                .collect();
                            for k in 0..h {
                                hs[k] = (1.0 - z[k]) * cand[k] + z[k] * hs[k];
                            }
                        }
                        _ => {
                            for k in 0..h {
                                hs[k] = (xw[k] + hr[k]).tanh();
                            }
                        }
                    }
                    let at = ((row * t + step) * dn + d) * h;
                    y[at..at + h].copy_from_slice(&hs);
                }
            }
        }
        y
    }
}
