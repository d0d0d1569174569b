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
# The plugin ships statically linked: a process on the hot path of every pod start
# that skips the dynamic loader starts ~0.25 ms sooner. RUSTFLAGS with an explicit
# --target applies to the plugin only, not to build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release -p weft-cni --target x86_64-unknown-linux-gnu

weft_state_on_tmpfs

target=${CARGO_TARGET_DIR:-target}
export WEFT_PLUGIN=$target/x86_64-unknown-linux-gnu/release/weft
WEFT_PROFILE=release exec "$target/release/bench_cni" "$@"
