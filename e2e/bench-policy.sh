#!/usr/bin/env bash
# NetworkPolicy at scale on Kubernetes-mode namespace nodes (issue 17's benchmark,
# docs/networkpolicy-design.md §4.5): change → enforcement (p50/p99/max against the
# 1 s target), pod ADD with policy against without and against a weftd with no policy
# engine, and node-1's watch load against a watch-everything design, all in one run;
# prints markdown tables. See e2e/src/bin/bench_policy/main.rs for what is measured.
#
#   e2e/bench-policy.sh [--nodes 5] [--pods 1000] [--namespaces 50] [--policies 500]
#                       [--changes 120] [--add-pods 32] [--add-rounds 3] [--fresh 20]
#                       [--out PATH]
#
# Needs root (network namespaces). Builds release binaries first.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

# What the benchmark runs: weftd, the plugin (weft), weft-controller, the probe agent
# and the benchmark itself.
cargo build --release -p weftd -p weft-cni -p weft-controller -p weft-e2e --bins

weft_state_on_tmpfs
weft_run_bench bench_policy "$@"
