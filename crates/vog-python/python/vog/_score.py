"""``vog.score``: one call from checkpoints and data to a :class:`~vog.Run`."""

import json
import os
import tempfile
from pathlib import Path

from . import _vog
from ._backend import check_backend, extensions_of
from ._data import write_inputs
from ._ort import ensure_library_env
from ._progress import progress_for
from ._run import Run

_LABEL_MODES = ("auto", "true", "predicted", "predicted-each")
_TARGETS = ("logit", "probability")


def _paths(checkpoints, backend):
    """Checkpoint patterns for the engine, and their order (``name`` or ``given``)."""
    if isinstance(checkpoints, (str, os.PathLike)):
        p = Path(checkpoints)
        listed = _from_checkpoint_manifest(p, backend)
        if listed is not None:
            return listed, "given"
        return [str(p.absolute())], "name"
    items = [str(Path(c).absolute()) for c in checkpoints]
    if not items:
        raise ValueError("checkpoints: an empty list; give files, a directory or a glob pattern")
    return items, "given"


def _from_checkpoint_manifest(directory: Path, backend):
    """The files a ``vog-checkpoints.json`` (written by ``vog.torch.save_checkpoint`` and the
    callbacks) lists for this backend, in training order; ``None`` without a manifest."""
    manifest = directory / "vog-checkpoints.json"
    if not manifest.is_file():
        return None
    from ._checkpoints import files_for

    return [str(f) for f in files_for(directory, backend)]


def _preferred_batch(backend, inputs, input_shape):
    """The batch size a Python backend asks for (its ``batch_size(row_shape)``), when the shape
    of one example is known here (an array, a ``.npy`` file, or ``input_shape``)."""
    ask = getattr(backend, "batch_size", None)
    if not callable(ask):
        return None
    shape = input_shape
    if shape is None and str(inputs.data).endswith(".npy"):
        import numpy as np

        shape = np.load(inputs.data, mmap_mode="r").shape[1:]
    if shape is None:
        return None
    chosen = ask(tuple(int(d) for d in shape))
    if chosen is None:
        return None
    if not isinstance(chosen, int) or chosen < 1:
        raise ValueError(f"backend.batch_size returned {chosen!r}, not a positive integer")
    return chosen


def score(
    checkpoints,
    data,
    labels=None,
    *,
    backend="candle",
    target="logit",
    second_target=None,
    labels_mode=None,
    windows=None,
    ranges=None,
    flag=None,
    channels="mean",
    channel_axis=None,
    input_shape=None,
    ids=None,
    metadata=None,
    split=None,
    batch_size="auto",
    memory=None,
    options=None,
    out=None,
    overwrite=False,
    resume=False,
    store=None,
    run=None,
    class_names=None,
    plugin_dirs=(),
    progress=True,
):
    """Scores every example of ``data`` over ``checkpoints`` and returns the :class:`Run`.

    Parameters
    ----------
    checkpoints:
        A directory (every checkpoint file in it with one of the backend's extensions, in the
        order of the numbers in their names; or the files its ``vog-checkpoints.json`` lists, in
        training order), a glob pattern, or a list of files in training order.
    data:
        A NumPy array ``[N, ...]`` (or anything ``numpy.asarray`` takes), a path the command
        line reads (``.npy``, ``.npz``, IDX, CSV), or an iterable of batches (a
        ``torch.utils.data.DataLoader``, a generator): each batch an array, or a tuple/list whose
        first item is the inputs and second the labels. Arrays and batches are streamed to a
        ``.npy`` file beside the results, so data never has to fit in memory.
    labels:
        Integer labels ``[N]`` (array, list or path). ``None``: taken from the batches when they
        carry them, else the predicted class is used (``labels_mode="auto"``).
    backend:
        A backend name (``"candle"``, ``"onnx"``, ``"torch"`` for the libtorch plugin) or a
        Python backend object (:class:`vog.Backend`, e.g. ``vog.torch.Backend(...)``).
    target:
        ``"logit"`` (the paper) or ``"probability"``; ``second_target`` adds the other's VoG
        columns from the same pass (``*_probability``). ``None`` (``"auto"``) adds the
        probability target when scoring without labels, where it finds the model's errors far
        better than the logit target (docs/RESULTS.md); ``"none"`` turns that off.
    labels_mode:
        ``"auto"``, ``"true"``, ``"predicted"`` (the last checkpoint's prediction for every
        checkpoint) or ``"predicted-each"``.
    windows, ranges:
        Window names (``all``, ``early``, ``middle``, ``late``) and extra ``{name: (start, end)}``
        checkpoint ranges.
    flag:
        Which examples to flag for review: a dict of ``[flag]`` settings (``top_percent``,
        ``threshold``, ``window``, ``max_maps``, ``extremes_per_class``) or a number (top percent).
    channels:
        ``"mean"`` averages colour gradients over channels (the paper), ``"none"`` keeps them.
    channel_axis:
        Where 3-D examples keep their channels: ``"first"`` (``[C, H, W]``, PyTorch),
        ``"last"`` (``[H, W, C]``, Keras/TensorFlow/JAX) or ``"none"``. ``None`` (``"auto"``)
        follows the model where it tells (an ONNX model's first layers), else reads it from the
        shape (a short first or last axis) and raises when neither tells.
    ids, metadata:
        Example ids (a list or a path) and per-example metadata (a list of dicts, or a JSONL/CSV
        path), stored with the rows and searchable in the audit store.
    batch_size:
        ``"auto"`` or a number of examples per backend call. With ``"auto"`` a Python backend
        may choose (its ``batch_size(row_shape)`` method; ``vog.torch`` takes larger batches on
        GPUs), else vog does. ``memory``: the memory budget (``"4GiB"``) the work order is
        planned for.
    options:
        ``[backend.options]`` for a named backend (a dict).
    out:
        The results directory (default: a new temporary directory); ``overwrite`` replaces one,
        ``resume`` continues an interrupted run from its journal.
    store, run, class_names:
        Index the results into the audit store at ``store`` as run ``run``.
    progress:
        ``True`` (a bar in terminals and notebooks), ``False``, or an object with ``start(total,
        message)``, ``advance(n)`` and ``finish()``.
    """
    python_backend = None
    if isinstance(backend, str):
        backend_name = backend
    else:
        check_backend(backend)
        python_backend = backend
        backend_name = getattr(backend, "name", None) or type(backend).__name__
    if target not in _TARGETS:
        raise ValueError(f"target {target!r} is not one of {', '.join(_TARGETS)}")
    if second_target is not None and second_target not in _TARGETS + ("auto", "none"):
        raise ValueError(
            f"second_target {second_target!r} is not one of {', '.join(_TARGETS)}, auto, none"
        )
    if channel_axis is not None and channel_axis not in ("auto", "first", "last", "none"):
        raise ValueError(f"channel_axis {channel_axis!r} is not one of auto, first, last, none")
    if labels_mode is not None and labels_mode not in _LABEL_MODES:
        raise ValueError(f"labels_mode {labels_mode!r} is not one of {', '.join(_LABEL_MODES)}")

    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be 'auto' or a positive integer, not {batch_size!r}")
    if python_backend is not None and options:
        raise ValueError("options are for a named backend; configure a Python backend directly")

    paths, order = _paths(checkpoints, python_backend if python_backend is not None else backend)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="vog-")) / "results"
    out = Path(out).absolute()
    inputs = write_inputs(
        out.with_name(out.name + ".inputs"),
        data,
        labels,
        ids,
        metadata,
        overwrite=overwrite or resume,
    )

    try:
        config = {
            "version": 1,
            "data": inputs.data_config(),
            "checkpoints": {"paths": paths, "order": order},
            "backend": {"name": backend_name, "options": dict(options or {})},
            "scoring": {"target": target, "channels": channels},
            "output": {"dir": str(out), "overwrite": bool(overwrite), "resume": bool(resume)},
            "plugins": {"dirs": [str(Path(p).absolute()) for p in plugin_dirs]},
        }
        if input_shape is not None:
            config["data"]["input_shape"] = [int(d) for d in input_shape]
        if split is not None:
            config["data"]["split"] = str(split)
        if labels_mode is not None:
            config["scoring"]["labels"] = labels_mode
        if channel_axis is not None:
            config["scoring"]["channel_axis"] = channel_axis
        if second_target is not None:
            config["scoring"]["second_target"] = second_target
        if windows is not None:
            config["scoring"]["windows"] = [str(w) for w in windows]
        if ranges:
            config["scoring"]["ranges"] = {str(k): [int(a), int(b)] for k, (a, b) in ranges.items()}
        if flag is not None:
            config["flag"] = {"top_percent": float(flag)} if isinstance(flag, (int, float)) else dict(flag)
        if batch_size == "auto" and python_backend is not None:
            chosen = _preferred_batch(python_backend, inputs, input_shape)
            if chosen is not None:
                config["backend"]["batch_size"] = chosen
        elif batch_size != "auto":
            config["backend"]["batch_size"] = batch_size
        if memory is not None:
            config["backend"]["memory"] = memory
        if store is not None:
            config["output"]["formats"] = ["csv", "jsonl"]

        if python_backend is None:
            ensure_library_env()
        directory = _vog.score(json.dumps(config), python_backend, progress_for(progress))
    except BaseException:
        # No partial output: the inputs written for this run go with it (a resumable run keeps
        # them, as the engine keeps its journal).
        if not resume:
            inputs.remove_written()
        raise
    result = Run(directory)
    if store is not None:
        result.index(store, run=run, class_names=class_names)
    return result

