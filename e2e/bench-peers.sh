#!/usr/bin/env bash
# Peer-scale convergence of weftd (5,000 peers from empty, then single peer changes)
# next to the same kernel state installed by `ip -batch` + `bridge -batch` (and
# `nft -f`), side by side in one run; prints a markdown table with the issue's targets.
# See e2e/src/bin/bench_peers.rs for what is measured and how.
#
#   e2e/bench-peers.sh [--peers 5000] [--rounds 3] [--changes 5]
#                      [--underlay ipv4|ipv6|both] [--anchor-only] [--out PATH]
#
# Needs root (network namespaces). Builds release binaries first.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

# Only what the benchmark runs: weftd, the plugin (weft) and the benchmark itself.
cargo build --release -p weftd -p weft-cni -p weft-e2e --bins

weft_state_on_tmpfs
weft_run_bench bench_peers "$@"
