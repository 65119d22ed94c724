//! The `[flag]` policy: flagged examples, their VoG maps and last-checkpoint gradients, and their
//! place in the store.

use vog_backend_candle::CandleBackend;
use vog_engine::{score, write_results, Config, Silent};
use vog_store::{SearchRequest, Store};

use crate::util::{golden, golden_config, npy, options};

#[test]
fn top_percent_per_class_flags_and_keeps_bounded_maps() {
    let dir = tempfile::tempdir().unwrap();
    let body = golden_config("cnn", "labels = \"true\"\n")
        + "[flag]\ntop_percent = 25.0\nmax_maps = 3\n"
        + &format!("[output]\ndir = \"{}\"\n", dir.path().join("res").display());
    let config = Config::from_toml(&body).unwrap();
    let backend = CandleBackend::from_options(options("cnn")).unwrap();
    let result = score(&config, Some(&backend), &Silent).unwrap();

    // Per class: ceil(25% of its members), the highest normalized VoG first.
    let mut by_class: std::collections::BTreeMap<u32, Vec<&vog_engine::ExampleScore>> =
        Default::default();
    for e in &result.examples {
        by_class.entry(e.label_used.unwrap()).or_default().push(e);
    }
    for members in by_class.values() {
        let want = (0.25 * members.len() as f64).ceil() as usize;
        let flagged: Vec<f64> = members
            .iter()
            .filter(|e| e.flagged)
            .map(|e| e.vog_norm[0].unwrap())
            .collect();
        assert_eq!(flagged.len(), want);
        let lowest_flagged = flagged.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(members
            .iter()
            .filter(|e| !e.flagged)
            .all(|e| e.vog_norm[0].unwrap() <= lowest_flagged));
    }
    let flagged = result.examples.iter().filter(|e| e.flagged).count();
    assert_eq!(result.manifest.flagged, flagged);

    // At most max_maps maps, for the highest-scoring flagged examples.
    assert_eq!(result.maps.len(), 3);
    assert_eq!(result.manifest.maps, 3);
    let mut scores: Vec<f64> = result
        .examples
        .iter()
        .filter(|e| e.flagged)
        .map(|e| e.vog_norm[0].unwrap())
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    for m in &result.maps {
        let e = &result.examples[m.row];
        assert!(e.flagged && e.has_map);
        assert!(e.vog_norm[0].unwrap() >= scores[2] - 1e-12);
        // The map averages to the example's VoG; channels are reduced ([3, 12, 12] → [12, 12]).
        assert_eq!(m.vog_map_shape, vec![12, 12]);
        let mean = m.vog_map.iter().map(|&v| f64::from(v)).sum::<f64>() / m.vog_map.len() as f64;
        assert!(
            (mean - e.vog[0]).abs() <= 1e-6 * e.vog[0],
            "row {}: map mean {mean} vs VoG {}",
            m.row,
            e.vog[0]
        );
        assert_eq!(m.gradient_shape, vec![3, 12, 12]);
        // The last checkpoint's gradient equals the golden torch gradient for the rows it covers.
        if m.row < 8 {
            let (_, want) = npy(&golden("cnn").join("grad_epoch_6_logit.npy"));
            let want = &want[m.row * 432..(m.row + 1) * 432];
            let scale = want.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            for (g, w) in m.gradient.iter().zip(want) {
                assert!((g - w).abs() <= 1e-5 * scale, "row {}: {g} vs {w}", m.row);
            }
        }
    }

    // Files: maps next to the scores, and the store finds flagged examples.
    let out = write_results(&result, &config.output).unwrap();
    for m in &result.maps {
        let (shape, map) = npy(&out.join(format!("maps/{}.vog.npy", m.row)));
        assert_eq!(shape, vec![12, 12]);
        assert_eq!(map, m.vog_map);
        assert!(out.join(format!("maps/{}.grad.npy", m.row)).is_file());
    }
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    let summary = store.index_results(&out, &Default::default()).unwrap();
    assert_eq!(summary.flagged, flagged);
    let hits = store
        .search(&SearchRequest {
            flagged: Some(true),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.total, flagged);
    assert_eq!(hits.hits.iter().filter(|h| h["has_map"] == true).count(), 3);
    let row = result.maps[0].row;
    assert!(store
        .run_dir("res")
        .join(format!("maps/{row}.vog.npy"))
        .is_file());
}

#[test]
fn flag_policy_is_validated() {
    for (flag, needle) in [
        ("top_percent = 5.0\nthreshold = 2.0", "not both"),
        ("top_percent = 150.0", "flag.top_percent"),
        ("threshold = 1.0\nwindow = \"warmup\"", "flag.window"),
    ] {
        let body = golden_config("mlp", "") + &format!("[flag]\n{flag}\n");
        let err = Config::from_toml(&body)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{flag}: {err}");
    }
}

#[test]
fn extremes_per_class_keep_maps_of_the_highest_and_lowest() {
    let body = golden_config("cnn", "labels = \"true\"\n") + "[flag]\nextremes_per_class = 1\n";
    let config = Config::from_toml(&body).unwrap();
    let backend = CandleBackend::from_options(options("cnn")).unwrap();
    let result = score(&config, Some(&backend), &Silent).unwrap();
    assert!(
        result.examples.iter().all(|e| !e.flagged),
        "nothing is flagged"
    );
    let mut by_class: std::collections::BTreeMap<u32, Vec<&vog_engine::ExampleScore>> =
        Default::default();
    for e in &result.examples {
        by_class.entry(e.label_used.unwrap()).or_default().push(e);
    }
    let mut want = Vec::new();
    for members in by_class.values_mut() {
        members.sort_by(|a, b| a.vog_norm[0].unwrap().total_cmp(&b.vog_norm[0].unwrap()));
        want.push(members[0].row);
        want.push(members[members.len() - 1].row);
    }
    want.sort_unstable();
    want.dedup();
    let mut kept: Vec<usize> = result.maps.iter().map(|m| m.row).collect();
    kept.sort_unstable();
    assert_eq!(kept, want);
    for e in &result.examples {
        assert_eq!(e.has_map, want.contains(&e.row), "row {}", e.row);
    }
}
