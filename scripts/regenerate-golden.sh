#!/usr/bin/env bash
# Regenerates the golden files under tests/data/ with the independent reference (PyTorch autograd,
# numpy). The test suite does not need this: the files it wrote are committed. Run it after
# changing tests/data/golden/make_golden.py, then review `git diff --stat tests/data`.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${VOG_CACHE:-$HOME/.cache/vog}"
req=scripts/requirements-reference.txt
venv="$CACHE/ref-venv-$(sha256sum "$req" | cut -c1-12)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet -r "$req"
  mv "$venv.tmp" "$venv"
fi
"$venv/bin/python" tests/data/golden/make_golden.py
