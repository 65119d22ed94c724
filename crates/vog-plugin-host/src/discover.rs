//! Finding plugin files: by explicit path, or by backend name in an ordered list of directories.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};

use crate::PluginError;

/// Environment variable with extra plugin directories (`:`-separated on Unix).
pub const PLUGIN_PATH_ENV: &str = "VOG_PLUGIN_PATH";

const STEM: &str = "vog_backend_";

/// The file name of backend `name`'s plugin on this platform (`libvog_backend_onnx.so`).
pub fn library_file_name(name: &str) -> String {
    format!("{DLL_PREFIX}{STEM}{name}{DLL_SUFFIX}")
}

/// The backend name a plugin file is named for (`libvog_backend_onnx.so` → `onnx`).
pub fn name_from_file(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let name = file
        .strip_prefix(DLL_PREFIX)?
        .strip_prefix(STEM)?
        .strip_suffix(DLL_SUFFIX)?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Whether a `--backend` value is a path rather than a name.
pub fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(DLL_SUFFIX)
}

/// Plugin directories in search order: `VOG_PLUGIN_PATH`, then `config_dirs` (the configuration's
/// `plugins.dirs`), then the directory of the running executable and its `../lib/vog`.
pub fn search_dirs(config_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os(PLUGIN_PATH_ENV) {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(config_dirs.iter().cloned());
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib/vog"));
        dirs.insert(dirs.len() - 1, exe_dir);
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        let fresh = !seen.contains(&key);
        seen.push(key);
        fresh
    });
    dirs
}

/// The first plugin file for backend `name` in `dirs`.
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    let file = library_file_name(name);
    for d in dirs {
        let p = d.join(&file);
        if p.is_file() {
            return Ok(p);
        }
    }
    let searched = if dirs.is_empty() {
        "no directory".to_string()
    } else {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(PluginError::NotFound {
        name: name.to_string(),
        file,
        searched,
    })
}

/// Every plugin file in `dirs` (first occurrence of each backend name wins).
pub fn discover(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for p in files {
            if let Some(name) = name_from_file(&p).filter(|_| p.is_file()) {
                if !names.contains(&name) {
                    names.push(name);
                    out.push(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files() {
        let f = library_file_name("onnx");
        assert_eq!(name_from_file(Path::new(&f)).as_deref(), Some("onnx"));
        assert_eq!(name_from_file(Path::new("libfoo.so")), None);
        assert!(looks_like_path("./x"));
        assert!(looks_like_path(&f));
        assert!(!looks_like_path("candle"));
    }

    #[test]
    fn search_order_and_discovery() {
        let a = std::env::temp_dir().join(format!("vog-discover-a-{}", std::process::id()));
        let b = std::env::temp_dir().join(format!("vog-discover-b-{}", std::process::id()));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join(library_file_name("x")), b"").unwrap();
        std::fs::write(a.join(library_file_name("x")), b"").unwrap();
        std::fs::write(b.join(library_file_name("y")), b"").unwrap();
        std::fs::write(b.join("unrelated.txt"), b"").unwrap();
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(find("x", &dirs).unwrap(), a.join(library_file_name("x")));
        assert_eq!(find("y", &dirs).unwrap(), b.join(library_file_name("y")));
        let err = find("z", &dirs).unwrap_err().to_string();
        assert!(
            err.contains(&library_file_name("z")) && err.contains(&a.display().to_string()),
            "{err}"
        );
        let found = discover(&dirs);
        assert_eq!(
            found,
            vec![
                a.join(library_file_name("x")),
                b.join(library_file_name("y"))
            ]
        );
        let dirs = search_dirs(std::slice::from_ref(&a));
        let exe_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let at = |p: &Path| dirs.iter().position(|d| d == p).unwrap();
        assert!(at(&a) < at(&exe_dir), "{dirs:?}");
        assert_eq!(
            at(&exe_dir) + 1,
            at(&exe_dir.join("../lib/vog")),
            "{dirs:?}"
        );
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
    }
}
