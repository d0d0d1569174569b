#!/usr/bin/env bash
# Node allocation at scale: weft-controller next to kube-controller-manager's node IPAM
# (stock, and with its client's QPS limit raised), each on a fresh real control plane,
# in one run; prints a markdown table. See e2e/src/bin/bench_controller/main.rs for what is
# measured and how.
#
#   e2e/bench-controller.sh [--nodes 5000] [--create-parallel 8] [--anchors stock,2000]
#                           [--backlog] [--kubelet-nodes] [--timeout 600] [--out PATH]
#
# Default: the Nodes are created while the controller runs. --backlog creates them
# first and times the controller from its start. --anchors none runs weft alone.
# --kubelet-nodes creates Nodes shaped as a kubelet keeps them (status with 50 images,
# conditions, capacity, node info) instead of bare names.
#
# Needs root (network namespaces). Builds release binaries first (lto fat, codegen-units
# 1: several minutes on 2 cores); e2e/setup.sh (run by the prelude) builds the pinned
# control plane, kube-controller-manager included.
set -euo pipefail

cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

cargo build --release -p weft-controller -p weft-e2e --bin weft-controller --bin bench_controller

target=${CARGO_TARGET_DIR:-target}
WEFT_PROFILE=release exec "$target/release/bench_controller" "$@"
