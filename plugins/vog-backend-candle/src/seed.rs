//! Where the reverse pass starts: each row's class (given, or its argmax) and ∂target/∂logits.

use vog_core::Target;

pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// ∂target/∂logits per row: one-hot for the logit target; `p_c (δ_jc − p_j)` for the softmax
/// probability of class c.
pub(crate) fn target_seed(
    logits: &[f32],
    num_classes: usize,
    classes: &[u32],
    target: Target,
) -> Vec<f32> {
    let mut seed = vec![0.0f32; logits.len()];
    for ((row, out), &c) in logits
        .chunks_exact(num_classes)
        .zip(seed.chunks_exact_mut(num_classes))
        .zip(classes)
    {
        let c = c as usize;
        match target {
            Target::Logit => out[c] = 1.0,
            Target::Probability => {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                let pc = exps[c] / sum;
                for (j, (o, e)) in out.iter_mut().zip(&exps).enumerate() {
                    let pj = e / sum;
                    *o = (pc * (f64::from(u8::from(j == c)) - pj)) as f32;
                }
            }
        }
    }
    seed
}
