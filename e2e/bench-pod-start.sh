#!/usr/bin/env bash
# Pod start through kubelet, weft against the reference bridge + host-local plugins in
# the same cluster and the same run (e2e/cluster/bench-pod-start.sh says how), on a
# cluster of its own: builds what is missing, brings the cluster up with weft installed
# by `helm install` (which times install to every node Ready), measures, prints the
# markdown table and always takes the cluster down. Holds /tmp/weft-cluster.lock (one
# cluster at a time on a machine).
#
#   e2e/bench-pod-start.sh [--pods 100] [--rounds 2] [--family ipv4-primary|ipv6-primary]
#
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=ipv4-primary
ARGS=()
while [ $# -gt 0 ]; do
	case $1 in
	--family) FAMILY=${2:?--family F}; shift 2 ;;
	*) ARGS+=("$1"); shift ;;
	esac
done

. e2e/lib.sh
cargo build --locked -p weftd -p weft-controller
weft_build_static_plugin
e2e/setup.sh --cluster >/dev/null

exec 8>/tmp/weft-cluster.lock
flock 8
trap 'e2e/cluster/down.sh' EXIT
e2e/cluster/up.sh --network helm --family "$FAMILY"
e2e/cluster/bench-pod-start.sh "${ARGS[@]}"
