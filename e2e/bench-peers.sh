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

# weftd's state dir defaults to /run/weft/state, tmpfs on real nodes; keep the
# benchmark's state and peers file on tmpfs too unless the caller chose otherwise.
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	export TMPDIR=/dev/shm
fi

target=${CARGO_TARGET_DIR:-target}
export WEFT_PROFILE=release

# The benchmark names its namespaces and temp files w<pid % 100000>x...; release builds
# abort on panic (its hook removes the namespaces), and a signal ends it without any
# cleanup, so this script removes what is left: processes inside those namespaces (by
# pid), the namespaces, the temp files.
"$target/release/bench_peers" "$@" &
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
