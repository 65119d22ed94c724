//! Streaming Variance of Gradients.
//!
//! For one batch of examples, gradients arrive one checkpoint at a time. Windows that share
//! checkpoints share the work: the checkpoint axis is cut into elementary segments at every window
//! boundary, each checkpoint belongs to exactly one segment, and a window's statistics are merged
//! from its segments at the end (Chan et al.'s pairwise combination). A segment of many
//! checkpoints keeps a running mean and sum of squared deviations per input element (Welford's
//! update, in `f64`), so no gradient is held after it has been folded in and memory does not grow
//! with the number of checkpoints. A segment of at most [`HOLD`] checkpoints (three checkpoints, or
//! a few per window: the common case) holds its gradients instead and takes the two-pass formula
//! over them at the end: one pass over the gradients and no running statistics to read and write
//! per checkpoint, which is cheaper in memory traffic and exact to the same bits whether a window
//! is scored from them directly or through merged statistics.

use serde::{Deserialize, Serialize};

use crate::{kernels, Error, Floats, Result, Window};

/// How colour (multi-channel) gradients are reduced before the variance is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelReduce {
    /// Average over the channel axis of `[C, H, W]` examples (the paper's choice for images).
    #[default]
    Mean,
    /// Average over the channel axis of channels-last `[H, W, C]` examples.
    MeanLast,
    /// Keep every element as it is.
    None,
}

impl ChannelReduce {
    /// The name used in configuration files and run.json.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelReduce::Mean => "mean",
            ChannelReduce::MeanLast => "mean-last",
            ChannelReduce::None => "none",
        }
    }

    /// Channel count and elements per channel when this reduction applies to examples of
    /// `row_shape`: only `[C, H, W]` (or, for [`ChannelReduce::MeanLast`], `[H, W, C]`) examples
    /// with `C > 1` are averaged.
    pub fn plan(self, row_shape: &[usize]) -> Option<(usize, usize)> {
        match (self, row_shape) {
            (ChannelReduce::Mean, &[c, h, w]) if c > 1 => Some((c, h * w)),
            (ChannelReduce::MeanLast, &[h, w, c]) if c > 1 => Some((c, h * w)),
            _ => None,
        }
    }

    /// Shape of the per-element statistics (the VoG map) for examples of `row_shape`.
    pub fn reduced_shape(self, row_shape: &[usize]) -> Vec<usize> {
        match (self.plan(row_shape), self) {
            (Some(_), ChannelReduce::MeanLast) => row_shape[..2].to_vec(),
            (Some(_), _) => row_shape[1..].to_vec(),
            (None, _) => row_shape.to_vec(),
        }
    }
}

/// Where the channels of a 3-D example are (`[scoring] channel_axis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelAxis {
    /// From the example's shape: `[C, H, W]` when only the first axis is short (at most 4) or
    /// only the first is 3 (RGB), `[H, W, C]` when the same holds for the last axis; otherwise
    /// the run stops and asks.
    #[default]
    Auto,
    /// Channels first, `[C, H, W]` (PyTorch, ONNX exports of it).
    First,
    /// Channels last, `[H, W, C]` (TensorFlow, Keras, JAX/flax).
    Last,
    /// No channel averaging.
    None,
}

impl ChannelAxis {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAxis::Auto => "auto",
            ChannelAxis::First => "first",
            ChannelAxis::Last => "last",
            ChannelAxis::None => "none",
        }
    }

    /// This setting with what the model says about its input: `auto` follows the model's
    /// channel axis where it has one (its first layers read the input channels-first or through a
    /// channels-last transpose); an explicit setting wins.
    pub fn with_model(self, model: Option<ChannelAxis>) -> ChannelAxis {
        match (self, model) {
            (ChannelAxis::Auto, Some(m @ (ChannelAxis::First | ChannelAxis::Last))) => m,
            _ => self,
        }
    }

    /// The reduction for examples of `row_shape` when `reduce` (`[scoring] channels`) asks for
    /// channel averaging. An `auto` axis that the shape does not settle is an error that names
    /// the setting.
    pub fn resolve(self, reduce: ChannelReduce, row_shape: &[usize]) -> Result<ChannelReduce> {
        let short = |d: usize| d <= 4;
        Ok(match (reduce, self) {
            (ChannelReduce::None, _) | (_, ChannelAxis::None) => ChannelReduce::None,
            (ChannelReduce::MeanLast, _) | (_, ChannelAxis::Last) => ChannelReduce::MeanLast,
            (ChannelReduce::Mean, ChannelAxis::First) => ChannelReduce::Mean,
            (ChannelReduce::Mean, ChannelAxis::Auto) => match *row_shape {
                [a, _, c] if a == 1 || (short(a) && !short(c)) => ChannelReduce::Mean,
                [a, _, c] if c == 1 || (short(c) && !short(a)) => ChannelReduce::MeanLast,
                [3, _, c] if c != 3 => ChannelReduce::Mean,
                [a, _, 3] if a != 3 => ChannelReduce::MeanLast,
                [a, b, c] => {
                    return Err(Error::Config(format!(
                        "scoring.channel_axis: examples shaped [{a}, {b}, {c}] do not say where their \
                         colour channels are; set channel_axis = \"first\" ([C, H, W]), \"last\" ([H, W, C]) \
                         or \"none\" (no channel averaging)"
                    )))
                }
                _ => ChannelReduce::Mean,
            },
        })
    }
}

/// Running statistics of one value: count, mean and sum of squared deviations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Number of values seen.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// Folds in one value (Welford).
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Combines two disjoint sets of values (Chan et al.).
    pub fn merge(self, other: Moments) -> Moments {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        let (na, nb, n) = (self.count as f64, other.count as f64, count as f64);
        Moments {
            count,
            mean: self.mean + delta * nb / n,
            m2: self.m2 + other.m2 + delta * delta * na * nb / n,
        }
    }

    /// Population variance (divides by the count); 0 for an empty set.
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0)
        }
    }

    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }
}

/// VoG statistics for one batch of examples across all checkpoints and windows.
///
/// ```
/// use vog_core::{ChannelReduce, VogAccumulator, Window};
///
/// // Two checkpoints, one example of two elements: gradients (1, 4) then (3, 4).
/// let windows = vec![Window { name: "all".into(), start: 0, end: 2 }];
/// let mut acc = VogAccumulator::new(&[2], &windows, 2, ChannelReduce::Mean)?;
/// acc.reset(1);
/// acc.add(0, &[1.0, 4.0])?;
/// acc.add(1, &[3.0, 4.0])?;
/// // Population std per element: (1, 0); VoG is their mean.
/// assert_eq!(acc.scores()?, vec![0.5]);
/// # Ok::<(), vog_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VogAccumulator {
    row_shape: Vec<usize>,
    row_len: usize,
    channels: Option<(usize, usize)>,
    /// Whether the channels are the last axis (`[H, W, C]`).
    channels_last: bool,
    elems: usize,
    num_checkpoints: usize,
    segment_of: Vec<usize>,
    /// Segment ids making up each window.
    window_segments: Vec<Vec<usize>>,
    num_segments: usize,
    rows: usize,
    seen: Vec<bool>,
    /// Per segment: whether it holds its gradients (at most [`HOLD`] checkpoints).
    holds: Vec<bool>,
    /// Per segment: checkpoints folded into the running statistics so far.
    counts: Vec<u64>,
    /// `[segment][row][elem]`, allocated on first use.
    mean: Vec<f64>,
    /// `[segment][row][elem]`.
    m2: Vec<f64>,
    /// Per holding segment: gradients not folded yet, `[row][elem]` each (as given, or channel
    /// means in `f64`).
    pending: Vec<Vec<Rows>>,
    /// Buffers of folded gradients, for reuse.
    spare: Vec<Rows>,
    /// One row's group statistics.
    scratch: (Vec<f64>, Vec<f64>),
}

/// Segments of at most this many checkpoints hold their gradients until the batch is scored.
pub const HOLD: usize = 4;

/// One checkpoint's gradients for a batch, `[row][elem]`.
#[derive(Debug, Clone)]
enum Rows {
    /// As the backend gave them (lent by it, or in a recycled buffer).
    F32(Floats),
    /// Channel means.
    F64(Vec<f64>),
}

impl VogAccumulator {
    /// Prepares statistics for examples of `row_shape`, `num_checkpoints` checkpoints and the
    /// given windows (positions in training order).
    pub fn new(
        row_shape: &[usize],
        windows: &[Window],
        num_checkpoints: usize,
        reduce: ChannelReduce,
    ) -> Result<Self> {
        if num_checkpoints < 2 {
            return Err(Error::Invalid(format!(
                "VoG needs at least 2 checkpoints, got {num_checkpoints}"
            )));
        }
        if windows.is_empty() {
            return Err(Error::Invalid("no window to score".into()));
        }
        for w in windows {
            if w.end > num_checkpoints || w.len() < 2 {
                return Err(Error::Invalid(format!(
                    "window `{}` = [{}, {}) does not fit {num_checkpoints} checkpoints",
                    w.name, w.start, w.end
                )));
            }
        }
        // Cut the checkpoint axis at every window boundary.
        let mut cuts: Vec<usize> = windows.iter().flat_map(|w| [w.start, w.end]).collect();
        cuts.extend([0, num_checkpoints]);
        cuts.sort_unstable();
        cuts.dedup();
        let mut segment_of = vec![0; num_checkpoints];
        for (seg, pair) in cuts.windows(2).enumerate() {
            for s in &mut segment_of[pair[0]..pair[1]] {
                *s = seg;
            }
        }
        let num_segments = cuts.len() - 1;
        let window_segments = windows
            .iter()
            .map(|w| {
                let mut segs: Vec<usize> = segment_of[w.start..w.end].to_vec();
                segs.dedup();
                segs
            })
            .collect();
        let holds = cuts.windows(2).map(|p| p[1] - p[0] <= HOLD).collect();
        let row_len = row_shape.iter().product();
        let channels = reduce.plan(row_shape);
        let elems = channels.map_or(row_len, |(_, hw)| hw);
        Ok(VogAccumulator {
            row_shape: row_shape.to_vec(),
            row_len,
            channels,
            channels_last: reduce == ChannelReduce::MeanLast,
            elems,
            num_checkpoints,
            segment_of,
            window_segments,
            num_segments,
            rows: 0,
            seen: vec![false; num_checkpoints],
            holds,
            counts: vec![0; num_segments],
            mean: Vec::new(),
            m2: Vec::new(),
            pending: vec![Vec::new(); num_segments],
            spare: Vec::new(),
            scratch: (vec![0.0; elems], vec![0.0; elems]),
        })
    }

    /// Number of elements per example after channel reduction (the VoG map size).
    pub fn elements(&self) -> usize {
        self.elems
    }

    /// The shape of one gradient row this accumulator takes.
    pub fn row_shape(&self) -> &[usize] {
        &self.row_shape
    }

    /// Bytes one example takes at most: running statistics (mean and sum of squares, `f64`, per
    /// element and window segment) and the gradients held by short segments.
    pub fn bytes_per_row(&self) -> usize {
        let per_value = if self.channels.is_some() { 8 } else { 4 };
        self.num_segments * self.elems * 16 + self.max_held() * self.elems * per_value
    }

    /// The most gradients of a batch held at once: every checkpoint of a holding segment.
    fn max_held(&self) -> usize {
        self.segment_of
            .iter()
            .filter(|&&seg| self.holds[seg])
            .count()
    }

    /// Number of windows scored.
    pub fn num_windows(&self) -> usize {
        self.window_segments.len()
    }

    /// Starts a new batch of `rows` examples, reusing the buffers (a segment's first checkpoint
    /// overwrites them, so they need no clearing).
    pub fn reset(&mut self, rows: usize) {
        self.rows = rows;
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.seen.iter_mut().for_each(|s| *s = false);
        for seg in 0..self.num_segments {
            self.recycle(seg);
        }
    }

    /// Keeps segment `seg`'s held buffers for reuse (no more than can be held at once); lent
    /// gradients go back to their owner now.
    fn recycle(&mut self, seg: usize) {
        self.pending[seg].retain(|r| !matches!(r, Rows::F32(f) if f.is_lent()));
        self.spare.append(&mut self.pending[seg]);
        self.spare.truncate(self.max_held());
    }

    /// Folds in the gradients of checkpoint `checkpoint` (its position in training order) for the
    /// whole batch: `rows × row_len` values, row-major. Each checkpoint is added once per batch.
    pub fn add(&mut self, checkpoint: usize, gradient: &[f32]) -> Result<()> {
        let seg = self.check_add(checkpoint, gradient.len())?;
        if !self.holds[seg] {
            self.update(seg, gradient);
            return Ok(());
        }
        let rows = match self.channels {
            None => {
                let mut buf = self.spare_f32();
                buf.clear();
                buf.extend_from_slice(gradient);
                Rows::F32(buf.into())
            }
            Some(_) => self.reduce(gradient),
        };
        self.pending[seg].push(rows);
        Ok(())
    }

    /// [`add`](Self::add), taking the buffer (held without a copy where the segment holds; a
    /// lent buffer goes back to its owner when the batch is scored).
    pub fn add_owned(&mut self, checkpoint: usize, gradient: impl Into<Floats>) -> Result<()> {
        let gradient = gradient.into();
        let seg = self.check_add(checkpoint, gradient.len())?;
        if !self.holds[seg] {
            self.update(seg, &gradient);
            return Ok(());
        }
        let rows = match self.channels {
            None => Rows::F32(gradient),
            Some(_) => self.reduce(&gradient),
        };
        self.pending[seg].push(rows);
        Ok(())
    }

    /// Checks an added gradient, marks its checkpoint seen and returns its segment.
    fn check_add(&mut self, checkpoint: usize, len: usize) -> Result<usize> {
        if checkpoint >= self.num_checkpoints {
            return Err(Error::Invalid(format!(
                "checkpoint position {checkpoint} out of range ({} checkpoints)",
                self.num_checkpoints
            )));
        }
        if self.seen[checkpoint] {
            return Err(Error::Invalid(format!(
                "checkpoint {checkpoint} added twice to one batch"
            )));
        }
        if len != self.rows * self.row_len {
            return Err(Error::Shape(format!(
                "gradient has {len} values, expected {} rows × {} elements",
                self.rows, self.row_len
            )));
        }
        self.seen[checkpoint] = true;
        Ok(self.segment_of[checkpoint])
    }

    /// Makes room for the running statistics of every segment.
    fn ensure_state(&mut self) {
        let n = self.num_segments * self.rows * self.elems;
        if self.mean.len() < n {
            self.mean.resize(n, 0.0);
            self.m2.resize(n, 0.0);
        }
    }

    /// Welford's update of segment `seg`'s running statistics with one checkpoint's gradients.
    fn update(&mut self, seg: usize, gradient: &[f32]) {
        self.ensure_state();
        self.counts[seg] += 1;
        let first = self.counts[seg] == 1;
        let inv = 1.0 / self.counts[seg] as f64;
        let base = seg * self.rows * self.elems;
        let n = self.rows * self.elems;
        let (means, m2s) = (&mut self.mean[base..base + n], &mut self.m2[base..base + n]);
        for ((g, mean), m2) in gradient
            .chunks_exact(self.row_len)
            .zip(means.chunks_exact_mut(self.elems))
            .zip(m2s.chunks_exact_mut(self.elems))
        {
            match self.channels {
                None if first => kernels::first_f32(mean, m2, g),
                None => kernels::update_f32(mean, m2, g, inv),
                Some((c, _)) => {
                    let acc = &mut self.scratch.0;
                    if self.channels_last {
                        kernels::channel_mean_last(acc, g, c);
                    } else {
                        kernels::channel_mean(acc, g, c, 1.0 / c as f64);
                    }
                    if first {
                        kernels::first_f64(mean, m2, acc);
                    } else {
                        kernels::update_f64(mean, m2, acc, inv);
                    }
                }
            }
        }
    }

    fn spare_f32(&mut self) -> Vec<f32> {
        match self.spare.iter().position(|r| matches!(r, Rows::F32(_))) {
            Some(i) => match self.spare.swap_remove(i) {
                // A lent buffer went back to its owner; start a new one.
                Rows::F32(v) => v.into_owned().unwrap_or_default(),
                Rows::F64(_) => unreachable!("matched above"),
            },
            None => Vec::new(),
        }
    }

    /// The channel means of a batch's gradients, row by row.
    fn reduce(&mut self, gradient: &[f32]) -> Rows {
        let c = self.channels.map_or(1, |(c, _)| c);
        let mut buf = match self.spare.iter().position(|r| matches!(r, Rows::F64(_))) {
            Some(i) => match self.spare.swap_remove(i) {
                Rows::F64(v) => v,
                Rows::F32(_) => unreachable!("matched above"),
            },
            None => Vec::new(),
        };
        buf.resize(self.rows * self.elems, 0.0);
        for (out, g) in buf
            .chunks_exact_mut(self.elems)
            .zip(gradient.chunks_exact(self.row_len))
        {
            if self.channels_last {
                kernels::channel_mean_last(out, g, c);
            } else {
                kernels::channel_mean(out, g, c, 1.0 / c as f64);
            }
        }
        Rows::F64(buf)
    }

    /// The two-pass statistics of segment `seg`'s held gradients for one row, into `mean` and
    /// `m2`; returns 1 / (gradients held).
    fn group_row(&self, seg: usize, row: usize, mean: &mut [f64], m2: &mut [f64]) -> f64 {
        let span = row * self.elems..(row + 1) * self.elems;
        let held = &self.pending[seg];
        let inv = 1.0 / held.len() as f64;
        match held.first() {
            Some(Rows::F32(_)) => {
                let xs: Vec<&[f32]> = held
                    .iter()
                    .map(|r| match r {
                        Rows::F32(v) => &v[span.clone()],
                        Rows::F64(_) => unreachable!("one kind per accumulator"),
                    })
                    .collect();
                kernels::group_f32(mean, m2, &xs, inv);
            }
            Some(Rows::F64(_)) => {
                let xs: Vec<&[f64]> = held
                    .iter()
                    .map(|r| match r {
                        Rows::F64(v) => &v[span.clone()],
                        Rows::F32(_) => unreachable!("one kind per accumulator"),
                    })
                    .collect();
                kernels::group_f64(mean, m2, &xs, inv);
            }
            None => {}
        }
        inv
    }

    /// Folds every held gradient into its segment's running statistics.
    fn settle(&mut self) {
        self.ensure_state();
        let (e, rows) = (self.elems, self.rows);
        for seg in 0..self.num_segments {
            if self.pending[seg].is_empty() {
                continue;
            }
            let base = seg * rows * e;
            let mut mean = std::mem::take(&mut self.mean);
            let mut m2 = std::mem::take(&mut self.m2);
            for row in 0..rows {
                let at = base + row * e;
                self.group_row(seg, row, &mut mean[at..at + e], &mut m2[at..at + e]);
            }
            (self.mean, self.m2) = (mean, m2);
            self.counts[seg] = self.pending[seg].len() as u64;
            self.recycle(seg);
        }
    }

    fn check_complete(&self) -> Result<()> {
        match self.seen.iter().position(|s| !s) {
            None => Ok(()),
            Some(k) => Err(Error::Invalid(format!(
                "checkpoint {k} was not added to this batch"
            ))),
        }
    }

    /// The running statistics of one example over a window's checkpoints (every segment
    /// folded), merged from its segments into `mean` and `m2`; returns 1 / (checkpoints in the
    /// window).
    fn window_stats(&self, window: usize, row: usize, mean: &mut [f64], m2: &mut [f64]) -> f64 {
        let e = self.elems;
        let mut count = 0u64;
        for (i, &seg) in self.window_segments[window].iter().enumerate() {
            let at = (seg * self.rows + row) * e;
            let (mb, sb) = (&self.mean[at..at + e], &self.m2[at..at + e]);
            let nb = self.counts[seg];
            if i == 0 {
                mean.copy_from_slice(mb);
                m2.copy_from_slice(sb);
            } else {
                let (na, nbf) = (count as f64, nb as f64);
                let n = na + nbf;
                kernels::merge(mean, m2, mb, sb, nbf / n, na * nbf / n);
            }
            count += nb;
        }
        1.0 / count as f64
    }

    /// VoG of every example in every window, row-major `[row][window]`: the mean over elements of
    /// the population standard deviation across the window's checkpoints.
    pub fn scores(&mut self) -> Result<Vec<f64>> {
        self.check_complete()?;
        let w = self.num_windows();
        let e = self.elems;
        let mut out = vec![0.0; self.rows * w];
        // A window of one holding segment is scored straight from the held gradients (settling
        // them first would give the same bits through more memory traffic).
        let mut direct = vec![false; w];
        let (mut mean, mut m2) = std::mem::take(&mut self.scratch);
        for (win, d) in direct.iter_mut().enumerate() {
            if let [seg] = self.window_segments[win][..] {
                if !self.pending[seg].is_empty() {
                    *d = true;
                    for row in 0..self.rows {
                        let inv = self.group_row(seg, row, &mut mean, &mut m2);
                        out[row * w + win] = kernels::sum_std(&m2, inv) / e as f64;
                    }
                }
            }
        }
        if direct.iter().all(|&d| d) {
            self.scratch = (mean, m2);
            return Ok(out);
        }
        self.settle();
        for win in (0..w).filter(|&win| !direct[win]) {
            let single = match self.window_segments[win][..] {
                [seg] => Some(seg),
                _ => None,
            };
            for row in 0..self.rows {
                let sum = match single {
                    Some(seg) => {
                        let at = (seg * self.rows + row) * e;
                        kernels::sum_std(&self.m2[at..at + e], 1.0 / self.counts[seg] as f64)
                    }
                    None => {
                        let inv = self.window_stats(win, row, &mut mean, &mut m2);
                        kernels::sum_std(&m2, inv)
                    }
                };
                out[row * w + win] = sum / e as f64;
            }
        }
        self.scratch = (mean, m2);
        Ok(out)
    }

    /// The per-element standard deviation (before averaging) of one example in one window: the
    /// VoG map, with channels reduced as configured.
    pub fn vog_map(&mut self, row: usize, window: usize) -> Result<Vec<f64>> {
        self.check_complete()?;
        if row >= self.rows || window >= self.num_windows() {
            return Err(Error::Invalid(format!(
                "no row {row} / window {window} in this batch"
            )));
        }
        self.settle();
        let (mut mean, mut m2) = (vec![0.0; self.elems], vec![0.0; self.elems]);
        let inv = self.window_stats(window, row, &mut mean, &mut m2);
        Ok(m2.iter().map(|&s| (s * inv).max(0.0).sqrt()).collect())
    }
}

/// The textbook two-pass formula, for tests: `grads[k][i]` is element `i` at checkpoint `k`.
#[cfg(test)]
pub(crate) fn reference_vog(grads: &[Vec<f64>]) -> f64 {
    let k = grads.len() as f64;
    let d = grads[0].len();
    (0..d)
        .map(|i| {
            let mu = grads.iter().map(|g| g[i]).sum::<f64>() / k;
            (grads.iter().map(|g| (g[i] - mu).powi(2)).sum::<f64>() / k).sqrt()
        })
        .sum::<f64>()
        / d as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-0.5, 0.5).
    fn lcg(r: &mut crate::Lcg) -> f32 {
        r.unit_f32() - 0.5
    }

    fn window(name: &str, start: usize, end: usize) -> Window {
        Window {
            name: name.into(),
            start,
            end,
        }
    }

    #[test]
    fn moments_merge_equals_sequential() {
        let xs = [1.0, 5.0, -2.0, 3.5, 8.0, 0.25, 4.0];
        let mut all = Moments::default();
        xs.iter().for_each(|&x| all.push(x));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        xs[..3].iter().for_each(|&x| a.push(x));
        xs[3..].iter().for_each(|&x| b.push(x));
        let merged = a.merge(b);
        assert_eq!(merged.count, all.count);
        assert!((merged.mean - all.mean).abs() < 1e-12);
        assert!((merged.m2 - all.m2).abs() < 1e-9);
    }

    #[test]
    fn windows_match_two_pass_formula_with_channel_mean() {
        let (rows, k, shape) = (3usize, 7usize, [3usize, 2, 2]);
        let windows = vec![
            window("all", 0, 7),
            window("early", 0, 3),
            window("middle", 3, 5),
            window("late", 5, 7),
            window("odd", 2, 6),
        ];
        let mut acc = VogAccumulator::new(&shape, &windows, k, ChannelReduce::Mean).unwrap();
        acc.reset(rows);
        let mut seed = crate::Lcg::new(7);
        let grads: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..rows * 12).map(|_| lcg(&mut seed)).collect())
            .collect();
        // Checkpoints may arrive in any order.
        for &c in &[6, 0, 1, 2, 3, 4, 5] {
            acc.add(c, &grads[c]).unwrap();
        }
        let scores = acc.scores().unwrap();
        for row in 0..rows {
            for (wi, w) in windows.iter().enumerate() {
                let per_ckpt: Vec<Vec<f64>> = (w.start..w.end)
                    .map(|c| {
                        let g = &grads[c][row * 12..(row + 1) * 12];
                        (0..4)
                            .map(|p| (0..3).map(|ch| f64::from(g[ch * 4 + p])).sum::<f64>() / 3.0)
                            .collect()
                    })
                    .collect();
                let expected = reference_vog(&per_ckpt);
                let got = scores[row * windows.len() + wi];
                assert!(
                    (got - expected).abs() < 1e-12,
                    "row {row} {}: {got} vs {expected}",
                    w.name
                );
            }
        }
        assert_eq!(acc.vog_map(1, 0).unwrap().len(), 4);
    }

    #[test]
    fn held_and_running_segments_merge() {
        // 11 checkpoints cut into segments of 3 and 2 (held, two-pass) and 6 (running
        // statistics); "all" merges the three.
        let (rows, k) = (2usize, 11usize);
        let windows = vec![
            window("all", 0, 11),
            window("early", 0, 3),
            window("middle", 3, 9),
            window("late", 9, 11),
        ];
        let mut seed = crate::Lcg::new(3);
        let grads: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..rows * 5).map(|_| lcg(&mut seed) * 1e-3).collect())
            .collect();
        let released = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for how in ["copied", "owned", "lent"] {
            let mut acc = VogAccumulator::new(&[5], &windows, k, ChannelReduce::Mean).unwrap();
            acc.reset(rows);
            for (c, g) in grads.iter().enumerate() {
                match how {
                    "copied" => acc.add(c, g).unwrap(),
                    "owned" => acc.add_owned(c, g.clone()).unwrap(),
                    _ => {
                        let buf = g.clone().into_boxed_slice();
                        let (ptr, len) = (buf.as_ptr(), buf.len());
                        let r = released.clone();
                        // SAFETY: `buf` lives in the release closure until it runs.
                        let lent = unsafe {
                            Floats::lent(ptr, len, move || {
                                drop(buf);
                                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            })
                        };
                        acc.add_owned(c, lent).unwrap();
                    }
                }
            }
            let scores = acc.scores().unwrap();
            if how == "lent" {
                // Held gradients go back when the next batch starts, the others at once.
                acc.reset(rows);
                assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), k);
            }
            for row in 0..rows {
                for (wi, w) in windows.iter().enumerate() {
                    let per_ckpt: Vec<Vec<f64>> = (w.start..w.end)
                        .map(|c| {
                            grads[c][row * 5..(row + 1) * 5]
                                .iter()
                                .map(|&v| v.into())
                                .collect()
                        })
                        .collect();
                    let expected = reference_vog(&per_ckpt);
                    let got = scores[row * windows.len() + wi];
                    assert!(
                        (got - expected).abs() <= 1e-12 * expected,
                        "{got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn held_and_folded_gradients_give_the_same_bits() {
        // Few checkpoints are scored straight from the held gradients; asking for a map first
        // folds them into running statistics. Both routes must agree exactly.
        let (rows, k) = (3usize, 3usize);
        let windows = vec![window("all", 0, 3)];
        let mut seed = crate::Lcg::new(5);
        let grads: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..rows * 12).map(|_| lcg(&mut seed)).collect())
            .collect();
        let run = |map_first: bool| {
            let mut acc =
                VogAccumulator::new(&[3, 2, 2], &windows, k, ChannelReduce::Mean).unwrap();
            acc.reset(rows);
            for (c, g) in grads.iter().enumerate() {
                acc.add(c, g).unwrap();
            }
            if map_first {
                acc.vog_map(0, 0).unwrap();
            }
            acc.scores().unwrap()
        };
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(run(false)), bits(run(true)));
    }

    #[test]
    fn channels_last_give_the_same_vog_as_channels_first() {
        // The same gradients laid out [C, H, W] and [H, W, C]: identical VoG, to the bit.
        let windows = vec![Window {
            name: "all".into(),
            start: 0,
            end: 3,
        }];
        let (c, h, w) = (3usize, 2usize, 2usize);
        let first: Vec<Vec<f32>> = (0..3)
            .map(|k| {
                (0..c * h * w)
                    .map(|i| ((i * 7 + k * 5) % 11) as f32 - 4.5)
                    .collect()
            })
            .collect();
        let last: Vec<Vec<f32>> = first
            .iter()
            .map(|g| {
                (0..h * w)
                    .flat_map(|px| (0..c).map(move |ch| g[ch * h * w + px]))
                    .collect()
            })
            .collect();
        let mut a = VogAccumulator::new(&[c, h, w], &windows, 3, ChannelReduce::Mean).unwrap();
        let mut b = VogAccumulator::new(&[h, w, c], &windows, 3, ChannelReduce::MeanLast).unwrap();
        a.reset(1);
        b.reset(1);
        for k in 0..3 {
            a.add(k, &first[k]).unwrap();
            b.add(k, &last[k]).unwrap();
        }
        assert_eq!(a.elements(), h * w);
        assert_eq!(b.elements(), h * w);
        assert_eq!(a.vog_map(0, 0).unwrap(), b.vog_map(0, 0).unwrap());
        assert_eq!(
            ChannelReduce::MeanLast.reduced_shape(&[h, w, c]),
            vec![h, w]
        );
    }

    #[test]
    fn the_channel_axis_follows_the_shape_or_asks() {
        use ChannelReduce::{Mean, MeanLast};
        let auto = |s: &[usize]| ChannelAxis::Auto.resolve(Mean, s);
        assert_eq!(auto(&[3, 32, 32]).unwrap(), Mean);
        assert_eq!(auto(&[1, 28, 28]).unwrap(), Mean);
        assert_eq!(auto(&[32, 32, 3]).unwrap(), MeanLast);
        assert_eq!(auto(&[28, 28, 1]).unwrap(), MeanLast);
        assert_eq!(auto(&[784]).unwrap(), Mean);
        assert_eq!(auto(&[3, 4, 4]).unwrap(), Mean);
        assert_eq!(auto(&[4, 4, 3]).unwrap(), MeanLast);
        for ambiguous in [[3, 4, 3], [16, 32, 32], [2, 2, 2]] {
            let e = auto(&ambiguous).unwrap_err().to_string();
            assert!(e.contains("channel_axis") && e.contains("\"last\""), "{e}");
        }
        assert_eq!(
            ChannelAxis::Last.resolve(Mean, &[3, 4, 3]).unwrap(),
            MeanLast
        );
        assert_eq!(ChannelAxis::First.resolve(Mean, &[3, 4, 3]).unwrap(), Mean);
        assert_eq!(
            ChannelAxis::None.resolve(Mean, &[3, 4, 3]).unwrap(),
            ChannelReduce::None
        );
        assert_eq!(
            ChannelAxis::Auto
                .resolve(ChannelReduce::None, &[3, 4, 3])
                .unwrap(),
            ChannelReduce::None
        );
    }

    #[test]
    fn channel_mean_can_be_disabled() {
        let windows = vec![window("all", 0, 2)];
        let mut acc = VogAccumulator::new(&[2, 1, 1], &windows, 2, ChannelReduce::None).unwrap();
        acc.reset(1);
        acc.add(0, &[1.0, -1.0]).unwrap();
        acc.add(1, &[-1.0, 1.0]).unwrap();
        // Per channel std = 1 each; averaging channels first would give 0.
        assert_eq!(acc.scores().unwrap(), vec![1.0]);
        let mut mean = VogAccumulator::new(&[2, 1, 1], &windows, 2, ChannelReduce::Mean).unwrap();
        mean.reset(1);
        mean.add(0, &[1.0, -1.0]).unwrap();
        mean.add(1, &[-1.0, 1.0]).unwrap();
        assert_eq!(mean.scores().unwrap(), vec![0.0]);
    }

    #[test]
    fn missing_or_repeated_checkpoints_are_errors() {
        let windows = vec![window("all", 0, 3)];
        let mut acc = VogAccumulator::new(&[1], &windows, 3, ChannelReduce::Mean).unwrap();
        acc.reset(1);
        acc.add(0, &[1.0]).unwrap();
        assert!(acc.add(0, &[1.0]).is_err());
        acc.add(2, &[1.0]).unwrap();
        assert!(acc.scores().is_err());
        assert!(acc.add(1, &[1.0, 2.0]).is_err());
    }

    #[test]
    fn large_offset_does_not_cancel() {
        // Gradients with a large common offset and a tiny spread: naive sum-of-squares in f32
        // would lose the spread entirely.
        let windows = vec![window("all", 0, 4)];
        let mut acc = VogAccumulator::new(&[1], &windows, 4, ChannelReduce::Mean).unwrap();
        acc.reset(1);
        for (c, v) in [1000.0f32, 1000.001, 999.999, 1000.0].iter().enumerate() {
            acc.add(c, &[*v]).unwrap();
        }
        let expected = reference_vog(&[
            vec![1000.0f32 as f64],
            vec![1000.001f32 as f64],
            vec![999.999f32 as f64],
            vec![1000.0f32 as f64],
        ]);
        let got = acc.scores().unwrap()[0];
        assert!(
            (got - expected).abs() / expected < 1e-9,
            "{got} vs {expected}"
        );
    }
}
