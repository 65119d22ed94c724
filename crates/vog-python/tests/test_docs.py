"""docs/python.md is generated from the installed package's docstrings and must be current."""

import subprocess
import sys

from conftest import ROOT


def test_the_api_reference_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "crates/vog-python/docs.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
