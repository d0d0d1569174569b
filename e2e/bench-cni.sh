#!/usr/bin/env bash
# CNI ADD/DEL latency of weft next to the reference bridge + host-local plugins
# (dual-stack), side by side in one run; prints a markdown table. See
# e2e/src/bin/bench_cni.rs for what is measured and how.
#
#   e2e/bench-cni.sh [--pods 110] [--parallel 16] [--rounds 6] [--warmup 8]
#                    [--no-go-bridge] [--out PATH]
#
# Needs root (network namespaces). Builds release binaries first.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

cargo build --release --workspace
weft_build_static_plugin

weft_state_on_tmpfs

target=${CARGO_TARGET_DIR:-target}
export WEFT_PLUGIN=$target/x86_64-unknown-linux-gnu/release/weft
WEFT_PROFILE=release exec "$target/release/bench_cni" "$@"
