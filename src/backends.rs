//! Backends this binary can use by name.

use anyhow::{bail, Result};
use vog_core::GradientBackend;

/// Names of the backends built into this binary.
pub const BUILT_IN: &[&str] = &[vog_backend_candle::CandleBackend::NAME];

/// Creates backend `name` with its options (the TOML text of `[backend.options]`).
pub fn create(name: &str, options_toml: &str) -> Result<Box<dyn GradientBackend>> {
    match name {
        n if n == vog_backend_candle::CandleBackend::NAME => Ok(Box::new(
            vog_backend_candle::CandleBackend::from_options(options_toml)?,
        )),
        other => bail!(
            "unknown backend `{other}`; this build has: {}",
            BUILT_IN.join(", ")
        ),
    }
}
