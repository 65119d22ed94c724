"""Where the ONNX Runtime library comes from when vog runs from Python."""

import importlib.util
import os
from pathlib import Path


def find_onnxruntime_library():
    """The ``libonnxruntime.so.*`` of the ``onnxruntime`` package this interpreter imports (found
    without importing it), or ``None``."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        libs = sorted((Path(location) / "capi").glob("libonnxruntime.so.*"))
        if libs:
            return libs[-1]
    return None


def ensure_library_env():
    """Sets ``ORT_DYLIB_PATH`` to the ``onnxruntime`` wheel's library when it is unset, so the
    ONNX backend (in-process or the command line) finds it; an explicit setting wins."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    found = find_onnxruntime_library()
    if found is not None:
        os.environ["ORT_DYLIB_PATH"] = str(found)
