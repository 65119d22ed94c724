"""save_checkpoint in a plain training loop writes what vog.score reads with no configuration:
state dicts through vog.torch, ONNX exports through the ONNX Runtime backend, TorchScript files;
all give the same VoG."""

import json

import numpy as np
import pytest
import torch

import vog
import vog.torch
from conftest import relative_error


def small_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cnn):
    """A small CNN trained for 4 epochs on the golden CNN data, checkpointed every epoch."""
    directory = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.from_numpy(cnn.x), torch.from_numpy(cnn.y).long()
    for epoch in range(4):
        model.train()
        for i in range(0, len(x), 8):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
            loss.backward()
            opt.step()
        vog.torch.save_checkpoint(model, directory, step=(epoch + 1) * 5, example_input=x[:2], epoch=epoch,
                                  metrics={"loss": loss.detach(), "nan": float("nan")}, onnx=True,
                                  torchscript=True)
    return directory


def test_manifest_records_steps_in_order(trained):
    m = json.loads((trained / "vog-checkpoints.json").read_text())
    assert m["format"] == 1
    assert [e["step"] for e in m["checkpoints"]] == [5, 10, 15, 20]
    assert [e["epoch"] for e in m["checkpoints"]] == [0, 1, 2, 3]
    first = m["checkpoints"][0]
    assert isinstance(first["metrics"]["loss"], float) and first["metrics"]["nan"] is None
    assert set(first["files"]) == {"state_dict", "onnx", "torchscript"}
    for e in m["checkpoints"]:
        for f in e["files"].values():
            assert (trained / f).is_file()


def test_every_format_gives_the_same_vog(trained, cnn, tmp_path):
    by_state = vog.score(trained, cnn.x, cnn.y, backend=vog.torch.Backend(small_cnn, device="cpu"),
                         out=tmp_path / "state", progress=False)
    by_script = vog.score(trained, cnn.x, cnn.y, backend=vog.torch.Backend(device="cpu"),
                          out=tmp_path / "script", progress=False)
    by_onnx = vog.score(trained, cnn.x, cnn.y, backend="onnx", out=tmp_path / "onnx", progress=False)
    want = np.asarray(by_state.columns()["vog_all"])
    for other in (by_script, by_onnx):
        assert relative_error(other.columns()["vog_all"], want) < 1e-5
    assert [c["path"].endswith(".onnx") for c in by_onnx.manifest["checkpoints"]] == [True] * 4
    # Training order comes from the manifest: step 5 first, step 20 last.
    assert by_state.manifest["checkpoints"][0]["path"].endswith("step_00000005.pt")


def test_saving_a_step_again_replaces_it(tmp_path):
    model = small_cnn()
    vog.torch.save_checkpoint(model, tmp_path, step=2)
    vog.torch.save_checkpoint(model, tmp_path, step=1)
    vog.torch.save_checkpoint(model, tmp_path, step=2, metrics={"acc": 0.5})
    m = json.loads((tmp_path / "vog-checkpoints.json").read_text())
    assert [e["step"] for e in m["checkpoints"]] == [1, 2]
    assert m["checkpoints"][1]["metrics"] == {"acc": 0.5}


def test_a_directory_without_the_format_the_backend_reads(tmp_path, cnn):
    vog.torch.save_checkpoint(small_cnn(), tmp_path, step=1)
    with pytest.raises(ValueError, match="no onnx file"):
        vog.score(tmp_path, cnn.x, backend="onnx", out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r.inputs").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="example_input"):
        vog.torch.save_checkpoint(small_cnn(), tmp_path, step=2, onnx=True)
