//! Reading what every consumer of a results directory reads from its `run.json` manifest.

use serde_json::Value;

/// The names of the run's windows (`scoring.windows[].name`), in manifest order.
pub fn window_names(manifest: &Value) -> Vec<String> {
    manifest["scoring"]["windows"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The window results are ranked by: `all` when the run has it, else its first window; `None`
/// when the manifest names no window.
pub fn main_window(manifest: &Value) -> Option<String> {
    let names = window_names(manifest);
    if names.iter().any(|n| n == "all") {
        Some("all".into())
    } else {
        names.into_iter().next()
    }
}

/// The directory of a results directory (and of a store's run) that holds kept maps.
pub const MAPS_DIR: &str = "maps";

/// What a kept map file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// The per-element VoG map.
    Vog,
    /// The last checkpoint's input gradient.
    Grad,
}

/// The file name of a kept map: `ROW.vog.npy` or `ROW.grad.npy` (in [`MAPS_DIR`]).
pub fn map_file(row: u64, kind: MapKind) -> String {
    match kind {
        MapKind::Vog => format!("{row}.vog.npy"),
        MapKind::Grad => format!("{row}.grad.npy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_the_main_one() {
        let m: Value = serde_json::json!({"scoring": {"windows": [
            {"name": "early"}, {"name": "all"}, {"start": 0}
        ]}});
        assert_eq!(window_names(&m), ["early", "all"]);
        assert_eq!(main_window(&m).as_deref(), Some("all"));
        let m: Value = serde_json::json!({"scoring": {"windows": [{"name": "late"}]}});
        assert_eq!(main_window(&m).as_deref(), Some("late"));
        assert_eq!(main_window(&Value::Null), None);
        assert!(window_names(&Value::Null).is_empty());
    }
}
