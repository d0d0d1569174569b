#!/usr/bin/env bash
# weftd's peers at scale in Kubernetes mode (WeftNodes watched from a real apiserver)
# beside the same peers from a peers file; prints a markdown table. See
# e2e/src/bin/bench_kube_peers.rs for what is measured and how.
#
#   e2e/bench-kube-peers.sh [--peers 5000] [--rounds 2] [--out PATH]
#
# WEFTD=PATH runs another weftd build. Needs root (network namespaces). Builds release
# binaries first; e2e/setup.sh (run by the prelude) builds the pinned control plane.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

cargo build --release -p weftd -p weft-e2e --bin weftd --bin bench_kube_peers

weft_state_on_tmpfs
weft_run_bench bench_kube_peers "$@"
