#!/usr/bin/env bash
# Attacks on the cluster `up.sh --network helm` brought up, each after the same path
# proved to work legitimately (so a pass cannot come from a broken path); exits 1 on the
# first that lands:
#   1. a node's credentials: a token bound to the weftd pod on node-1 (TokenRequest, the
#      kind kubelet projects into it; it carries the node) may patch node-1's WeftNode,
#      and is refused node-2's by the chart's admission policy;
#   2. source spoofing from a pod: a pod holding NET_ADMIN in its own network namespace
#      (it may add any address to its eth0) pings a pod on another node, from its own
#      address (arrives) and from the address of another pod on its node (dropped by
#      weftd's pod guard before it leaves the node), over each family. Arrival is read
#      from the victim's eth0 receive counter (a spoofed ping's reply would go to the
#      pod it impersonates, so the attacker's view proves nothing).
#
# Usage: e2e/cluster/attacks.sh
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
E2E_DIR=$(dirname "$CLUSTER_DIR")
REPO_DIR=$(dirname "$E2E_DIR")
. "$CLUSTER_DIR/lib.sh"
begin_check attacks helm
. "$CLUSTER_DIR/network-helm.sh"
[ "$NODES" -ge 2 ] || fail "needs 2 nodes or more"
NS=weft-attacks
k() { kubectl_admin "$@"; }
PACKETS=50

step "1. node-1's weftd token against node-2's WeftNode"
pod=$(k -n "$HELM_NAMESPACE" get pods -l app.kubernetes.io/component=weftd \
	--field-selector spec.nodeName=node-1 -o jsonpath='{.items[0].metadata.name}')
uid=$(k -n "$HELM_NAMESPACE" get pod "$pod" -o jsonpath='{.metadata.uid}')
account=$(k -n "$HELM_NAMESPACE" get pod "$pod" -o jsonpath='{.spec.serviceAccountName}')
token=$(k -n "$HELM_NAMESPACE" create token "$account" --bound-object-kind=Pod \
	--bound-object-name="$pod" --bound-object-uid="$uid")
as_weftd() { in_cp "$TOOLS_BIN/kubectl" --kubeconfig=/dev/null --server="$APISERVER_URL" \
	--certificate-authority="$PKI/ca.crt" --token="$token" "$@"; }
as_weftd auth whoami -o jsonpath='{.status.userInfo.extra}' | grep -q '"node-1"' ||
	fail "the token of $pod does not carry its node: $(as_weftd auth whoami 2>&1)"
# weftd's own field, set to what it holds: allowed.
underlay=$(k get weftnode node-1 -o jsonpath='{.spec.underlayIPv6}')
as_weftd patch weftnode node-1 --type=merge -p "{\"spec\":{\"underlayIPv6\":\"$underlay\"}}" ||
	fail "node-1's weftd token cannot patch node-1's WeftNode"
underlay=$(k get weftnode node-2 -o jsonpath='{.spec.underlayIPv6}')
if out=$(as_weftd patch weftnode node-2 --type=merge -p "{\"spec\":{\"underlayIPv6\":\"$underlay\"}}" 2>&1); then
	fail "node-1's weftd token patched node-2's WeftNode: $out"
fi
[[ $out == *"may write only the WeftNode of the node its token is bound to"* ]] ||
	fail "node-2's WeftNode refused, but not by the admission policy: $out"
step "   node-1's WeftNode patched; node-2's refused: ${out##*: }"

step "2. source spoofing from a pod with NET_ADMIN on node-1 to a pod on node-2"
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
k create namespace "$NS"
wait_for "the ServiceAccount of namespace $NS" 30 k -n "$NS" get serviceaccount default
for spec in attacker:node-1:NET_ADMIN bystander:node-1: victim:node-2:; do
	IFS=: read -r name node capability <<<"$spec"
	k -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  nodeName: $node
  terminationGracePeriodSeconds: 0
  containers:
  - name: agnhost
    image: $AGNHOST_IMAGE
    imagePullPolicy: Never
    args: [pause]
    securityContext:
      capabilities:
        add: [${capability}]
EOF
done
k -n "$NS" wait --for=condition=Ready pod/attacker pod/bystander pod/victim --timeout=120s
# pod_ip POD FAMILY: the pod's address of FAMILY (IPv4 or IPv6).
pod_ip() {
	k -n "$NS" get pod "$1" -o jsonpath='{range .status.podIPs[*]}{.ip}{"\n"}{end}' |
		if [ "$2" = IPv6 ]; then grep ':'; else grep -v ':'; fi
}
received() { k -n "$NS" exec victim -- cat /sys/class/net/eth0/statistics/rx_packets; }
# arrivals SOURCE TARGET: how many of PACKETS echo requests from SOURCE (an address on
# the attacker's eth0) reach the victim's eth0.
arrivals() {
	local before after
	before=$(received)
	k -n "$NS" exec attacker -- ping -q -c "$PACKETS" -i 0.01 -w 3 -I "$1" "$2" >/dev/null || true
	after=$(received)
	echo $((after - before))
}
for family in "${IP_FAMILIES[@]}"; do
	own=$(pod_ip attacker "$family")
	spoofed=$(pod_ip bystander "$family")
	target=$(pod_ip victim "$family")
	got=$(arrivals "$own" "$target")
	[ "$got" -ge "$PACKETS" ] ||
		fail "$family: $got of $PACKETS pings from the attacker's own $own reached the victim $target (the legitimate path)"
	if [ "$family" = IPv6 ]; then
		k -n "$NS" exec attacker -- ip -6 addr add "$spoofed/128" dev eth0 nodad
	else
		k -n "$NS" exec attacker -- ip addr add "$spoofed/32" dev eth0
	fi
	spoofed_got=$(arrivals "$spoofed" "$target")
	# A few packets of the node's own (neighbour discovery) may land meanwhile.
	[ "$spoofed_got" -lt 5 ] ||
		fail "$family: $spoofed_got of $PACKETS pings spoofed from the bystander's $spoofed reached the victim $target"
	step "   $family: from its own $own $got arrived; spoofed from $spoofed $spoofed_got (the victim's eth0 counter)"
done
k delete namespace "$NS" --wait=true --timeout=120s
step "attacks refused in $((SECONDS - T0)) s"
