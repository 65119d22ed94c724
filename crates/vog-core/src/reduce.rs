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

/// The reducers every scoring run with a model uses.
pub fn default_reducers() -> Vec<Box<dyn Reducer>> {
    vec![
        Box::<MeanMargin>::default(),
        Box::<LastLoss>::default(),
        Box::<CorrectRatio>::default(),
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
        let mut reducers = default_reducers();
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
    }
}
