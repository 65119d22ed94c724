//! Every shipped configuration parses and validates, so the documented examples stay true.

use vog_engine::Config;

use crate::util::root;

#[test]
fn shipped_configs_parse_and_validate() {
    let dir = root().join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                Config::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if config.gradients.dirs.is_empty() && config.backend.name == "candle" {
                vog_backend_candle::CandleBackend::from_options(&config.backend_options_toml())
                    .unwrap_or_else(|e| panic!("{}: backend options: {e}", path.display()));
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the shipped configs in {}",
        dir.display()
    );
}
