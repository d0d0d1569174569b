#!/usr/bin/env bash
# weft demo on one machine: a local control plane (etcd + kube-apiserver built from Go
# modules) with weft-controller, three namespace nodes on a routed underlay running weftd
# in Kubernetes mode, two pods per node wired by the real CNI plugin, `kubectl get` of
# the allocations, and a ping matrix over both families across nodes (IPv4 over VXLAN,
# IPv6 routed). The work is e2e/src/bin/demo.rs, on the same topology harness as the
# tests; it removes everything it creates, also on Ctrl-C. Arguments pass through
# (--standalone, --nodes, --pods, --ipv6-routing, --underlay). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"
cargo build --workspace --bins --quiet
exec target/debug/demo "$@"
