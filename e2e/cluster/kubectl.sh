#!/usr/bin/env bash
# kubectl as cluster admin against the cluster e2e/cluster/up.sh brought up (run from its
# control plane's network namespace: the apiserver is reachable only inside the cluster's
# namespaces). Usage: e2e/cluster/kubectl.sh ARGS... (e.g. get pods -A -o wide)
set -euo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
load_cluster_env
kubectl_admin "$@"
