//! The Markdown of `vog reproduce` (docs/RESULTS.md): the tables, and the reading computed from
//! them.

use std::fmt::Write as _;

use super::*;
use crate::metrics::{decile_gap, DecileGap, MeanSd};

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// `mean ± sd` (3 decimals, or percent with one).
fn cell(m: Option<MeanSd>, percent: bool) -> String {
    match m {
        None => "–".into(),
        Some(m) if percent => format!("{:.1}% ± {:.1}", 100.0 * m.mean, 100.0 * m.sd),
        Some(m) => format!("{:.3} ± {:.3}", m.mean, m.sd),
    }
}

/// Per score name (first-seen order), the values `f` gives over `runs`.
fn by_score<'a>(
    runs: impl Iterator<Item = &'a ScoreMetrics>,
    f: impl Fn(&Metrics) -> Option<f64>,
) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for run in runs {
        for (name, m) in run {
            let v = f(m).unwrap_or(f64::NAN);
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(v),
                None => out.push((name.clone(), vec![v])),
            }
        }
    }
    out
}

/// The summary of score `name` under `f` over `runs`.
fn summary<'a>(
    runs: impl Iterator<Item = &'a ScoreMetrics>,
    name: &str,
    f: impl Fn(&Metrics) -> Option<f64>,
) -> Option<MeanSd> {
    let v: Vec<f64> = runs
        .filter_map(|r| r.iter().find(|(n, _)| n == name))
        .map(|(_, m)| f(m).unwrap_or(f64::NAN))
        .collect();
    MeanSd::of(&v)
}

fn auroc(m: &Metrics) -> Option<f64> {
    m.auroc
}
fn auprc(m: &Metrics) -> Option<f64> {
    m.auprc
}
fn top(m: &Metrics) -> Option<f64> {
    Some(m.top)
}

/// A table with a row per score and a column per group of runs; rows ordered by `order`.
fn score_table(
    s: &mut String,
    headers: &[String],
    order: &[String],
    groups: &[Vec<&ScoreMetrics>],
    f: impl Fn(&Metrics) -> Option<f64> + Copy,
    percent: bool,
) {
    let _ = writeln!(
        s,
        "| score | {} |\n|---|{}",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for name in order {
        let cells: Vec<String> = groups
            .iter()
            .map(|g| cell(summary(g.iter().copied(), name, f), percent))
            .collect();
        let _ = writeln!(s, "| `{name}` | {} |", cells.join(" | "));
    }
    let _ = writeln!(s);
}

/// Score names ordered by their mean (over groups) of the mean AUROC, best first.
fn auroc_order(groups: &[Vec<&ScoreMetrics>]) -> Vec<String> {
    let mut names: Vec<(String, f64)> = by_score(groups.iter().flatten().copied(), auroc)
        .into_iter()
        .map(|(name, _)| {
            let means: Vec<f64> = groups
                .iter()
                .filter_map(|g| summary(g.iter().copied(), &name, auroc).map(|m| m.mean))
                .collect();
            let mean = means.iter().sum::<f64>() / means.len().max(1) as f64;
            (name, mean)
        })
        .collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    names.into_iter().map(|(n, _)| n).collect()
}

/// The (dataset, model) pairs of the study, in order.
fn families(datasets: &[Dataset]) -> Vec<(&'static str, &'static str, &'static str)> {
    datasets
        .iter()
        .flat_map(|d| d.models.iter().map(move |m| (d.key, d.title, m.name())))
        .collect()
}

fn of<'a>(
    records: &'a [Record],
    dataset: &'a str,
    model: &'a str,
    noise: Option<f64>,
) -> impl Iterator<Item = &'a Record> + 'a {
    records.iter().filter(move |r| {
        r.dataset == dataset && r.model == model && noise.is_none_or(|n| r.noise == n)
    })
}

pub(super) fn results_md(
    a: &ReproduceOptions,
    toy: &DemoSummary,
    datasets: &[Dataset],
    records: &[Record],
    seconds: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Results\n\nWritten by `scripts/reproduce.sh` (`vog reproduce`), vog {}, in {:.0} s on {} CPU cores. \
         Every number below comes from that one command; rerunning it regenerates them (all data splits, \
         noise, initialisations and shuffles are seeded; only the timings change).\n",
        env!("CARGO_PKG_VERSION"),
        seconds,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    toy_section(&mut s, toy);
    setup_section(&mut s, a, datasets, records);
    test_time_section(&mut s, datasets, records);
    gap_section(&mut s, datasets, records);
    ood_section(&mut s, datasets, records);
    flipped_section(&mut s, datasets, records);
    reading_section(&mut s, toy, datasets, records);
    s
}
/// Section (a): the toy experiment's correlations.
fn toy_section(s: &mut String, toy: &DemoSummary) {
    let _ = writeln!(
        s,
        "## (a) Toy data: VoG against the distance to the decision boundary\n\n\
         Two Gaussian clusters, a 2-16-2 ReLU MLP trained with candle for 15 epochs (`vog demo`, seed 7). \
         Spearman correlation between class-normalized VoG and the distance to the Bayes boundary \
         (negative: points near the boundary score high).\n\n\
         | split | target | window | ρ | p |\n|---|---|---|---|---|"
    );
    for c in &toy.correlations {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.1e} |",
            c.split,
            c.target,
            c.window,
            c.spearman_normalized.unwrap_or(f64::NAN),
            c.p_normalized.unwrap_or(f64::NAN)
        );
    }
}

/// Section (b): data, models, seeds, accuracy and time.
fn setup_section(s: &mut String, a: &ReproduceOptions, datasets: &[Dataset], records: &[Record]) {
    let seeds = a.seeds;
    let _ = writeln!(
        s,
        "\n## (b) Real digits: label noise, test-time scoring, out-of-distribution data\n"
    );
    for d in datasets {
        let models: Vec<String> = d.models.iter().map(|m| m.describe(d.dim())).collect();
        let _ = writeln!(
            s,
            "- **{}**: {}; {}.",
            d.title,
            d.source,
            models.join(" and ")
        );
    }
    let _ = writeln!(
        s,
        "\nModels are trained with candle (AdamW, lr 1e-3, batch 64, one checkpoint per epoch). Symmetric noise: \
         a random {} or {} of the training labels replaced by a uniformly chosen other class. Every setting runs \
         {seeds} seeds; each seed draws its own train/test split, noisy labels and initialisation. Tables give the \
         mean ± standard deviation over seeds. Training data is scored with its (noisy) labels and the logit \
         target; test data without labels (predicted classes, the label-free use), with both targets from one \
         pass (`second_target = \"probability\"`).\n",
        pct(NOISE[1]),
        pct(NOISE[2]),
    );
    let _ = writeln!(
        s,
        "### Accuracy and time\n\n\
         | data | model | noise | test accuracy | train | score train | score test (both targets) |\n\
         |---|---|---|---|---|---|---|"
    );
    for (key, title, model) in families(datasets) {
        for noise in NOISE {
            let rs: Vec<&Record> = of(records, key, model, Some(noise)).collect();
            let acc = MeanSd::of(&rs.iter().map(|r| r.test_accuracy).collect::<Vec<_>>());
            let mean = |f: fn(&Record) -> f64| {
                rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64
            };
            let _ = writeln!(
                s,
                "| {title} | {model} | {} | {} | {:.1} s | {:.1} s | {:.1} s |",
                pct(noise),
                cell(acc, true),
                mean(|r| r.train_s),
                mean(|r| r.score_train_s),
                mean(|r| r.score_test_s),
            );
        }
    }
    let _ = writeln!(
        s,
        "\n**The cost of the second target** (seed 0, clean labels): the same test scoring with the logit \
         target alone and with both targets from one pass.\n\n\
         | data | model | test digits × checkpoints | logit only | logit + probability | ratio |\n|---|---|---|---|---|---|"
    );
    for (key, title, model) in families(datasets) {
        for r in of(records, key, model, Some(0.0)) {
            if let Some((one, both)) = r.second_target_cost {
                let _ = writeln!(
                    s,
                    "| {title} | {model} | {} × {} | {one:.1} s | {both:.1} s | {:.2}× |",
                    r.test_rows,
                    r.checkpoints,
                    both / one.max(1e-9)
                );
            }
        }
    }
}

/// Section (c): finding test errors without labels.
fn test_time_section(s: &mut String, datasets: &[Dataset], records: &[Record]) {
    let _ = writeln!(
        s,
        "\n## (c) Which score finds the model's test errors without labels?\n\n\
         The label-free use: test digits scored with predicted classes, the \"bad\" examples being those the \
         last checkpoint gets wrong. Every VoG window (raw and class-normalized; `_probability`: the probability \
         target) and every label-free panel score, oriented so that higher means harder (`margin_mean` and \
         `confidence` negated; both taken against the predicted class). Rows are ordered by AUROC.\n"
    );
    let headers: Vec<String> = NOISE.iter().map(|&n| format!("{} noise", pct(n))).collect();
    for (key, title, model) in families(datasets) {
        let groups: Vec<Vec<&ScoreMetrics>> = NOISE
            .iter()
            .map(|&n| of(records, key, model, Some(n)).map(|r| &r.test).collect())
            .collect();
        let order = auroc_order(&groups);
        let errors: Vec<String> = NOISE
            .iter()
            .map(|&n| {
                let acc: Vec<f64> = of(records, key, model, Some(n))
                    .map(|r| 1.0 - r.test_accuracy)
                    .collect();
                format!("{} at {}", cell(MeanSd::of(&acc), true), pct(n))
            })
            .collect();
        let _ = writeln!(
            s,
            "### {title}, {model}\n\nTest error (the share of \"bad\" examples, AUPRC's chance level): {}.\n\n\
             **AUROC**\n",
            errors.join(", ")
        );
        score_table(s, &headers, &order, &groups, auroc, false);
        let _ = writeln!(s, "**AUPRC**\n");
        score_table(s, &headers, &order, &groups, auprc, false);
        let _ = writeln!(s, "**Test error among the 10% highest scores**\n");
        score_table(s, &headers, &order, &groups, top, true);
    }
}

/// The decile gap of one score in one setting.
fn gap_of(
    records: &[Record],
    key: &str,
    model: &str,
    noise: f64,
    score: &str,
) -> Option<DecileGap> {
    let per_seed: Vec<(Vec<f64>, Vec<bool>)> = of(records, key, model, Some(noise))
        .filter_map(|r| r.gap_inputs.get(score).cloned())
        .collect();
    (!per_seed.is_empty()).then(|| {
        // The resampling seed depends on the setting only, so reruns draw the same resamples.
        let tag = key.len() as u64 * 131 + model.len() as u64 * 17 + (noise * 100.0) as u64;
        decile_gap(&per_seed, DRAWS, SEED ^ tag ^ (score.len() as u64) << 40)
    })
}

/// Section (c'): is the top decile's error higher than the bottom decile's?
fn gap_section(s: &mut String, datasets: &[Dataset], records: &[Record]) {
    let _ = writeln!(
        s,
        "### Top decile against bottom decile\n\n\
         The paper's test-time reading: examples with the highest scores should be wrong more often than those \
         with the lowest. Test error in the top and bottom 10% by score (mean over seeds), their gap, a 95% \
         bootstrap interval of the gap ({DRAWS} resamples of the test digits within each seed) and a one-sided \
         paired t-test over seeds (gap > 0).\n\n\
         | data | model | noise | score | top-decile error | bottom-decile error | gap | 95% interval | p |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (key, title, model) in families(datasets) {
        for noise in NOISE {
            for score in GAP_SCORES {
                if let Some(g) = gap_of(records, key, model, noise, score) {
                    let _ = writeln!(
                        s,
                        "| {title} | {model} | {} | `{score}` | {} | {} | {:+.1} pts | [{:+.1}, {:+.1}] | {} |",
                        pct(noise),
                        pct(g.top),
                        pct(g.bottom),
                        100.0 * g.gap,
                        100.0 * g.low,
                        100.0 * g.high,
                        g.p.map_or("–".into(), |p| format!("{p:.1e}"))
                    );
                }
            }
        }
    }
}

/// Section (d): corrupted copies.
fn ood_section(s: &mut String, datasets: &[Dataset], records: &[Record]) {
    let _ = writeln!(
        s,
        "\n## (d) Out-of-distribution probe\n\n\
         The clean models (0% noise) score the test digits together with corrupted copies of a quarter of them \
         (Gaussian noise σ = 0.3, clipped; a quarter turn; inversion 1 − x), label-free with both targets. AUROC \
         for telling each kind of copy from the test digits, mean ± sd over seeds; rows ordered by AUROC.\n"
    );
    let headers: Vec<String> = CORRUPTIONS.iter().map(|c| c.name().to_string()).collect();
    for (key, title, model) in families(datasets) {
        let groups: Vec<Vec<&ScoreMetrics>> = CORRUPTIONS
            .iter()
            .map(|c| {
                of(records, key, model, Some(0.0))
                    .filter_map(|r| r.ood.iter().find(|(k, _)| *k == c.name()).map(|(_, m)| m))
                    .collect()
            })
            .collect();
        let order = auroc_order(&groups);
        let _ = writeln!(s, "### {title}, {model}\n");
        score_table(s, &headers, &order, &groups, auroc, false);
    }
}

/// Section (e): flipped training labels.
fn flipped_section(s: &mut String, datasets: &[Dataset], records: &[Record]) {
    let _ = writeln!(
        s,
        "## (e) Finding the flipped labels (training set)\n\n\
         Every score and window against the flipped training labels (`vog evaluate --bad-column meta.is_noisy`), \
         the training data scored with its noisy labels (logit target). AUPRC's chance level is the noise rate. \
         Scores are oriented so that higher means flipped (`margin_mean`, `confidence`, `correct_ratio` negated).\n"
    );
    let noisy: Vec<f64> = NOISE.iter().copied().filter(|&n| n > 0.0).collect();
    let headers: Vec<String> = noisy.iter().map(|&n| format!("{} noise", pct(n))).collect();
    for (key, title, model) in families(datasets) {
        let groups: Vec<Vec<&ScoreMetrics>> = noisy
            .iter()
            .map(|&n| {
                of(records, key, model, Some(n))
                    .filter_map(|r| r.flipped.as_ref())
                    .collect()
            })
            .collect();
        let order = auroc_order(&groups);
        let _ = writeln!(s, "### {title}, {model}\n\n**AUROC**\n");
        score_table(s, &headers, &order, &groups, auroc, false);
        let _ = writeln!(s, "**AUPRC**\n");
        score_table(s, &headers, &order, &groups, auprc, false);
    }
}

/// `lo–hi` of finite values, 3 decimals.
fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() {
        format!("{lo:.3}–{hi:.3}")
    } else {
        "–".into()
    }
}

/// Mean AUROC per score over `runs`.
fn mean_aurocs<'a>(runs: impl Iterator<Item = &'a ScoreMetrics>) -> Vec<(String, f64)> {
    by_score(runs, auroc)
        .into_iter()
        .filter_map(|(name, v)| MeanSd::of(&v).map(|m| (name, m.mean)))
        .collect()
}

/// The best `(name, mean AUROC)` among `means` that `keep` accepts.
fn best(means: &[(String, f64)], keep: impl Fn(&str) -> bool) -> Option<(String, f64)> {
    means
        .iter()
        .filter(|(n, _)| keep(n))
        .fold(None, |b: Option<(String, f64)>, (n, v)| match b {
            Some(b) if b.1 >= *v => Some(b),
            _ => Some((n.clone(), *v)),
        })
}

fn is_vog(n: &str) -> bool {
    n.starts_with("vog_")
}
fn is_probability_vog(n: &str) -> bool {
    is_vog(n) && n.contains("_probability")
}
fn is_logit_vog(n: &str) -> bool {
    is_vog(n) && !n.contains("_probability")
}

/// The names in `names` with how often each occurs, most frequent first.
fn tally(names: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for n in names {
        match counts.iter_mut().find(|(m, _)| m == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(n, c)| format!("`{n}` in {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the numbers say, derived from them (so the text cannot drift from the tables).
fn reading_section(s: &mut String, toy: &DemoSummary, datasets: &[Dataset], records: &[Record]) {
    let _ = writeln!(s, "## Reading these numbers\n");
    let rho = |split: &str, target: &str| {
        toy.correlations
            .iter()
            .find(|c| c.split == split && c.target == target && c.window == "all")
            .and_then(|c| c.spearman_normalized)
            .unwrap_or(f64::NAN)
    };
    let _ = writeln!(
        s,
        "- Toy data: class-normalized VoG (`all`) correlates with closeness to the decision boundary: \
         ρ = {:.2} (train) and {:.2} (test) with the logit target, {:.2} and {:.2} with the probability target.",
        rho("train", "logit"),
        rho("test", "logit"),
        rho("train", "probability"),
        rho("test", "probability")
    );

    // Test-time, label-free.
    let fams = families(datasets);
    let settings: Vec<(&str, &str, &str, f64)> = fams
        .iter()
        .flat_map(|&(k, t, m)| NOISE.iter().map(move |&n| (k, t, m, n)))
        .collect();
    let (mut paper, mut logit, mut prob, mut panel) = (vec![], vec![], vec![], vec![]);
    let (mut winners, mut panel_winners) = (vec![], vec![]);
    let mut prob_wins = 0;
    let mut per_dataset_gain: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for &(k, _, m, n) in &settings {
        let means = mean_aurocs(of(records, k, m, Some(n)).map(|r| &r.test));
        if let Some((_, v)) = best(&means, |x| x == "vog_all_norm") {
            paper.push(v);
        }
        let l = best(&means, is_logit_vog);
        let p = best(&means, is_probability_vog);
        if let (Some(l), Some(p)) = (&l, &p) {
            logit.push(l.1);
            prob.push(p.1);
            prob_wins += usize::from(p.1 > l.1);
            per_dataset_gain.entry(k).or_default().push(p.1 - l.1);
        }
        if let Some(b) = best(&means, |x| !is_vog(x)) {
            panel.push(b.1);
            panel_winners.push(b.0);
        }
        if let Some(b) = best(&means, |_| true) {
            winners.push(b.0);
        }
    }
    let n_settings = settings.len();
    let _ = writeln!(
        s,
        "- Finding test errors without labels ({n_settings} settings: {} model(s) × {} noise levels, mean AUROC over \
         seeds): the paper's score (`vog_all_norm`, logit target) reaches {}; the best logit-target VoG window {}; \
         the best probability-target VoG window {}; the best label-free panel score {} ({}). The probability \
         target beats the logit target (best window each) in {prob_wins} of {n_settings} settings. Best score \
         overall: {}.",
        fams.len(),
        NOISE.len(),
        range(&paper),
        range(&logit),
        range(&prob),
        range(&panel),
        tally(&panel_winners),
        tally(&winners)
    );

    // Decile gaps.
    let gaps: Vec<String> = GAP_SCORES
        .iter()
        .map(|score| {
            let above = settings
                .iter()
                .filter_map(|&(k, _, m, n)| gap_of(records, k, m, n, score))
                .filter(|g| g.low > 0.0)
                .count();
            format!("{above} of {n_settings} for `{score}`")
        })
        .collect();
    let _ = writeln!(
        s,
        "- Top against bottom decile: the 95% interval of the test-error gap lies above zero in {}.",
        gaps.join(", ")
    );

    // Out-of-distribution.
    let ood: Vec<String> = CORRUPTIONS
        .iter()
        .map(|c| {
            let (mut vog, mut top, mut names) = (vec![], vec![], vec![]);
            for &(k, _, m) in &fams {
                let means =
                    mean_aurocs(of(records, k, m, Some(0.0)).filter_map(|r| {
                        r.ood.iter().find(|(x, _)| *x == c.name()).map(|(_, v)| v)
                    }));
                if let Some((_, v)) = best(&means, |x| x == "vog_all_norm") {
                    vog.push(v);
                }
                if let Some(b) = best(&means, |_| true) {
                    top.push(b.1);
                    names.push(b.0);
                }
            }
            format!(
                "{}: `vog_all_norm` {}, the best score {} ({})",
                c.name(),
                range(&vog),
                range(&top),
                tally(&names)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- Corrupted copies (AUROC over the {} model(s)): {}.",
        fams.len(),
        ood.join("; ")
    );

    // Flipped labels.
    let (mut vog, mut other, mut reversed) = (vec![], vec![], vec![]);
    for &(k, t, m, n) in settings.iter().filter(|x| x.3 > 0.0) {
        let means = mean_aurocs(of(records, k, m, Some(n)).filter_map(|r| r.flipped.as_ref()));
        if let (Some(v), Some(o)) = (best(&means, is_vog), best(&means, |x| !is_vog(x))) {
            vog.push(v.1);
            other.push(o.1);
        }
        reversed.extend(
            means
                .iter()
                .filter(|(_, a)| *a < 0.3)
                .map(|(name, a)| format!("`{name}` ({t} {m} {}: {a:.2})", pct(n))),
        );
    }
    if !vog.is_empty() {
        let beaten = vog.iter().zip(&other).filter(|(v, o)| v < o).count();
        let _ = writeln!(
            s,
            "- Finding flipped labels: the best VoG window reaches AUROC {} across the {} noisy settings, the best \
             other score from the same checkpoints {}; {}.",
            range(&vog),
            vog.len(),
            range(&other),
            if beaten == vog.len() {
                "VoG is behind in every one of them".to_string()
            } else {
                format!("VoG is behind in {beaten} of {}", vog.len())
            }
        );
    }
    if !reversed.is_empty() {
        let _ = writeln!(
            s,
            "- Reversed signals (mean AUROC below 0.3: flipped examples score *lower* than clean ones): {}.",
            reversed.join(", ")
        );
    }
    let every_dataset = per_dataset_gain
        .values()
        .all(|g| g.iter().sum::<f64>() / g.len().max(1) as f64 > 0.0);
    let gains: Vec<String> = per_dataset_gain
        .iter()
        .map(|(k, g)| {
            let title = datasets
                .iter()
                .find(|d| d.key == *k)
                .map_or(*k, |d| d.title);
            format!(
                "{title} {:+.3}",
                g.iter().sum::<f64>() / g.len().max(1) as f64
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- The second target: the probability target's best window against the logit target's, mean AUROC gain \
         per dataset {}; it is ahead on average on {} dataset{}. {}",
        gains.join(", "),
        if every_dataset { "every" } else { "not every" },
        if every_dataset { "" } else { " (see the tables)" },
        if every_dataset && prob_wins == n_settings {
            "This is why `second_target = \"auto\"`, the default, adds the probability target to every run that \
             scores without labels (the cost is in (b)); the paper's logit VoG stays in every run."
        } else {
            "The evidence does not hold in every setting: weigh the tables before relying on the default \
             `second_target = \"auto\"`, which adds the probability target to runs without labels."
        }
    );
}
