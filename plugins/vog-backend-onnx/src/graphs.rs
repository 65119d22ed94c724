//! Gradient graphs and their two caches.
//!
//! - The rewritten graph of a checkpoint for one target (`KEY.grad.onnx` with `KEY.json`), keyed
//!   by the model's bytes and what was asked (input, output, `wrt`, target, vog's kernels); the
//!   JSON records the external data files the graph inlined, with their digests, so that a hit
//!   needs neither the model decoded nor its graph rebuilt.
//! - ONNX Runtime's optimized form of that graph (`KEY2.opt.onnx`), saved by the first session
//!   that optimized it and loaded without optimizing again. Its key adds what the optimized graph
//!   depends on: ONNX Runtime's build, this processor (ONNX Runtime lays convolutions out in
//!   blocks sized for its vector width, and says such graphs belong to the machine that made
//!   them), the optimization level and the threads. CPU sessions only.
//!
//! Both are best effort: an entry that cannot be written, read or loaded only costs time (it is
//! rebuilt, and a broken optimized graph is removed).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vog_core::{Error, Result, Target};

use crate::options::{Device, OnnxOptions, Optimization};

/// The largest rewritten graph whose optimized form is saved (bytes): ONNX Runtime writes the
/// optimized graph as one protobuf, which cannot pass 2 GiB, and folding transposed copies of the
/// weights can double a graph.
pub(crate) const MAX_SAVED: usize = 768 << 20;

/// Bumped when what the cache keeps changes shape (not the graphs: see `GRAPH_REVISION`).
const CACHE_FORMAT: u32 = 2;

/// What the cache keeps beside a rewritten graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GraphMeta {
    pub input: String,
    pub input_elem_type: i32,
    pub input_dims: Option<Vec<Option<i64>>>,
    pub output: String,
    pub wrt: String,
    pub classes_input: String,
    pub classes_output: String,
    pub gradient_output: String,
    #[serde(default)]
    pub channel_axis: Option<vog_core::ChannelAxis>,
    /// External data files inlined into the graph: paths relative to the model's directory, and
    /// the SHA-256 of each (a hit must find them unchanged).
    #[serde(default)]
    pub external: Vec<(String, String)>,
}

impl GraphMeta {
    fn of(g: &vog_onnx::GradModel, external: Vec<(String, String)>) -> Self {
        GraphMeta {
            input: g.input.clone(),
            input_elem_type: g.input_elem_type,
            input_dims: g.input_dims.clone(),
            output: g.output.clone(),
            wrt: g.wrt.clone(),
            classes_input: g.classes_input.clone(),
            classes_output: g.classes_output.clone(),
            gradient_output: g.gradient_output.clone(),
            channel_axis: g.channel_axis,
            external,
        }
    }
}

/// A gradient graph as a session is made from it.
pub(crate) enum Source {
    /// The rewritten graph's bytes: ONNX Runtime optimizes it when the session starts.
    Plain(Vec<u8>),
    /// ONNX Runtime's optimized form of it, from the cache: loaded without optimizing.
    Optimized(PathBuf),
}

/// A checkpoint's gradient graph for one target, ready for a session.
pub(crate) struct Prepared {
    pub source: Source,
    pub meta: GraphMeta,
    /// Where ONNX Runtime's optimized graph is kept: read from there (`Source::Optimized`), or to
    /// be written there by the session that optimizes `Source::Plain`. `None`: not cached.
    pub optimized: Option<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        error: e,
    })?;
    Ok(hex(&Sha256::digest(&data)))
}

/// What the optimized graph depends on beyond the rewritten graph: ONNX Runtime's build and this
/// processor (vendor, model, feature flags of `/proc/cpuinfo`'s first processor). `None` where
/// the processor cannot be told (no `/proc/cpuinfo`): optimized graphs are then not cached.
pub(crate) fn runtime_fingerprint(build_info: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let first = text.split("\n\n").next()?;
    const KEYS: [&str; 10] = [
        "vendor_id",
        "cpu family",
        "model",
        "model name",
        "flags",
        "Features",
        "CPU implementer",
        "CPU architecture",
        "CPU variant",
        "CPU part",
    ];
    let cpu: Vec<&str> = first
        .lines()
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|k| KEYS.contains(&k.trim()))
        })
        .collect();
    (!cpu.is_empty()).then(|| format!("{build_info}\n{}", cpu.join("\n")))
}

/// The graph for `target` of the model `bytes` read from `path`: ONNX Runtime's optimized form
/// when the cache has it, else the rewritten graph (from the cache, or built and cached).
/// `fingerprint` is [`runtime_fingerprint`]'s (`None`: optimized graphs are not cached).
pub(crate) fn prepare(
    path: &Path,
    bytes: &[u8],
    options: &OnnxOptions,
    target: Target,
    fingerprint: Option<&str>,
) -> Result<Prepared> {
    let key = graph_key(bytes, options, target);
    let optimized = match (options.cache_dir(), fingerprint) {
        (Some(dir), Some(f)) => optimized_path(&dir, &key, options, f),
        _ => None,
    };
    if let Some(opt) = optimized.as_ref().filter(|p| p.is_file()) {
        let dir = opt.parent().unwrap_or(Path::new("."));
        if let Some(meta) = cached_meta(dir, &key, path) {
            tracing::debug!(checkpoint = %path.display(), cache = %opt.display(), "optimized gradient graph from cache");
            return Ok(Prepared {
                source: Source::Optimized(opt.clone()),
                meta,
                optimized,
            });
        }
    }
    let (graph, meta) = rewritten(path, bytes, options, target, &key)?;
    Ok(Prepared {
        source: Source::Plain(graph),
        meta,
        optimized,
    })
}

/// The rewritten graph (from the cache, or built), for when an optimized graph from the cache
/// could not be loaded.
pub(crate) fn plain(
    path: &Path,
    bytes: &[u8],
    options: &OnnxOptions,
    target: Target,
) -> Result<(Vec<u8>, GraphMeta)> {
    rewritten(
        path,
        bytes,
        options,
        target,
        &graph_key(bytes, options, target),
    )
}

/// Rewritten graph `key`: from the cache when its meta and graph are there (and its external
/// data unchanged), else built and cached.
fn rewritten(
    path: &Path,
    bytes: &[u8],
    options: &OnnxOptions,
    target: Target,
    key: &str,
) -> Result<(Vec<u8>, GraphMeta)> {
    let cache = options.cache_dir();
    if let Some(dir) = &cache {
        let m = dir.join(format!("{key}.grad.onnx"));
        if let Some(meta) = cached_meta(dir, key, path) {
            if let Ok(graph) = std::fs::read(&m) {
                tracing::debug!(checkpoint = %path.display(), cache = %m.display(), "gradient graph from cache");
                return Ok((graph, meta));
            }
        }
    }
    let (graph, meta) = build(path, bytes, options, target)?;
    if let Some(dir) = &cache {
        // Best effort: a cache that cannot be written only costs time.
        if let Err(e) = store(dir, key, &graph, &meta) {
            tracing::warn!(dir = %dir.display(), "cannot cache the gradient graph: {e}");
        }
    }
    Ok((graph, meta))
}

/// The key of the rewritten graph: the model's bytes and what was asked. External data is
/// checked apart (the meta lists the files and their digests).
fn graph_key(bytes: &[u8], options: &OnnxOptions, target: Target) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    let spec = format!(
        "vog-onnx {} r{} c{CACHE_FORMAT}|{:?}|{:?}|{:?}|{}|vog_ops={}",
        env!("CARGO_PKG_VERSION"),
        vog_onnx::GRAPH_REVISION,
        options.input,
        options.output,
        options.wrt,
        target.as_str(),
        options.uses_vog_ops()
    );
    h.update(spec.as_bytes());
    hex(&h.finalize())
}

/// Where ONNX Runtime's optimized form of graph `key` is kept, for CPU sessions that optimize.
fn optimized_path(
    dir: &Path,
    key: &str,
    options: &OnnxOptions,
    fingerprint: &str,
) -> Option<PathBuf> {
    if !matches!(options.device(), Ok(Device::Cpu))
        || matches!(options.optimization, Optimization::Disable)
    {
        return None;
    }
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(fingerprint.as_bytes());
    h.update(format!("|{:?}|threads={:?}", options.optimization, options.threads).as_bytes());
    Some(dir.join(format!("{}.opt.onnx", hex(&h.finalize()))))
}

/// The cached meta of graph `key`, when its external data files are unchanged.
fn cached_meta(dir: &Path, key: &str, path: &Path) -> Option<GraphMeta> {
    let json = std::fs::read(dir.join(format!("{key}.json"))).ok()?;
    let meta: GraphMeta = serde_json::from_slice(&json).ok()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let unchanged = meta
        .external
        .iter()
        .all(|(file, digest)| sha256_file(&base.join(file)).is_ok_and(|d| &d == digest));
    unchanged.then_some(meta)
}

/// Rewrites the model (its external data inlined) into its gradient graph.
fn build(
    path: &Path,
    bytes: &[u8],
    options: &OnnxOptions,
    target: Target,
) -> Result<(Vec<u8>, GraphMeta)> {
    let mut model = vog_onnx::decode_model(bytes).map_err(|e| Error::checkpoint(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let files = vog_onnx::graph::inline_external_data(&mut model, base)
        .map_err(|e| Error::checkpoint(path, e))?;
    let mut external = Vec::with_capacity(files.len());
    for f in &files {
        let rel = f.strip_prefix(base).unwrap_or(f);
        external.push((rel.to_string_lossy().into_owned(), sha256_file(f)?));
    }
    let spec = vog_onnx::GradSpec {
        input: options.input.clone(),
        output: options.output.clone(),
        wrt: options.wrt.clone(),
        target,
        vog_ops: options.uses_vog_ops(),
    };
    let g = vog_onnx::gradient_model(&model, &spec).map_err(|e| Error::checkpoint(path, e))?;
    tracing::debug!(checkpoint = %path.display(), nodes = g.backward_nodes, "gradient graph built");
    Ok((
        vog_onnx::encode_model(&g.model),
        GraphMeta::of(&g, external),
    ))
}

/// Writes graph `key` and its meta into the cache (each through a temporary file and a rename).
fn store(dir: &Path, key: &str, graph: &[u8], meta: &GraphMeta) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, graph)?;
    std::fs::rename(&tmp, dir.join(format!("{key}.grad.onnx")))?;
    let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join(format!("{key}.json")))
}

/// A temporary name beside `path` for a file being written (renamed onto `path` when complete).
pub(crate) fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimized_graphs_are_keyed_by_everything_they_depend_on() {
        let dir = Path::new("/cache");
        let o = OnnxOptions::from_toml("threads = 2").unwrap();
        let three = OnnxOptions::from_toml("threads = 3").unwrap();
        let basic = OnnxOptions::from_toml("threads = 2\noptimization = \"basic\"").unwrap();
        // The graph's key, ONNX Runtime's build, the processor, the threads, the level: each
        // change gives another file.
        let paths: Vec<PathBuf> = [
            ("k", &o, "ort A\ncpu X"),
            ("k2", &o, "ort A\ncpu X"),
            ("k", &o, "ort B\ncpu X"),
            ("k", &o, "ort A\ncpu Y"),
            ("k", &three, "ort A\ncpu X"),
            ("k", &basic, "ort A\ncpu X"),
        ]
        .into_iter()
        .map(|(key, options, f)| optimized_path(dir, key, options, f).expect("cached"))
        .collect();
        let distinct: std::collections::HashSet<&PathBuf> = paths.iter().collect();
        assert_eq!(distinct.len(), paths.len(), "{paths:?}");
        assert_eq!(
            optimized_path(dir, "k", &o, "ort A\ncpu X").as_ref(),
            Some(&paths[0])
        );
        assert_eq!(paths[0].parent(), Some(dir));
        assert!(paths[0].to_string_lossy().ends_with(".opt.onnx"));
        // Not cached: unoptimized sessions, CUDA sessions.
        let off = OnnxOptions::from_toml("optimization = \"disable\"").unwrap();
        assert_eq!(optimized_path(dir, "k", &off, "f"), None);
        let cuda = OnnxOptions::from_toml("device = \"cuda\"").unwrap();
        assert_eq!(optimized_path(dir, "k", &cuda, "f"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_fingerprint_names_the_build_and_the_processor() {
        let f = runtime_fingerprint("ORT build X").expect("/proc/cpuinfo is readable");
        assert!(f.starts_with("ORT build X\n"), "{f}");
        let named = |k: &str| f.lines().any(|l| l.split(':').next().unwrap().trim() == k);
        assert!(named("flags") || named("Features"), "{f}");
        // Nothing that changes while the machine runs.
        assert!(!named("cpu MHz") && !named("bogomips"), "{f}");
    }

    #[test]
    fn graph_keys_follow_what_was_asked() {
        let o = OnnxOptions::from_toml("").unwrap();
        let k = graph_key(b"model", &o, Target::Logit);
        assert_eq!(k, graph_key(b"model", &o, Target::Logit));
        assert_ne!(k, graph_key(b"model2", &o, Target::Logit));
        assert_ne!(k, graph_key(b"model", &o, Target::Probability));
        let std_ops = OnnxOptions::from_toml("vog_ops = false").unwrap();
        assert_ne!(k, graph_key(b"model", &std_ops, Target::Logit));
        let wrt = OnnxOptions::from_toml("wrt = \"emb\"").unwrap();
        assert_ne!(k, graph_key(b"model", &wrt, Target::Logit));
    }

    #[test]
    fn temporary_names_sit_beside_the_file() {
        let t = temporary(Path::new("/c/abc.opt.onnx"));
        assert_eq!(t.parent(), Some(Path::new("/c")));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".abc.opt.onnx.") && name.ends_with(".tmp"),
            "{name}"
        );
    }
}
