//! Per-checkpoint outputs and the streaming reducers that turn them into per-example scores.
//!
//! The engine turns each checkpoint's logits into [`RowOutcome`]s (predicted class, loss, margin,
//! correctness) and hands them, checkpoint by checkpoint in training order, to every [`Reducer`].
//! A reducer keeps state for the current batch only and emits its columns when the batch ends, so
//! nothing holds the logits of all examples for all checkpoints. New difficulty scores are new
//! reducers; the engine does not change.

/// What one checkpoint says about one example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowOutcome {
    /// Argmax of the logits (first maximum on ties).
    pub predicted: u32,
    /// The reference class: the true label when known, otherwise the label used for scoring.
    pub reference: u32,
    /// Cross-entropy of the logits against the reference class (natural log).
    pub loss: f64,
    /// Softmax probability of the reference class.
    pub probability: f64,
    /// Reference logit minus the largest other logit (area-under-the-margin's per-step margin).
    pub margin: f64,
    /// Whether the prediction equals the true label; `None` without true labels.
    pub correct: Option<bool>,
}

/// The share of rows whose argmax (first maximum on ties) is the label: `logits` holds
/// `labels.len()` rows of `classes` values.
pub fn accuracy(logits: &[f32], classes: usize, labels: &[u32]) -> f64 {
    let hits = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &label)| RowOutcome::from_logits(row, 0, None).predicted == label)
        .count();
    hits as f64 / labels.len() as f64
}

impl RowOutcome {
    /// Derives the outcome of one row from its logits.
    pub fn from_logits(logits: &[f32], reference: u32, true_label: Option<u32>) -> Self {
        let r = reference as usize;
        let mut predicted = 0usize;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[predicted] {
                predicted = i;
            }
        }
        let max = f64::from(logits[predicted]);
        let log_sum_exp = max
            + logits
                .iter()
                .map(|&v| (f64::from(v) - max).exp())
                .sum::<f64>()
                .ln();
        let ref_logit = f64::from(logits[r]);
        let other = logits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != r)
            .map(|(_, &v)| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        RowOutcome {
            predicted: predicted as u32,
            reference,
            loss: log_sum_exp - ref_logit,
            probability: (ref_logit - log_sum_exp).exp(),
            margin: if other.is_finite() {
                ref_logit - other
            } else {
                0.0
            },
            correct: true_label.map(|t| t as usize == predicted),
        }
    }
}

/// One checkpoint's view of the current batch, handed to reducers.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointOutcomes<'a> {
    /// Position of the checkpoint in training order.
    pub checkpoint: usize,
    /// Number of checkpoints in the run.
    pub num_checkpoints: usize,
    /// Raw logits, `[rows, num_classes]`.
    pub logits: &'a [f32],
    /// Columns of `logits`.
    pub num_classes: usize,
    /// Derived per-row outcomes.
    pub rows: &'a [RowOutcome],
}

/// A streaming per-example score computed from per-checkpoint outcomes.
pub trait Reducer: Send {
    /// Names of the columns this reducer emits, in order.
    fn columns(&self) -> Vec<String>;
    /// Starts a batch of `rows` examples.
    fn begin_batch(&mut self, rows: usize);
    /// Sees one checkpoint; called in training order, once per checkpoint per batch.
    fn observe(&mut self, outcomes: &CheckpointOutcomes<'_>);
    /// Appends `rows × columns` values, row-major, for the batch just finished. `NaN` means
    /// "not defined for this example" (for instance correctness without labels).
    fn finish_batch(&mut self, out: &mut Vec<f64>);
}

/// Mean over checkpoints of the reference-class margin (area under the margin).
#[derive(Debug, Default)]
pub struct MeanMargin {
    sum: Vec<f64>,
    seen: usize,
}

impl Reducer for MeanMargin {
    fn columns(&self) -> Vec<String> {
        vec!["margin_mean".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.sum = vec![0.0; rows];
        self.seen = 0;
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        for (s, r) in self.sum.iter_mut().zip(o.rows) {
            *s += r.margin;
        }
        self.seen += 1;
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        let n = self.seen.max(1) as f64;
        out.extend(self.sum.iter().map(|s| s / n));
    }
}

/// Loss against the reference class at the last checkpoint.
#[derive(Debug, Default)]
pub struct LastLoss {
    last: Vec<f64>,
}

impl Reducer for LastLoss {
    fn columns(&self) -> Vec<String> {
        vec!["loss_last".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.last = vec![f64::NAN; rows];
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        if o.checkpoint + 1 == o.num_checkpoints {
            self.last = o.rows.iter().map(|r| r.loss).collect();
        }
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        out.append(&mut self.last);
    }
}

/// Fraction of checkpoints that classify the example correctly (needs true labels).
#[derive(Debug, Default)]
pub struct CorrectRatio {
    correct: Vec<f64>,
    known: Vec<bool>,
    seen: usize,
}

impl Reducer for CorrectRatio {
    fn columns(&self) -> Vec<String> {
        vec!["correct_ratio".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.correct = vec![0.0; rows];
        self.known = vec![true; rows];
        self.seen = 0;
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        for ((c, k), r) in self.correct.iter_mut().zip(&mut self.known).zip(o.rows) {
            match r.correct {
                Some(true) => *c += 1.0,
                Some(false) => {}
                None => *k = false,
            }
        }
        self.seen += 1;
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        let n = self.seen.max(1) as f64;
        out.extend(
            self.correct
                .iter()
                .zip(&self.known)
                .map(|(&c, &k)| if k { c / n } else { f64::NAN }),
        );
    }
}

/// Data-maps confidence and variability (Swayamdipta et al., 2020): the mean and the population
/// standard deviation, over checkpoints, of the softmax probability of the reference class.
#[derive(Debug, Default)]
pub struct Confidence {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    seen: usize,
}

impl Reducer for Confidence {
    fn columns(&self) -> Vec<String> {
        vec!["confidence".into(), "variability".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.sum = vec![0.0; rows];
        self.sum_sq = vec![0.0; rows];
        self.seen = 0;
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        for ((s, q), r) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(o.rows) {
            *s += r.probability;
            *q += r.probability * r.probability;
        }
        self.seen += 1;
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        let n = self.seen.max(1) as f64;
        for (s, q) in self.sum.iter().zip(&self.sum_sq) {
            let mean = s / n;
            // Probabilities lie in [0, 1]: the one-pass variance loses nothing that matters here,
            // and is clamped against rounding below zero.
            let var = (q / n - mean * mean).max(0.0);
            out.push(mean);
            out.push(var.sqrt());
        }
    }
}

/// Forgetting events (Toneva et al., 2019): how often an example goes from correctly to
/// incorrectly classified between consecutive checkpoints (needs true labels).
#[derive(Debug, Default)]
pub struct Forgetting {
    events: Vec<f64>,
    was_correct: Vec<Option<bool>>,
    known: Vec<bool>,
}

impl Reducer for Forgetting {
    fn columns(&self) -> Vec<String> {
        vec!["forgetting".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.events = vec![0.0; rows];
        self.was_correct = vec![None; rows];
        self.known = vec![true; rows];
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        for (((e, was), k), r) in self
            .events
            .iter_mut()
            .zip(&mut self.was_correct)
            .zip(&mut self.known)
            .zip(o.rows)
        {
            match r.correct {
                None => *k = false,
                Some(now) => {
                    if *was == Some(true) && !now {
                        *e += 1.0;
                    }
                    *was = Some(now);
                }
            }
        }
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        out.extend(
            self.events
                .iter()
                .zip(&self.known)
                .map(|(&e, &k)| if k { e } else { f64::NAN }),
        );
    }
}

/// EL2N (Paul et al., 2021): the L2 norm of softmax(logits) minus the reference class's one-hot
/// vector, at one checkpoint (0-based position; the last one when the run has fewer).
#[derive(Debug)]
pub struct El2n {
    at: usize,
    value: Vec<f64>,
}

impl El2n {
    /// EL2N at checkpoint position `at` (0-based, in training order).
    pub fn at(at: usize) -> Self {
        El2n {
            at,
            value: Vec::new(),
        }
    }
}

impl Reducer for El2n {
    fn columns(&self) -> Vec<String> {
        vec!["el2n".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.value = vec![f64::NAN; rows];
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        if o.checkpoint != self.at.min(o.num_checkpoints.saturating_sub(1)) {
            return;
        }
        let c = o.num_classes;
        for ((v, row), r) in self
            .value
            .iter_mut()
            .zip(o.logits.chunks_exact(c))
            .zip(o.rows)
        {
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let z: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
            let sq: f64 = row
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let p = (f64::from(x) - max).exp() / z;
                    let t = if i == r.reference as usize { 1.0 } else { 0.0 };
                    (p - t) * (p - t)
                })
                .sum();
            *v = sq.sqrt();
        }
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        out.append(&mut self.value);
    }
}

/// Label-free uncertainty of the last checkpoint's softmax, higher meaning less certain:
/// `msp_last` (one minus the maximum softmax probability), `margin_last` (the top-2 probability
/// minus the top-1 one, so the negated probability margin) and `entropy_last` (natural log).
/// None of them needs a label; they rank test-time data by how unsure the final model is.
#[derive(Debug, Default)]
pub struct LastUncertainty {
    values: Vec<[f64; 3]>,
}

impl LastUncertainty {
    /// `[1 - p_max, p_second - p_max, entropy]` of one row of logits.
    pub fn of(logits: &[f32]) -> [f64; 3] {
        let max = logits
            .iter()
            .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        let z: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
        let log_z = z.ln();
        let (mut first, mut second, mut entropy) = (0.0f64, 0.0f64, 0.0f64);
        for &x in logits {
            let log_p = f64::from(x) - max - log_z;
            let p = log_p.exp();
            if p > first {
                second = first;
                first = p;
            } else if p > second {
                second = p;
            }
            entropy -= p * log_p;
        }
        [1.0 - first, second - first, entropy]
    }
}

impl Reducer for LastUncertainty {
    fn columns(&self) -> Vec<String> {
        vec![
            "msp_last".into(),
            "margin_last".into(),
            "entropy_last".into(),
        ]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.values = vec![[f64::NAN; 3]; rows];
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        if o.checkpoint + 1 == o.num_checkpoints {
            for (v, row) in self
                .values
                .iter_mut()
                .zip(o.logits.chunks_exact(o.num_classes))
            {
                *v = Self::of(row);
            }
        }
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        out.extend(self.values.drain(..).flatten());
    }
}

/// How many times the predicted class (argmax, first maximum on ties) changes between
/// consecutive checkpoints; label-free.
#[derive(Debug, Default)]
pub struct PredictionChanges {
    changes: Vec<f64>,
    last: Vec<Option<u32>>,
}

impl Reducer for PredictionChanges {
    fn columns(&self) -> Vec<String> {
        vec!["pred_changes".into()]
    }
    fn begin_batch(&mut self, rows: usize) {
        self.changes = vec![0.0; rows];
        self.last = vec![None; rows];
    }
    fn observe(&mut self, o: &CheckpointOutcomes<'_>) {
        for ((c, last), r) in self.changes.iter_mut().zip(&mut self.last).zip(o.rows) {
            if last.is_some_and(|l| l != r.predicted) {
                *c += 1.0;
            }
            *last = Some(r.predicted);
        }
    }
    fn finish_batch(&mut self, out: &mut Vec<f64>) {
        out.append(&mut self.changes);
    }
}

/// The difficulty panel every scoring run with a model computes from the same logits, in column
/// order: `margin_mean` (area under the margin), `loss_last`, `correct_ratio`, `confidence`,
/// `variability`, `forgetting`, `el2n` (at checkpoint position `el2n_at`, 0-based), then the
/// label-free `msp_last`, `margin_last`, `entropy_last` and `pred_changes`.
pub fn panel_reducers(el2n_at: usize) -> Vec<Box<dyn Reducer>> {
    vec![
        Box::<MeanMargin>::default(),
        Box::<LastLoss>::default(),
        Box::<CorrectRatio>::default(),
        Box::<Confidence>::default(),
        Box::<Forgetting>::default(),
        Box::new(El2n::at(el2n_at)),
        Box::<LastUncertainty>::default(),
        Box::<PredictionChanges>::default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_matches_hand_computation() {
        // logits (1, 3, 2), reference 0, true label 0:
        // lse = ln(e^1 + e^3 + e^2) = 3.40760596; loss = 2.40760596; margin = 1 - 3 = -2.
        let o = RowOutcome::from_logits(&[1.0, 3.0, 2.0], 0, Some(0));
        assert_eq!(o.predicted, 1);
        assert!((o.loss - 2.40760596444438).abs() < 1e-12);
        assert!((o.probability - (-2.40760596444438f64).exp()).abs() < 1e-12);
        assert_eq!(o.margin, -2.0);
        assert_eq!(o.correct, Some(false));
        assert_eq!(RowOutcome::from_logits(&[2.0, 2.0], 1, None).predicted, 0);
    }

    #[test]
    fn reducers_stream_over_checkpoints() {
        let mut reducers = panel_reducers(1);
        let logits = [[2.0f32, 0.0], [0.0, 1.0], [3.0, 0.0]];
        for r in &mut reducers {
            r.begin_batch(1);
        }
        for (k, l) in logits.iter().enumerate() {
            let rows = [RowOutcome::from_logits(l, 0, Some(0))];
            let o = CheckpointOutcomes {
                checkpoint: k,
                num_checkpoints: 3,
                logits: l,
                num_classes: 2,
                rows: &rows,
            };
            reducers.iter_mut().for_each(|r| r.observe(&o));
        }
        let mut out = Vec::new();
        reducers.iter_mut().for_each(|r| r.finish_batch(&mut out));
        assert!((out[0] - (2.0 - 1.0 + 3.0) / 3.0).abs() < 1e-12);
        assert!((out[1] - (1.0 + (-3.0f64).exp()).ln()).abs() < 1e-12);
        assert!((out[2] - 2.0 / 3.0).abs() < 1e-12);
        // Probabilities of class 0: σ(2), σ(-1), σ(3).
        let p: Vec<f64> = [2.0f64, -1.0, 3.0]
            .iter()
            .map(|z| 1.0 / (1.0 + (-z).exp()))
            .collect();
        let mean = p.iter().sum::<f64>() / 3.0;
        let std = (p.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((out[3] - mean).abs() < 1e-12);
        assert!((out[4] - std).abs() < 1e-12);
        // correct, wrong, correct: one forgetting event.
        assert_eq!(out[5], 1.0);
        // EL2N at checkpoint 1: |(p0 - 1, 1 - p0)| = √2 (1 - p0).
        assert!((out[6] - 2f64.sqrt() * (1.0 - p[1])).abs() < 1e-12);
        // Last checkpoint (3, 0): p = (σ(3), 1 - σ(3)).
        let (p0, p1) = (p[2], 1.0 - p[2]);
        assert!((out[7] - p1).abs() < 1e-12);
        assert!((out[8] - (p1 - p0)).abs() < 1e-12);
        assert!((out[9] + p0 * p0.ln() + p1 * p1.ln()).abs() < 1e-12);
        // Predictions 0, 1, 0: two changes.
        assert_eq!(out[10], 2.0);
    }

    #[test]
    fn label_free_scores_are_nan_without_true_labels() {
        let mut reducers = panel_reducers(0);
        reducers.iter_mut().for_each(|r| r.begin_batch(1));
        for k in 0..2 {
            let l = [1.0f32, 0.0];
            let rows = [RowOutcome::from_logits(&l, 0, None)];
            let o = CheckpointOutcomes {
                checkpoint: k,
                num_checkpoints: 2,
                logits: &l,
                num_classes: 2,
                rows: &rows,
            };
            reducers.iter_mut().for_each(|r| r.observe(&o));
        }
        let mut out = Vec::new();
        reducers.iter_mut().for_each(|r| r.finish_batch(&mut out));
        assert!(out[2].is_nan() && out[5].is_nan(), "{out:?}");
        assert!(out[3].is_finite() && out[6].is_finite());
        assert!(out[7..].iter().all(|v| v.is_finite()), "{out:?}");
    }
}
