"""A finished scoring run: its results directory, read as tables, maps, a report or an evaluation."""

import json
import tempfile
from pathlib import Path

import numpy as np

from . import _vog

# Columns holding class indices: nullable integers.
_CLASS_COLUMNS = ("true_label", "label_used", "predicted")


class Run:
    """The results directory of a run (``run.json``, ``scores.csv``/``scores.jsonl``, ``maps/``).

    ``Run(path)`` opens one written by :func:`vog.score` or ``vog score``.
    """

    def __init__(self, path):
        self.dir = Path(path)
        if not _vog.is_results(str(self.dir)):
            # Let the engine say why (missing run.json, an older format, …).
            _vog.columns(str(self.dir))
        with open(self.dir / "run.json", encoding="utf-8") as f:
            self.manifest = json.load(f)

    def __repr__(self):
        scoring = self.manifest.get("scoring", {})
        return (
            f"Run({str(self.dir)!r}: {self.manifest.get('data', {}).get('rows', '?')} examples, "
            f"{len(self.manifest.get('checkpoints', []))} checkpoints, "
            f"target {scoring.get('target')}, labels {scoring.get('labels')})"
        )

    @property
    def windows(self):
        """Window names, in column order."""
        return [w["name"] for w in self.manifest["scoring"]["windows"]]

    def columns(self):
        """The rows as ``{column: list}``, in ``scores.csv``'s column order (``None`` where a
        value is missing)."""
        return dict(_vog.columns(str(self.dir)))

    def to_pandas(self):
        """A ``pandas.DataFrame`` with ``scores.csv``'s columns: ``id`` and ``split`` (object),
        ``row`` (int64), ``true_label``/``label_used``/``predicted`` (nullable ``Int64``), every
        score (float64, NaN where undefined), ``flagged``/``has_map`` (bool), and ``meta.KEY``
        (object)."""
        import pandas as pd

        data = {}
        for name, values in self.columns().items():
            data[name] = _pandas_column(pd, name, values)
        return pd.DataFrame(data)

    def to_arrow(self):
        """A ``pyarrow.Table`` with the same columns as :meth:`to_pandas`: ``id``/``split``
        string, ``row`` uint64, class columns uint32 (null where missing), scores float64 (null
        where undefined), ``flagged``/``has_map`` bool, ``meta.KEY`` as Arrow infers it."""
        import pyarrow as pa

        arrays, names = [], []
        for name, values in self.columns().items():
            names.append(name)
            arrays.append(pa.array(values, type=_arrow_type(pa, name)))
        return pa.Table.from_arrays(arrays, names=names)

    def map(self, row, kind="vog"):
        """The kept map of example ``row``: its VoG map (``kind="vog"``) or its gradient at the
        last checkpoint (``"grad"``). Maps are kept for flagged examples (``flag=``) and the
        class extremes; a ``KeyError`` says when this row has none."""
        path = Path(_vog.map_path(str(self.dir), int(row), kind))
        if not path.is_file():
            raise KeyError(
                f"row {row} has no kept {kind} map in {self.dir} (maps are kept for flagged "
                "examples: score with flag=...)"
            )
        return np.load(path)

    def report(self, path, per_class=None):
        """Writes the HTML report to ``path`` and returns it."""
        args = {} if per_class is None else {"per_class": int(per_class)}
        _vog.report(str(self.dir), str(path), **args)
        return Path(path)

    def evaluate(self, bad, k=(10, 100)):
        """How well each score finds the ``bad`` examples (AUROC, AUPRC, precision at each
        ``k``), as ``vog evaluate`` computes it. ``bad`` is a column name (``"meta.is_noisy"``,
        ``"flagged"``), a collection of example ids, or a boolean array with one value per row."""
        ks = [int(v) for v in k]
        if isinstance(bad, str):
            return json.loads(_vog.evaluate(str(self.dir), bad_column=bad, k=ks))
        ids = self.columns()["id"]
        flags = np.asarray(bad)
        if flags.dtype == bool:
            if flags.shape != (len(ids),):
                raise ValueError(f"bad: {flags.size} flags for {len(ids)} rows")
            chosen = [i for i, b in zip(ids, flags) if b]
        else:
            chosen = [str(b) for b in bad]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(i + "\n" for i in chosen))
            name = f.name
        try:
            return json.loads(_vog.evaluate(str(self.dir), bad_ids=name, k=ks))
        finally:
            Path(name).unlink(missing_ok=True)

    def index(self, store, run=None, class_names=None):
        """Indexes this run into the audit store at ``store`` (created when missing) as ``run``;
        returns ``(run, examples, flagged)``."""
        return _vog.index(
            str(self.dir),
            str(store),
            run,
            None if class_names is None else str(class_names),
        )


def _pandas_column(pd, name, values):
    if name in _CLASS_COLUMNS:
        return pd.array(values, dtype="Int64")
    if name == "row":
        return np.asarray(values, dtype=np.int64)
    if name in ("flagged", "has_map"):
        return np.asarray(values, dtype=bool)
    if name in ("id", "split") or name.startswith("meta."):
        return pd.array(values, dtype=object)
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _arrow_type(pa, name):
    if name in _CLASS_COLUMNS:
        return pa.uint32()
    if name == "row":
        return pa.uint64()
    if name in ("flagged", "has_map"):
        return pa.bool_()
    if name in ("id", "split"):
        return pa.string()
    if name.startswith("meta."):
        return None
    return pa.float64()
