"""Shared fixtures of the vog Python package's tests: the repository's golden models and data."""

import json
import os
import sys
from pathlib import Path

# Keras picks its backend at import: torch here (vog.keras on JAX runs in a subprocess).
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "data" / "golden"
sys.path.insert(0, str(GOLDEN))

import make_golden  # noqa: E402  (the architectures the golden checkpoints were trained with)


class Golden:
    """A golden model: checkpoints, data, labels, its factory and the float64 torch references."""

    def __init__(self, name, factory):
        self.name = name
        self.dir = GOLDEN / name
        self.ckpt = self.dir / "ckpt"
        self.factory = factory
        self.x = np.load(self.dir / "x.npy")
        self.y = np.load(self.dir / "y.npy")
        self.expected = json.loads((self.dir / "expected.json").read_text())

    def reference(self, mode, target, window="all", normalized=False):
        e = self.expected[f"{mode}/{target}"][window]
        return np.asarray(e["normalized" if normalized else "raw"])


@pytest.fixture(scope="session")
def mlp():
    return Golden("mlp", make_golden.make_mlp)


@pytest.fixture(scope="session")
def cnn():
    return Golden("cnn", make_golden.make_cnn)


def relative_error(got, expected):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)))
