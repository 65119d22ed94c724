#!/usr/bin/env bash
# VoG on a GPU in one call: the vog wheel's Python torch backend against a PyTorch CUDA eager loop
# at its best batch (benches/gpu_bench.py), after checking vog.torch on the GPU against the float64
# golden references. Under 8 minutes on one GPU; figures go to docs/PERFORMANCE.md.
#
#   benches/gpu.sh [--dry-run] [--out FILE]
#
# Needs python3 with torch and numpy. vog comes from, in order: an importable `vog`, $VOG_WHEEL, or
# the newest wheel in .whl/ or target/wheels/ (installed with --no-deps into a temporary directory,
# so the machine's torch is used). --dry-run runs everything on the CPU with tiny sizes, as CI does,
# so the script cannot rot.
#
# Not covered: ONNX Runtime's CUDA execution provider needs the onnxruntime-gpu 1.31 wheel and the
# libtorch plugin needs libtorch 2.13 with CUDA; neither fits what a GPU machine here carries.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: benches/gpu.sh [--dry-run] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
py="${PYTHON:-python3}"

if ! "$py" -c "import vog" 2>/dev/null; then
  wheel="${VOG_WHEEL:-$(ls -t .whl/vog-*.whl target/wheels/vog-*.whl 2>/dev/null | head -n 1 || true)}"
  if [ -z "$wheel" ]; then
    echo "gpu.sh: no vog to import and no wheel (set VOG_WHEEL, or build one: maturin build -m crates/vog-python/Cargo.toml)" >&2
    exit 1
  fi
  site=$(mktemp -d)
  trap 'rm -rf "$site"' EXIT
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheel"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

args=(--golden)
if [ "$dry" = 1 ]; then
  args+=(--device cpu --n 16 --k 2 --batches 8,16 --repeats 1)
else
  args+=(--device cuda)
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
[ -n "$out" ] && args+=(--out "$out")
PYTHONUNBUFFERED=1 exec "$py" benches/gpu_bench.py "${args[@]}"
