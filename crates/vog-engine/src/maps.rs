//! The maps pass: the per-element VoG maps and last gradients of the examples the flag policy
//! keeps, recomputed in a second, bounded pass.

use vog_core::{Classes, GradRequest, TensorView, VogAccumulator, Window};
use vog_data::ArrayFile;

use crate::config::{Config, LabelMode};
use crate::inputs::checkpoint_label;
use crate::prepare::{MapInputs, Stored};
use crate::results::ExampleMap;
use crate::select::Selection;
use crate::{Error, Result};

/// Second, bounded pass over the examples that keep maps: the per-element VoG map of the flag
/// window and the last checkpoint's gradient (the main pass keeps neither, to stay flat in memory).
/// Checkpoints are the outer loop, so each is loaded once even in the chunked work order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute_maps(
    inputs: &mut MapInputs<'_>,
    windows: &[Window],
    k: usize,
    selection: &Selection,
    flag_window: usize,
    mode: LabelMode,
    config: &Config,
    mut each: impl FnMut(ExampleMap) -> Result<()>,
) -> Result<()> {
    let (bs, per_group) = match inputs {
        MapInputs::Backend { plan, .. } => (plan.batch, plan.chunk_batches),
        MapInputs::Stored { batch, .. } => (*batch, 1),
    };
    // Groups as large as the pass's chunks: memory stays within the plan, and each checkpoint
    // is loaded once per group when they are not all resident.
    for group in selection.map_rows.chunks(bs * per_group) {
        maps_of_group(
            inputs,
            windows,
            k,
            selection,
            group,
            bs,
            flag_window,
            mode,
            config,
            &mut each,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn maps_of_group(
    inputs: &mut MapInputs<'_>,
    windows: &[Window],
    k: usize,
    selection: &Selection,
    rows: &[usize],
    bs: usize,
    flag_window: usize,
    mode: LabelMode,
    config: &Config,
    each: &mut impl FnMut(ExampleMap) -> Result<()>,
) -> Result<()> {
    let chunks: Vec<&[usize]> = rows.chunks(bs).collect();
    // As in the scoring pass: `auto` channels follow the model where it tells.
    let hint = match inputs {
        MapInputs::Backend { models, .. } => models.get(0)?.info().channel_axis,
        MapInputs::Stored { .. } => None,
    };
    let axis = config.scoring.channel_axis.with_model(hint);
    let mut accs: Vec<Option<(VogAccumulator, Vec<usize>)>> = chunks.iter().map(|_| None).collect();
    let mut lasts: Vec<Vec<f32>> = vec![Vec::new(); chunks.len()];
    for ck in 0..k {
        for (ci, chunk) in chunks.iter().enumerate() {
            let (gradient, grad_shape) = match inputs {
                MapInputs::Backend {
                    models,
                    data,
                    transform,
                    paths,
                    ..
                } => {
                    let mut input = Vec::new();
                    for &r in *chunk {
                        data.read_rows(r, 1, &mut input)?;
                    }
                    transform.apply(&mut input);
                    let mut shape = vec![chunk.len()];
                    shape.extend(&transform.shape);
                    let view = TensorView::new(&shape, &input)?;
                    let used: Vec<u32> = chunk
                        .iter()
                        .map(|r| selection.map_labels[r].unwrap_or(0))
                        .collect();
                    let classes = if mode == LabelMode::PredictedEach {
                        Classes::Argmax
                    } else {
                        Classes::Given(&used)
                    };
                    let request = GradRequest {
                        input: view,
                        classes,
                        target: config.scoring.target,
                    };
                    let out = models
                        .get(ck)?
                        .input_gradients(&request)
                        .and_then(|o| o.validate(&request).map(|_| o))
                        .map_err(|source| Error::Step {
                            context: format!(
                                "{} (maps of flagged examples)",
                                checkpoint_label(ck, k, &paths[ck])
                            ),
                            source,
                        })?;
                    let gs = out
                        .gradient_shape
                        .clone()
                        .unwrap_or_else(|| transform.shape.clone());
                    (out.gradient, gs)
                }
                MapInputs::Stored { sources, .. } => {
                    let mut buf = Vec::new();
                    let mut shape = Vec::new();
                    for &r in *chunk {
                        match &mut sources[ck] {
                            Stored::Stacked(a) => {
                                shape = a.row_shape().to_vec();
                                a.read_f32(r, 1, &mut buf)?;
                            }
                            Stored::PerExample(files) => {
                                let mut a = ArrayFile::open_npy(&files[r])?;
                                shape = a.shape().to_vec();
                                a.read_f32(0, a.rows(), &mut buf)?;
                            }
                        }
                    }
                    (buf.into(), shape)
                }
            };
            let (a, _) = match accs[ci].as_mut() {
                Some(x) => x,
                None => {
                    let reduce = axis.resolve(config.scoring.channels, &grad_shape)?;
                    let mut a = VogAccumulator::new(&grad_shape, windows, k, reduce)?;
                    a.reset(chunk.len());
                    accs[ci].insert((a, grad_shape.clone()))
                }
            };
            a.add(ck, &gradient)?;
            if ck + 1 == k {
                lasts[ci] = gradient.into_vec();
            }
        }
    }
    for ((chunk, acc), last) in chunks.iter().zip(accs).zip(lasts) {
        let (mut a, grad_shape) = acc.expect("at least two checkpoints");
        let row_len: usize = grad_shape.iter().product();
        let map_shape = axis
            .resolve(config.scoring.channels, &grad_shape)?
            .reduced_shape(&grad_shape);
        for (i, &r) in chunk.iter().enumerate() {
            each(ExampleMap {
                row: r,
                vog_map: a
                    .vog_map(i, flag_window)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                vog_map_shape: map_shape.clone(),
                gradient: last[i * row_len..(i + 1) * row_len].to_vec(),
                gradient_shape: grad_shape.clone(),
            })?;
        }
    }
    Ok(())
}
