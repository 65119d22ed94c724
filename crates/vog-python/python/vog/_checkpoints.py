"""Checkpoint directories that vog reads without a configuration file.

Layout (written by ``vog.torch.save_checkpoint`` and the training callbacks)::

    DIR/vog-checkpoints.json       {"format": 1, "checkpoints": [{"step", "epoch", "metrics", "files"}]}
    DIR/state_dict/step_00000100.pt    torch.save(model.state_dict())
    DIR/onnx/step_00000100.onnx        on request
    DIR/torchscript/step_00000100.pt   on request

``files`` maps each format (``state_dict``, ``onnx``, ``torchscript``; ``keras`` and
``weights`` from ``vog.keras``) to a path relative to DIR. Entries are kept in training order (by step); saving a step again
replaces its entry. Each subdirectory also works on its own with the command line
(``vog score --checkpoints DIR/onnx``).
"""

import json
import math
import os
from pathlib import Path

MANIFEST = "vog-checkpoints.json"
FORMAT = 1

# Which format a backend reads, by backend name (Python backends say it with `checkpoint_format`).
_FORMAT_OF_BACKEND = {"onnx": "onnx", "torch": "torchscript"}


def read_manifest(directory):
    path = Path(directory) / MANIFEST
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint manifest format {manifest.get('format')!r}; this vog reads {FORMAT}")
    return manifest


def _clean(value):
    """Metrics as plain JSON numbers (tensors and NumPy scalars included; NaN becomes null)."""
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(value, str):
        return value
    return None


def record(directory, step, files, epoch=None, metrics=None):
    """Adds (or replaces) the entry of ``step`` in ``directory``'s manifest, atomically."""
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = read_manifest(directory) if path.is_file() else {"format": FORMAT, "checkpoints": []}
    entries = [e for e in manifest["checkpoints"] if e["step"] != int(step)]
    entry = {"step": int(step), "files": {k: str(v) for k, v in files.items()}}
    if epoch is not None:
        entry["epoch"] = int(epoch)
    if metrics:
        entry["metrics"] = {str(k): _clean(v) for k, v in dict(metrics).items()}
    entries.append(entry)
    entries.sort(key=lambda e: e["step"])
    manifest["checkpoints"] = entries
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return entry


def format_for(backend):
    """The checkpoint format ``backend`` (a name or a Python backend) reads."""
    if isinstance(backend, str):
        if backend not in _FORMAT_OF_BACKEND:
            raise ValueError(
                f"backend {backend!r} does not read the formats a vog checkpoint directory holds "
                f"({', '.join(sorted(set(_FORMAT_OF_BACKEND.values())))}, or state_dict through "
                "vog.torch.Backend)"
            )
        return _FORMAT_OF_BACKEND[backend]
    fmt = getattr(backend, "checkpoint_format", None)
    if fmt is None:
        raise ValueError(
            f"backend {backend!r} has no checkpoint_format: give the checkpoint files instead "
            "of a directory with a vog-checkpoints.json"
        )
    return fmt(backend) if callable(fmt) else fmt


def files_for(directory, backend):
    """The checkpoint files of ``directory``'s manifest in the format ``backend`` reads, in
    training order."""
    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    fmt = format_for(backend)
    files, missing = [], []
    for e in manifest["checkpoints"]:
        f = e["files"].get(fmt)
        if f is None:
            missing.append(e["step"])
        else:
            files.append(directory / f)
    if missing:
        raise ValueError(
            f"{directory / MANIFEST}: step(s) {missing} have no {fmt} file; save them with "
            f"that format, or give the files to score"
        )
    if not files:
        raise ValueError(f"{directory / MANIFEST}: no checkpoints recorded")
    return files
