//! Input preparation: labels, ids and metadata joined and checked against the data
//! ([`Annotations`]), the label mode, the reshape and normalization examples get before the model
//! ([`InputTransform`]), reading a batch, and the errors that name the checkpoint and example.

use std::collections::HashMap;
use std::path::Path;

use vog_core::batch_shape_string;
use vog_data::Record;

use crate::config::{Config, LabelMode};
use crate::rowfile::RowFile;
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

/// Labels, ids and metadata of the examples, loaded and checked against each other. Labels are
/// held (4 bytes per example); ids and metadata wait on disk in row order ([`RowFile`]) and are
/// read back as results are written, so they take no memory per example. Ids that are row
/// numbers and absent metadata take no disk either.
pub(crate) struct Annotations {
    pub(crate) labels: Option<Vec<u32>>,
    pub(crate) labels_source: Option<String>,
    ids: Option<RowFile>,
    meta: Option<RowFile>,
    pub(crate) metadata_missing: usize,
}

impl Annotations {
    /// The id of `row`: its row number unless ids were given.
    pub(crate) fn id(&self, row: usize) -> Result<String> {
        match &self.ids {
            Some(ids) => ids.get(row, "ids"),
            None => Ok(row.to_string()),
        }
    }

    /// The metadata of `row`, empty where there is none.
    pub(crate) fn meta(&self, row: usize) -> Result<Record> {
        match &self.meta {
            Some(meta) => meta.get(row, "metadata"),
            None => Ok(Record::default()),
        }
    }
}

pub(crate) fn load_annotations(
    config: &Config,
    rows: usize,
    data_path: Option<&Path>,
    embedded_labels: Option<&[u32]>,
    embedded_ids: Option<&[String]>,
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
            let ids = RowFile::write("ids", |w| {
                vog_data::visit_ids(path, |id| w.push(&id).map(drop))?;
                Ok(())
            })?;
            if ids.rows() != rows {
                return Err(Error::Input(format!(
                    "ids file {} has {} ids but {} has {rows} examples",
                    path.display(),
                    ids.rows(),
                    rows_of()
                )));
            }
            Some(ids)
        }
        (None, Some(ids)) => Some(RowFile::write("ids", |w| {
            ids.iter().try_for_each(|id| w.push(id).map(drop))
        })?),
        (None, None) => None,
    };
    let (meta, metadata_missing) = match &d.metadata {
        Some(path) => {
            let (meta, missing) = join_metadata(path, d.metadata_key.as_deref(), rows, &ids)?;
            if missing > 0 {
                warnings.push(format!(
                    "{missing} of {rows} examples have no metadata in {}",
                    path.display()
                ));
            }
            (Some(meta), missing)
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

/// Metadata in row order: by row when `key` is `None` (one record per example, in order), else by
/// the value of `key` matched against the examples' ids (row numbers when none were given).
/// Returns the records and the number of examples without one. A join by key holds an index of
/// the metadata file (its keys and where each record starts) while it runs, not afterwards.
fn join_metadata(
    path: &Path,
    key: Option<&str>,
    rows: usize,
    ids: &Option<RowFile>,
) -> Result<(RowFile, usize)> {
    join_metadata_hashed(path, key, rows, ids, key_hash)
}

/// [`join_metadata`] with the key hash given (tests make every key clash).
fn join_metadata_hashed(
    path: &Path,
    key: Option<&str>,
    rows: usize,
    ids: &Option<RowFile>,
    key_hash: fn(&str) -> u64,
) -> Result<(RowFile, usize)> {
    let Some(key) = key else {
        let meta = RowFile::write("metadata", |w| {
            vog_data::visit_metadata(path, |r| w.push(&r).map(drop))?;
            Ok(())
        })?;
        if meta.rows() != rows {
            return Err(vog_data::Error::Mismatch(format!(
                "{}: {} metadata records for {rows} examples; join by row needs one record per \
                 example (or set `metadata_key` to join by id)",
                path.display(),
                meta.rows(),
            ))
            .into());
        }
        return Ok((meta, 0));
    };
    // key hash → where the record starts: 16 bytes per record in one allocation, freed when the
    // join ends. Keys whose hashes clash (the same key twice, or a true 64-bit collision) are
    // settled once the file is written: duplicates are refused, collisions looked up by key.
    let mut at: HashMap<u64, u64> = HashMap::new();
    let mut clashes: Vec<(u64, u64)> = Vec::new();
    let records = RowFile::write("metadata", |w| {
        vog_data::visit_metadata(path, |r| {
            let id = vog_data::metadata_key(path, &r, key, w.rows())?;
            let start = w.push(&r)?;
            if let Some(first) = at.insert(key_hash(&id), start) {
                clashes.push((key_hash(&id), first));
            }
            Ok::<_, Error>(())
        })?;
        Ok(())
    })?;
    let key_at = |start: u64| -> Result<(String, Record)> {
        let raw = records.read_at(start, "metadata")?;
        let record: Record = serde_json::from_str(&raw)
            .map_err(|e| Error::Pipeline(format!("metadata record: {e}")))?;
        Ok((vog_data::metadata_key(path, &record, key, 0)?, record))
    };
    let mut exact: HashMap<String, u64> = HashMap::new();
    for (hash, start) in clashes {
        let mut starts = vec![start];
        if let Some(last) = at.remove(&hash) {
            starts.push(last);
        }
        for start in starts {
            let (id, _) = key_at(start)?;
            if exact.insert(id.clone(), start).is_some() {
                return Err(vog_data::Error::Format {
                    path: path.to_path_buf(),
                    message: format!("id `{id}` appears twice"),
                }
                .into());
            }
        }
    }
    let mut missing = 0;
    let meta = RowFile::write("metadata", |w| {
        for row in 0..rows {
            let id = match ids {
                Some(ids) => ids.get::<String>(row, "ids")?,
                None => row.to_string(),
            };
            let found = match exact.remove(&id) {
                Some(start) => Some(key_at(start)?.1),
                None => match at.get(&key_hash(&id)) {
                    Some(&start) => {
                        let (their, record) = key_at(start)?;
                        (their == id).then(|| {
                            at.remove(&key_hash(&id));
                            record
                        })
                    }
                    None => None,
                },
            };
            match found {
                Some(record) => w.push(&record)?,
                None => {
                    missing += 1;
                    w.push(&Record::default())?
                }
            };
        }
        Ok(())
    })?;
    Ok((meta, missing))
}

/// A join key's hash (std's SipHash with its fixed keys: the same in every run).
fn key_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
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
            ann.id(start + row).unwrap_or_else(|_| "?".into())
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

#[cfg(test)]
mod streamed {
    use super::*;

    fn ids(list: &[&str]) -> Option<RowFile> {
        Some(
            RowFile::write("ids", |w| {
                list.iter().try_for_each(|id| w.push(id).map(drop))
            })
            .unwrap(),
        )
    }

    #[test]
    fn keys_whose_hashes_clash_join_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            "{\"id\": \"a\", \"v\": 1}\n{\"id\": \"b\", \"v\": 2}\n{\"id\": \"c\", \"v\": 3}\n",
        )
        .unwrap();
        let same = |_: &str| 7u64;
        let (joined, missing) =
            join_metadata_hashed(&p, Some("id"), 4, &ids(&["c", "x", "a", "b"]), same).unwrap();
        assert_eq!(missing, 1);
        let v: Vec<Option<i64>> = (0..4)
            .map(|r| {
                joined
                    .get::<Record>(r, "metadata")
                    .unwrap()
                    .get("v")
                    .and_then(|v| v.as_i64())
            })
            .collect();
        assert_eq!(v, [Some(3), None, Some(1), Some(2)]);
        // A key that is absent but hashes like a present one is missing, not matched.
        let (_, missing) = join_metadata_hashed(&p, Some("id"), 1, &ids(&["z"]), same).unwrap();
        assert_eq!(missing, 1);
        std::fs::write(&p, "{\"id\": \"a\"}\n{\"id\": \"b\"}\n{\"id\": \"a\"}\n").unwrap();
        let err = join_metadata_hashed(&p, Some("id"), 3, &None, same)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("id `a` appears twice"), "{err}");
    }

    #[test]
    fn metadata_joins_by_id_and_row_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(&p, "id,camera,iso\n7,b,200\n3,a,1.5\n").unwrap();
        let (joined, missing) = join_metadata(&p, Some("id"), 3, &ids(&["3", "9", "7"])).unwrap();
        assert_eq!(missing, 1);
        let rows: Vec<Record> = (0..3).map(|r| joined.get(r, "metadata").unwrap()).collect();
        assert_eq!(rows[0]["camera"], "a");
        assert_eq!(rows[0]["iso"], 1.5);
        assert!(rows[1].is_empty());
        assert_eq!(rows[2]["iso"], 200);
        // Without ids the keys are row numbers.
        let (joined, missing) = join_metadata(&p, Some("id"), 4, &None).unwrap();
        assert_eq!(missing, 3);
        let row3: Record = joined.get(3, "metadata").unwrap();
        assert_eq!(row3["camera"], "a");
        // By row: one record per example, in order.
        let (joined, missing) = join_metadata(&p, None, 2, &None).unwrap();
        assert_eq!(missing, 0);
        assert_eq!(joined.get::<Record>(1, "metadata").unwrap()["camera"], "a");
        let err = join_metadata(&p, None, 3, &None).err().unwrap().to_string();
        assert!(err.contains("2 metadata records for 3 examples"), "{err}");

        std::fs::write(&p, "id,camera\n7,b\n7,a\n").unwrap();
        let err = join_metadata(&p, Some("id"), 2, &None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("id `7` appears twice"), "{err}");
        let err = join_metadata(&p, Some("name"), 2, &None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("record 1: no `name` field to join on"),
            "{err}"
        );
    }
}
