//! Rank metrics of a score against a known-bad flag, shared by `vog evaluate`, the HTML report
//! and `vog reproduce`. Definitions follow scikit-learn (`roc_auc_score`,
//! `average_precision_score`), so numbers can be checked against it.

/// Ranks of `v` (1-based), ties sharing their average rank.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    ranks
}

/// Panel scores computed from the true labels (undefined without them): they cannot be used to
/// find the errors those labels define.
pub const NEEDS_TRUE_LABELS: &[&str] = &["correct_ratio", "forgetting"];

/// Scores for which a low value means a hard example.
pub const LOWER_IS_HARDER: &[&str] = &["margin_mean", "correct_ratio", "confidence"];

/// AUROC of `scores` for `bad` (ties count half). `None` without both classes.
pub fn auroc(scores: &[f64], bad: &[bool]) -> Option<f64> {
    let n_pos = bad.iter().filter(|&&b| b).count();
    let n_neg = bad.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let pos_rank_sum: f64 = ranks
        .iter()
        .zip(bad)
        .filter(|(_, &b)| b)
        .map(|(r, _)| r)
        .sum();
    let u = pos_rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Average precision of `scores` for `bad` (scikit-learn's definition). `None` without positives.
pub fn average_precision(scores: &[f64], bad: &[bool]) -> Option<f64> {
    let n_pos = bad.iter().filter(|&&b| b).count();
    if n_pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        // One threshold per distinct score: ties enter together.
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            tp += usize::from(bad[order[i]]);
            seen += 1;
            i += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / seen as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Some(ap)
}

/// Fraction of bad examples among the `k` highest scores (ties by position).
pub fn precision_at_k(scores: &[f64], bad: &[bool], k: usize) -> Option<f64> {
    if k == 0 || k > scores.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // A stable sort on the negated score keeps row order within ties, like numpy's stable argsort.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    Some(order[..k].iter().filter(|&&i| bad[i]).count() as f64 / k as f64)
}

/// The sign that orients score `name` so that higher means harder: −1 for
/// [`LOWER_IS_HARDER`], +1 otherwise.
pub fn orientation(name: &str) -> f64 {
    if LOWER_IS_HARDER.contains(&name) {
        -1.0
    } else {
        1.0
    }
}
