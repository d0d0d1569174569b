#!/usr/bin/env bash
# Pod-to-pod iperf3 throughput (TCP, 1 and 4 streams) and ping RTT across two
# namespace nodes, IPv6 routed and IPv4 over VXLAN: weft (weftd + the CNI plugin) next
# to the same hops built with plain ip commands, interleaved in one run; prints
# markdown tables with the issue's target (>= 0.95 of the reference). See
# e2e/src/bin/bench_datapath.rs for what is measured and how. Takes about 4 minutes.
#
#   e2e/bench-datapath.sh [--runs 4] [--time 4] [--omit 1] [--pings 200] [--mtu 1500]
#                         [--out PATH]
#
# Needs root (network namespaces). Builds release binaries first.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

# Only what the benchmark runs: weftd, the plugin (weft) and the benchmark itself.
cargo build --release -p weftd -p weft-cni -p weft-e2e --bins

weft_state_on_tmpfs
weft_run_bench bench_datapath "$@"
