"""JAX as a vog backend: a pure function of parameters and inputs, parameter files per checkpoint.

::

    import vog, vog.jax

    def apply(params, x):                       # your model: [B, ...] -> [B, classes] logits
        h = jax.nn.relu(x @ params["w1"] + params["b1"])
        return h @ params["w2"] + params["b2"]

    run = vog.score("params/", x, y, backend=vog.jax.Backend(apply))   # params/epoch_*.npz

A flax ``nnx`` model works the same way through ``nnx.split``: ``graphdef, state = nnx.split(model)``,
then ``apply = lambda params, x: nnx.merge(graphdef, params)(x)`` and a ``load`` that returns the
checkpoint's state. Input gradients come from ``jax.grad`` of the chosen class's logit (or
probability), compiled once per batch shape with ``jax.jit``.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Backend", "Model", "load_npz", "save_npz"]


def _nest(flat):
    """``{"a/b": x}`` → ``{"a": {"b": x}}``."""
    out = {}
    for key, value in flat.items():
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = np.asarray(value)
    return out


def load_npz(path):
    """Parameters from an ``.npz`` file, nested by ``/`` in the array names (what
    :func:`save_npz` writes)."""
    with np.load(path) as f:
        return _nest({k: f[k] for k in f.files})


def save_npz(params, path):
    """Writes a nested dict of arrays (a parameter pytree of dicts) to ``path`` as ``.npz``."""
    np.savez(path, **_flatten(jax.device_get(params)))


class Model:
    """One checkpoint: ``input_gradients`` as the :class:`vog.Model` protocol says."""

    def __init__(self, apply, params, dtype):
        self.params = params
        self.dtype = dtype

        def grads(params, x, classes, use_argmax, probability):
            def chosen_score(x):
                logits = apply(params, x)
                picked = jnp.where(use_argmax, jnp.argmax(jax.lax.stop_gradient(logits), axis=1), classes)
                score = jax.nn.softmax(logits, axis=1) if probability else logits
                return jnp.take_along_axis(score, picked[:, None], axis=1).sum(), (logits, picked)

            g, (logits, picked) = jax.grad(chosen_score, has_aux=True)(x)
            return logits, g, picked

        self._grads = jax.jit(grads, static_argnums=(3, 4))

    def input_gradients(self, x, classes, target):
        xj = jnp.asarray(x, dtype=self.dtype)
        use_argmax = classes is None
        cls = jnp.zeros(x.shape[0], jnp.int32) if use_argmax else jnp.asarray(classes, jnp.int32)
        logits, g, picked = self._grads(self.params, xj, cls, use_argmax, target == "probability")
        if logits.ndim != 2:
            raise ValueError(f"apply returned logits shaped {list(logits.shape)}; expected [batch, classes]")
        return np.asarray(logits, np.float32), np.asarray(g, np.float32), np.asarray(picked)


class Backend:
    """Loads parameter files for a JAX function ``apply(params, x) -> logits``.

    Parameters
    ----------
    apply:
        The model as a pure function of a parameter pytree and a batch ``[B, ...]``.
    load:
        Reads one checkpoint file into that pytree (default: :func:`load_npz`).
    extensions:
        The checkpoint files' extensions, without dots (default ``["npz"]``).
    dtype:
        The dtype inputs (and floating parameters) are cast to; ``"float64"`` needs
        ``jax.config.update("jax_enable_x64", True)``.
    """

    name = "jax-python"
    version = jax.__version__
    checkpoint_format = "params"

    def __init__(self, apply, load=None, *, extensions=("npz",), dtype="float32"):
        self.apply = apply
        self.loader = load or load_npz
        self.extensions = list(extensions)
        self.dtype = jnp.dtype(dtype)
        self.devices = [str(d) for d in jax.devices()]

    def __repr__(self):
        return f"vog.jax.Backend({getattr(self.apply, '__name__', 'apply')}, devices={self.devices})"

    def load(self, path):
        params = self.loader(str(Path(path)))

        def cast(a):
            a = jnp.asarray(a)
            return a.astype(self.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

        return Model(self.apply, jax.tree_util.tree_map(cast, params), self.dtype)
