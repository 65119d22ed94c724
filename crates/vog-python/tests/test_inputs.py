"""Data as arrays, paths, DataLoaders and generators; ids and metadata; memory stays flat."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import vog
import vog.torch
from conftest import relative_error


def test_dataloader_and_generator_give_the_array_result(mlp, tmp_path):
    backend = vog.torch.Backend(mlp.factory, device="cpu", dtype=torch.float64)
    want = vog.score(mlp.ckpt, mlp.x, mlp.y, backend=backend, out=tmp_path / "a", progress=False).columns()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(mlp.x), torch.from_numpy(mlp.y))
    loader = torch.utils.data.DataLoader(ds, batch_size=6, shuffle=False)
    got = vog.score(mlp.ckpt, loader, backend=backend, out=tmp_path / "b", progress=False)
    assert got.manifest["scoring"]["labels"] == "true"  # labels came with the batches
    assert got.columns()["vog_all"] == want["vog_all"]
    gen = (mlp.x[i:i + 9] for i in range(0, len(mlp.x), 9))
    unlabelled = vog.score(mlp.ckpt, gen, backend=backend, out=tmp_path / "c", progress=False)
    assert unlabelled.manifest["scoring"]["labels"] == "predicted"


def test_paths_ids_and_metadata(mlp, tmp_path):
    np.save(tmp_path / "x.npy", mlp.x)
    np.save(tmp_path / "y.npy", mlp.y)
    ids = [f"img-{i:03d}" for i in range(len(mlp.x))]
    meta = [{"camera": "a" if i < 10 else "b"} for i in range(len(mlp.x))]
    run = vog.score(str(mlp.ckpt), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), backend="candle",
                    options={"arch": "mlp"}, ids=ids, metadata=meta, split="test",
                    out=tmp_path / "r", progress=False)
    cols = run.columns()
    assert cols["id"] == ids
    assert cols["meta.camera"] == [m["camera"] for m in meta]
    assert set(cols["split"]) == {"test"}
    assert relative_error(cols["vog_all"], mlp.reference("true", "logit")) < 1e-5


def test_a_dataloader_larger_than_the_memory_budget_keeps_memory_flat(tmp_path):
    """200 MB of examples from a DataLoader that makes them on the fly, scored in a fresh process
    under a 64 MiB budget whose peak RSS grows by far less than the data: batches are streamed to
    disk and the engine reads them back in batches."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        import numpy as np
        import vog

        class Linear:
            name = "numpy-linear"
            extensions = ["npy"]
            def load(self, path):
                return Model(np.load(path))

        class Model:
            def __init__(self, w):
                self.w = w
            def input_gradients(self, x, classes, target):
                logits = x @ self.w
                if classes is None:
                    classes = logits.argmax(1)
                return logits, self.w.T[classes], classes

        ckpt = sys.argv[1]
        for k in range(3):
            np.save(f"{ckpt}/w_{k}.npy", np.random.default_rng(k).standard_normal((784, 10)).astype(np.float32))
        import torch

        class Digits(torch.utils.data.Dataset):
            # 64,000 examples of 784 values, each made when asked for (none is kept).
            def __len__(self):
                return 64_000
            def __getitem__(self, i):
                g = np.random.default_rng(i)
                return torch.from_numpy(g.standard_normal(784).astype(np.float32)), int(g.integers(10))

        loader = torch.utils.data.DataLoader(Digits(), batch_size=1_000)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run = vog.score(ckpt, loader, backend=Linear(), batch_size=128, memory="64MiB",
                        out=sys.argv[2], progress=False)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"rows": run.manifest["data"]["rows"], "grown_kib": after - before}))
        """
    )
    (tmp_path / "ckpt").mkdir()
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ckpt"), str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 64_000
    data_kib = 64_000 * 784 * 4 // 1024  # 196,000 KiB
    assert result["grown_kib"] < data_kib // 2, result


def test_streamed_npy_reads_back_exactly(tmp_path):
    from vog._data import NpyStream

    s = NpyStream(tmp_path / "a.npy", np.float32)
    parts = [np.arange(12, dtype=np.float32).reshape(2, 2, 3) + i for i in range(3)]
    for p in parts:
        s.write(p, "test")
    s.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.concatenate(parts))


@pytest.mark.parametrize(
    "batches,message",
    [
        ([np.zeros((2, 3)), np.zeros((2, 4))], "rows shaped"),
        ([(np.zeros((2, 3)), [0, 1]), np.zeros((2, 3))], "lacks labels"),
        ([(np.zeros((2, 3)), [0])], "2 inputs and 1 labels"),
        ([], "no examples"),
        ([{"x": 1}], "dicts"),
    ],
)
def test_bad_batches_are_refused_and_leave_nothing(tmp_path, batches, message):
    class Unused:
        def load(self, path):
            raise AssertionError("never loaded")

    with pytest.raises((ValueError, TypeError), match=message):
        vog.score(tmp_path, iter(batches), backend=Unused(), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r.inputs").exists()
    assert not (tmp_path / "r").exists()
