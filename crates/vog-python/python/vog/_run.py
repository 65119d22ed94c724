"""A finished scoring run: its results directory, read as tables, maps, a report or an evaluation."""

import json
import re
import tempfile
from pathlib import Path

import numpy as np

from . import _vog

# Columns holding class indices: nullable integers.
_CLASS_COLUMNS = ("true_label", "label_used", "predicted")
# FiftyOne (MongoDB) field names: no dots, no leading '$'.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INVALID = re.compile(r"[^A-Za-z0-9_]")


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

    def to_fiftyone(self, dataset, field="vog", on="auto", maps=False):
        """Writes every example's scores onto the samples of a FiftyOne ``dataset`` (a
        ``Dataset`` or a view) and returns how many samples were written.

        Each matched sample gets one embedded document in ``field`` holding ``row``, ``split``,
        ``true_label``, ``label_used``, ``predicted``, every score column (``None`` where
        undefined) and ``flagged``/``has_map``, so the App can sort and filter by them
        (``dataset.sort_by("vog.vog_all_norm", reverse=True)``). Names other than letters,
        digits and ``_`` become ``_``.

        Rows are matched by the run's ``id`` column: to the samples' ``id`` (score with
        ``ids=dataset.values("id")``) or to their ``filepath`` (``ids=`` the paths, or a
        ``meta.filepath`` column; compared as absolute paths). ``on="auto"`` takes ``id`` when
        every row matches a sample id, else ``filepath``. Every row must match exactly one
        sample or nothing is written (``ValueError``); samples without a row are left as they
        are. ``maps=True`` also writes each kept 2-D VoG map as a ``fiftyone.Heatmap`` in
        ``FIELD_map``."""
        import fiftyone as fo

        if on not in ("auto", "id", "filepath"):
            raise ValueError(f"on: {on!r}: expected 'auto', 'id' or 'filepath'")
        if not isinstance(field, str) or not _FIELD.fullmatch(field):
            raise ValueError(f"field: {field!r}: expected a name of letters, digits and '_'")
        cols = self.columns()
        n = len(cols["row"])
        keys, sample_ids = _match_samples(dataset, cols, on)

        names = {}
        for name in cols:
            if name == "id" or name.startswith("meta."):
                continue
            safe = _INVALID.sub("_", name)
            if safe in names.values():
                raise ValueError(f"columns {name!r} and another both become {safe!r} in FiftyOne")
            names[name] = safe
        heatmaps = {}
        if maps:
            for i in range(n):
                if cols["has_map"][i]:
                    m = self.map(cols["row"][i])
                    if m.ndim != 2:
                        raise ValueError(
                            f"maps=True: the kept maps are shaped {list(m.shape)}; FiftyOne "
                            "heatmaps are 2-D"
                        )
                    heatmaps[sample_ids[i]] = fo.Heatmap(map=m.astype(np.float32))
        docs = {}
        for i in range(n):
            values = {}
            for name, safe in names.items():
                v = cols[name][i]
                if isinstance(v, float) and not np.isfinite(v):
                    v = None
                values[safe] = v
            docs[sample_ids[i]] = fo.DynamicEmbeddedDocument(**values)
        dataset.set_values(field, docs, key_field="id", dynamic=True)
        if heatmaps:
            dataset.set_values(f"{field}_map", heatmaps, key_field="id")
        return len(keys)

    def index(self, store, run=None, class_names=None):
        """Indexes this run into the audit store at ``store`` (created when missing) as ``run``;
        returns ``(run, examples, flagged)``."""
        return _vog.index(
            str(self.dir),
            str(store),
            run,
            None if class_names is None else str(class_names),
        )


def _match_samples(dataset, cols, on):
    """The run's match keys and, row by row, the id of the one sample each matches."""
    import os

    keys = [str(k) for k in cols["id"]]
    if len(set(keys)) != len(keys):
        raise ValueError("to_fiftyone: the run's ids repeat; rows cannot be matched to samples")
    sample_ids = [str(i) for i in dataset.values("id")]
    if on in ("auto", "id"):
        known = set(sample_ids)
        missing = [k for k in keys if k not in known]
        if not missing:
            return keys, keys
        if on == "id":
            raise ValueError(
                f"to_fiftyone: {len(missing)} of {len(keys)} rows have no sample with that id "
                f"(first: {missing[0]!r}); score with ids=dataset.values('id') or match on='filepath'"
            )
    if "meta.filepath" in cols:
        keys = [str(k) for k in cols["meta.filepath"]]
    keys = [os.path.abspath(os.path.expanduser(k)) for k in keys]
    by_path = {}
    for sid, path in zip(sample_ids, dataset.values("filepath")):
        by_path.setdefault(os.path.abspath(path), []).append(sid)
    chosen, missing = [], []
    for k in keys:
        found = by_path.get(k, [])
        if len(found) > 1:
            raise ValueError(f"to_fiftyone: {len(found)} samples have the filepath {k!r}")
        if not found:
            missing.append(k)
        else:
            chosen.append(found[0])
    if missing:
        raise ValueError(
            f"to_fiftyone: {len(missing)} of {len(keys)} rows match no sample by id or filepath "
            f"(first: {missing[0]!r}); score with ids=dataset.values('id') or ids= the filepaths"
        )
    return keys, chosen


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
