"""The Python backend protocol: your framework computes input gradients, vog does the rest."""

from typing import Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np


@runtime_checkable
class Model(Protocol):
    """One loaded checkpoint.

    ``input_gradients(x, classes, target)`` runs one forward and one backward pass over a batch:

    * ``x``: float32 array ``[B, ...]``, the batch as the model takes it (a writable array that
      vog does not reuse after the call returns);
    * ``classes``: int64 array ``[B]`` of the class to differentiate per row, or ``None``: use
      each row's argmax of this checkpoint's logits (first maximum on ties);
    * ``target``: ``"logit"`` (the paper's pre-softmax score) or ``"probability"`` (softmax).

    It returns ``(logits, gradient)`` or ``(logits, gradient, classes)``: logits ``[B, C]``, the
    gradient of each row's target with respect to that row's input (``[B, ...]``, shaped like
    ``x``, or like an intermediate tensor's rows when the backend differentiates with respect to
    one), and the classes used. Any array NumPy can read works; vog copies it as float32.
    Weight gradients must not be computed: freeze parameters.

    Optional attributes: ``input_shape`` (one example's shape) and ``num_classes``.
    """

    def input_gradients(
        self, x: np.ndarray, classes: Optional[np.ndarray], target: str
    ) -> Tuple[np.ndarray, ...]: ...


@runtime_checkable
class Backend(Protocol):
    """A source of :class:`Model` objects: ``load(path)`` reads one checkpoint file.

    Optional attributes: ``name`` (recorded in ``run.json``), ``version``, ``extensions`` (the
    checkpoint file extensions it reads, without dots: a directory of checkpoints contributes
    the files with one of them) and ``devices``.
    """

    def load(self, path: str) -> Model: ...


def check_backend(backend) -> None:
    """Raises TypeError when ``backend`` cannot be a Python backend."""
    if not callable(getattr(backend, "load", None)):
        raise TypeError(
            f"backend {backend!r} is neither a backend name (str) nor an object with a "
            "load(path) method (see vog.Backend)"
        )


def extensions_of(backend) -> Sequence[str]:
    return list(getattr(backend, "extensions", None) or [])
