#!/usr/bin/env bash
# weft's main job, on this machine: a Kubernetes cluster of 3 real kubelet + containerd
# nodes (each its own network and mount namespace, e2e/cluster/up.sh), weft installed by
# `helm install` of charts/weft from an image built here, then pods of a Deployment
# spread over the nodes with both families (`kubectl get pods -o wide` and their
# podIPs), a dual-stack Service answering over both families from every node, CoreDNS
# answering A and AAAA, and the cross-node ping matrix (e2e/cluster/smoke.sh --keep).
#
# Progress prints as steps with the time since the start; the output of the builds and
# the installs goes to the log it names (the cluster's own logs are named by up.sh and
# smoke.sh). The cluster stays up to look around: the last lines say how to reach it
# and how to take it down.
#
# Usage: sudo ./e2e/demo.sh [--family ipv4-primary|ipv6-primary|ipv6-only]
#   --family  the cluster's families, primary first; default ipv4-primary (dual-stack)
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=ipv4-primary
case ${1:-} in
--family) FAMILY=${2:?--family F} ;;
"") ;;
*) echo "usage: $0 [--family ipv4-primary|ipv6-primary|ipv6-only]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (the cluster's namespaces)" >&2; exit 1; }

LOG=/var/log/weft-demo/$(date -u +%Y%m%dT%H%M%SZ).log
mkdir -p "$(dirname "$LOG")"
T0=$SECONDS
step() { printf '[%4d s] %s\n' "$((SECONDS - T0))" "$*"; }
# logged COMMAND...: COMMAND with its output in LOG; on failure, its last lines.
logged() {
	echo "== $(date -u +%FT%TZ) $*" >>"$LOG"
	if ! "$@" >>"$LOG" 2>&1; then
		step "FAILED: $* (last lines of $LOG below)"
		tail -n 30 "$LOG"
		exit 1
	fi
}
# indented COMMAND...: COMMAND's terminal output, indented under the demo's step.
indented() { "$@" 2>&1 | sed -u 's/^/    /'; return "${PIPESTATUS[0]}"; }

step "weft demo: 3 kubelet + containerd nodes, $FAMILY; build and install output in $LOG"
step "1/5 Debian packages and the pinned Go tools: e2e/setup.sh --cluster (the first run builds for about 10 minutes on 2 cores, later runs take seconds)"
logged e2e/setup.sh --cluster
step "2/5 weft: weftd and weft-controller, the statically linked plugin (cargo)"
logged cargo build --locked -p weftd -p weft-controller
. e2e/lib.sh
logged weft_build_static_plugin

# One cluster at a time on a machine (kubelet's host sysctls are global): wait for a
# test run's cluster to go. up.sh replaces a cluster a previous demo left. The cluster's
# daemons must not inherit the lock (8>&-): it ends with this script, the cluster stays.
exec 8>/tmp/weft-cluster.lock
flock -n 8 || { step "waiting for /tmp/weft-cluster.lock (a test run's cluster is up)"; flock 8; }
step "3/5 the cluster, its image built here and weft by helm install: e2e/cluster/up.sh --network helm"
indented e2e/cluster/up.sh --network helm --family "$FAMILY" 8>&-
step "4/5 pods across the nodes, both families, a dual-stack Service, DNS, the ping matrix: e2e/cluster/smoke.sh --keep"
indented e2e/cluster/smoke.sh --keep 8>&-
step "5/5 done in $((SECONDS - T0)) s. The cluster stays up:"
cat <<MSG
    sudo e2e/cluster/kubectl.sh -n weft-smoke get pods -o wide     # kubectl as cluster admin
    sudo e2e/cluster/kubectl.sh get weftnodes -o wide               # each node's ranges
    sudo e2e/cluster/down.sh                                        # take it all down
MSG
