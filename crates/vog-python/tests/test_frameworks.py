"""vog.jax and vog.keras against their own frameworks' autodiff, on the same checkpoints."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vog
import vog.keras  # noqa: F401  (used by the Keras tests; needs keras)
from conftest import relative_error


def vog_of(grads):
    """The paper's formula on stacked gradients [K, N, ...] (no channel reduction)."""
    g = np.asarray(grads, dtype=np.float64)
    return g.std(axis=0).reshape(g.shape[1], -1).mean(axis=1)


def test_jax_pure_function_matches_jax_autodiff(tmp_path, mlp):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import vog.jax

    jax.config.update("jax_enable_x64", True)

    def apply(params, x):
        h = jnp.tanh(x @ params["dense1"]["w"] + params["dense1"]["b"])
        return h @ params["dense2"]["w"] + params["dense2"]["b"]

    g = np.random.default_rng(3)
    base = {"dense1": {"w": g.standard_normal((20, 16)), "b": g.standard_normal(16)},
            "dense2": {"w": g.standard_normal((16, 4)), "b": g.standard_normal(4)}}
    (tmp_path / "params").mkdir()
    checkpoints = []
    for k in range(4):
        p = jax.tree_util.tree_map(lambda a: a + 0.3 * k * g.standard_normal(a.shape), base)
        vog.jax.save_npz(p, tmp_path / "params" / f"epoch_{k + 1}.npz")
        checkpoints.append(p)
    run = vog.score(tmp_path / "params", mlp.x, mlp.y, backend=vog.jax.Backend(apply, dtype="float64"),
                    out=tmp_path / "r", progress=False)
    grads = []
    x = jnp.asarray(mlp.x, jnp.float64)
    for p in checkpoints:
        per_example = jax.grad(lambda x: jnp.take_along_axis(apply(p, x), jnp.asarray(mlp.y)[:, None], 1).sum())
        grads.append(np.asarray(per_example(x)))
    assert relative_error(run.columns()["vog_all"], vog_of(grads)) < 1e-6
    # Label-free: each checkpoint's own argmax, as jax computes it.
    each = vog.score(tmp_path / "params", mlp.x, backend=vog.jax.Backend(apply, dtype="float64"),
                     labels_mode="predicted-each", out=tmp_path / "e", progress=False)
    grads = []
    for p in checkpoints:
        cls = jnp.argmax(apply(p, x), 1)
        grads.append(np.asarray(jax.grad(lambda x: jnp.take_along_axis(apply(p, x), cls[:, None], 1).sum())(x)))
    assert relative_error(each.columns()["vog_all"], vog_of(grads)) < 1e-6


def keras_cnn():
    import keras

    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])


@pytest.fixture(scope="module")
def keras_checkpoints(tmp_path_factory, cnn):
    keras = pytest.importorskip("keras")
    import vog.keras

    assert keras.backend.backend() == "torch"
    directory = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    model = keras_cnn()
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x = np.transpose(cnn.x, (0, 2, 3, 1))  # [N, H, W, C], Keras' layout
    model.fit(x, cnn.y, epochs=3, batch_size=8, verbose=0, callbacks=[vog.keras.VogCheckpoint(directory)])
    return directory, x


def test_keras_callback_and_torch_backend_match_torch_autodiff(keras_checkpoints, cnn, tmp_path):
    import keras
    import torch

    import vog.keras

    directory, x = keras_checkpoints
    manifest = json.loads((directory / "vog-checkpoints.json").read_text())
    assert [e["epoch"] for e in manifest["checkpoints"]] == [0, 1, 2]
    per_epoch = -(-len(x) // 8)  # optimizer steps per epoch at batch 8
    assert [e["step"] for e in manifest["checkpoints"]] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert "accuracy" in manifest["checkpoints"][0]["metrics"]
    run = vog.score(directory, x, cnn.y, backend=vog.keras.Backend(), channels="none", out=tmp_path / "r",
                    progress=False)
    grads = []
    for e in manifest["checkpoints"]:
        m = keras.saving.load_model(str(directory / e["files"]["keras"]), compile=False)
        xt = torch.from_numpy(x).requires_grad_(True)
        logits = m(xt, training=False)
        (g,) = torch.autograd.grad(logits.gather(1, torch.from_numpy(cnn.y)[:, None]).sum(), xt)
        grads.append(g.numpy())
    assert relative_error(run.columns()["vog_all"], vog_of(grads)) < 1e-5


def test_keras_on_jax_agrees_with_keras_on_torch(keras_checkpoints, cnn, tmp_path):
    pytest.importorskip("jax")
    directory, x = keras_checkpoints
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", cnn.y)
    on_torch = vog.score(directory, x, cnn.y, backend=vog.keras.Backend(), channels="none",
                         out=tmp_path / "t", progress=False)
    script = textwrap.dedent(
        f"""
        import numpy as np, vog, vog.keras, keras
        assert keras.backend.backend() == "jax"
        vog.score({str(directory)!r}, np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'y.npy')!r}),
                  backend=vog.keras.Backend(), channels="none", out={str(tmp_path / 'j')!r}, progress=False)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    on_jax = vog.Run(tmp_path / "j")
    assert on_jax.manifest["backend"]["devices"] == ["jax"]
    assert relative_error(on_jax.columns()["vog_all"], on_torch.columns()["vog_all"]) < 1e-5


def test_channels_last_keras_and_channels_first_torch_give_the_same_vog(keras_checkpoints, cnn, tmp_path):
    """Keras on [H, W, 3] images: the channel axis is read from the shape (last) and the colour
    gradients averaged, matching Keras' own autodiff; the same data as [3, H, W] through a PyTorch
    twin of each checkpoint (the same weights, channels first) gives the same VoG."""
    import keras
    import torch

    import vog.keras
    import vog.torch

    directory, x_last = keras_checkpoints
    manifest = json.loads((directory / "vog-checkpoints.json").read_text())
    y = cnn.y
    run_keras = vog.score(directory, x_last, y, backend=vog.keras.Backend(), out=tmp_path / "k",
                          progress=False)
    assert run_keras.manifest["scoring"]["channels"] == "mean-last"

    class Twin(torch.nn.Module):
        """keras_cnn() in PyTorch's layout: NCHW convolution, NHWC flatten before the dense layer."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.dense = torch.nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            h = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
            return self.dense(h.permute(0, 2, 3, 1).flatten(1))

    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    grads = []
    for i, e in enumerate(manifest["checkpoints"]):
        m = keras.saving.load_model(str(directory / e["files"]["keras"]), compile=False)
        kernel, bias, dense_kernel, dense_bias = (np.asarray(w) for w in m.get_weights())
        state = {
            "conv.weight": torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()),
            "conv.bias": torch.from_numpy(bias),
            "dense.weight": torch.from_numpy(dense_kernel.T.copy()),
            "dense.bias": torch.from_numpy(dense_bias),
        }
        torch.save(state, twin_dir / f"epoch_{i + 1}.pt")
        xt = torch.from_numpy(x_last).requires_grad_(True)
        logits = m(xt, training=False)
        (g,) = torch.autograd.grad(logits.gather(1, torch.from_numpy(y)[:, None]).sum(), xt)
        grads.append(g.numpy().astype(np.float64).mean(axis=-1))  # colours averaged, [N, H, W]
    assert relative_error(run_keras.columns()["vog_all"], vog_of(grads)) < 1e-5

    x_first = np.ascontiguousarray(np.transpose(x_last, (0, 3, 1, 2)))
    run_torch = vog.score(twin_dir, x_first, y, backend=vog.torch.Backend(Twin, device="cpu"),
                          out=tmp_path / "t", progress=False)
    assert run_torch.manifest["scoring"]["channels"] == "mean"
    assert relative_error(run_torch.columns()["vog_all"], run_keras.columns()["vog_all"]) < 1e-5
    # A shape that does not say where the channels are is refused with the setting to use.
    with pytest.raises(vog.VogError, match="channel_axis"):
        vog.score(twin_dir, np.zeros((4, 3, 4, 3), np.float32), backend=vog.torch.Backend(
            lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 5)), device="cpu",
            strict=False), out=tmp_path / "bad", progress=False)
