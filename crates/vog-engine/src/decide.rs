//! What is decided once the pass is over: class statistics and their normalization, the flag
//! policy's selection, and the manifest.

use std::collections::BTreeMap;

use vog_core::{ClassStats, Window};

use crate::config::{Config, LabelMode};
use crate::maps::compute_maps;
use crate::prepare::{MapInputs, Pass};
use crate::results::{ClassEntry, ExampleMap, ExampleScore, Manifest};
use crate::select::{Selection, Tally};
use crate::Result;

/// Everything decided once the pass is over.
pub(crate) struct Decided<'a> {
    pub(crate) windows: Vec<Window>,
    pub(crate) extra_columns: Vec<String>,
    pub(crate) stats: Vec<ClassStats>,
    pub(crate) selection: Selection,
    pub(crate) manifest: Manifest,
    pub(crate) inputs: MapInputs<'a>,
    pub(crate) mode: LabelMode,
    pub(crate) flag_window: usize,
}

impl Decided<'_> {
    /// Computes the kept maps, handing each to `each` as it is finished.
    pub(crate) fn maps(
        &mut self,
        config: &Config,
        each: impl FnMut(ExampleMap) -> Result<()>,
    ) -> Result<()> {
        if self.selection.map_rows.is_empty() {
            return Ok(());
        }
        compute_maps(
            &mut self.inputs,
            &self.windows,
            self.manifest.checkpoints.len(),
            &self.selection,
            self.flag_window,
            self.mode,
            config,
            each,
        )
    }

    /// Fills in an example's normalized scores, flag and map mark.
    pub(crate) fn finish_row(&self, e: &mut ExampleScore) {
        e.vog_norm = match e.label_used {
            Some(c) => self
                .stats
                .iter()
                .zip(&e.vog)
                .map(|(s, &v)| Some(s.normalize(c, v)))
                .collect(),
            None => vec![None; self.windows.len()],
        };
        self.selection.mark(e);
    }
}

/// Class statistics, flags, maps and the manifest of a finished pass; `rows` reads its examples
/// again (only when the flag policy needs them).
pub(crate) fn decide<'a, I, E>(
    config: &Config,
    pass: Pass<'a>,
    tally: &Tally,
    rows: impl FnOnce() -> Result<I>,
) -> Result<Decided<'a>>
where
    I: Iterator<Item = Result<E>>,
    E: std::borrow::Borrow<ExampleScore>,
{
    let Pass {
        run,
        extra_columns,
        mut warnings,
        inputs,
        mode,
    } = pass;
    let windows = run.scoring.windows.clone();
    let mut stats = tally.stats.clone();
    stats.resize(windows.len(), ClassStats::default());
    let mut classes = BTreeMap::new();
    for (w, s) in windows.iter().zip(&stats) {
        for (class, summary) in s.degenerate_classes() {
            warnings.push(format!(
                "window `{}`: class {class} has {} example(s) and std {:.3e}; its normalized VoG is set to 0",
                w.name, summary.count, summary.std
            ));
        }
        classes.insert(
            w.name.clone(),
            s.summaries()
                .into_iter()
                .map(|(class, summary)| ClassEntry { class, summary })
                .collect::<Vec<_>>(),
        );
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let flag_window = windows.iter().position(|x| x.name == config.flag.window);
    let selection = if crate::select::needed(&config.flag) {
        let per_map = 4
            * (run.scoring.vog_map_shape.iter().product::<usize>()
                + run.data.model_input_shape.iter().product::<usize>()) as u64;
        crate::select::select(
            &config.flag,
            flag_window,
            &stats,
            &tally.by_class,
            per_map,
            rows()?,
        )?
    } else {
        Selection::none()
    };
    let manifest = Manifest {
        format: vog_results::FORMAT,
        tool: tool_info(),
        created_utc: vog_core::now_rfc3339(),
        source: run.source,
        backend: run.backend,
        backend_library: None,
        config: config.clone(),
        data: run.data,
        checkpoints: run.checkpoints,
        scoring: run.scoring,
        classes,
        flagged: selection.flagged,
        maps: selection.map_rows.len(),
        warnings,
        timings: run.timings,
        merged_from: None,
    };
    Ok(Decided {
        windows,
        extra_columns,
        stats,
        selection,
        manifest,
        inputs,
        mode,
        flag_window: flag_window.unwrap_or(0),
    })
}

pub(crate) fn tool_info() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("name".to_string(), "vog".to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ])
}
