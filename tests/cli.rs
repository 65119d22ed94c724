//! `vog score` end to end: files written, their columns, the manifest, and overwrite rules.

use crate::util::{golden, golden_config, json, run, text, write_config};

#[test]
fn score_writes_csv_jsonl_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "cnn.toml",
        &golden_config("cnn", "labels = \"true\"\n"),
    );
    let out = run(
        &[
            "score",
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            "res",
            "--split",
            "train",
            "--top",
            "3",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("scored 24 examples over 6 checkpoints"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 hardest by class-normalized VoG"),
        "{stdout}"
    );

    let res = dir.path().join("res");
    let mut csv = csv::Reader::from_path(res.join("scores.csv")).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "id",
        "row",
        "split",
        "true_label",
        "label_used",
        "predicted",
        "vog_all",
        "vog_late",
        "vog_all_norm",
        "margin_mean",
        "loss_last",
        "correct_ratio",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "missing column {col} in {header:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 24);
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][at("split")], "train");

    // CSV and JSONL agree, and both agree with the golden reference.
    let expected = json(&golden("cnn").join("expected.json"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(res.join("scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 24);
    for (i, (row, line)) in rows.iter().zip(&lines).enumerate() {
        let csv_vog: f64 = row[at("vog_all")].parse().unwrap();
        let json_vog = line["vog"]["all"].as_f64().unwrap();
        assert_eq!(csv_vog, json_vog);
        let want = expected["true/logit"]["all"]["raw"][i].as_f64().unwrap();
        assert!(
            (csv_vog - want).abs() <= 1e-5 * want,
            "row {i}: {csv_vog} vs {want}"
        );
    }

    let manifest = json(&res.join("run.json"));
    assert_eq!(manifest["tool"]["name"], "vog");
    assert_eq!(manifest["source"], "backend");
    assert_eq!(manifest["backend"]["name"], "candle");
    assert_eq!(manifest["scoring"]["labels"], "true");
    assert_eq!(
        manifest["scoring"]["vog_map_shape"],
        serde_json::json!([12, 12])
    );
    let cks = manifest["checkpoints"].as_array().unwrap();
    assert_eq!(cks.len(), 6);
    for (i, c) in cks.iter().enumerate() {
        assert!(c["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("epoch_{}.safetensors", i + 1)));
        assert_eq!(c["sha256"].as_str().unwrap().len(), 64);
        assert!(c["bytes"].as_u64().unwrap() > 0);
    }
    assert!(manifest["classes"]["all"].as_array().unwrap().len() >= 2);
    assert!(manifest["timings"]["score_s"].as_f64().is_some());
}

#[test]
fn existing_results_are_kept_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "mlp.toml", &golden_config("mlp", ""));
    let c = cfg.to_str().unwrap();
    assert!(run(&["score", "-q", "-c", c, "-o", "res"], dir.path())
        .status
        .success());
    let before = std::fs::read(dir.path().join("res/scores.csv")).unwrap();
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            c,
            "-o",
            "res",
            "--target",
            "probability",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.path().join("res/scores.csv")).unwrap(),
        before
    );
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            c,
            "-o",
            "res",
            "--target",
            "probability",
            "--overwrite",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(
        std::fs::read(dir.path().join("res/scores.csv")).unwrap(),
        before
    );
}

#[test]
fn flags_alone_describe_a_run_and_predicted_labels_need_none() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let opts = write_config(
        dir.path(),
        "opts.toml",
        "version = 1\n[backend.options]\narch = \"mlp\"\n",
    );
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            opts.to_str().unwrap(),
            "--data",
            g.join("x.npy").to_str().unwrap(),
            "--checkpoints",
            g.join("ckpt").to_str().unwrap(),
            "--labels-mode",
            "predicted",
            "--windows",
            "all,late",
            "-o",
            "res",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest = json(&dir.path().join("res/run.json"));
    assert_eq!(manifest["scoring"]["labels"], "predicted");
    let expected = json(&g.join("expected.json"));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("res/scores.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for (i, l) in lines.iter().enumerate() {
        assert!(l["true_label"].is_null());
        let want = expected["predicted/logit"]["late"]["normalized"][i]
            .as_f64()
            .unwrap();
        let got = l["vog_norm"]["late"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-5 * want.abs().max(1.0),
            "row {i}: {got} vs {want}"
        );
        // The two windows asked for, and (label-free, `second_target = "auto"`) their
        // probability-target twins, checked against the reference too.
        assert_eq!(l["vog"].as_object().unwrap().len(), 4);
        let want = expected["predicted/probability"]["late"]["normalized"][i]
            .as_f64()
            .unwrap();
        let got = l["vog_norm"]["late_probability"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-5 * want.abs().max(1.0),
            "row {i}: {got} vs {want}"
        );
    }
    assert_eq!(manifest["scoring"]["second_target"], "probability");
}

#[test]
fn metadata_and_ids_are_joined() {
    let dir = tempfile::tempdir().unwrap();
    let ids: String = (0..40).map(|i| format!("img-{i:03}\n")).collect();
    std::fs::write(dir.path().join("ids.txt"), ids).unwrap();
    let meta: String = (0..40)
        .rev()
        .map(|i| {
            format!(
                "{{\"id\": \"img-{i:03}\", \"camera\": \"{}\", \"iso\": {}}}\n",
                if i % 2 == 0 { "a" } else { "b" },
                100 * i
            )
        })
        .collect();
    std::fs::write(dir.path().join("meta.jsonl"), meta).unwrap();
    let body = golden_config("mlp", "").replace(
        "[checkpoints]",
        "ids = \"ids.txt\"\nmetadata = \"meta.jsonl\"\nmetadata_key = \"id\"\n[checkpoints]",
    );
    let cfg = write_config(dir.path(), "mlp.toml", &body);
    let out = run(
        &["score", "-q", "-c", cfg.to_str().unwrap(), "-o", "res"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut csv = csv::Reader::from_path(dir.path().join("res/scores.csv")).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    assert_eq!(&rows[7][at("id")], "img-007");
    assert_eq!(&rows[7][at("meta.camera")], "b");
    assert_eq!(&rows[7][at("meta.iso")], "700");
}

#[test]
fn csv_and_idx_inputs_score_like_npy() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let (shape, x) = crate::util::npy(&g.join("x.npy"));
    let (_, y) = crate::util::npy(&g.join("y.npy"));
    let (n, d) = (shape[0], shape[1]);

    // CSV: an id column, the features, and the label column in the middle.
    let mut table = String::from("id");
    for j in 0..d {
        table.push_str(&format!(",f{j}"));
        if j == 9 {
            table.push_str(",label");
        }
    }
    table.push('\n');
    for i in 0..n {
        table.push_str(&format!("ex{i}"));
        for j in 0..d {
            table.push_str(&format!(",{}", x[i * d + j]));
            if j == 9 {
                table.push_str(&format!(",{}", y[i]));
            }
        }
        table.push('\n');
    }
    std::fs::write(dir.path().join("table.csv"), table).unwrap();

    // IDX: float32 examples (type 0x0D, big-endian) and uint8 labels, gzipped labels.
    let mut idx = vec![0u8, 0, 0x0D, 2];
    idx.extend((n as u32).to_be_bytes());
    idx.extend((d as u32).to_be_bytes());
    idx.extend(x.iter().flat_map(|v| v.to_be_bytes()));
    std::fs::write(dir.path().join("x-idx2-float"), idx).unwrap();
    let mut lab = vec![0u8, 0, 0x08, 1];
    lab.extend((n as u32).to_be_bytes());
    lab.extend(y.iter().map(|&v| v as u8));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &lab).unwrap();
    std::fs::write(dir.path().join("y-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();

    let ck = g.join("ckpt");
    let expected = json(&g.join("expected.json"));
    let want = crate::util::floats(&expected["true/logit"]["all"]["raw"]);
    let cases = [
        (
            "csv",
            "path = \"table.csv\"\nlabel_column = \"label\"\nid_column = \"id\"\n",
        ),
        (
            "idx",
            "path = \"x-idx2-float\"\nlabels = \"y-idx1-ubyte.gz\"\n",
        ),
    ];
    for (name, data) in cases {
        let body = format!(
            "version = 1\n[data]\n{data}[checkpoints]\npaths = [\"{}\"]\n[backend.options]\narch = \"mlp\"\n",
            ck.display()
        );
        let cfg = write_config(dir.path(), &format!("{name}.toml"), &body);
        let out = run(
            &["score", "-q", "-c", cfg.to_str().unwrap(), "-o", name],
            dir.path(),
        );
        assert!(out.status.success(), "{name}: {}", text(&out));
        let mut csv = csv::Reader::from_path(dir.path().join(name).join("scores.csv")).unwrap();
        let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
        let at = |c: &str| header.iter().position(|h| h == c).unwrap();
        let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
        let got: Vec<f64> = rows
            .iter()
            .map(|r| r[at("vog_all")].parse().unwrap())
            .collect();
        crate::util::assert_close(name, &got, &want, 1e-5, 0.0);
        if name == "csv" {
            assert_eq!(&rows[3][at("id")], "ex3");
        }
    }
}

#[test]
fn onnx_grad_writes_the_gradient_graph_or_names_unsupported_ops() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::util::root().join("tests/data/onnx/mlp/epoch_1.onnx");
    let out = run(
        &[
            "onnx-grad",
            model.to_str().unwrap(),
            "-o",
            "g.onnx",
            "--target",
            "probability",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("vog_gradient"), "{}", text(&out));
    let bytes = std::fs::read(dir.path().join("g.onnx")).unwrap();
    let g = vog_onnx::decode_model(&bytes).unwrap();
    let graph = g.graph.unwrap();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert!(
        outputs.contains(&"vog_gradient") && outputs.contains(&"vog_classes_used"),
        "{outputs:?}"
    );
    assert!(graph.input.iter().any(|i| i.name == "vog_classes"));

    let bad = crate::util::root().join("tests/data/onnx/unsupported.onnx");
    let out = run(
        &["onnx-grad", bad.to_str().unwrap(), "-o", "bad.onnx"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("Shrink (node `the_shrink`)") && msg.contains("Hardmax (node `the_hardmax`)"),
        "{msg}"
    );
    assert!(!dir.path().join("bad.onnx").exists());
}

#[test]
fn onnx_backend_without_the_runtime_library_says_how_to_install_it() {
    let plugin = crate::util::plugin_lib("onnx");
    let out = crate::util::vog()
        .args(["backends", "check", plugin.to_str().unwrap()])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("pip install onnxruntime==1.31.1") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );
}
