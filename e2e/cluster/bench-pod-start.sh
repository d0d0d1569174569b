#!/usr/bin/env bash
# Pod start through kubelet on a cluster `up.sh --network helm` brought up: weft against
# the reference bridge + host-local plugins installed in the same cluster, in one run.
#   1. the anchor node (the last one) leaves weft: weftd's DaemonSet gets a nodeSelector
#      the anchor lacks (helm upgrade), and the anchor's conflist becomes bridge +
#      host-local (dual-stack) chained with portmap, as weft's chains it; kubelet and
#      containerd are the same binaries and settings on every node;
#   2. per round, a batch of PODS bare pods (agnhost pause, no probe: Ready when the
#      container runs) on node-1 (weft), then on the anchor, alternating which goes
#      first; each pod's start is the time from the watch seeing it created to seeing it
#      Ready (e2e/cluster/pod_start.py), the CNI's share is containerd's own timing of
#      the CNI ADD (containerd_cri_network_plugin_operations_duration_seconds,
#      set_up_pod) over that; the batch is deleted (and waited for) before the next;
#   3. prints a markdown table, weft / bridge per row, plus `helm install` to every node
#      Ready as up.sh measured it.
# Leaves the cluster as it is (the anchor without weft): take it down after.
#
# Usage: e2e/cluster/bench-pod-start.sh [--pods N] [--rounds R]
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
E2E_DIR=$(dirname "$CLUSTER_DIR")
REPO_DIR=$(dirname "$E2E_DIR")
. "$CLUSTER_DIR/lib.sh"
PODS=100
ROUNDS=2
while [ $# -gt 0 ]; do
	case $1 in
	--pods) PODS=${2:?--pods N}; shift 2 ;;
	--rounds) ROUNDS=${2:?--rounds R}; shift 2 ;;
	*) echo "usage: $0 [--pods N] [--rounds R]" >&2; exit 2 ;;
	esac
done
[[ $PODS =~ ^[1-9][0-9]*$ && $PODS -le 105 ]] || { echo "--pods: 1 to 105 (kubelet's 110 pods per node, less the node's own)" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: a positive number" >&2; exit 2; }
begin_check bench-pod-start helm
. "$CLUSTER_DIR/network-helm.sh"
[ "$NODES" -ge 2 ] || fail "needs 2 nodes or more (one stays weft's, the last becomes the anchor)"
k() { kubectl_admin "$@"; }
NS=weft-bench
WEFT_NODE=1
ANCHOR_NODE=$NODES
NETWORK_LABEL=weft.dev/bench-pod-network
WORK=$LOG_DIR/bench-pod-start
mkdir -p "$WORK"

step "1. $(node_name "$ANCHOR_NODE") becomes the anchor: bridge + host-local, weftd off it"
for n in $(seq 1 "$NODES"); do
	value=weft
	[ "$n" -ne "$ANCHOR_NODE" ] || value=anchor
	k label node "$(node_name "$n")" --overwrite "$NETWORK_LABEL=$value"
done
helm_admin upgrade "$HELM_RELEASE" "$WEFT_CHART" -n "$HELM_NAMESPACE" --reuse-values \
	--set-json "weftd.nodeSelector={\"$NETWORK_LABEL\":\"weft\"}" --wait --timeout 180s
weftd_on_anchor() {
	[ -n "$(k -n "$HELM_NAMESPACE" get pods -l app.kubernetes.io/component=weftd \
		--field-selector "spec.nodeName=$(node_name "$ANCHOR_NODE")" -o name)" ]
}
wait_for "no weftd pod on $(node_name "$ANCHOR_NODE")" 120 eval '! weftd_on_anchor'
for plugin in bridge host-local; do
	in_node "$ANCHOR_NODE" install -m 0755 "$CNI_PLUGINS/$plugin" "/opt/cni/bin/$plugin"
done
# Ranges of their own (weft keeps the node's WeftNode ranges); the routes send both
# families through the bridge's gateway addresses.
in_node "$ANCHOR_NODE" sh -c 'rm -f /etc/cni/net.d/*.conflist && cat >/etc/cni/net.d/05-bench-bridge.conflist' <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "bench-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni-bench0",
      "isGateway": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.245.0.0/16"}], [{"subnet": "2001:db8:2000::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
in_node "$WEFT_NODE" sh -c 'ls /etc/cni/net.d; cat /etc/cni/net.d/*.conflist'

# containerd_metrics N FILE: node N's containerd metrics into FILE.
containerd_metrics() {
	# A few MB with 100 pods' series: a loaded node needs more than a few seconds.
	in_node "$1" curl -fsS --max-time 60 "http://127.0.0.1:$CONTAINERD_METRICS_PORT/v1/metrics" >"$2"
}

# batch NAME N: PODS pods on node N, timed; their rows into WORK/NAME.starts and the
# CNI's count and mean into WORK/NAME.cni; then deletes them and waits until they are gone.
batch() {
	local name=$1 n=$2 node i watcher
	node=$(node_name "$n")
	k delete namespace "$NS" --ignore-not-found --wait=true --timeout=300s
	k create namespace "$NS"
	wait_for "the ServiceAccount of namespace $NS" 30 k -n "$NS" get serviceaccount default
	containerd_metrics "$n" "$WORK/$name.before"
	python3 "$CLUSTER_DIR/pod_start.py" watch "$NS" "$PODS" 600 -- \
		nsenter --net="/run/netns/$CP_NS" -- "$TOOLS_BIN/kubectl" \
		--kubeconfig="$PKI/admin.kubeconfig" --cache-dir="$STATE/kubectl-cache" \
		>"$WORK/$name.starts" 2>"$WORK/$name.watch" &
	watcher=$!
	wait_for "the watch of namespace $NS" 30 grep -qx ready "$WORK/$name.watch"
	for i in $(seq 1 "$PODS"); do
		cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: $name-$i
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  terminationGracePeriodSeconds: 0
  enableServiceLinks: false
  automountServiceAccountToken: false
  containers:
  - name: pause
    image: $AGNHOST_IMAGE
    imagePullPolicy: Never
    args: [pause]
EOF
	done | k -n "$NS" create -f - >/dev/null
	wait "$watcher" || fail "$name: $(tail -n 1 "$WORK/$name.watch")"
	containerd_metrics "$n" "$WORK/$name.after"
	python3 "$CLUSTER_DIR/pod_start.py" cni "$WORK/$name.before" "$WORK/$name.after" >"$WORK/$name.cni"
	read -r _ p50 _ p99 _ makespan < <(python3 "$CLUSTER_DIR/pod_start.py" stats "$WORK/$name.starts")
	step "   $name on $node: $PODS pods, start p50 ${p50} s p99 ${p99} s, all Ready in ${makespan} s, CNI $(cut -d' ' -f2 "$WORK/$name.cni") s per pod"
	k delete namespace "$NS" --wait=true --timeout=300s
}

step "2. $ROUNDS rounds of $PODS pods on $(node_name "$WEFT_NODE") (weft) and $(node_name "$ANCHOR_NODE") (bridge)"
for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) -eq 1 ]; then order=(weft bridge); else order=(bridge weft); fi
	for network in "${order[@]}"; do
		n=$WEFT_NODE
		[ "$network" = weft ] || n=$ANCHOR_NODE
		batch "$network-r$round" "$n"
	done
done

step "3. results (log dir $WORK)"
python3 "$CLUSTER_DIR/pod_start.py" table "$WORK" "$(cat "$STATE/helm-install-ready-seconds")" | tee "$WORK/table.md" >&3
