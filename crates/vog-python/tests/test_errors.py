"""Bad input and failing backends raise Python exceptions with the command line's messages, and a
run that fails or is interrupted leaves no results behind."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import vog
import vog.torch


class Scripted:
    """A Python backend whose model answers from a function (for failures on purpose)."""

    name = "scripted"
    extensions = ["safetensors"]

    def __init__(self, answer, factory=None):
        self.answer = answer
        self.inner = vog.torch.Backend(factory, device="cpu") if factory else None
        self.calls = 0

    def load(self, path):
        outer = self
        model = self.inner.load(path) if self.inner else None

        class M:
            def input_gradients(self, x, classes, target):
                outer.calls += 1
                return outer.answer(model, x, classes, target, outer.calls)

        return M()


def test_labels_that_do_not_fit_the_data(mlp, tmp_path):
    with pytest.raises(vog.VogError, match="label"):
        vog.score(mlp.ckpt, mlp.x, mlp.y[:-3], backend="candle", options={"arch": "mlp"},
                  out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_nan_in_the_data(mlp, tmp_path):
    x = mlp.x.copy()
    x[5, 3] = np.nan
    with pytest.raises(vog.VogError, match="(?i)nan|non-finite"):
        vog.score(mlp.ckpt, x, mlp.y, backend="candle", options={"arch": "mlp"}, out=tmp_path / "r",
                  progress=False)
    assert not (tmp_path / "r").exists()


def test_missing_checkpoints_and_unknown_backend(mlp, tmp_path):
    with pytest.raises(vog.VogError, match="nowhere"):
        vog.score(tmp_path / "nowhere", mlp.x, backend="candle", options={"arch": "mlp"},
                  out=tmp_path / "r", progress=False)
    with pytest.raises(vog.VogError, match="no-such-backend"):
        vog.score(mlp.ckpt, mlp.x, backend="no-such-backend", out=tmp_path / "s", progress=False)


def test_argument_errors_are_value_and_type_errors(mlp, tmp_path):
    with pytest.raises(ValueError, match="target"):
        vog.score(mlp.ckpt, mlp.x, target="loss", out=tmp_path / "r")
    with pytest.raises(TypeError, match="load"):
        vog.score(mlp.ckpt, mlp.x, backend=object(), out=tmp_path / "r")
    with pytest.raises(ValueError, match="batch_size"):
        vog.score(mlp.ckpt, mlp.x, batch_size=0, out=tmp_path / "r")
    with pytest.raises(vog.VogError, match="configuration"):
        vog.score(mlp.ckpt, mlp.x, flag={"top_precent": 5}, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r.inputs").exists()  # nothing is left of a refused run


def test_an_exception_in_the_backend_is_the_cause(mlp, tmp_path):
    def answer(model, x, classes, target, calls):
        if calls == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return model.input_gradients(x, classes, target)

    with pytest.raises(vog.VogError, match="CUDA out of memory") as info:
        vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(answer, mlp.factory), batch_size=8,
                  out=tmp_path / "r", progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "checkpoint" in str(info.value)  # where it happened, as the CLI says it
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "bad,message",
    [
        (lambda l, g: (l[:-1], g), "logits shaped"),
        (lambda l, g: (l, g[:-1]), "gradient shaped"),
        (lambda l, g: (l, np.full_like(g, np.nan)), "NaN or infinite"),
        (lambda l, g: (l,), "returned 1 values"),
        (lambda l, g: (l, "not numbers"), "not an array of numbers"),
    ],
)
def test_wrong_answers_are_errors(mlp, tmp_path, bad, message):
    def answer(model, x, classes, target, calls):
        logits, grad, _ = model.input_gradients(x, classes, target)
        return bad(logits, grad)

    with pytest.raises(vog.VogError, match=message):
        vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(answer, mlp.factory), out=tmp_path / "r",
                  progress=False)
    assert not (tmp_path / "r").exists()


def test_ctrl_c_in_a_python_backend_raises_keyboard_interrupt(mlp, tmp_path):
    def answer(model, x, classes, target, calls):
        if calls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C during a batch
        return model.input_gradients(x, classes, target)

    with pytest.raises(KeyboardInterrupt):
        vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(answer, mlp.factory), batch_size=4,
                  out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    assert not list(tmp_path.glob(".r.*"))  # no partial directory, no spill


def test_ctrl_c_stops_a_native_backend_between_batches(mlp, tmp_path):
    class Progress:
        def start(self, total, message):
            if message == "scoring":
                os.kill(os.getpid(), signal.SIGINT)

        def advance(self, n):
            pass

        def finish(self):
            pass

    x = np.tile(mlp.x, (50, 1))
    with pytest.raises(KeyboardInterrupt):
        vog.score(mlp.ckpt, x, backend="candle", options={"arch": "mlp"}, batch_size=8,
                  out=tmp_path / "r", progress=Progress())
    assert not (tmp_path / "r").exists()


def test_resume_after_an_interrupt_gives_the_full_result(mlp, tmp_path):
    def interrupted(model, x, classes, target, calls):
        if calls == 25:
            raise KeyboardInterrupt
        return model.input_gradients(x, classes, target)

    def plain(model, x, classes, target, calls):
        return model.input_gradients(x, classes, target)

    with pytest.raises(KeyboardInterrupt):
        vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(interrupted, mlp.factory), batch_size=4,
                  out=tmp_path / "r", resume=True, progress=False)
    assert list(tmp_path.glob(".r*spill*")), "the journal is kept for --resume"
    resumed = vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(plain, mlp.factory), batch_size=4,
                        out=tmp_path / "r", resume=True, progress=False)
    whole = vog.score(mlp.ckpt, mlp.x, mlp.y, backend=Scripted(plain, mlp.factory), batch_size=4,
                      out=tmp_path / "w", progress=False)
    assert resumed.columns()["vog_all"] == whole.columns()["vog_all"]


def test_the_command_line_reports_errors_with_a_status(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vog", "score", "--checkpoints", str(tmp_path / "none"),
                          "--data", str(tmp_path / "none.npy"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ")
    usage = subprocess.run([sys.executable, "-m", "vog", "score", "--no-such-flag"], capture_output=True,
                           text=True)
    assert usage.returncode == 2
    assert "--no-such-flag" in usage.stderr
