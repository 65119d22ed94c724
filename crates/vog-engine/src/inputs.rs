//! Input preparation: labels, ids and metadata joined and checked against the data
//! ([`Annotations`]), the label mode, the reshape and normalization examples get before the model
//! ([`InputTransform`]), reading a batch, and the errors that name the checkpoint and example.

use std::path::Path;

use vog_core::batch_shape_string;
use vog_data::Record;

use crate::config::{Config, LabelMode};
use crate::{Error, Result};

/// Reads examples `start..start + rows`, applies the input transform and refuses non-finite
/// values (naming the file and the example).
pub(crate) fn read_batch(
    data: &mut dyn vog_data::ExampleSource,
    transform: &InputTransform,
    data_path: &Path,
    start: usize,
    rows: usize,
) -> Result<Vec<f32>> {
    let row_len: usize = transform.shape.iter().product();
    let mut input = Vec::with_capacity(rows * row_len);
    data.read_rows(start, rows, &mut input)?;
    transform.apply(&mut input);
    if let Some(bad) = input.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{}: example {} holds a non-finite value (element {})",
            data_path.display(),
            start + bad / row_len.max(1),
            bad % row_len.max(1)
        )));
    }
    Ok(input)
}

/// Labels, ids and metadata of the examples, loaded and checked against each other. Ids that are
/// row numbers and absent metadata take no memory per example.
pub(crate) struct Annotations {
    pub(crate) labels: Option<Vec<u32>>,
    pub(crate) labels_source: Option<String>,
    pub(crate) ids: Option<Vec<String>>,
    pub(crate) meta: Option<Vec<Record>>,
    pub(crate) metadata_missing: usize,
}

impl Annotations {
    pub(crate) fn id(&self, row: usize) -> String {
        match &self.ids {
            Some(ids) => ids[row].clone(),
            None => row.to_string(),
        }
    }

    pub(crate) fn meta(&self, row: usize) -> Record {
        self.meta
            .as_ref()
            .map(|m| m[row].clone())
            .unwrap_or_default()
    }
}

pub(crate) fn load_annotations(
    config: &Config,
    rows: usize,
    data_path: Option<&Path>,
    embedded_labels: Option<&[u32]>,
    embedded_ids: Option<Vec<String>>,
    warnings: &mut Vec<String>,
) -> Result<Annotations> {
    let d = &config.data;
    let rows_of = || {
        data_path.map_or_else(
            || "the stored gradients".to_string(),
            |p| p.display().to_string(),
        )
    };
    let (labels, labels_source) = match (&d.labels, embedded_labels) {
        (Some(_), Some(_)) => return Err(Error::Config(
            "`data.labels`: the examples file already has a label column; give one or the other"
                .into(),
        )),
        (Some(path), None) => {
            let l =
                vog_data::read_labels(path, d.labels_key.as_deref(), d.label_column.as_deref())?;
            if l.len() != rows {
                return Err(Error::Input(format!(
                    "labels file {} has {} labels but {} has {rows} examples",
                    path.display(),
                    l.len(),
                    rows_of()
                )));
            }
            (Some(l), Some(path.display().to_string()))
        }
        (None, Some(l)) => (
            Some(l.to_vec()),
            Some(format!(
                "{} column `{}`",
                rows_of(),
                d.label_column.as_deref().unwrap_or("")
            )),
        ),
        (None, None) => (None, None),
    };
    let ids = match (&d.ids, embedded_ids) {
        (Some(path), _) => {
            let ids = vog_data::read_ids(path)?;
            if ids.len() != rows {
                return Err(Error::Input(format!(
                    "ids file {} has {} ids but {} has {rows} examples",
                    path.display(),
                    ids.len(),
                    rows_of()
                )));
            }
            Some(ids)
        }
        (None, Some(ids)) => Some(ids),
        (None, None) => None,
    };
    let (meta, metadata_missing) = match &d.metadata {
        Some(path) => {
            let records = vog_data::read_metadata(path)?;
            let row_ids: Vec<String>;
            let keys = match &ids {
                Some(ids) => ids.as_slice(),
                None => {
                    row_ids = (0..rows).map(|r| r.to_string()).collect();
                    &row_ids
                }
            };
            let (m, missing) =
                vog_data::join_metadata(path, records, d.metadata_key.as_deref(), keys)?;
            if missing > 0 {
                warnings.push(format!(
                    "{missing} of {rows} examples have no metadata in {}",
                    path.display()
                ));
            }
            (Some(m), missing)
        }
        None => (None, 0),
    };
    Ok(Annotations {
        labels,
        labels_source,
        ids,
        meta,
        metadata_missing,
    })
}

pub(crate) fn resolve_label_mode(config: &Config, has_labels: bool) -> Result<LabelMode> {
    match (config.scoring.labels, has_labels) {
        (LabelMode::Auto, true) => Ok(LabelMode::True),
        (LabelMode::Auto, false) => Ok(LabelMode::Predicted),
        (LabelMode::True, false) => Err(Error::Config(
            "`scoring.labels = \"true\"` needs labels: set data.labels (or data.label_column for CSV), \
             or use \"predicted\" for label-free scoring"
                .into(),
        )),
        (mode, _) => Ok(mode),
    }
}

/// Reshape and normalization applied to examples before they reach the model.
pub(crate) struct InputTransform {
    pub(crate) shape: Vec<usize>,
    pub(crate) scale: f32,
    pub(crate) mean: Option<Vec<f32>>,
    pub(crate) std: Option<Vec<f32>>,
}

impl InputTransform {
    pub(crate) fn new(config: &Config, data_path: &Path, stored: &[usize]) -> Result<Self> {
        let d = &config.data;
        let stored_len: usize = stored.iter().product();
        let shape = match &d.input_shape {
            Some(s) => {
                if s.iter().product::<usize>() != stored_len {
                    return Err(Error::Input(format!(
                        "`data.input_shape = {s:?}` holds {} values, but each example of {} has {stored_len} \
                         (shape {})",
                        s.iter().product::<usize>(),
                        data_path.display(),
                        batch_shape_string(stored)
                    )));
                }
                s.clone()
            }
            None => stored.to_vec(),
        };
        let channels = shape.first().copied().unwrap_or(1);
        for (field, v) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if let Some(v) = v {
                if v.len() != 1 && v.len() != channels {
                    return Err(Error::Config(format!(
                        "`{field}` has {} values; examples shaped {} need 1 or {channels} (one per channel)",
                        v.len(),
                        batch_shape_string(&shape)
                    )));
                }
            }
        }
        let to32 = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|&x| x as f32).collect());
        Ok(InputTransform {
            shape,
            scale: d.scale as f32,
            mean: to32(&d.mean),
            std: to32(&d.std),
        })
    }

    pub(crate) fn apply(&self, x: &mut [f32]) {
        if self.scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= self.scale);
        }
        if self.mean.is_none() && self.std.is_none() {
            return;
        }
        let row_len: usize = self.shape.iter().product();
        let channels = self.shape.first().copied().unwrap_or(1);
        let per_channel = row_len / channels.max(1);
        let pick = |v: &Option<Vec<f32>>, c: usize, default: f32| match v {
            Some(v) if v.len() == 1 => v[0],
            Some(v) => v[c],
            None => default,
        };
        for row in x.chunks_exact_mut(row_len) {
            for (c, chunk) in row.chunks_exact_mut(per_channel).enumerate() {
                let (m, s) = (pick(&self.mean, c, 0.0), pick(&self.std, c, 1.0));
                chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
            }
        }
    }
}

pub(crate) fn checkpoint_label(i: usize, k: usize, path: &Path) -> String {
    format!("checkpoint {} of {k} ({})", i + 1, path.display())
}

pub(crate) fn check_label_range(
    labels: &[u32],
    num_classes: usize,
    source: &str,
    checkpoint: &Path,
) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        None => Ok(()),
        Some((row, &l)) => Err(Error::Input(format!(
            "labels ({source}): label {l} of example {row} is out of range: the model ({}) has \
             {num_classes} classes (0..{})",
            checkpoint.display(),
            num_classes - 1
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step_error(
    e: vog_core::Error,
    ck: usize,
    k: usize,
    path: &Path,
    start: usize,
    rows: usize,
    data_path: &Path,
    ann: &Annotations,
) -> Error {
    let context = checkpoint_label(ck, k, path);
    match e {
        vog_core::Error::NonFinite { what, row, element } => Error::Input(format!(
            "{context}: the {what} of example {} (id {}) is NaN or infinite at element {element}",
            start + row,
            ann.id(start + row)
        )),
        vog_core::Error::ClassOutOfRange { class, num_classes, row } => Error::Input(format!(
            "labels ({}): label {class} of example {} is out of range: {context} has {num_classes} classes",
            ann.labels_source.as_deref().unwrap_or("?"),
            start + row
        )),
        vog_core::Error::Shape(m) => Error::Input(format!(
            "{context}: examples of {} do not fit the model: {m}",
            data_path.display()
        )),
        source => Error::Step { context: format!("{context}, examples {start}..{}", start + rows), source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_scale_and_channel_normalization() {
        let mut config = Config::default();
        config.data.input_shape = Some(vec![2, 1, 2]);
        config.data.scale = 0.5;
        config.data.mean = Some(vec![1.0, 2.0]);
        config.data.std = Some(vec![2.0, 4.0]);
        let t = InputTransform::new(&config, Path::new("x.npy"), &[4]).unwrap();
        let mut x = vec![2.0, 4.0, 8.0, 12.0];
        t.apply(&mut x);
        assert_eq!(x, vec![0.0, 0.5, 0.5, 1.0]);
        config.data.input_shape = Some(vec![3, 1, 2]);
        let err = InputTransform::new(&config, Path::new("x.npy"), &[4])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("input_shape") && err.contains("x.npy"),
            "{err}"
        );
        config.data.input_shape = Some(vec![2, 1, 2]);
        config.data.mean = Some(vec![1.0, 2.0, 3.0]);
        let err = InputTransform::new(&config, Path::new("x.npy"), &[4])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("data.mean"), "{err}");
    }
}
