//! Finding checkpoints (or stored-gradient directories) and putting them in training order.

use std::path::{Path, PathBuf};

use vog_core::natural_cmp;

use crate::config::CheckpointOrder;
use crate::{Error, Result};

/// What a path list should resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Checkpoint files; a directory contributes every file inside with one of the extensions.
    Files,
    /// Directories (stored gradients); a directory is taken as it is.
    Dirs,
}

/// Resolves files, directories and glob patterns into an ordered, de-duplicated list.
///
/// `field` names the configuration key in errors; `extensions` (without dots) filter the files of
/// a directory when looking for [`Entry::Files`] (empty: every non-hidden file).
pub fn resolve(
    specs: &[String],
    entry: Entry,
    order: CheckpointOrder,
    extensions: &[String],
    field: &str,
) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for spec in specs {
        let path = Path::new(spec);
        let is_glob = spec.contains(['*', '?', '[']);
        if is_glob && !path.exists() {
            let matches = glob::glob(spec)
                .map_err(|e| Error::Config(format!("`{field}`: bad pattern `{spec}`: {e}")))?;
            let mut found = 0;
            for m in matches {
                let m = m.map_err(|e| {
                    let p = e.path().to_path_buf();
                    Error::io(p, e.into())
                })?;
                let keep = match entry {
                    Entry::Files => m.is_file(),
                    Entry::Dirs => m.is_dir(),
                };
                if keep {
                    out.push(m);
                    found += 1;
                }
            }
            if found == 0 {
                return Err(Error::Input(format!(
                    "`{field}`: pattern `{spec}` matches no {}",
                    if entry == Entry::Files {
                        "file"
                    } else {
                        "directory"
                    }
                )));
            }
        } else if path.is_dir() && entry == Entry::Files {
            let before = out.len();
            for item in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let p = item.map_err(|e| Error::io(path, e))?.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext_ok = extensions.is_empty()
                    || p.extension()
                        .is_some_and(|e| extensions.iter().any(|x| x == &*e.to_string_lossy()));
                if p.is_file() && !name.starts_with('.') && ext_ok {
                    out.push(p);
                }
            }
            if out.len() == before {
                return Err(Error::Input(format!(
                    "`{field}`: directory {} holds no checkpoint file{}",
                    path.display(),
                    if extensions.is_empty() {
                        String::new()
                    } else {
                        format!(" (*.{})", extensions.join(", *."))
                    }
                )));
            }
        } else if (entry == Entry::Files && path.is_file())
            || (entry == Entry::Dirs && path.is_dir())
        {
            out.push(path.to_path_buf());
        } else if path.exists() {
            return Err(Error::Input(format!(
                "`{field}`: {} is not a {}",
                path.display(),
                if entry == Entry::Files {
                    "file"
                } else {
                    "directory"
                }
            )));
        } else {
            return Err(Error::Input(format!(
                "`{field}`: {} does not exist",
                path.display()
            )));
        }
    }
    if order == CheckpointOrder::Name {
        out.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_from_dir_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "epoch_10.safetensors",
            "epoch_2.safetensors",
            "epoch_1.safetensors",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let d = dir.path().to_string_lossy().into_owned();
        let exts = vec!["safetensors".to_string()];
        let got = resolve(
            std::slice::from_ref(&d),
            Entry::Files,
            CheckpointOrder::Name,
            &exts,
            "checkpoints.paths",
        )
        .unwrap();
        assert_eq!(
            names(got),
            [
                "epoch_1.safetensors",
                "epoch_2.safetensors",
                "epoch_10.safetensors"
            ]
        );
        let pattern = format!("{d}/epoch_*");
        let got = resolve(&[pattern], Entry::Files, CheckpointOrder::Name, &[], "x").unwrap();
        assert_eq!(got.len(), 3);
        let given = vec![
            format!("{d}/epoch_2.safetensors"),
            format!("{d}/epoch_1.safetensors"),
        ];
        let got = resolve(&given, Entry::Files, CheckpointOrder::Given, &[], "x").unwrap();
        assert_eq!(names(got), ["epoch_2.safetensors", "epoch_1.safetensors"]);
    }

    #[test]
    fn missing_paths_and_empty_globs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_string_lossy().into_owned();
        let err = resolve(
            &[format!("{d}/nope.safetensors")],
            Entry::Files,
            CheckpointOrder::Name,
            &[],
            "checkpoints.paths",
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = resolve(
            &[format!("{d}/*.onnx")],
            Entry::Files,
            CheckpointOrder::Name,
            &[],
            "f",
        )
        .unwrap_err();
        assert!(err.to_string().contains("matches no file"), "{err}");
    }
}
