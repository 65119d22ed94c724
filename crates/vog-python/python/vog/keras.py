"""Keras 3 as a vog backend, on whichever of its backends is active (torch, JAX, TensorFlow).

::

    import vog, vog.keras

    run = vog.score("checkpoints/", x, y, backend=vog.keras.Backend())              # .keras files
    run = vog.score("weights/", x, y, backend=vog.keras.Backend(make_model))       # .weights.h5

and in ``model.fit(..., callbacks=[vog.keras.VogCheckpoint("checkpoints/")])``. Input gradients
come from the active backend's own autodiff (``torch.autograd``, ``jax.grad``,
``tf.GradientTape``) with the model called in inference mode.
"""

from pathlib import Path

import keras
import numpy as np

from . import _checkpoints

__all__ = ["Backend", "Model", "VogCheckpoint", "save_checkpoint"]


def _grads_torch(model, x, classes, probability):
    import torch

    xt = torch.as_tensor(x).requires_grad_(True)
    logits = model(xt, training=False)
    chosen = logits.detach().argmax(1) if classes is None else torch.as_tensor(classes, device=logits.device)
    score = torch.softmax(logits, 1) if probability else logits
    (g,) = torch.autograd.grad(score.gather(1, chosen.view(-1, 1)).sum(), xt)
    return logits.detach().cpu().numpy(), g.cpu().numpy(), chosen.cpu().numpy()


def _grads_jax(model, x, classes, probability):
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def chosen_score(xj):
        logits, _ = model.stateless_call(trainable, frozen, xj, training=False)
        picked = jnp.argmax(jax.lax.stop_gradient(logits), 1) if classes is None else jnp.asarray(classes)
        score = jax.nn.softmax(logits, 1) if probability else logits
        return jnp.take_along_axis(score, picked[:, None], 1).sum(), (logits, picked)

    g, (logits, picked) = jax.grad(chosen_score, has_aux=True)(jnp.asarray(x))
    return np.asarray(logits), np.asarray(g), np.asarray(picked)


def _grads_tensorflow(model, x, classes, probability):
    import tensorflow as tf

    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = model(xt, training=False)
        picked = tf.argmax(logits, 1, output_type=tf.int64) if classes is None else tf.constant(classes)
        score = tf.nn.softmax(logits, 1) if probability else logits
        selected = tf.reduce_sum(tf.gather(score, picked[:, None], batch_dims=1))
    g = tape.gradient(selected, xt)
    return logits.numpy(), g.numpy(), picked.numpy()


_GRADS = {"torch": _grads_torch, "jax": _grads_jax, "tensorflow": _grads_tensorflow}


class Model:
    """One checkpoint: ``input_gradients`` through the active Keras backend's autodiff."""

    def __init__(self, model):
        self.model = model
        self.model.trainable = False
        backend = keras.backend.backend()
        if backend not in _GRADS:
            raise ValueError(f"Keras backend {backend!r} is not supported (torch, jax, tensorflow)")
        self._grads = _GRADS[backend]
        shape = getattr(model, "input_shape", None)
        if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape[1:]):
            self.input_shape = list(shape[1:])

    def input_gradients(self, x, classes, target):
        x = x.astype(keras.backend.floatx(), copy=False)
        logits, g, picked = self._grads(self.model, x, classes, target == "probability")
        return logits, g, picked


class Backend:
    """Loads Keras checkpoints: whole models (``.keras``) when ``factory`` is ``None``, else
    ``factory()`` with each checkpoint's weights (``.weights.h5``) loaded into it."""

    name = "keras-python"
    version = keras.__version__

    def __init__(self, factory=None):
        self.factory = factory
        self.devices = [keras.backend.backend()]
        if factory is None:
            self.extensions = ["keras"]
            self.checkpoint_format = "keras"
        else:
            self.extensions = ["h5"]
            self.checkpoint_format = "weights"

    def load(self, path):
        if self.factory is None:
            model = keras.saving.load_model(str(path), compile=False)
        else:
            model = self.factory()
            model.load_weights(str(path))
        return Model(model)


def save_checkpoint(model, directory, step, *, epoch=None, metrics=None, weights_only=False):
    """Saves a Keras model as checkpoint ``step`` of ``directory`` (see ``vog._checkpoints``): the
    whole model as ``keras/step_N.keras``, or only its weights as ``weights/step_N.weights.h5``."""
    directory = Path(directory)
    name = f"step_{int(step):08d}"
    if weights_only:
        (directory / "weights").mkdir(parents=True, exist_ok=True)
        rel = f"weights/{name}.weights.h5"
        model.save_weights(str(directory / rel), overwrite=True)
        files = {"weights": rel}
    else:
        (directory / "keras").mkdir(parents=True, exist_ok=True)
        rel = f"keras/{name}.keras"
        model.save(str(directory / rel), overwrite=True)
        files = {"keras": rel}
    return _checkpoints.record(directory, step, files, epoch=epoch, metrics=metrics)


class VogCheckpoint(keras.callbacks.Callback):
    """Saves the model with :func:`save_checkpoint` at the end of every ``every_n_epochs``-th
    epoch, with the epoch, the number of optimizer steps and the epoch's logs in the manifest."""

    def __init__(self, directory, every_n_epochs=1, weights_only=False):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError("every_n_epochs must be at least 1")
        self.directory = directory
        self.every_n_epochs = every_n_epochs
        self.weights_only = weights_only

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            save_checkpoint(self.model, self.directory, step, epoch=epoch, metrics=logs,
                            weights_only=self.weights_only)
