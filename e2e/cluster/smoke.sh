#!/usr/bin/env bash
# Checks the cluster e2e/cluster/up.sh brought up, through Kubernetes only (kubectl from
# the control plane's namespace; pods reached with `kubectl exec`, which goes apiserver ->
# kubelet -> containerd), and exits 1 on the first failed assertion:
#   1. every node is Ready;
#   2. a Deployment of the test image (agnhost netexec) spreads one pod onto every node;
#      each pod's status.podIPs holds the cluster's families in its order (primary
#      first), inside the pod range of the node it runs on (so: allocated by the pod
#      network on that node);
#   3. every pod pings every pod on the other nodes, over each family;
#   4. a ClusterIP Service with the cluster's families (dual-stack: RequireDualStack)
#      answers HTTP from a pod on every node, over each ClusterIP, through kube-proxy,
#      each client reaching a backend on another node;
#   5. the apiserver answers every pod through the `kubernetes` Service (what in-cluster
#      clients such as weftd --in-cluster use);
#   6. a hostNetwork pod runs in its node's namespaces: the node's name as hostname (its
#      UTS namespace) and the node's InternalIPs on its interfaces.
# Prints `kubectl get pods -o wide` and a summary with times; removes its namespace at
# the end (which also checks that pods delete), unless --keep.
#
# Usage: e2e/cluster/smoke.sh [--keep]
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
KEEP=
case ${1:-} in --keep) KEEP=1 ;; "") ;; *) echo "usage: $0 [--keep]" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root" >&2; exit 1; }
load_cluster_env
family_settings "$FAMILY"
start_log smoke
trap on_error ERR
NS=weft-smoke
k() { kubectl_admin "$@"; }

# in_net IP CIDR: true when IP lies in CIDR.
in_net() {
	python3 -c 'import ipaddress, sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$2"
}
family_of() { if [[ $1 == *:* ]]; then echo IPv6; else echo IPv4; fi; }

step "1. $NODES nodes Ready ($FAMILY)"
ready=$(k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
[ "$ready" -eq "$NODES" ] || fail "$ready of $NODES nodes Ready"

step "2. a Deployment of $AGNHOST_IMAGE on every node"
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
k create namespace "$NS"
wait_for "the ServiceAccount of namespace $NS" 30 k -n "$NS" get serviceaccount default
families_yaml=$(printf '  - %s\n' "${IP_FAMILIES[@]}")
policy=SingleStack
[ "${#IP_FAMILIES[@]}" -eq 1 ] || policy=RequireDualStack
k -n "$NS" apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke
spec:
  replicas: $NODES
  selector:
    matchLabels: {app: smoke}
  template:
    metadata:
      labels: {app: smoke}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: smoke}
      terminationGracePeriodSeconds: 1
      containers:
      - name: agnhost
        image: $AGNHOST_IMAGE
        imagePullPolicy: Never
        args: [netexec, --http-port=8080, --udp-port=-1]
        ports:
        - containerPort: 8080
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: smoke
spec:
  type: ClusterIP
  ipFamilyPolicy: $policy
  ipFamilies:
$families_yaml
  selector: {app: smoke}
  ports:
  - port: 80
    targetPort: 8080
EOF
started=$SECONDS
k -n "$NS" rollout status deployment/smoke --timeout=180s
step "   rolled out in $((SECONDS - started)) s"
k -n "$NS" get pods -o wide >&3
# -o wide shows status.podIP only; these are all of status.podIPs, in their order.
k -n "$NS" get pods -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,POD IPS:.status.podIPs[*].ip' >&3

declare -A POD_NODE POD_IPS
while read -r name node ips; do
	POD_NODE[$name]=$node
	POD_IPS[$name]=$ips
done < <(k -n "$NS" get pods -l app=smoke \
	-o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {range .status.podIPs[*]}{.ip},{end}{"\n"}{end}')
PODS=("${!POD_NODE[@]}")
[ "${#PODS[@]}" -eq "$NODES" ] || fail "${#PODS[@]} pods, want $NODES"
nodes_used=$(printf '%s\n' "${POD_NODE[@]}" | sort -u | wc -l)
[ "$nodes_used" -eq "$NODES" ] || fail "pods on $nodes_used nodes, want $NODES: $(declare -p POD_NODE)"
for pod in "${PODS[@]}"; do
	IFS=, read -r -a ips <<<"${POD_IPS[$pod]%,}"
	[ "${#ips[@]}" -eq "${#IP_FAMILIES[@]}" ] || fail "$pod has podIPs ${ips[*]}, want ${IP_FAMILIES[*]}"
	n=${POD_NODE[$pod]#node-}
	for i in "${!ips[@]}"; do
		want=${IP_FAMILIES[i]}
		[ "$(family_of "${ips[i]}")" = "$want" ] || fail "$pod: podIPs[$i] ${ips[i]} is not $want (order ${IP_FAMILIES[*]})"
		range=$(node_pod_v4 "$n")
		[ "$want" = IPv4 ] || range=$(node_pod_v6 "$n")
		in_net "${ips[i]}" "$range" || fail "$pod on node-$n: ${ips[i]} is outside the node's pod range $range"
	done
done

step "3. pod-to-pod ping across nodes, ${IP_FAMILIES[*]}"
pings=0
for a in "${PODS[@]}"; do
	for b in "${PODS[@]}"; do
		[ "${POD_NODE[$a]}" != "${POD_NODE[$b]}" ] || continue
		IFS=, read -r -a ips <<<"${POD_IPS[$b]%,}"
		for ip in "${ips[@]}"; do
			k -n "$NS" exec "$a" -- ping -c 1 -W 2 "$ip" ||
				fail "$a (${POD_NODE[$a]}) cannot ping $b (${POD_NODE[$b]}) at $ip"
			pings=$((pings + 1))
		done
	done
done
step "   $pings pings answered"

step "4. ClusterIP Service ($policy) from a pod on every node"
mapfile -t cluster_ips < <(k -n "$NS" get service smoke -o jsonpath='{range .spec.clusterIPs[*]}{@}{"\n"}{end}')
[ "${#cluster_ips[@]}" -eq "${#IP_FAMILIES[@]}" ] || fail "Service clusterIPs ${cluster_ips[*]}, want ${IP_FAMILIES[*]}"
for i in "${!cluster_ips[@]}"; do
	[ "$(family_of "${cluster_ips[i]}")" = "${IP_FAMILIES[i]}" ] ||
		fail "clusterIPs[$i] ${cluster_ips[i]} is not ${IP_FAMILIES[i]}"
done
# From each pod, over each ClusterIP, until a backend on another node answers (kube-proxy
# spreads connections at random; with one node the pod itself is the only backend).
answers=0
for a in "${PODS[@]}"; do
	for ip in "${cluster_ips[@]}"; do
		url="http://$ip:80/hostname"
		[[ $ip != *:* ]] || url="http://[$ip]:80/hostname"
		remote=
		for attempt in $(seq 1 30); do
			# kube-proxy programs the Service a moment after its endpoints are ready.
			got=$(k -n "$NS" exec "$a" -- curl -g -s --max-time 3 "$url") || { sleep 0.5; continue; }
			[ -n "${POD_NODE[$got]:-}" ] || fail "$a (${POD_NODE[$a]}) -> $url answered '$got', not a smoke pod's name"
			echo "$a (${POD_NODE[$a]}) -> $url: $got (${POD_NODE[$got]}), attempt $attempt"
			answers=$((answers + 1))
			if [ "${POD_NODE[$got]}" != "${POD_NODE[$a]}" ] || [ "$NODES" -eq 1 ]; then
				remote=$got
				break
			fi
		done
		[ -n "$remote" ] || fail "$a (${POD_NODE[$a]}) -> $url: no answer from a pod on another node in 30 tries"
	done
done
step "   $answers Service requests answered (${cluster_ips[*]}), each client reached another node"

step "5. the apiserver through the kubernetes Service from a pod on every node"
apiserver_ip=$(k -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')
url="https://$apiserver_ip:443/version"
[[ $apiserver_ip != *:* ]] || url="https://[$apiserver_ip]:443/version"
for a in "${PODS[@]}"; do
	version=$(k -n "$NS" exec "$a" -- curl -g -s --max-time 5 --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt "$url") ||
		fail "$a (${POD_NODE[$a]}) cannot reach the apiserver at $url"
	[[ $version == *gitVersion* ]] || fail "$a (${POD_NODE[$a]}): $url answered '$version'"
done
step "   ${#PODS[@]} pods verified the apiserver's certificate at $url"

host_node=$(node_name "$NODES")
step "6. a hostNetwork pod on $host_node"
k -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: host
spec:
  nodeName: $host_node
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: agnhost
    image: $AGNHOST_IMAGE
    imagePullPolicy: Never
    args: [pause]
EOF
k -n "$NS" wait --for=condition=Ready pod/host --timeout=60s
hostname=$(k -n "$NS" exec host -- hostname)
[ "$hostname" = "$host_node" ] || fail "the hostNetwork pod on $host_node has hostname '$hostname'"
addrs=$(k -n "$NS" exec host -- ip -o addr show dev uplink)
for ip in $(k get node "$host_node" -o jsonpath='{range .status.addresses[?(@.type=="InternalIP")]}{.address}{" "}{end}'); do
	[[ $addrs == *" $ip/"* ]] || fail "the hostNetwork pod on $host_node lacks the node's $ip: $addrs"
done
k -n "$NS" get pod host -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,POD IPS:.status.podIPs[*].ip' >&3
step "   hostname $hostname, the node's addresses on uplink"

if [ -z "$KEEP" ]; then
	step "removing namespace $NS (pods delete through kubelet and the CNI)"
	k delete namespace "$NS" --wait=true --timeout=120s
fi
step "smoke passed in $((SECONDS - T0)) s"
