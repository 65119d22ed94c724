//! Checkpoint windows: which consecutive checkpoints one VoG score is computed over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A named, half-open range `[start, end)` of checkpoint positions (in training order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Name used for output columns (`all`, `early`, or a configured name).
    pub name: String,
    /// First checkpoint position in the window.
    pub start: usize,
    /// One past the last checkpoint position.
    pub end: usize,
}

impl Window {
    /// Number of checkpoints in the window.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the window holds no checkpoint.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Names of the built-in windows, in output order.
pub const BUILTIN_WINDOWS: [&str; 4] = ["all", "early", "middle", "late"];

/// Splits `k` checkpoints into three consecutive near-equal parts (the paper's early, middle and
/// late stages). Like `numpy.array_split`, the first `k % 3` parts get one checkpoint more:
/// 15 → 5/5/5, 10 → 4/3/3, 7 → 3/2/2.
pub fn thirds(k: usize) -> [(usize, usize); 3] {
    let base = k / 3;
    let extra = k % 3;
    let mut out = [(0, 0); 3];
    let mut start = 0;
    for (i, part) in out.iter_mut().enumerate() {
        let len = base + usize::from(i < extra);
        *part = (start, start + len);
        start += len;
    }
    out
}

/// Resolves window names and explicit ranges against `k` checkpoints.
///
/// `names` may hold the built-in names `all`, `early`, `middle`, `late` and names of `ranges`;
/// `ranges` maps a name to a half-open `[start, end)` range of checkpoint positions. A built-in
/// third with fewer than two checkpoints is skipped (one checkpoint has no variance) and reported
/// in the returned warnings; an explicit range with fewer than two checkpoints, beyond `k`, or an
/// unknown name is an error.
pub fn resolve_windows(
    k: usize,
    names: &[String],
    ranges: &BTreeMap<String, [usize; 2]>,
) -> Result<(Vec<Window>, Vec<String>)> {
    if k < 2 {
        return Err(Error::Invalid(format!(
            "VoG needs at least 2 checkpoints, got {k}: the variance across one checkpoint is undefined"
        )));
    }
    let [early, middle, late] = thirds(k);
    let mut windows = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        if windows.iter().any(|w: &Window| &w.name == name) {
            return Err(Error::Config(format!("window `{name}` is listed twice")));
        }
        let builtin = match name.as_str() {
            "all" => Some((0, k)),
            "early" => Some(early),
            "middle" => Some(middle),
            "late" => Some(late),
            _ => None,
        };
        let (start, end) = match (builtin, ranges.get(name)) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "window `{name}` is built in and cannot be redefined in scoring.ranges"
                )))
            }
            (Some((s, e)), None) => {
                if e - s < 2 {
                    warnings.push(format!(
                        "window `{name}` skipped: {k} checkpoints leave it {} checkpoint(s), \
                         and VoG needs at least 2 (use 6 or more checkpoints for early/middle/late)",
                        e - s
                    ));
                    continue;
                }
                (s, e)
            }
            (None, Some(&[s, e])) => {
                if e > k || s >= e || e - s < 2 {
                    return Err(Error::Config(format!(
                        "window `{name}` = [{s}, {e}) must lie within the {k} checkpoints and \
                         hold at least 2 of them"
                    )));
                }
                (s, e)
            }
            (None, None) => {
                return Err(Error::Config(format!(
                    "unknown window `{name}`: use all, early, middle, late, or define it in \
                     scoring.ranges"
                )))
            }
        };
        windows.push(Window {
            name: name.clone(),
            start,
            end,
        });
    }
    if windows.is_empty() {
        return Err(Error::Config(format!(
            "no window left to score with {k} checkpoints"
        )));
    }
    Ok((windows, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn thirds_follow_array_split() {
        assert_eq!(thirds(15), [(0, 5), (5, 10), (10, 15)]);
        assert_eq!(thirds(10), [(0, 4), (4, 7), (7, 10)]);
        assert_eq!(thirds(7), [(0, 3), (3, 5), (5, 7)]);
        assert_eq!(thirds(6), [(0, 2), (2, 4), (4, 6)]);
    }

    #[test]
    fn short_thirds_are_skipped_with_a_warning() {
        let (w, warn) = resolve_windows(5, &names(&BUILTIN_WINDOWS), &BTreeMap::new()).unwrap();
        assert_eq!(
            w.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["all", "early", "middle"]
        );
        assert_eq!(warn.len(), 1);
        assert!(warn[0].contains("`late`"));
    }

    #[test]
    fn one_checkpoint_is_an_error() {
        let err = resolve_windows(1, &names(&["all"]), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("at least 2 checkpoints"), "{err}");
    }

    #[test]
    fn explicit_ranges_are_checked() {
        let mut ranges = BTreeMap::new();
        ranges.insert("warmup".to_string(), [0, 3]);
        let (w, _) = resolve_windows(8, &names(&["all", "warmup"]), &ranges).unwrap();
        assert_eq!(
            w[1],
            Window {
                name: "warmup".into(),
                start: 0,
                end: 3
            }
        );

        ranges.insert("bad".to_string(), [6, 9]);
        assert!(resolve_windows(8, &names(&["bad"]), &ranges).is_err());
        assert!(resolve_windows(8, &names(&["nope"]), &ranges).is_err());
        assert!(resolve_windows(8, &names(&["all", "all"]), &ranges).is_err());
    }
}
