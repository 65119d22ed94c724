//! Tensors and files behind an example: its input row (read from the run's dataset through a
//! reader kept per run), the kept VoG map and gradient, and the images its metadata names.
//!
//! An image is served only when an indexed example of the run names it in its metadata
//! ([`vog_store::Store::names_asset`]), and it is opened beneath the asset root one path
//! component at a time without following symbolic links ([`open_beneath`]); dotfiles, files
//! with several hard links and files over [`MAX_ASSET_BYTES`] are refused, and the file is
//! streamed, not read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vog_report::input::{layout_of, InputReader, TensorJson};
use vog_results::{Manifest, MapKind, ResultsDir};

use crate::api::ApiPath;
use crate::{blocking, ApiError, AppState};

/// The largest file `/asset/…` serves.
pub const MAX_ASSET_BYTES: u64 = 32 * 1024 * 1024;
/// The longest asset path, in bytes.
const MAX_ASSET_PATH: usize = 1024;
/// Runs whose dataset readers are kept open.
const CACHED_READERS: usize = 16;

/// The run's manifest, as copied into the store.
pub(crate) fn manifest(state: &AppState, run: &str) -> Result<Manifest, ApiError> {
    vog_store::check_run_name(run).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    match ResultsDir::open(&state.store.run_dir(run)) {
        Ok(r) => Ok(r.into_manifest()),
        Err(e @ vog_results::Error::Io { .. }) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A run's open dataset reader, with the modification time of the manifest it was opened from.
type CachedReader = (SystemTime, Arc<Mutex<InputReader>>);

/// Dataset readers kept open per run, replaced when the run's manifest changes (re-indexing).
#[derive(Default)]
pub(crate) struct InputCache {
    readers: Mutex<HashMap<String, CachedReader>>,
}

impl InputCache {
    /// The reader of `run`'s input data, opened on first use.
    fn reader(&self, state: &AppState, run: &str) -> Result<Arc<Mutex<InputReader>>, ApiError> {
        vog_store::check_run_name(run)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        let path = state.store.run_dir(run).join(vog_results::RUN_JSON);
        let changed = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| ApiError(StatusCode::NOT_FOUND, format!("run `{run}`: {e}")))?;
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((when, r)) = readers.get(run) {
            if *when == changed {
                return Ok(r.clone());
            }
        }
        let reader = InputReader::open(&manifest(state, run)?)
            .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
        let reader = Arc::new(Mutex::new(reader));
        if readers.len() >= CACHED_READERS {
            readers.clear();
        }
        readers.insert(run.to_string(), (changed, reader.clone()));
        Ok(reader)
    }
}

/// `GET /api/tensor/{input|map|grad}/{key}`: a tensor of the example as JSON.
pub(crate) async fn tensor(
    State(state): State<AppState>,
    ApiPath((what, key)): ApiPath<(String, String)>,
) -> Result<Json<TensorJson>, ApiError> {
    blocking(move || {
        let (doc, _) = state.store.example(&key)?;
        let run = doc["run"].as_str().unwrap_or_default().to_string();
        let row = doc["row"].as_u64().unwrap_or_default() as usize;
        match what.as_str() {
            "input" => {
                let reader = state.inputs.reader(&state, &run)?;
                let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
                reader
                    .read(row)
                    .map(Json)
                    .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))
            }
            "map" | "grad" => {
                let kind = if what == "map" {
                    MapKind::Vog
                } else {
                    MapKind::Grad
                };
                vog_store::check_run_name(&run)
                    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
                let path = state
                    .store
                    .run_dir(&run)
                    .join(vog_results::MAPS_DIR)
                    .join(vog_results::map_file(row as u64, kind));
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
                format!(
                    "no tensor `{}`: use input, map or grad",
                    other.chars().take(40).collect::<String>()
                ),
            )),
        }
    })
    .await
}

/// Checks an asset path as requested: relative, `/`-separated, no empty, `.`, `..` or hidden
/// (dot) component, no backslash or control character, at most 1 KiB.
pub fn check_asset_path(relative: &str) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "`{}`: {why}",
            relative.chars().take(200).collect::<String>()
        ))
    };
    if relative.is_empty() || relative.len() > MAX_ASSET_PATH {
        return refuse("not a path of 1 to 1024 bytes");
    }
    if relative.contains('\\') || relative.chars().any(char::is_control) {
        return refuse("backslashes and control characters are not allowed");
    }
    for part in relative.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return refuse("absolute paths, `..` and hidden files are not served");
        }
    }
    Ok(())
}

/// Opens `relative` (checked by [`check_asset_path`]) beneath `root`, one component at a time
/// with `O_NOFOLLOW`: a symbolic link anywhere on the way is refused, so nothing outside `root`
/// is reached, whatever the links inside say. The file must be a regular file with one link
/// (a hard link could name a file from elsewhere).
pub fn open_beneath(root: &Path, relative: &str) -> Result<File, String> {
    check_asset_path(relative)?;
    let file = walk(root, relative)?;
    let meta = file.metadata().map_err(|e| format!("`{relative}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{relative}` is not a file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() != 1 {
            return Err(format!(
                "`{relative}` has {} hard links; files with more than one are not served",
                meta.nlink()
            ));
        }
    }
    Ok(file)
}

#[cfg(unix)]
fn walk(root: &Path, relative: &str) -> Result<File, String> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut current =
        File::open(root).map_err(|e| format!("asset root {}: {e}", root.display()))?;
    let parts: Vec<&str> = relative.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let name = CString::new(*part).map_err(|_| format!("`{relative}`: a NUL byte"))?;
        let flags = libc::O_RDONLY
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            // A FIFO must not block the open; only regular files are read in the end.
            | if last { libc::O_NONBLOCK } else { libc::O_DIRECTORY };
        // SAFETY: `current` is an open directory descriptor for the duration of the call and
        // `name` a NUL-terminated string; openat returns a new descriptor or -1.
        let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => format!(
                    "`{relative}` goes through a symbolic link or a non-directory; links are not followed"
                ),
                Some(libc::ENOENT) => format!("no file `{relative}` under the asset root"),
                _ => format!("`{relative}`: {e}"),
            });
        }
        // SAFETY: `fd` was just returned by openat and is owned by nothing else.
        current = unsafe { File::from_raw_fd(fd) };
    }
    Ok(current)
}

#[cfg(not(unix))]
fn walk(root: &Path, relative: &str) -> Result<File, String> {
    let mut path = root.to_path_buf();
    for part in relative.split('/') {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| format!("no file `{relative}` under the asset root"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "`{relative}` goes through a symbolic link; links are not followed"
            ));
        }
    }
    File::open(&path).map_err(|e| format!("`{relative}`: {e}"))
}

fn content_type(path: &str) -> &'static str {
    match Path::new(path)
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
        _ => "application/octet-stream",
    }
}

/// The directory a run's assets are resolved beneath: the server's `--assets`, else the
/// directory of the run's metadata file, else of its data file.
fn asset_root(state: &AppState, run: &str) -> Result<PathBuf, ApiError> {
    if let Some(root) = &state.assets {
        return Ok(root.to_path_buf());
    }
    let d = manifest(state, run)?.input();
    d.metadata
        .as_deref()
        .or(d.path.as_deref())
        .map(|p| p.parent().unwrap_or(Path::new(".")).to_path_buf())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this run has no dataset".into()))
}

/// `GET /asset/{run}/{path}`: an image that an indexed example of the run names in its metadata,
/// from beneath the asset root, streamed.
pub(crate) async fn asset(
    State(state): State<AppState>,
    ApiPath((run, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let forbidden = |m: String| ApiError(StatusCode::FORBIDDEN, m);
    check_asset_path(&path).map_err(forbidden)?;
    let ctype = content_type(&path);
    let (file, len) = blocking(move || {
        vog_store::check_run_name(&run)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        if !state.store.names_asset(&run, &path)? {
            return Err(forbidden(format!(
                "`{path}` is named by no indexed example of run `{run}` (only images named in \
                 metadata are served; runs indexed by an older vog: index them again)"
            )));
        }
        let root = asset_root(&state, &run)?;
        let file = open_beneath(&root, &path).map_err(forbidden)?;
        let len = file
            .metadata()
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .len();
        if len > MAX_ASSET_BYTES {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("`{path}` has {len} bytes; files over {MAX_ASSET_BYTES} are not served"),
            ));
        }
        Ok((file, len))
    })
    .await?;
    let body = crate::stream::blocking_body("asset", move |out| {
        std::io::copy(&mut file.take(len), out).map(|_| ())
    });
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            // A dataset file never runs script in this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src 'self'".into(),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_stay_beneath_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("img")).unwrap();
        std::fs::write(root.path().join("img/a.png"), b"png").unwrap();
        std::fs::write(root.path().join(".hidden.png"), b"no").unwrap();
        std::fs::write(outside.path().join("secret.png"), b"no").unwrap();
        let mut f = open_beneath(root.path(), "img/a.png").unwrap();
        let mut got = String::new();
        f.read_to_string(&mut got).unwrap();
        assert_eq!(got, "png");
        for bad in [
            "../secret.png",
            "img/../../secret.png",
            "./img/a.png",
            "/etc/passwd",
            "",
            "img",
            "img/",
            "img//a.png",
            ".hidden.png",
            "img\\a.png",
            "img/a.png\n",
            "missing.png",
        ] {
            assert!(open_beneath(root.path(), bad).is_err(), "{bad:?}");
        }
        #[cfg(unix)]
        {
            let link = |target: &Path, name: &str| {
                std::os::unix::fs::symlink(target, root.path().join(name)).unwrap()
            };
            link(&outside.path().join("secret.png"), "img/link.png");
            link(outside.path(), "out");
            // Even a link that stays inside is not followed.
            link(&root.path().join("img"), "inside");
            for bad in ["img/link.png", "out/secret.png", "inside/a.png"] {
                let err = open_beneath(root.path(), bad).unwrap_err();
                assert!(err.contains("symbolic link"), "{bad}: {err}");
            }
            std::fs::hard_link(
                outside.path().join("secret.png"),
                root.path().join("img/hard.png"),
            )
            .unwrap();
            let err = open_beneath(root.path(), "img/hard.png").unwrap_err();
            assert!(err.contains("hard links"), "{err}");
        }
    }
}
