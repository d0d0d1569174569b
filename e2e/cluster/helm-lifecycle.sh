#!/usr/bin/env bash
# The Helm release's life on a cluster `up.sh --network helm` brought up, checked through
# Kubernetes and on the nodes; exits 1 on the first failed assertion:
#   1. upgrade: `helm upgrade --reuse-values` to a new image (built again by
#      e2e/image/build.sh from the same binaries with another tag and revision label: its
#      own image ID, imported on every node; weftd rolls node by node) while a pod pings
#      the pods on the other nodes over each family every 0.2 s: the rollout finishes,
#      every weftd runs the new image, and no ping is lost;
#   2. uninstall with clean-up (`uninstall.cleanup=true`, set by an upgrade first):
#      `helm uninstall` returns once every node is clean: no conflist, no weft plugin, no
#      weft-vxlan, no nft table `inet weft`, no route of protocol 119; the CRDs and
#      WeftNodes stay; the nodes turn NotReady (no CNI);
#   3. reinstall: `helm install` with the same values makes every node Ready again, pods
#      get addresses in the same WeftNode ranges.
# Pods of its own namespace are removed before the uninstall (their DEL needs weft).
#
# Usage: e2e/cluster/helm-lifecycle.sh
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
E2E_DIR=$(dirname "$CLUSTER_DIR")
REPO_DIR=$(dirname "$E2E_DIR")
. "$CLUSTER_DIR/lib.sh"
. "$CLUSTER_DIR/node.sh"
begin_check helm-lifecycle helm
. "$CLUSTER_DIR/network-helm.sh"
NS=weft-life
k() { kubectl_admin "$@"; }
PING_INTERVAL=0.2

weftd_images() {
	k -n "$HELM_NAMESPACE" get pods -l app.kubernetes.io/component=weftd \
		-o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c
}

step "a pod on every node ($NS)"
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
k create namespace "$NS"
wait_for "the ServiceAccount of namespace $NS" 30 k -n "$NS" get serviceaccount default
k -n "$NS" apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: life
spec:
  replicas: $NODES
  selector:
    matchLabels: {app: life}
  template:
    metadata:
      labels: {app: life}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: life}
      terminationGracePeriodSeconds: 1
      containers:
      - name: agnhost
        image: $AGNHOST_IMAGE
        imagePullPolicy: Never
        args: [pause]
EOF
k -n "$NS" rollout status deployment/life --timeout=180s
declare -A POD_NODE POD_IPS
while read -r name node ips; do
	POD_NODE[$name]=$node
	POD_IPS[$name]=${ips%,}
done < <(k -n "$NS" get pods -l app=life \
	-o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {range .status.podIPs[*]}{.ip},{end}{"\n"}{end}')
PODS=("${!POD_NODE[@]}")
client=${PODS[0]}
targets=()
for pod in "${PODS[@]}"; do
	[ "${POD_NODE[$pod]}" = "${POD_NODE[$client]}" ] && continue
	IFS=, read -r -a ips <<<"${POD_IPS[$pod]}"
	targets+=("${ips[@]}")
done
[ "${#targets[@]}" -gt 0 ] || fail "one node: nothing to ping across nodes"

step "1. helm upgrade to another image while $client (${POD_NODE[$client]}) pings ${targets[*]}"
old_image=$(k -n "$HELM_NAMESPACE" get daemonset "$HELM_RELEASE-weftd" -o jsonpath='{.spec.template.spec.containers[0].image}')
new_image=${old_image%:*}:${old_image##*:}-next
eval_printed "$E2E_DIR/image/build.sh" --bin-dir "$WEFT_BIN_DIR" --plugin "$WEFT_PLUGIN" \
	--plugins "$CNI_PLUGINS" --tag "$new_image" --revision "next-$(date -u +%s)" \
	--out "$STATE/weft-image-next.oci.tar"
import_on_nodes "$IMAGE_TAR"
old_id=$(node_ctr 1 images list | awk -v ref="$old_image" '$1 == ref {print $3}')
new_id=$(node_ctr 1 images list | awk -v ref="$new_image" '$1 == ref {print $3}')
[ -n "$new_id" ] && [ "$new_id" != "$old_id" ] ||
	fail "the new image $new_image ($new_id) is not a different image from $old_image ($old_id)"
step "   built and imported $new_image ($new_id; was $old_id)"
logs=()
for i in "${!targets[@]}"; do
	logs+=("$LOG_DIR/helm-lifecycle-ping-$i.log")
	# The shell's PID becomes ping's (exec), so it can be stopped with SIGINT, which
	# makes ping print its summary.
	k -n "$NS" exec "$client" -- sh -c "echo \$\$ >/tmp/ping-$i.pid; exec ping -q -i $PING_INTERVAL ${targets[i]}" \
		>"${logs[i]}" 2>&1 &
done
sleep 3
started=$SECONDS
helm_admin upgrade "$HELM_RELEASE" "$WEFT_CHART" -n "$HELM_NAMESPACE" --reuse-values \
	--set "image.tag=${new_image##*:}" --wait --timeout 5m
k -n "$HELM_NAMESPACE" rollout status "daemonset/$HELM_RELEASE-weftd" --timeout=300s
k -n "$HELM_NAMESPACE" rollout status "deployment/$HELM_RELEASE-controller" --timeout=300s
rolled=$((SECONDS - started))
images=$(weftd_images)
echo "$images"
[ "$(awk '{print $2}' <<<"$images")" = "$new_image" ] || fail "weftd pods run: $images, want all $new_image"
sleep 3
for i in "${!targets[@]}"; do
	k -n "$NS" exec "$client" -- sh -c "kill -INT \$(cat /tmp/ping-$i.pid)"
done
wait_for "the pings' summaries" 20 grep -q 'packets transmitted' "${logs[@]}"
sleep 1
lost=()
total=0
for i in "${!targets[@]}"; do
	summary=$(grep 'packets transmitted' "${logs[i]}") || fail "ping ${targets[i]}: no summary ($(cat "${logs[i]}"))"
	echo "ping ${targets[i]}: $summary"
	total=$((total + $(awk '{print $1}' <<<"$summary")))
	[[ $summary == *" 0% packet loss"* ]] || lost+=("${targets[i]}: $summary")
done
[ "${#lost[@]}" -eq 0 ] || fail "pings lost during the upgrade: ${lost[*]}"
step "   rolled to $new_image in $rolled s (helm upgrade --wait); $total pings to ${#targets[@]} addresses, none lost"

step "2. helm uninstall with uninstall.cleanup=true"
k delete namespace "$NS" --wait=true --timeout=120s
helm_admin upgrade "$HELM_RELEASE" "$WEFT_CHART" -n "$HELM_NAMESPACE" --reuse-values \
	--set uninstall.cleanup=true --wait --timeout 5m
conflist=$(helm_admin get values "$HELM_RELEASE" -n "$HELM_NAMESPACE" --all -o json |
	python3 -c 'import json, sys; v = json.load(sys.stdin)["cni"]; print(v["confDir"] + "/" + v["conflistName"])')
started=$SECONDS
helm_admin uninstall "$HELM_RELEASE" -n "$HELM_NAMESPACE" --wait --timeout 5m
step "   helm uninstall returned in $((SECONDS - started)) s"
for n in $(seq 1 "$NODES"); do
	left=$(in_node "$n" sh -c "
		[ ! -e '$conflist' ] || echo 'conflist $conflist'
		[ ! -e /opt/cni/bin/weft ] || echo 'plugin /opt/cni/bin/weft'
		! ip link show weft-vxlan >/dev/null 2>&1 || echo 'link weft-vxlan'
		! nft list table inet weft >/dev/null 2>&1 || echo 'nft table inet weft'
		ip -4 route show proto 119 | sed 's/^/route /'
		ip -6 route show proto 119 | sed 's/^/route /'
	")
	[ -z "$left" ] || fail "$(node_name "$n") still has: $left"
done
k get crd weftnodes.weft.dev weftnetworks.weft.dev weftclaimblocks.weft.dev >/dev/null || fail "a CRD went with the release"
[ "$(k get weftnodes -o name | wc -l)" -eq "$NODES" ] || fail "WeftNodes went with the release"
k -n "$HELM_NAMESPACE" get pods -o wide
not_ready() { ! k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -q True; }
wait_for "every node NotReady (no CNI left)" 90 not_ready
step "   every node clean (no conflist, plugin, weft-vxlan, inet weft, proto 119 routes), CRDs and WeftNodes kept, nodes NotReady"

step "3. helm install again"
helm_admin upgrade --install "$HELM_RELEASE" "$WEFT_CHART" -n "$HELM_NAMESPACE" \
	-f "$STATE/weft-values.yaml" --set "image.tag=${new_image##*:}"
started=$SECONDS
wait_for "$NODES nodes Ready after the reinstall" 300 kubectl_admin wait --for=condition=Ready node --all --timeout=5s
step "   every node Ready $((SECONDS - started)) s after helm install"
k get weftnodes -o wide >&3
step "helm lifecycle passed in $((SECONDS - T0)) s"
