#!/usr/bin/env bash
# VoG on a GPU in one call: the vog wheel's Python torch backend, and vog's libtorch and ONNX
# Runtime plugins where this machine can run them, against a PyTorch CUDA eager loop at its best
# batch (benches/gpu_bench.py), after checking vog.torch on the GPU against the float64 golden
# references. Under 8 minutes on one GPU; figures go to docs/PERFORMANCE.md.
#
#   benches/gpu.sh [--dry-run] [--out FILE]
#   benches/gpu.sh --stage DIR      # copy vog, the plugins and the wheel (stripped) into DIR
#
# Needs python3 with torch and numpy. vog comes from, in order: an importable `vog`, $VOG_WHEEL, or
# the newest wheel in .gpu/, .whl/ or target/wheels/ (installed with --no-deps into a temporary
# directory, so the machine's torch is used). The plugin sides need the vog executable and the
# plugins: $VOG_BIN, $VOG_TORCH_PLUGIN, $VOG_ONNX_PLUGIN, else .gpu/ (made by --stage here, carried
# to the GPU machine: about 36 MB), else target/release/. The libtorch plugin is linked against
# the machine's torch (its lib/ first on LD_LIBRARY_PATH), so it loads where that torch has the
# version it was built for (2.13); ONNX Runtime's CUDA provider needs onnxruntime-gpu 1.31 on the
# machine (or $ORT_CUDA_LIBRARY). A side that cannot run is reported and skipped. --dry-run runs
# everything on the CPU with tiny sizes, as CI does, so the script cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
out=""
stage=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    --stage) stage="$2"; shift ;;
    *) echo "usage: benches/gpu.sh [--dry-run] [--out FILE] | --stage DIR" >&2; exit 2 ;;
  esac
  shift
done
py="${PYTHON:-python3}"
release="${CARGO_TARGET_DIR:-target}/release"

if [ -n "$stage" ]; then
  mkdir -p "$stage"
  for f in vog libvog_backend_torch.so libvog_backend_onnx.so; do
    [ -f "$release/$f" ] || { echo "gpu.sh: $release/$f is missing (cargo build --release -p vog -p vog-backend-torch -p vog-backend-onnx)" >&2; exit 1; }
    strip -o "$stage/$f" "$release/$f"
  done
  wheel=$(ls -t "${CARGO_TARGET_DIR:-target}"/wheels/vog-*.whl 2>/dev/null | head -n 1 || true)
  [ -n "$wheel" ] && cp "$wheel" "$stage/"
  du -sh "$stage"
  exit 0
fi

# The first of: the variable, .gpu/NAME, target/release/NAME.
find_built() {
  local given="$1" name="$2"
  if [ -n "$given" ]; then echo "$given"
  elif [ -f ".gpu/$name" ]; then echo ".gpu/$name"
  elif [ -f "$release/$name" ]; then echo "$release/$name"
  fi
}
for given in "${VOG_BIN:-}" "${VOG_TORCH_PLUGIN:-}" "${VOG_ONNX_PLUGIN:-}"; do
  [ -z "$given" ] || [ -f "$given" ] || { echo "gpu.sh: $given does not exist" >&2; exit 1; }
done
vog_bin=$(find_built "${VOG_BIN:-}" vog)
torch_plugin=$(find_built "${VOG_TORCH_PLUGIN:-}" libvog_backend_torch.so)
onnx_plugin=$(find_built "${VOG_ONNX_PLUGIN:-}" libvog_backend_onnx.so)

if ! "$py" -c "import vog" 2>/dev/null; then
  wheel="${VOG_WHEEL:-$(ls -t .gpu/vog-*.whl .whl/vog-*.whl target/wheels/vog-*.whl 2>/dev/null | head -n 1 || true)}"
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
if [ -n "$vog_bin" ]; then
  args+=(--vog-bin "$vog_bin")
  if [ -n "$torch_plugin" ]; then
    args+=(--torch-plugin "$torch_plugin")
    torch_lib=$("$py" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  [ -n "$onnx_plugin" ] && args+=(--onnx-plugin "$onnx_plugin")
  [ -n "${ORT_CUDA_LIBRARY:-}" ] && args+=(--ort-library "$ORT_CUDA_LIBRARY")
else
  echo "gpu.sh: no vog executable (VOG_BIN, .gpu/vog or $release/vog): the plugin sides are left out" >&2
fi
PYTHONUNBUFFERED=1 exec "$py" benches/gpu_bench.py "${args[@]}"
