//! Names that become paths or keys: run and queue names.

use crate::{Error, Result};

/// Checks a run name: letters, digits, `.`, `_`, `-`.
pub fn check_run_name(run: &str) -> Result<()> {
    if run.is_empty()
        || run.starts_with('.')
        || !run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(Error::Input(format!(
            "run name `{run}`: use letters, digits, `.`, `_` and `-` only, not starting with `.`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names() {
        assert!(check_run_name("mnist-test_1.2").is_ok());
        assert!(check_run_name("a/b").is_err());
        assert!(check_run_name("..").is_err());
        assert!(check_run_name(".hidden").is_err());
        assert!(check_run_name("").is_err());
    }
}
