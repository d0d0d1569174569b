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

# weftd's state dir defaults to /run/weft/state, tmpfs on real nodes; the harness puts
# it (and host-local's dataDir) under TMPDIR, so keep that on tmpfs too unless the
# caller chose otherwise. On a disk, weftd's per-allocation records cost ~1 ms per ADD
# and ~1-2 ms per DEL on top (the report states which file system was used).
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	export TMPDIR=/dev/shm
fi

target=${CARGO_TARGET_DIR:-target}
export WEFT_PLUGIN=$target/x86_64-unknown-linux-gnu/release/weft
WEFT_PROFILE=release exec "$target/release/bench_cni" "$@"
