#!/usr/bin/env bash
# The apiserver's cost of N label-filtered watches of one CRD (the NetworkPolicy design's
# risk 1, docs/networkpolicy-design.md §1.4): N = 0, 1,000, 5,000, 10,000 watches open
# (one per simulated node, selector span.weft.dev/n-<hash>), then a burst of address-group
# slice creates; apiserver CPU per write against N = 0 in the same run, throughput,
# latencies, event delivery; with --via relay or both (the default), the same with the
# watches held on the policy relay (one weft-controller replica), its CPU and memory
# beside the apiserver's. Prints a markdown table. See
# e2e/src/bin/bench_policy_watch/main.rs for what is measured and how.
#
#   e2e/bench-policy-watch.sh [--watches 0,1000,5000,10000] [--writes 2000] [--writers 16]
#                             [--rate W] [--span 30] [--object-kib 6] [--rounds 1]
#                             [--open-parallel 200] [--via apiserver|relay|both]
#                             [--out PATH]
#
# Needs root (network namespaces). Builds the release binaries first, the benchmark and
# weft-controller (lto fat, codegen-units 1: several minutes on 2 cores); e2e/setup.sh
# (run by the prelude) builds the pinned control plane.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

# Two commands: `--bin` would filter the controller's binary out of one.
cargo build --release -p weft-e2e --bin bench_policy_watch
cargo build --release -p weft-controller

target=${CARGO_TARGET_DIR:-target}
WEFT_PROFILE=release exec "$target/release/bench_policy_watch" "$@"
