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

step "all green in $(( $(date +%s) - started )) s (target dir: $CARGO_TARGET_DIR)"
