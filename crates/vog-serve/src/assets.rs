//! Tensors and files behind an example: its input row (read from the run's dataset), the kept VoG
//! map and gradient, and files of the dataset directory (images named in metadata).

use std::path::{Component, Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::{blocking, ApiError, AppState};

/// A tensor for the browser to draw.
#[derive(Debug, Serialize)]
pub struct TensorJson {
    /// Shape of one example (no batch dimension).
    pub shape: Vec<usize>,
    /// `image` (`[H, W]`, `[C, H, W]` with C of 1 or 3, `[H, W, C]`) or `table`.
    pub layout: &'static str,
    /// Row-major values.
    pub data: Vec<f32>,
    /// Feature names for tabular data (CSV columns), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// `image` when the shape can be drawn as a picture, else `table`.
pub fn layout_of(shape: &[usize]) -> &'static str {
    let small = |c: usize| c == 1 || c == 3;
    match shape {
        [h, w] if *h >= 4 && *w >= 4 => "image",
        [c, h, w] if small(*c) && *h >= 4 && *w >= 4 => "image",
        [h, w, c] if small(*c) && *h >= 4 && *w >= 4 => "image",
        _ => "table",
    }
}

/// The run's manifest, as copied into the store.
pub(crate) fn manifest(state: &AppState, run: &str) -> Result<Value, ApiError> {
    vog_store::check_run_name(run).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let path = state.store.run_dir(run).join("run.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", path.display()),
        )
    })
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    })
}

/// The input data of a run, opened once from its manifest (`run.json`) and read row by row.
pub struct InputReader {
    path: PathBuf,
    source: Box<dyn vog_data::ExampleSource>,
    /// The shape rows are drawn in: the stored shape, or `data.input_shape` when the model saw
    /// flat rows as images.
    shape: Vec<usize>,
    features: Option<Vec<String>>,
}

impl InputReader {
    /// Opens the data file the manifest names; the error says which file and why.
    pub fn open(manifest: &Value) -> Result<Self, String> {
        let d = &manifest["config"]["data"];
        let path = manifest["data"]["path"]
            .as_str()
            .or(d["path"].as_str())
            .map(PathBuf::from)
            .ok_or("this run was scored from stored gradients: it has no input data")?;
        let gone = |e: vog_data::Error| e.to_string();
        let format = d["format"].as_str().and_then(vog_data::Format::from_name);
        let csv = vog_data::CsvColumns {
            label: d["label_column"].as_str().map(String::from),
            id: d["id_column"].as_str().map(String::from),
            features: str_list(&d["features"]),
        };
        let is_csv = match format {
            Some(f) => f == vog_data::Format::Csv,
            None => vog_data::Format::detect(&path).map_err(gone)? == vog_data::Format::Csv,
        };
        let mut features = None;
        let source: Box<dyn vog_data::ExampleSource> = if is_csv {
            let t = vog_data::CsvTable::open(&path, &csv).map_err(gone)?;
            features = Some(t.feature_names().to_vec());
            Box::new(t)
        } else {
            vog_data::open_examples(&path, format, d["key"].as_str(), &csv).map_err(gone)?
        };
        let mut shape = source.row_shape().to_vec();
        // Flat rows that the model saw as images (data.input_shape) are drawn as images.
        if let Some(s) = d["input_shape"].as_array() {
            let s: Vec<usize> = s
                .iter()
                .filter_map(|v| v.as_u64().map(|v| v as usize))
                .collect();
            if layout_of(&shape) == "table"
                && layout_of(&s) == "image"
                && s.iter().product::<usize>() == shape.iter().product::<usize>()
            {
                shape = s;
            }
        }
        Ok(InputReader {
            path,
            source,
            shape,
            features,
        })
    }

    /// `image` or `table`, for every row of this data.
    pub fn layout(&self) -> &'static str {
        layout_of(&self.shape)
    }

    /// One row, shaped for drawing.
    pub fn read(&mut self, row: usize) -> Result<TensorJson, String> {
        if row >= self.source.len() {
            return Err(format!(
                "{}: row {row} requested, the file has {} (did the data change after scoring?)",
                self.path.display(),
                self.source.len()
            ));
        }
        let mut data = Vec::new();
        self.source
            .read_rows(row, 1, &mut data)
            .map_err(|e| e.to_string())?;
        Ok(TensorJson {
            layout: self.layout(),
            shape: self.shape.clone(),
            data,
            features: self.features.clone(),
        })
    }
}

/// `GET /api/tensor/{input|map|grad}/{key}`: a tensor of the example as JSON.
pub(crate) async fn tensor(
    State(state): State<AppState>,
    UrlPath((what, key)): UrlPath<(String, String)>,
) -> Result<Json<TensorJson>, ApiError> {
    blocking(move || {
        let (doc, _) = state.store.example(&key)?;
        let run = doc["run"].as_str().unwrap_or_default().to_string();
        let row = doc["row"].as_u64().unwrap_or_default() as usize;
        match what.as_str() {
            "input" => InputReader::open(&manifest(&state, &run)?)
                .and_then(|mut r| r.read(row))
                .map(Json)
                .map_err(|m| ApiError(StatusCode::NOT_FOUND, m)),
            "map" | "grad" => {
                let ext = if what == "map" { "vog" } else { "grad" };
                vog_store::check_run_name(&run)
                    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
                let path = state
                    .store
                    .run_dir(&run)
                    .join("maps")
                    .join(format!("{row}.{ext}.npy"));
                if !path.is_file() {
                    return Err(ApiError(
                        StatusCode::NOT_FOUND,
                        format!("`{key}` has no kept {what} (only flagged examples keep them)"),
                    ));
                }
                let mut a = vog_data::ArrayFile::open_npy(&path)
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                let mut data = Vec::new();
                let shape = a.shape().to_vec();
                a.read_f32(0, a.rows(), &mut data)
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                Ok(Json(TensorJson {
                    layout: layout_of(&shape),
                    shape,
                    data,
                    features: None,
                }))
            }
            other => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no tensor `{other}`: use input, map or grad"),
            )),
        }
    })
    .await
}

/// Resolves `relative` inside `root`, refusing anything that would leave it: absolute paths,
/// `..`, and symbolic links that point outside. Returns the canonical file path.
pub fn resolve_asset(root: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if relative.is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{relative}` is not a path inside the dataset directory"
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("dataset directory {}: {e}", root.display()))?;
    let full = root
        .join(rel)
        .canonicalize()
        .map_err(|_| format!("no file `{relative}` in the dataset directory"))?;
    if !full.starts_with(&root) {
        return Err(format!("`{relative}` leads outside the dataset directory"));
    }
    if !full.is_file() {
        return Err(format!("`{relative}` is not a file"));
    }
    Ok(full)
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("svg") => "image/svg+xml",
        Some("txt" | "csv") => "text/plain; charset=utf-8",
        Some("json" | "jsonl") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /asset/{run}/{path}`: a file from the run's dataset directory (the directory of its data
/// file), such as an image named in metadata.
pub(crate) async fn asset(
    State(state): State<AppState>,
    UrlPath((run, path)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let m = manifest(&state, &run)?;
        let data = m["data"]["path"]
            .as_str()
            .or(m["config"]["data"]["path"].as_str())
            .map(PathBuf::from)
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this run has no dataset".into()))?;
        let root = data.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = resolve_asset(&root, &path).map_err(|m| ApiError(StatusCode::FORBIDDEN, m))?;
        let bytes = std::fs::read(&file)
            .map_err(|e| ApiError(StatusCode::NOT_FOUND, format!("{path}: {e}")))?;
        Ok((
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // A dataset file never runs script in this origin (an SVG opened directly).
                (
                    header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
                ),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(layout_of(&[28, 28]), "image");
        assert_eq!(layout_of(&[3, 32, 32]), "image");
        assert_eq!(layout_of(&[32, 32, 3]), "image");
        assert_eq!(layout_of(&[784]), "table");
        assert_eq!(layout_of(&[2]), "table");
        assert_eq!(layout_of(&[16, 8, 8]), "table");
    }

    #[test]
    fn assets_stay_inside_the_dataset() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("img")).unwrap();
        std::fs::write(root.path().join("img/a.png"), b"png").unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"no").unwrap();
        assert!(resolve_asset(root.path(), "img/a.png").is_ok());
        assert!(resolve_asset(root.path(), "./img/a.png").is_ok());
        for bad in [
            "../secret.txt",
            "img/../../secret.txt",
            "/etc/passwd",
            "",
            "img",
            "missing.png",
        ] {
            assert!(resolve_asset(root.path(), bad).is_err(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(
                outside.path().join("secret.txt"),
                root.path().join("img/link.txt"),
            )
            .unwrap();
            let err = resolve_asset(root.path(), "img/link.txt").unwrap_err();
            assert!(err.contains("outside"), "{err}");
        }
    }
}
