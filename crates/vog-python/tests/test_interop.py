"""Run.to_fiftyone against a real FiftyOne dataset (on a private MongoDB)."""

import numpy as np
import pytest

import vog
from test_score import _cnn_options


def _dataset(fo, n, tmp_path):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(tmp_path / "img" / f"{i:03d}.png")) for i in range(n)])
    return ds


def test_scores_land_on_the_samples_matched_by_id(fiftyone, cnn, tmp_path):
    fo = fiftyone
    ds = _dataset(fo, len(cnn.x) + 3, tmp_path)  # three samples the run does not cover
    ids = ds.values("id")[: len(cnn.x)]
    run = vog.score(cnn.ckpt, cnn.x, cnn.y, backend="candle", options=_cnn_options(), ids=ids,
                    flag={"top_percent": 20.0}, out=tmp_path / "r", progress=False)
    assert run.to_fiftyone(ds, maps=True) == len(cnn.x)
    df = run.to_pandas()
    by_id = {s.id: s for s in ds}
    for _, row in df.iterrows():
        doc = by_id[row["id"]]["vog"]
        assert doc["row"] == row["row"]
        assert doc["true_label"] == row["true_label"]
        assert doc["flagged"] == bool(row["flagged"])
        for c in ("vog_all", "vog_all_norm", "vog_late"):
            assert doc[c] == row[c], c
        if row["has_map"]:
            np.testing.assert_array_equal(by_id[row["id"]]["vog_map"].map, run.map(row["row"]))
        else:
            assert by_id[row["id"]]["vog_map"] is None
    for sid in ds.values("id")[len(cnn.x):]:
        assert by_id[sid]["vog"] is None
    # The scores are sortable in FiftyOne as in pandas.
    top = ds.exists("vog").sort_by("vog.vog_all_norm", reverse=True).values("id")[:5]
    assert top == df.sort_values("vog_all_norm", ascending=False)["id"].tolist()[:5]


def test_matched_by_filepath_and_refusals(fiftyone, mlp, tmp_path):
    fo = fiftyone
    ds = _dataset(fo, len(mlp.x), tmp_path)
    paths = ds.values("filepath")[::-1]  # a different order than the dataset's
    run = vog.score(mlp.ckpt, mlp.x, mlp.y, backend="candle", options={"arch": "mlp"}, ids=paths,
                    flag={"top_percent": 20.0}, out=tmp_path / "r", progress=False)
    assert run.to_fiftyone(ds, field="difficulty") == len(mlp.x)
    df = run.to_pandas().set_index("id")
    for s in ds:
        assert s["difficulty"]["vog_all"] == df.loc[s.filepath, "vog_all"]
    with pytest.raises(ValueError, match="no sample with that id"):
        run.to_fiftyone(ds, on="id")
    with pytest.raises(ValueError, match="expected a name"):
        run.to_fiftyone(ds, field="a.b")
    assert df["has_map"].any(), "flagged examples keep maps"
    with pytest.raises(ValueError, match="FiftyOne heatmaps are 2-D"):
        run.to_fiftyone(ds, field="other", maps=True)  # the MLP's maps are 1-D
    assert not ds.has_sample_field("other")
    other = _dataset(fo, len(mlp.x) - 1, tmp_path / "fewer")
    with pytest.raises(ValueError, match="match no sample"):
        run.to_fiftyone(other)
    assert not other.has_sample_field("vog"), "a refused write leaves nothing"
