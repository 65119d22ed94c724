//! The paper's toy experiment (`vog demo`), end to end and offline.
//!
//! Two isotropic Gaussian clusters in 2-d, a one-hidden-layer ReLU MLP trained with candle for a
//! few epochs (one checkpoint each), then VoG through the real scoring pipeline on the train and
//! test splits, with both targets. The optimal (Bayes) decision boundary of two isotropic
//! Gaussians with equal priors is the perpendicular bisector of their means, so every point's
//! distance to it is known exactly; the demo reports the Spearman correlation between VoG and
//! that distance. Points near the boundary should be the hard ones (negative correlation).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use vog_backend_candle::train::{MlpTrainer, TrainConfig};
use vog_backend_candle::{Activation, CandleBackend};
use vog_core::Target;
use vog_engine::stats::spearman;
use vog_engine::{score, write_results, Config, LabelMode, RunResult, Silent};
use vog_report::svg;

/// Cluster means and spread.
const MEANS: [[f64; 2]; 2] = [[-1.2, -0.8], [1.2, 0.8]];
const SIGMA: f64 = 1.0;
const POINTS: usize = 500;
const TRAIN: usize = 400;
const HIDDEN: usize = 16;

/// One split of the toy data.
pub struct Split {
    /// `train` or `test`.
    pub name: &'static str,
    /// Points, row-major `[n, 2]`.
    pub x: Vec<f32>,
    /// Their clusters (the labels).
    pub y: Vec<u32>,
}

/// Signed distance to the Bayes boundary (positive on class 1's side).
pub fn boundary_distance(p: [f64; 2]) -> f64 {
    let w = [MEANS[1][0] - MEANS[0][0], MEANS[1][1] - MEANS[0][1]];
    let mid = [
        (MEANS[0][0] + MEANS[1][0]) / 2.0,
        (MEANS[0][1] + MEANS[1][1]) / 2.0,
    ];
    let norm = (w[0] * w[0] + w[1] * w[1]).sqrt();
    (w[0] * (p[0] - mid[0]) + w[1] * (p[1] - mid[1])) / norm
}

/// Draws the two clusters (equal sizes, shuffled) and splits them into train and test.
pub fn make_data(seed: u64) -> (Split, Split) {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, SIGMA).expect("valid sigma");
    let mut points: Vec<([f32; 2], u32)> = (0..POINTS)
        .map(|i| {
            let c = (i % 2) as u32;
            let m = MEANS[c as usize];
            (
                [
                    (m[0] + noise.sample(&mut rng)) as f32,
                    (m[1] + noise.sample(&mut rng)) as f32,
                ],
                c,
            )
        })
        .collect();
    points.shuffle(&mut rng);
    let split = |name, pts: &[([f32; 2], u32)]| Split {
        name,
        x: pts.iter().flat_map(|(p, _)| *p).collect(),
        y: pts.iter().map(|(_, c)| *c).collect(),
    };
    (
        split("train", &points[..TRAIN]),
        split("test", &points[TRAIN..]),
    )
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where checkpoints, data, results and the plot go.
    pub out: PathBuf,
    /// Seed for data, initialisation and shuffling.
    pub seed: u64,
    /// Training epochs (one checkpoint each).
    pub epochs: usize,
    /// Replace an existing demo directory.
    pub overwrite: bool,
}

/// What the demo found: `summary.json` (fields in the order the file has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoSummary {
    /// Spearman correlations with the distance to the boundary, per split, target and window.
    pub correlations: Vec<Correlation>,
    /// Training epochs.
    pub epochs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Cluster means.
    pub means: [[f64; 2]; 2],
    /// Points in all.
    pub points: usize,
    /// Wall time of the demo.
    pub seconds: f64,
    /// The seed.
    pub seed: u64,
    /// Cluster spread.
    pub sigma: f64,
    /// Test accuracy of the last checkpoint.
    pub test_accuracy: f64,
    /// Training points.
    pub train: usize,
}

/// The Spearman correlation of VoG with the distance to the Bayes boundary in one setting
/// (`None` when undefined).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// p-value of the class-normalized VoG's correlation.
    pub p_normalized: Option<f64>,
    /// p-value of the raw VoG's correlation.
    pub p_raw: Option<f64>,
    /// Class-normalized VoG.
    pub spearman_normalized: Option<f64>,
    /// Raw VoG.
    pub spearman_raw: Option<f64>,
    /// `train` or `test`.
    pub split: String,
    /// `logit` or `probability`.
    pub target: String,
    /// The window.
    pub window: String,
}

struct Scored {
    split: &'static str,
    target: Target,
    result: RunResult,
    distance: Vec<f64>,
}

/// Runs the demo into `a.out`, narrating to `term`; writes `summary.json` there and returns it.
pub fn run(a: &DemoOptions, term: &mut dyn Write) -> Result<DemoSummary> {
    let started = std::time::Instant::now();
    let (ckpt_dir, data_dir) = prepare(a)?;
    let out = &a.out;
    let (train, test) = make_data(a.seed);
    let test_acc = train_model(a, &ckpt_dir, &train, &test, term)?;
    let scored = score_splits(out, &data_dir, &ckpt_dir, [&train, &test])?;
    let summary = correlations(&scored, term)?;
    print_hardest(&scored, &train, term)?;
    let plot = out.join("demo.svg");
    let panels = panels(&scored, &train);
    svg::write_scatter(&plot, &panels, boundary_line(), "class-normalized VoG")?;
    let summary_path = out.join("summary.json");
    let doc = DemoSummary {
        correlations: summary,
        epochs: a.epochs,
        hidden: HIDDEN,
        means: MEANS,
        points: POINTS,
        seconds: started.elapsed().as_secs_f64(),
        seed: a.seed,
        sigma: SIGMA,
        test_accuracy: test_acc,
        train: TRAIN,
    };
    std::fs::write(&summary_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", summary_path.display()))?;
    writeln!(
        term,
        "\nplot: {}\nresults: {}\nsummary: {}\n(done in {:.1} s)",
        plot.display(),
        out.join("results").display(),
        summary_path.display(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(doc)
}

/// Checks the options and makes the demo's directories (replacing an old demo with
/// `overwrite`); returns the checkpoint and data directories.
fn prepare(a: &DemoOptions) -> Result<(PathBuf, PathBuf)> {
    if a.epochs < 2 {
        bail!("--epochs must be at least 2: VoG needs two checkpoints or more");
    }
    let out = &a.out;
    if out.exists() {
        if !a.overwrite {
            bail!(
                "{} already exists; pass --overwrite or choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let ckpt_dir = out.join("checkpoints");
    let data_dir = out.join("data");
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;

    Ok((ckpt_dir, data_dir))
}

/// Trains the MLP, one checkpoint per epoch into `ckpt_dir`; returns the last test accuracy.
fn train_model(
    a: &DemoOptions,
    ckpt_dir: &Path,
    train: &Split,
    test: &Split,
    term: &mut dyn Write,
) -> Result<f64> {
    let mut trainer = MlpTrainer::new(TrainConfig {
        sizes: vec![2, HIDDEN, 2],
        activation: Activation::Relu,
        epochs: a.epochs,
        batch_size: 32,
        learning_rate: 0.01,
        seed: a.seed,
    })?;
    writeln!(term,
        "training a 2-{HIDDEN}-2 ReLU MLP on {} points for {} epochs (candle, one checkpoint per epoch)",
        train.y.len(),
        a.epochs
    )?;
    trainer.fit(&train.x, &train.y, |epoch, t, loss| {
        let path = ckpt_dir.join(format!("epoch_{epoch}.safetensors"));
        t.save(&path)?;
        let acc = vog_core::accuracy(&t.predict(&test.x)?, 2, &test.y);
        tracing::info!(epoch, loss, test_accuracy = acc, "epoch");
        Ok(())
    })?;
    let test_acc = vog_core::accuracy(&trainer.predict(&test.x)?, 2, &test.y);
    writeln!(
        term,
        "test accuracy after training: {:.1}%",
        100.0 * test_acc
    )?;
    Ok(test_acc)
}

/// Writes both splits as `.npy` files and scores each with both targets through the engine.
fn score_splits(
    out: &Path,
    data_dir: &Path,
    ckpt_dir: &Path,
    splits: [&Split; 2],
) -> Result<Vec<Scored>> {
    let mut scored = Vec::new();
    for split in splits {
        let x_path = data_dir.join(format!("{}_x.npy", split.name));
        let y_path = data_dir.join(format!("{}_y.npy", split.name));
        vog_data::write_npy_f32(&x_path, &[split.y.len(), 2], &split.x)?;
        let labels: Vec<i64> = split.y.iter().map(|&c| i64::from(c)).collect();
        vog_data::write_npy_i64(&y_path, &[labels.len()], &labels)?;
        let distance: Vec<f64> = split
            .x
            .chunks_exact(2)
            .map(|p| boundary_distance([p[0].into(), p[1].into()]))
            .collect();
        for target in [Target::Logit, Target::Probability] {
            let mut config = Config::default();
            config.data.path = Some(x_path.clone());
            config.data.labels = Some(y_path.clone());
            config.data.split = Some(split.name.into());
            config.checkpoints.paths = vec![ckpt_dir.to_string_lossy().into_owned()];
            config.backend.options = toml::from_str("arch = \"mlp\"\nactivation = \"relu\"")?;
            config.backend.batch_size = Some(128);
            config.scoring.labels = LabelMode::True;
            config.scoring.target = target;
            config.output.dir =
                out.join("results")
                    .join(format!("{}-{}", split.name, target.as_str()));
            let backend = CandleBackend::from_options(&config.backend_options_toml())?;
            let result = score(&config, Some(&backend), &Silent)?;
            write_results(&result, &config.output)?;
            scored.push(Scored {
                split: split.name,
                target,
                result,
                distance: distance.clone(),
            });
        }
    }
    Ok(scored)
}

/// The Spearman correlation of every window's VoG with the distance to the boundary, printed
/// for the `all` window.
fn correlations(scored: &[Scored], term: &mut dyn Write) -> Result<Vec<Correlation>> {
    let mut summary = Vec::new();
    writeln!(term)?;
    writeln!(
        term,
        "Spearman correlation between class-normalized VoG and distance to the decision boundary"
    )?;
    writeln!(
        term,
        "(negative: points near the boundary score high)\n\n{:<6} {:<12} {:<7} {:>9} {:>10}",
        "split", "target", "window", "rho", "p"
    )?;
    for s in scored {
        for (wi, w) in s.result.windows.iter().enumerate() {
            let vog: Vec<f64> = s
                .result
                .examples
                .iter()
                .map(|e| e.vog_norm[wi].unwrap_or(f64::NAN))
                .collect();
            let raw: Vec<f64> = s.result.examples.iter().map(|e| e.vog[wi]).collect();
            let dist: Vec<f64> = s.distance.iter().map(|d| d.abs()).collect();
            let (rho, p) = spearman(&vog, &dist);
            let (rho_raw, p_raw) = spearman(&raw, &dist);
            if w.name == "all" {
                writeln!(
                    term,
                    "{:<6} {:<12} {:<7} {:>9.3} {:>10.2e}",
                    s.split,
                    s.target.as_str(),
                    w.name,
                    rho,
                    p
                )?;
            }
            summary.push(Correlation {
                p_normalized: finite(p),
                p_raw: finite(p_raw),
                spearman_normalized: finite(rho),
                spearman_raw: finite(rho_raw),
                split: s.split.into(),
                target: s.target.as_str().into(),
                window: w.name.clone(),
            });
        }
    }
    Ok(summary)
}

/// Prints the ten hardest training points (probability target, all checkpoints).
fn print_hardest(scored: &[Scored], train: &Split, term: &mut dyn Write) -> Result<()> {
    let hardest = scored
        .iter()
        .find(|s| s.split == "train" && s.target == Target::Probability)
        .expect("train/probability was scored");
    let mut order: Vec<usize> = (0..hardest.result.examples.len()).collect();
    let key = |i: usize| hardest.result.examples[i].vog_norm[0].unwrap_or(f64::NEG_INFINITY);
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    writeln!(
        term,
        "\n10 hardest training points (probability target, all checkpoints):"
    )?;
    writeln!(
        term,
        "{:>4} {:>8} {:>8} {:>5} {:>5} {:>9} {:>9}",
        "row", "x1", "x2", "label", "pred", "distance", "vog_norm"
    )?;
    for &i in order.iter().take(10) {
        let e = &hardest.result.examples[i];
        writeln!(
            term,
            "{:>4} {:>8.3} {:>8.3} {:>5} {:>5} {:>9.3} {:>9.3}",
            e.row,
            train.x[2 * i],
            train.x[2 * i + 1],
            e.label_used.unwrap_or(0),
            e.predicted.unwrap_or(0),
            hardest.distance[i],
            key(i)
        )?;
    }
    Ok(())
}

/// The plot's panels: the training points coloured by each target's normalized VoG.
fn panels(scored: &[Scored], train: &Split) -> Vec<svg::Panel> {
    [Target::Logit, Target::Probability]
        .iter()
        .map(|&t| {
            let s = scored
                .iter()
                .find(|s| s.split == "train" && s.target == t)
                .expect("scored");
            svg::Panel {
                title: format!("train, {} target", t.as_str()),
                points: train
                    .x
                    .chunks_exact(2)
                    .map(|p| (f64::from(p[0]), f64::from(p[1])))
                    .collect(),
                classes: train.y.clone(),
                values: s
                    .result
                    .examples
                    .iter()
                    .map(|e| e.vog_norm[0].unwrap_or(0.0))
                    .collect(),
            }
        })
        .collect()
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The Bayes boundary as a point and a direction.
fn boundary_line() -> ((f64, f64), (f64, f64)) {
    let mid = (
        (MEANS[0][0] + MEANS[1][0]) / 2.0,
        (MEANS[0][1] + MEANS[1][1]) / 2.0,
    );
    let w = (MEANS[1][0] - MEANS[0][0], MEANS[1][1] - MEANS[0][1]);
    (mid, (-w.1, w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_signed_and_zero_on_the_bisector() {
        assert!(boundary_distance([0.0, 0.0]).abs() < 1e-12);
        assert!(boundary_distance(MEANS[1]) > 0.0);
        assert!(boundary_distance(MEANS[0]) < 0.0);
        let ((mx, my), (dx, dy)) = boundary_line();
        assert!(boundary_distance([mx + 3.0 * dx, my + 3.0 * dy]).abs() < 1e-12);
    }

    #[test]
    fn data_is_deterministic_and_balanced() {
        let (a, _) = make_data(3);
        let (b, t) = make_data(3);
        assert_eq!(a.x, b.x);
        assert_eq!(a.y.len() + t.y.len(), POINTS);
        let ones = a.y.iter().chain(&t.y).filter(|&&c| c == 1).count();
        assert_eq!(ones, POINTS / 2);
    }
}
