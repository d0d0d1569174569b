#!/usr/bin/env bash
# Pod-to-pod iperf3 throughput (TCP, 1 and 4 streams) and ping RTT across two
# namespace nodes, IPv6 routed and IPv4 over VXLAN: weft (weftd + the CNI plugin) next
# to the same hops built with plain ip commands, interleaved in one run; prints
# markdown tables with the issue's target (>= 0.95 of the reference). See
# e2e/src/bin/bench_datapath.rs for what is measured and how. Takes about 4 minutes.
#
#   e2e/bench-datapath.sh [--runs 4] [--time 4] [--omit 1] [--pings 200] [--mtu 1500]
#                         [--reference-nat] [--out PATH]
#
# Needs root (network namespaces). Builds release binaries first.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

# Only what the benchmark runs: weftd, the plugin (weft) and the benchmark itself.
cargo build --release -p weftd -p weft-cni -p weft-e2e --bins

# weftd's state dir defaults to /run/weft/state, tmpfs on real nodes; keep the
# test nodes' state on tmpfs too unless the caller chose otherwise.
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	export TMPDIR=/dev/shm
fi

target=${CARGO_TARGET_DIR:-target}
export WEFT_PROFILE=release

# The benchmark names its namespaces and temp files w<pid % 100000>x...; release builds
# abort on panic (its hook removes the namespaces), and a signal ends it without any
# cleanup, so this script removes what is left: processes inside those namespaces
# (weftd, iperf3; by pid), the namespaces, the temp files.
"$target/release/bench_datapath" "$@" &
bench=$!
cleanup() {
	local prefix="w$((bench % 100000))x" ns p
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "${TMPDIR:-/tmp}"/weft-*-"$prefix"*
}
# Background jobs of a script ignore SIGINT, so pass Ctrl-C on as SIGTERM.
trap 'kill -TERM "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; exit 130' INT TERM
trap cleanup EXIT
wait "$bench"
