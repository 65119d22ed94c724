"""vog.score through Python backends and built-in ones, against the float64 torch references."""

import numpy as np
import pytest
import torch

import vog
import vog.torch
from conftest import relative_error


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize(
    "mode,target", [("true", "logit"), ("predicted", "probability"), ("predicted-each", "logit")]
)
def test_torch_backend_matches_the_float64_reference(request, tmp_path, model, mode, target):
    g = request.getfixturevalue(model)
    backend = vog.torch.Backend(g.factory, device="cpu", dtype=torch.float64)
    run = vog.score(
        g.ckpt, g.x, g.y, backend=backend, labels_mode=mode, target=target,
        out=tmp_path / "r", batch_size=7, progress=False,
    )
    cols = run.columns()
    for window in ("all", "early", "middle", "late"):
        assert relative_error(cols[f"vog_{window}"], g.reference(mode, target, window)) < 1e-6
        # Class-normalized scores are z-scores centred on zero: compared absolutely.
        norm = np.asarray(cols[f"vog_{window}_norm"])
        assert np.max(np.abs(norm - g.reference(mode, target, window, normalized=True))) < 1e-6
    assert cols["label_used"] == g.expected[f"{mode}/{target}"]["label_used"]
    assert run.manifest["backend"]["name"] == "torch-python"
    assert run.manifest["scoring"]["target"] == target


def test_named_candle_backend_agrees_with_the_torch_backend(mlp, tmp_path):
    by_name = vog.score(mlp.ckpt, mlp.x, mlp.y, backend="candle", options={"arch": "mlp"},
                        out=tmp_path / "a", progress=False)
    by_torch = vog.score(mlp.ckpt, mlp.x, mlp.y, backend=vog.torch.Backend(mlp.factory, device="cpu"),
                         out=tmp_path / "b", progress=False)
    a, b = by_name.to_pandas(), by_torch.to_pandas()
    assert relative_error(a["vog_all"], b["vog_all"]) < 1e-5
    assert relative_error(a["vog_all"], mlp.reference("true", "logit")) < 1e-5


def test_unlabelled_data_uses_the_prediction(mlp, tmp_path):
    run = vog.score(mlp.ckpt, mlp.x, backend=vog.torch.Backend(mlp.factory, device="cpu", dtype=torch.float64),
                    out=tmp_path / "r", progress=False)
    assert run.manifest["scoring"]["labels"] == "predicted"
    cols = run.columns()
    assert all(v is None for v in cols["true_label"])
    assert relative_error(cols["vog_all"], mlp.reference("predicted", "logit")) < 1e-6


def test_to_pandas_equals_scores_csv_column_by_column(cnn, tmp_path):
    pd = pytest.importorskip("pandas")
    run = vog.score(cnn.ckpt, cnn.x, cnn.y, backend="candle", options=_cnn_options(),
                    ids=[f"ex-{i}" for i in range(len(cnn.x))],
                    metadata=[{"source": "a" if i % 2 else "b", "n": i} for i in range(len(cnn.x))],
                    flag={"top_percent": 10.0}, out=tmp_path / "r", progress=False)
    df = run.to_pandas()
    csv = pd.read_csv(run.dir / "scores.csv", keep_default_na=False, na_values=[""],
                      dtype={"id": str, "split": object})
    assert list(df.columns) == list(csv.columns)
    for c in df.columns:
        got, want = df[c], csv[c]
        if c in ("true_label", "label_used", "predicted"):
            assert got.dtype == "Int64"
            assert got.astype("float64").fillna(-1).tolist() == want.astype("float64").fillna(-1).tolist(), c
        elif df[c].dtype == np.float64:
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(dtype=np.float64), err_msg=c)
        elif c in ("flagged", "has_map"):
            assert got.tolist() == [str(v).lower() == "true" for v in want], c
        elif c == "split":
            assert [v or "" for v in got] == [("" if isinstance(v, float) else v) for v in want], c
        elif c == "meta.n":
            assert got.tolist() == want.tolist(), c
        else:
            assert got.astype(str).tolist() == want.astype(str).tolist(), c
    assert df["flagged"].sum() >= 1


def test_to_arrow_types(mlp, tmp_path):
    pa = pytest.importorskip("pyarrow")
    run = vog.score(mlp.ckpt, mlp.x, mlp.y, backend="candle", options={"arch": "mlp"},
                    out=tmp_path / "r", progress=False)
    t = run.to_arrow()
    assert t.num_rows == len(mlp.x)
    assert t.schema.field("id").type == pa.string()
    assert t.schema.field("true_label").type == pa.uint32()
    assert t.schema.field("vog_all").type == pa.float64()
    assert t.schema.field("flagged").type == pa.bool_()
    np.testing.assert_array_equal(t.column("vog_all").to_numpy(), run.to_pandas()["vog_all"].to_numpy())


def test_maps_report_evaluate_and_store(cnn, tmp_path):
    run = vog.score(cnn.ckpt, cnn.x, cnn.y, backend="candle", options=_cnn_options(),
                    flag={"top_percent": 20.0}, store=tmp_path / "store", run="cnn-audit",
                    out=tmp_path / "r", progress=False)
    cols = run.columns()
    kept = [r for r, has in zip(cols["row"], cols["has_map"]) if has]
    assert kept, "flagged examples keep maps"
    m = run.map(kept[0])
    assert m.shape == (12, 12)  # channel-averaged [3, 12, 12]
    assert run.map(kept[0], "grad").shape == (3, 12, 12)
    unkept = next(r for r, has in zip(cols["row"], cols["has_map"]) if not has)
    with pytest.raises(KeyError, match="no kept vog map"):
        run.map(unkept)
    html = run.report(tmp_path / "report.html")
    assert "<html" in html.read_text()[:500].lower()
    by_column = run.evaluate("flagged")
    assert by_column["bad"] == sum(cols["flagged"])
    mask = np.asarray(cols["flagged"])
    by_mask = run.evaluate(mask)
    by_ids = run.evaluate([i for i, f in zip(cols["id"], cols["flagged"]) if f])
    assert by_mask["scores"] == by_ids["scores"] == by_column["scores"]
    reopened = vog.Run(run.dir)
    assert reopened.manifest == run.manifest
    # The store was written: the command line finds the run's flagged examples.
    import json, subprocess, sys  # noqa: E401
    out = subprocess.run([sys.executable, "-m", "vog", "search", "--store", str(tmp_path / "store"),
                          "--run", "cnn-audit", "--flagged", "--format", "json", "--limit", "1000"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    hits = found["hits"] if isinstance(found, dict) else found
    assert sorted(h["id"] for h in hits) == sorted(i for i, f in zip(cols["id"], cols["flagged"]) if f)


def _cnn_options():
    """The candle `sequential` description of make_golden.make_cnn (as config/score-cnn.toml)."""
    import tomllib
    from conftest import ROOT

    return tomllib.loads((ROOT / "config" / "score-cnn.toml").read_text())["backend"]["options"]
