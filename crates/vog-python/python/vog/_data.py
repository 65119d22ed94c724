"""Inputs for the engine: arrays and iterables of batches streamed to ``.npy`` files."""

import json
import os
import shutil
from pathlib import Path

import numpy as np

# A .npy file whose header is written last: this many bytes are reserved for it (a multiple of
# 64, as the format recommends), enough for any shape of up to 32 dimensions.
_HEADER_BYTES = 512


class NpyStream:
    """Writes a ``.npy`` file one block of rows at a time; the shape is known only at the end."""

    def __init__(self, path: Path, dtype):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.row_shape = None
        self._file = open(path, "wb")
        self._file.write(b"\0" * _HEADER_BYTES)

    def write(self, block, what):
        block = np.asarray(block)
        if block.ndim == 0:
            raise ValueError(f"{what}: a batch is a scalar, not rows")
        if self.dtype.kind == "f" and not np.issubdtype(block.dtype, np.number):
            raise TypeError(f"{what}: a batch of {block.dtype} is not numbers")
        if self.dtype.kind == "i" and not (
            np.issubdtype(block.dtype, np.integer)
            or (np.issubdtype(block.dtype, np.floating) and np.all(np.mod(block, 1) == 0))
        ):
            raise TypeError(f"{what}: labels must be whole numbers, got {block.dtype}")
        if self.row_shape is None:
            self.row_shape = block.shape[1:]
        elif block.shape[1:] != self.row_shape:
            raise ValueError(
                f"{what}: a batch of rows shaped {list(block.shape[1:])} after rows shaped "
                f"{list(self.row_shape)}"
            )
        self._file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += block.shape[0]

    def close(self):
        shape = (self.rows,) + tuple(self.row_shape or ())
        header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            self.dtype.str,
            shape,
        )
        room = _HEADER_BYTES - 10
        if len(header) + 1 > room:
            raise ValueError(f"{self.path}: a shape of {len(shape)} dimensions is too long")
        header = header.ljust(room - 1) + "\n"
        self._file.seek(0)
        self._file.write(b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + header.encode("latin1"))
        self._file.close()

    def abort(self):
        self._file.close()
        self.path.unlink(missing_ok=True)


def _as_numpy(value):
    """A framework tensor (torch, JAX, TF) or array-like as a NumPy array, without importing any
    framework."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        try:
            return np.asarray(value.numpy())
        except Exception:  # noqa: BLE001 - fall back to the array protocol
            pass
    return np.asarray(value)


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


class Inputs:
    """The files the engine reads, and how to describe them in a configuration."""

    def __init__(self, data, labels=None, ids=None, metadata=None, written=None):
        self.data, self.labels, self.ids, self.metadata = data, labels, ids, metadata
        self.written = written

    def remove_written(self):
        """Deletes the directory this run wrote its inputs to, if it wrote any."""
        if self.written is not None:
            shutil.rmtree(self.written, ignore_errors=True)

    def data_config(self):
        c = {"path": str(self.data)}
        if self.labels is not None:
            c["labels"] = str(self.labels)
        if self.ids is not None:
            c["ids"] = str(self.ids)
        if self.metadata is not None:
            c["metadata"] = str(self.metadata)
        return c


def write_inputs(directory: Path, data, labels, ids, metadata, overwrite=False) -> Inputs:
    """Puts ``data`` (and labels, ids, metadata given as Python values) where the engine reads
    them: paths pass through, anything else is written under ``directory``."""
    needs_dir = not _is_path(data) or (labels is not None and not _is_path(labels))
    needs_dir = needs_dir or (ids is not None and not _is_path(ids))
    needs_dir = needs_dir or (metadata is not None and not _is_path(metadata))
    if needs_dir:
        if directory.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{directory} exists (inputs of an earlier run): pass overwrite=True or another out"
                )
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    try:
        inputs = _write(directory, data, labels, ids, metadata)
        inputs.written = directory if needs_dir else None
        return inputs
    except BaseException:
        if needs_dir:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def _write(directory, data, labels, ids, metadata):
    label_path = None
    if _is_path(data):
        data_path = Path(data).absolute()
    elif isinstance(data, np.ndarray) or hasattr(data, "__array__") or hasattr(data, "shape"):
        array = _as_numpy(data)
        if array.ndim < 2:
            raise ValueError(f"data: an array shaped {list(array.shape)}; expected [N, ...] rows")
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"data: an array of {array.dtype}, not numbers")
        data_path = directory / "data.npy"
        np.save(data_path, np.ascontiguousarray(array, dtype=np.float32))
    elif hasattr(data, "__iter__"):
        data_path, label_path = _stream(directory, data, want_labels=labels is None)
    else:
        raise TypeError(
            f"data: {type(data).__name__} is neither an array, a path nor an iterable of batches"
        )

    if labels is not None:
        if _is_path(labels):
            label_path = Path(labels).absolute()
        else:
            y = _as_numpy(labels)
            if y.ndim != 1:
                raise ValueError(f"labels: shaped {list(y.shape)}; expected one label per row")
            if not np.issubdtype(y.dtype, np.integer):
                if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
                    raise TypeError(f"labels must be whole numbers, got {y.dtype}")
            if np.any(y < 0):
                raise ValueError("labels: negative class index")
            label_path = directory / "labels.npy"
            np.save(label_path, y.astype(np.int64))

    ids_path = None
    if ids is not None:
        if _is_path(ids):
            ids_path = Path(ids).absolute()
        else:
            ids_path = directory / "ids.txt"
            with open(ids_path, "w", encoding="utf-8") as f:
                for i in ids:
                    s = str(i)
                    if "\n" in s or "\r" in s:
                        raise ValueError(f"ids: {s!r} holds a line break")
                    f.write(s + "\n")

    meta_path = None
    if metadata is not None:
        if _is_path(metadata):
            meta_path = Path(metadata).absolute()
        else:
            meta_path = directory / "metadata.jsonl"
            with open(meta_path, "w", encoding="utf-8") as f:
                for m in metadata:
                    if not isinstance(m, dict):
                        raise TypeError(f"metadata: each row is a dict, not {type(m).__name__}")
                    f.write(json.dumps(m, default=str) + "\n")
    return Inputs(data_path, label_path, ids_path, meta_path)


def _stream(directory, batches, want_labels):
    x = NpyStream(directory / "data.npy", np.float32)
    y = NpyStream(directory / "labels.npy", np.int64) if want_labels else None
    with_labels = None
    try:
        for i, batch in enumerate(batches):
            if isinstance(batch, dict):
                raise TypeError(
                    "data: batches are dicts; give (inputs, labels) tuples, e.g. with a collate_fn"
                )
            if isinstance(batch, (tuple, list)):
                if not batch:
                    raise ValueError(f"data: batch {i} is empty")
                inputs, batch_labels = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                inputs, batch_labels = batch, None
            inputs = _as_numpy(inputs)
            if inputs.ndim < 2:
                raise ValueError(
                    f"data: batch {i} is shaped {list(inputs.shape)}; expected [B, ...] rows"
                )
            x.write(inputs, f"data (batch {i})")
            if y is not None:
                has = batch_labels is not None
                if with_labels is None:
                    with_labels = has
                elif with_labels != has:
                    raise ValueError(f"data: batch {i} {'has' if has else 'lacks'} labels, unlike batch 0")
                if has:
                    batch_labels = _as_numpy(batch_labels).reshape(-1)
                    if batch_labels.shape[0] != inputs.shape[0]:
                        raise ValueError(
                            f"data: batch {i} has {inputs.shape[0]} inputs and "
                            f"{batch_labels.shape[0]} labels"
                        )
                    if np.any(batch_labels < 0):
                        raise ValueError(f"data: batch {i} has a negative label")
                    y.write(batch_labels, f"labels (batch {i})")
        if x.rows == 0:
            raise ValueError("data: the iterable yielded no examples")
        x.close()
        if y is not None and with_labels:
            y.close()
            return x.path, y.path
        if y is not None:
            y.abort()
        return x.path, None
    except BaseException:
        x.abort()
        if y is not None:
            y.abort()
        raise
