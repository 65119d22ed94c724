//! "Which score to trust": every score of a labelled run against the run's own errors.

use std::fmt::Write as _;

use super::{e, Page};

/// Which score finds this run's own errors (labelled runs): every score's AUROC and AUPRC for
/// the examples the last checkpoint gets wrong, best first.
pub(super) fn trust(p: &Page<'_>, b: &mut String) {
    use vog_core::rank::{auroc, average_precision, orientation, NEEDS_TRUE_LABELS};
    let src = p.src;
    b.push_str("<section id=trust><h2>Which score to trust</h2>");
    if !p.labelled {
        b.push_str(
            "<p class=muted>Needs true labels with predictions: without them this run cannot say which \
             score finds its errors. vog's own study (docs/RESULTS.md in the vog repository) measures it on \
             labelled digits.</p></section>",
        );
        return;
    }
    let error: Vec<Option<bool>> = src
        .rows
        .iter()
        .map(|r| match (r.true_label, r.predicted) {
            (Some(t), Some(p)) => Some(t != p),
            _ => None,
        })
        .collect();
    let (known, wrong) = (
        error.iter().flatten().count(),
        error.iter().flatten().filter(|&&e| e).count(),
    );
    let mut table: Vec<(&str, Option<f64>, Option<f64>, usize)> = Vec::new();
    for (j, name) in src.score_names.iter().enumerate() {
        if NEEDS_TRUE_LABELS.contains(&name.as_str()) {
            continue;
        }
        let sign = orientation(name);
        let (values, bad): (Vec<f64>, Vec<bool>) = src
            .rows
            .iter()
            .zip(&error)
            .filter_map(|(r, e)| {
                let v = r.scores[j];
                Some((sign * v, (*e)?)).filter(|_| v.is_finite())
            })
            .unzip();
        if values.is_empty() {
            continue;
        }
        table.push((
            name,
            auroc(&values, &bad),
            average_precision(&values, &bad),
            values.len(),
        ));
    }
    table.sort_by(|a, b| {
        b.1.unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.1.unwrap_or(f64::NEG_INFINITY))
            .then_with(|| a.0.cmp(b.0))
    });
    let main = if src.normalized {
        format!("vog_{}_norm", src.window)
    } else {
        format!("vog_{}", src.window)
    };
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let _ = write!(
        b,
        "<p>How well each score finds this run's own errors (the last checkpoint's prediction ≠ the label: \
         {wrong} of {known}, {:.1}%), highest first. AUROC 0.5 is chance; AUPRC's chance level is the error \
         rate. Scores are oriented so that higher means harder; <code>correct_ratio</code> and \
         <code>forgetting</code> read the labels the errors come from and are left out.",
        100.0 * wrong as f64 / known.max(1) as f64
    );
    if let (Some(best), Some(m)) = (table.first(), table.iter().find(|t| t.0 == main)) {
        if best.1.is_some() {
            let _ = write!(
                b,
                " Here <code>{}</code> finds them best (AUROC {}); the report's main score <code>{}</code> \
                 reaches {}.",
                e(best.0),
                f(best.1),
                e(&main),
                f(m.1)
            );
        }
    }
    b.push_str("</p><table><thead><tr><th>score</th><th>AUROC</th><th>AUPRC</th><th>examples</th></tr></thead><tbody>");
    for (name, a, p, n) in &table {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{n}</td></tr>",
            e(name),
            f(*a),
            f(*p)
        );
    }
    b.push_str("</tbody></table></section>");
}
