//! `[backend.options]` of the ONNX Runtime backend.

use std::path::PathBuf;

use serde::Deserialize;
use vog_core::{Error, Result};

/// Graph optimization levels of ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Optimization {
    /// No graph optimization.
    Disable,
    /// Constant folding and redundant-node elimination.
    Basic,
    /// Plus node fusions.
    Extended,
    /// Everything, including layout optimizations (ONNX Runtime's default).
    #[default]
    All,
}

/// Options of the ONNX Runtime backend.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OnnxOptions {
    /// The ONNX Runtime shared library (`…/onnxruntime/capi/libonnxruntime.so.1.31.1`); default:
    /// the `ORT_DYLIB_PATH` environment variable.
    pub library: Option<PathBuf>,
    /// `cpu` (default), `cuda` or `cuda:N`.
    pub device: Option<String>,
    /// Intra-op threads; 0 or absent: ONNX Runtime's default (all cores).
    pub threads: Option<usize>,
    /// Let ONNX Runtime's idle worker threads spin between runs (its own default). Off by
    /// default: between two runs vog folds the gradients into its statistics on the same cores,
    /// and spinning workers would take them.
    #[serde(default)]
    pub spin: bool,
    /// Graph optimization level.
    #[serde(default)]
    pub optimization: Optimization,
    /// Let gradient graphs use vog's own kernels where standard ONNX ops are slow (on CPU; on
    /// CUDA graphs always use standard ops): a max pool's backward as one `ai.vog.MaxPoolGrad`
    /// pass instead of ONNX Runtime's max pool with indices and `MaxUnpool`. Default true; false
    /// gives graphs of standard ONNX ops only.
    pub vog_ops: Option<bool>,
    /// The graph input holding the examples, when the graph has several.
    pub input: Option<String>,
    /// The tensor holding the logits, when the graph has several outputs or outputs probabilities.
    pub output: Option<String>,
    /// Differentiate with respect to this tensor instead of the input (for token-id models: the
    /// embedding lookup's output).
    pub wrt: Option<String>,
    /// Where generated gradient graphs (and, for CPU sessions, ONNX Runtime's optimized form of
    /// them) are cached; default `$VOG_CACHE/onnx-grad` or `~/.cache/vog/onnx-grad`.
    pub cache_dir: Option<PathBuf>,
    /// Set to false to rebuild (and re-optimize) the gradient graph on every load.
    pub cache: Option<bool>,
    /// Write ONNX Runtime's profile of every session (per-node times, Chrome trace JSON) to files
    /// named from this prefix (`PREFIX_DATE_TIME.json`), written when the session closes.
    pub profile: Option<PathBuf>,
}

/// Where the computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU execution provider.
    Cpu,
    /// The CUDA execution provider on this device.
    Cuda(i32),
}

impl OnnxOptions {
    /// Parses the TOML text of `[backend.options]`.
    pub fn from_toml(text: &str) -> Result<Self> {
        let o: OnnxOptions = toml::from_str(text)
            .map_err(|e| Error::Config(format!("onnx backend options: {}", e.message())))?;
        o.device()?;
        Ok(o)
    }

    /// The device asked for.
    pub fn device(&self) -> Result<Device> {
        match self.device.as_deref().unwrap_or("cpu") {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            d => match d.strip_prefix("cuda:").and_then(|n| n.parse::<i32>().ok()) {
                Some(n) if n >= 0 => Ok(Device::Cuda(n)),
                _ => Err(Error::Config(format!(
                    "onnx backend options: device `{d}` is not one of cpu, cuda, cuda:N"
                ))),
            },
        }
    }

    /// Whether gradient graphs use vog's own kernels (see [`OnnxOptions::vog_ops`]).
    pub fn uses_vog_ops(&self) -> bool {
        self.vog_ops.unwrap_or(true) && matches!(self.device(), Ok(Device::Cpu))
    }

    /// The cache directory for generated gradient graphs, unless caching is off.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.cache == Some(false) {
            return None;
        }
        if let Some(d) = &self.cache_dir {
            return Some(d.clone());
        }
        let base = std::env::var_os("VOG_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vog")))?;
        Some(base.join("onnx-grad"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let o = OnnxOptions::from_toml(
            "device = \"cuda:1\"\nthreads = 2\noptimization = \"basic\"\nwrt = \"emb\"",
        )
        .unwrap();
        assert_eq!(o.device().unwrap(), Device::Cuda(1));
        assert_eq!(o.optimization, Optimization::Basic);
        assert!(OnnxOptions::from_toml("device = \"tpu\"").is_err());
        let e = OnnxOptions::from_toml("thread = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `thread`"), "{e}");
        let o = OnnxOptions::from_toml("cache = false").unwrap();
        assert!(o.cache_dir().is_none());
    }
}
