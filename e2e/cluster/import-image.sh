#!/usr/bin/env bash
# Imports an OCI image archive (an OCI layout as one tar, e.g. from umoci or
# `buildah push oci-archive:`) into every node's containerd of the cluster e2e/cluster/up.sh
# brought up, as BASE_NAME:<the layout's ref.name>: how an image built here gets onto the
# nodes (nothing is ever pulled). Pods use it with imagePullPolicy IfNotPresent or Never.
# Usage: e2e/cluster/import-image.sh ARCHIVE BASE_NAME (e.g. weft.tar ghcr.io/example/weft)
set -euo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
. "$CLUSTER_DIR/node.sh"
ARCHIVE=$(readlink -f "${1:?usage: $0 ARCHIVE BASE_NAME}")
BASE_NAME=${2:?usage: $0 ARCHIVE BASE_NAME}
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root" >&2; exit 1; }
load_cluster_env
for n in $(seq 1 "$NODES"); do
	# ctr's own chatter (a cgroup v1 deprecation warning) only matters when it fails.
	out=$(node_ctr "$n" images import --base-name "$BASE_NAME" "$ARCHIVE" 2>&1) ||
		{ echo "$out" >&2; exit 1; }
	node_ctr "$n" images list -q 2>/dev/null | grep "^$BASE_NAME:" | sed "s/^/$(node_name "$n"): /" ||
		{ echo "$(node_name "$n"): no $BASE_NAME image after the import" >&2; exit 1; }
done
