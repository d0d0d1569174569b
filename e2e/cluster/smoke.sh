#!/usr/bin/env bash
# Checks the cluster e2e/cluster/up.sh brought up, through Kubernetes only (kubectl from
# the control plane's namespace; pods reached with `kubectl exec`, which goes apiserver ->
# kubelet -> containerd), and exits 1 on the first failed assertion:
#   1. every node is Ready;
#   2. a Deployment of the test image (agnhost netexec) spreads one pod onto every node;
#      each pod's status.podIPs holds the cluster's families in its order (primary
#      first), inside the pod range of the node it runs on (so: allocated by the pod
#      network on that node: the harness's ranges for weft-standalone, the node's
#      WeftNode for helm), and weftd on that node counts them in use;
#   3. every pod pings every pod on the other nodes, over each family, and fetches
#      HTTP from it over TCP (netexec answers its pod's name);
#   4. a NodePort Service with the cluster's families (dual-stack: RequireDualStack)
#      answers HTTP from a pod on every node over each ClusterIP, through kube-proxy,
#      each client reaching a backend on another node; and over every node's
#      InternalIPs at its nodePort;
#   5. the apiserver answers every pod through the `kubernetes` Service (what in-cluster
#      clients such as weftd --in-cluster use);
#   6. cluster DNS: from a pod on every node, the Service's name has A and AAAA answers
#      (those of its families), the ClusterIPs, through the kube-dns Service;
#   7. the downward API: each pod's POD_IPS (fieldRef status.podIPs) is its podIPs, so a
#      container learns its routable IPv6; from inside every pod its default gateways
#      answer ping: 169.254.1.1 and fe80::1%eth0;
#   8. a hostNetwork pod runs in its node's namespaces: the node's name as hostname (its
#      UTS namespace), the node's InternalIPs on its interfaces and as its podIPs, and
#      weftd gave it nothing;
#   9. (helm) a node's weftd pod killed: pings from another node to the pod on that node
#      lose nothing over each family meanwhile, and a pod created there while weftd is
#      gone starts once the DaemonSet's new weftd serves, with both families, reachable;
#  10. deleting the pods releases their addresses (kubelet's DEL): weftd's
#      weft_ipam_addresses_in_use on every node falls back to what it was before the
#      Deployment (and, with helm, the WeftNode status follows).
# Prints `kubectl get pods -o wide` and a summary with times; removes its namespace at
# the end (which also checks that pods delete), unless --keep (which skips 10).
#
# Usage: e2e/cluster/smoke.sh [--keep]
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
KEEP=
case ${1:-} in --keep) KEEP=1 ;; "") ;; *) echo "usage: $0 [--keep]" >&2; exit 2 ;; esac
begin_check smoke
NS=weft-smoke
k() { kubectl_admin "$@"; }

# in_net IP CIDR: true when IP lies in CIDR.
in_net() {
	python3 -c 'import ipaddress, sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$2"
}
family_of() { if [[ $1 == *:* ]]; then echo IPv6; else echo IPv4; fi; }
# url_host IP: IP as a URL's host ([v6]).
url_host() { if [[ $1 == *:* ]]; then echo "[$1]"; else echo "$1"; fi; }

# pod_range N FAMILY: the pod range of node N in FAMILY: the WeftNode's (helm: the
# controller chose it) or the harness's (weft-standalone).
pod_range() {
	local field=ipv4Subnet
	[ "$2" = IPv4 ] || field=ipv6Prefix
	if [ "$NETWORK" = helm ]; then
		k get weftnode "$(node_name "$1")" -o jsonpath="{.spec.$field}"
	elif [ "$2" = IPv4 ]; then
		node_pod_v4 "$1"
	else
		node_pod_v6 "$1"
	fi
}

# ipam_in_use N: weftd's weft_ipam_addresses_in_use on node N, "family=count" per line.
ipam_in_use() {
	in_node "$1" curl -fsS --max-time 5 http://127.0.0.1:9641/metrics |
		sed -n 's/^weft_ipam_addresses_in_use{family="\([a-z0-9]*\)"} \([0-9]*\)$/\1=\2/p' | sort
}

step "1. $NODES nodes Ready ($FAMILY)"
ready=$(k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
[ "$ready" -eq "$NODES" ] || fail "$ready of $NODES nodes Ready"

step "2. a Deployment of $AGNHOST_IMAGE on every node"
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
declare -A IN_USE_BEFORE
for n in $(seq 1 "$NODES"); do IN_USE_BEFORE[$n]=$(ipam_in_use "$n"); done
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
        env:
        - name: POD_IPS
          valueFrom:
            fieldRef: {fieldPath: status.podIPs}
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
  type: NodePort
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
# Each pod's start: from its creation to its Ready condition (the apiserver's seconds).
starts=$(k -n "$NS" get pods -l app=smoke -o jsonpath='{range .items[*]}{.metadata.creationTimestamp} {.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}' |
	while read -r created ready; do echo $(($(date -d "$ready" +%s) - $(date -d "$created" +%s))); done | sort -n | tr '\n' ' ')
step "   pod start (created to Ready, s): $starts"
k -n "$NS" get pods -o wide >&3
# -o wide shows status.podIP only; these are all of status.podIPs, in their order.
k -n "$NS" get pods -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,POD IPS:.status.podIPs[*].ip' >&3

declare -A POD_NODE POD_IPS
while read -r name node ips; do
	POD_NODE[$name]=$node
	POD_IPS[$name]=$ips
done < <(k -n "$NS" get pods -l app=smoke \
	-o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {range .status.podIPs[*]}{.ip},{end}{"\n"}{end}')
# Ordered by node, for the matrix below.
mapfile -t PODS < <(for pod in "${!POD_NODE[@]}"; do echo "${POD_NODE[$pod]} $pod"; done | sort | cut -d' ' -f2)
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
		range=$(pod_range "$n" "$want")
		in_net "${ips[i]}" "$range" || fail "$pod on node-$n: ${ips[i]} is outside the node's pod range $range"
	done
done
# Each node's weftd counts exactly its smoke pod in use, per family.
for n in $(seq 1 "$NODES"); do
	in_use=$(ipam_in_use "$n")
	while IFS== read -r family count; do
		before=$(sed -n "s/^$family=//p" <<<"${IN_USE_BEFORE[$n]}")
		[ "$count" -eq "$((${before:-0} + 1))" ] ||
			fail "$(node_name "$n"): weftd has $count $family addresses in use, want ${before:-0} + 1 (its smoke pod)"
	done <<<"$in_use"
done
step "   ${#PODS[@]} pods, one per node, podIPs in their node's ranges and counted by its weftd"

step "3. pod-to-pod ping and TCP across nodes, ${IP_FAMILIES[*]}"
pings=0
# MATRIX[a,b]: the round trips from pod a to pod b, one per family in podIPs' order.
declare -A MATRIX
for a in "${PODS[@]}"; do
	for b in "${PODS[@]}"; do
		[ "${POD_NODE[$a]}" != "${POD_NODE[$b]}" ] || continue
		IFS=, read -r -a ips <<<"${POD_IPS[$b]%,}"
		for ip in "${ips[@]}"; do
			out=$(k -n "$NS" exec "$a" -- ping -c 1 -W 2 "$ip") ||
				fail "$a (${POD_NODE[$a]}) cannot ping $b (${POD_NODE[$b]}) at $ip"
			rtt=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' <<<"$out")
			MATRIX[$a,$b]+="${MATRIX[$a,$b]:+ / }${rtt:-?}"
			got=$(k -n "$NS" exec "$a" -- curl -g -s --max-time 3 "http://$(url_host "$ip"):8080/hostname") ||
				fail "$a (${POD_NODE[$a]}) has no TCP to $b (${POD_NODE[$b]}) at $ip:8080"
			[ "$got" = "$b" ] || fail "$a -> $ip:8080 answered '$got', want $b"
			pings=$((pings + 1))
		done
	done
done
step "   $pings pings and $pings HTTP requests answered; round trips in ms (${IP_FAMILIES[*]}):"
matrix=$(
	printf '%-26s' "from \\ to"
	for b in "${PODS[@]}"; do printf '%-24s' "${POD_NODE[$b]}"; done
	echo
	for a in "${PODS[@]}"; do
		printf '%-26s' "${POD_NODE[$a]} ${a##*-}"
		for b in "${PODS[@]}"; do printf '%-24s' "${MATRIX[$a,$b]:-self}"; done
		echo
	done
)
show "$matrix"

# service_answers CLIENT URL: curls URL from pod CLIENT until a backend on another node
# answers (kube-proxy spreads connections at random; with one node the pod itself is
# the only backend); fails after 30 tries. Counts answers in ANSWERS.
service_answers() {
	local a=$1 url=$2 attempt got
	for attempt in $(seq 1 30); do
		# kube-proxy programs the Service a moment after its endpoints are ready.
		got=$(k -n "$NS" exec "$a" -- curl -g -s --max-time 3 "$url") || { sleep 0.5; continue; }
		[ -n "${POD_NODE[$got]:-}" ] || fail "$a (${POD_NODE[$a]}) -> $url answered '$got', not a smoke pod's name"
		echo "$a (${POD_NODE[$a]}) -> $url: $got (${POD_NODE[$got]}), attempt $attempt"
		ANSWERS=$((ANSWERS + 1))
		if [ "${POD_NODE[$got]}" != "${POD_NODE[$a]}" ] || [ "$NODES" -eq 1 ]; then return 0; fi
	done
	fail "$a (${POD_NODE[$a]}) -> $url: no answer from a pod on another node in 30 tries"
}

step "4. NodePort Service ($policy) from a pod on every node: ClusterIPs and nodePorts"
mapfile -t cluster_ips < <(k -n "$NS" get service smoke -o jsonpath='{range .spec.clusterIPs[*]}{@}{"\n"}{end}')
[ "${#cluster_ips[@]}" -eq "${#IP_FAMILIES[@]}" ] || fail "Service clusterIPs ${cluster_ips[*]}, want ${IP_FAMILIES[*]}"
for i in "${!cluster_ips[@]}"; do
	[ "$(family_of "${cluster_ips[i]}")" = "${IP_FAMILIES[i]}" ] ||
		fail "clusterIPs[$i] ${cluster_ips[i]} is not ${IP_FAMILIES[i]}"
done
node_port=$(k -n "$NS" get service smoke -o jsonpath='{.spec.ports[0].nodePort}')
mapfile -t node_ips < <(k get nodes -o jsonpath='{range .items[*]}{range .status.addresses[?(@.type=="InternalIP")]}{.address}{"\n"}{end}{end}')
ANSWERS=0
for a in "${PODS[@]}"; do
	for ip in "${cluster_ips[@]}"; do service_answers "$a" "http://$(url_host "$ip"):80/hostname"; done
done
cluster_answers=$ANSWERS
for a in "${PODS[@]}"; do
	for ip in "${node_ips[@]}"; do service_answers "$a" "http://$(url_host "$ip"):$node_port/hostname"; done
done
step "   $cluster_answers ClusterIP requests (${cluster_ips[*]}) and $((ANSWERS - cluster_answers)) nodePort $node_port requests (${#node_ips[@]} node addresses) answered, each client reached another node"

step "5. the apiserver through the kubernetes Service from a pod on every node"
apiserver_ip=$(k -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')
url="https://$(url_host "$apiserver_ip"):443/version"
for a in "${PODS[@]}"; do
	version=$(k -n "$NS" exec "$a" -- curl -g -s --max-time 5 --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt "$url") ||
		fail "$a (${POD_NODE[$a]}) cannot reach the apiserver at $url"
	[[ $version == *gitVersion* ]] || fail "$a (${POD_NODE[$a]}): $url answered '$version'"
done
step "   ${#PODS[@]} pods verified the apiserver's certificate at $url"

if [ "${DNS:-none}" = coredns ]; then
	step "6. cluster DNS from a pod on every node: smoke.$NS.svc.cluster.local"
	dns_ips=$(k -n kube-system get service kube-dns -o jsonpath='{.spec.clusterIPs}') ||
		fail "no kube-dns Service (dns-coredns.sh)"
	name=smoke.$NS.svc.cluster.local
	for a in "${PODS[@]}"; do
		for i in "${!cluster_ips[@]}"; do
			type=A
			[ "${IP_FAMILIES[i]}" = IPv4 ] || type=AAAA
			# +search through the pod's resolv.conf (kubelet's clusterDNS), as applications resolve.
			got=$(k -n "$NS" exec "$a" -- dig +short +search +time=2 +tries=3 "smoke.$NS" "$type") ||
				fail "$a (${POD_NODE[$a]}): dig smoke.$NS $type failed"
			[ "$got" = "${cluster_ips[i]}" ] ||
				fail "$a (${POD_NODE[$a]}): $name $type is '$got', want ${cluster_ips[i]} (kube-dns $dns_ips)"
		done
		nameservers=$(k -n "$NS" exec "$a" -- sed -n 's/^nameserver //p' /etc/resolv.conf | tr '\n' ' ')
	done
	step "   A/AAAA $name = ${cluster_ips[*]} from ${#PODS[@]} pods (nameservers: $nameservers)"
else
	step "6. skipped: no cluster DNS (up.sh --dns none)"
fi

step "7. the downward API shows each pod its podIPs; each pod's default gateways answer"
for a in "${PODS[@]}"; do
	got=$(k -n "$NS" exec "$a" -- printenv POD_IPS)
	[ "$got" = "${POD_IPS[$a]%,}" ] || fail "$a: POD_IPS is '$got', want its podIPs ${POD_IPS[$a]%,}"
	for family in "${IP_FAMILIES[@]}"; do
		gateway=169.254.1.1
		[ "$family" = IPv4 ] || gateway=fe80::1%eth0
		k -n "$NS" exec "$a" -- ping -c 1 -W 2 "$gateway" || fail "$a (${POD_NODE[$a]}): its gateway $gateway does not answer ping"
	done
done
step "   POD_IPS = podIPs in ${#PODS[@]} pods; their gateways answered"

host_node=$(node_name "$NODES")
step "8. a hostNetwork pod on $host_node"
host_in_use=$(ipam_in_use "$NODES")
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
node_addrs=$(k get node "$host_node" -o jsonpath='{range .status.addresses[?(@.type=="InternalIP")]}{.address}{" "}{end}')
for ip in $node_addrs; do
	[[ $addrs == *" $ip/"* ]] || fail "the hostNetwork pod on $host_node lacks the node's $ip: $addrs"
done
host_ips=$(k -n "$NS" get pod host -o jsonpath='{range .status.podIPs[*]}{.ip}{" "}{end}')
[ "$host_ips" = "$node_addrs" ] || fail "the hostNetwork pod's podIPs are '$host_ips', want the node's '$node_addrs'"
[ "$(ipam_in_use "$NODES")" = "$host_in_use" ] || fail "weftd on $host_node allocated for the hostNetwork pod"
k -n "$NS" get pod host -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,POD IPS:.status.podIPs[*].ip' >&3
step "   hostname $hostname, the node's addresses on uplink and as podIPs, nothing allocated"

if [ "$NETWORK" = helm ]; then
	. "$CLUSTER_DIR/smoke-weftd-restart.sh"
	weftd_restart_check
else
	step "9. skipped: weftd runs as a pod only with up.sh --network helm"
fi

if [ -z "$KEEP" ]; then
	step "10. removing namespace $NS: pods delete through kubelet and the CNI, addresses released"
	k delete namespace "$NS" --wait=true --timeout=120s
	released() {
		local n
		for n in $(seq 1 "$NODES"); do [ "$(ipam_in_use "$n")" = "${IN_USE_BEFORE[$n]}" ] || return 1; done
	}
	wait_for "every weftd's weft_ipam_addresses_in_use back to before" 30 released
	if [ "$NETWORK" = helm ]; then
		# weftd reports use on its WeftNode at most every 10 s.
		weftnode_released() {
			local n v6 want
			for n in $(seq 1 "$NODES"); do
				v6=$(k get weftnode "$(node_name "$n")" -o jsonpath='{.status.ipv6InUse}')
				want=$(sed -n 's/^ipv6=//p' <<<"${IN_USE_BEFORE[$n]}")
				[ "$v6" = "$want" ] || return 1
			done
		}
		wait_for "every WeftNode's status.ipv6InUse back to before" 40 weftnode_released
	fi
	in_use_now=$(for n in $(seq 1 "$NODES"); do printf '%s ' "$(node_name "$n"):$(ipam_in_use "$n" | tr '\n' ' ')"; done)
	step "   every node's addresses in use back to before: $in_use_now"
fi
step "smoke passed in $((SECONDS - T0)) s"
