#!/usr/bin/env bash
# Brings up a real Kubernetes cluster on this machine, every part in namespaces it
# makes (e2e/cluster/down.sh removes all of it):
#   fabric         a network namespace with a bridge linking the others (192.0.2.0/24,
#                  2001:db8:ffff::/64; nothing beyond it)
#   control plane  its own network namespace: etcd, kube-apiserver,
#                  kube-controller-manager, kube-scheduler
#   node-1..N      each its own network, mount and UTS (hostname node-N) namespace:
#                  containerd (+ runc), kubelet, kube-proxy in nftables mode, and its own
#                  /etc/cni/net.d, /opt/cni/bin, /var/lib/{kubelet,containerd,cni},
#                  /var/log/{pods,containers}, /run and cgroupRoot /<name>/node-N
#   pod network    weft, installed by network-weft-standalone.sh (the harness runs weftd
#                  on each node) or network-helm.sh (`helm install` of charts/weft);
#                  --network none leaves the nodes NotReady for another installer
#   cluster DNS    CoreDNS pods behind the kube-dns Service (dns-coredns.sh), once the
#                  pod network serves pods (not with --network none or --dns none)
# Images (pause, agnhost) are built locally by `e2e/setup.sh --cluster`, CoreDNS's by
# dns-coredns.sh, weft's by e2e/image/build.sh (--network helm), and imported into every
# node's containerd; nothing is ever pulled.
#
# Usage: e2e/cluster/up.sh [--nodes N] [--family ipv4-primary|ipv6-primary|ipv6-only]
#                          [--network weft-standalone|helm|none] [--dns coredns|none]
# Defaults: 3 nodes, ipv4-primary (dual-stack, IPv4 first), weft-standalone. Needs root,
# and weft's binaries in WEFT_BIN_DIR (default target/debug: cargo build -p weftd -p
# weft-cni; --network helm also weft-controller and the static plugin, see
# network-helm.sh). A cluster already up under the same WEFT_CLUSTER_NAME is taken down
# first.
# Then: e2e/cluster/kubectl.sh get nodes -o wide; e2e/cluster/smoke.sh; e2e/cluster/down.sh
# The terminal shows steps with elapsed times; everything else goes to the log it names.
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
E2E_DIR=$(dirname "$CLUSTER_DIR")
REPO_DIR=$(dirname "$E2E_DIR")
. "$CLUSTER_DIR/lib.sh"
. "$CLUSTER_DIR/pki.sh"

NODES=3
FAMILY=ipv4-primary
NETWORK=weft-standalone
DNS=coredns
while [ $# -gt 0 ]; do
	case $1 in
	--nodes) NODES=${2:?--nodes N}; shift 2 ;;
	--family) FAMILY=${2:?--family F}; shift 2 ;;
	--network) NETWORK=${2:?--network NAME}; shift 2 ;;
	--dns) DNS=${2:?--dns coredns|none}; shift 2 ;;
	-h | --help) sed -n '2,/^set -eEuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[[ $NODES =~ ^[1-9]$ ]] || { echo "--nodes: 1 to 9" >&2; exit 2; }
case $NETWORK in weft-standalone | helm | none) ;; *) echo "--network: weft-standalone, helm or none" >&2; exit 2 ;; esac
case $DNS in coredns | none) ;; *) echo "--dns: coredns or none" >&2; exit 2 ;; esac
[ "$NETWORK" != none ] || DNS=none
family_settings "$FAMILY"
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (namespaces, mounts, cgroups)" >&2; exit 1; }
WEFT_BIN_DIR=${WEFT_BIN_DIR:-$REPO_DIR/target/debug}

if [ -e "$STATE" ]; then
	echo "up.sh: a cluster '$CLUSTER_NAME' is up (or half up): taking it down first" >&2
	"$CLUSTER_DIR/down.sh"
fi

start_log up
trap on_error ERR
FAIL_HINT="up.sh: what it made stays for inspection; e2e/cluster/down.sh removes it"
step "cluster '$CLUSTER_NAME': $NODES nodes, $FAMILY, network $NETWORK"

[ "$NETWORK" = none ] || {
	. "$CLUSTER_DIR/network-$NETWORK.sh"
	network_preflight
}
. "$CLUSTER_DIR/dns-coredns.sh"

step "tools: e2e/setup.sh --cluster (builds what is missing; the first run takes long)"
load_tools
if [ "$DNS" = coredns ]; then
	step "CoreDNS: binary and image (builds what is missing; the first run takes minutes)"
	coredns_build
fi

# ---- state, recorded first so down.sh can undo a half-made cluster ---------------------
mkdir -p "$STATE" "$PID_DIR"
{
	printf 'NODES=%q\nFAMILY=%q\nNETWORK=%q\nLOG_DIR=%q\n' "$NODES" "$FAMILY" "$NETWORK" "$LOG_DIR"
	printf 'TOOLS_BIN=%q\nCNI_PLUGINS=%q\nIMAGES=%q\n' "$TOOLS_BIN" "$CNI_PLUGINS" "$IMAGES"
	printf 'PAUSE_IMAGE=%q\nAGNHOST_IMAGE=%q\nDNS=%q\n' "$PAUSE_IMAGE" "$AGNHOST_IMAGE" "$DNS"
	printf 'WEFT_BIN_DIR=%q\nWEFT_PLUGIN=%q\n' "$WEFT_BIN_DIR" "${WEFT_PLUGIN:-}"
} >"$CLUSTER_ENV"
for key in "${KUBELET_HOST_SYSCTLS[@]}"; do
	printf '%s=%s\n' "$key" "$(sysctl -n "$key")"
done >"$STATE/host-sysctls"
for path in "${NODE_MOUNTPOINTS[@]}"; do
	# Every missing ancestor, outermost first, so down.sh removes them innermost first.
	missing=()
	p=$path
	while [ ! -e "$p" ]; do missing=("$p" "${missing[@]}"); p=$(dirname "$p"); done
	for p in "${missing[@]}"; do mkdir "$p" && echo "$p" >>"$STATE/created-mountpoints"; done
done

step "certificates and kubeconfigs"
make_pki "$NODES"

step "fabric and control-plane namespaces"
new_netns "$FABRIC_NS"
ip -n "$FABRIC_NS" link add fabric0 type bridge
ip -n "$FABRIC_NS" addr add "$FABRIC_V4/24" dev fabric0
ip -n "$FABRIC_NS" addr add "$FABRIC_V6/64" dev fabric0 nodad
ip -n "$FABRIC_NS" link set fabric0 up
new_netns "$CP_NS"
wire "$CP_NS" cp "$CP_V4" "$CP_V6"

# ---- control plane ------------------------------------------------------------------------
cp_daemon() { # NAME COMMAND...
	local name=$1
	shift
	daemon "$name" "$LOG_DIR/$name.log" nsenter --net="/run/netns/$CP_NS" -- "$@"
}

step "etcd and kube-apiserver"
cp_daemon etcd "$TOOLS_BIN/etcd" --name="$CLUSTER_NAME" --data-dir="$STATE/etcd" \
	--listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
	--listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
	--initial-cluster="$CLUSTER_NAME=http://127.0.0.1:2380" --initial-cluster-state=new \
	--unsafe-no-fsync --log-level=warn
cp_daemon kube-apiserver "$TOOLS_BIN/kube-apiserver" \
	--advertise-address="$APISERVER_ADDR" --bind-address=:: --secure-port="$APISERVER_PORT" \
	--etcd-servers=http://127.0.0.1:2379 \
	--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types=InternalIP \
	--service-account-issuer=https://kubernetes.default.svc \
	--service-account-key-file="$PKI/sa.key" --service-account-signing-key-file="$PKI/sa.key" \
	--service-cluster-ip-range="$SERVICE_CIDRS" \
	--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
	--allow-privileged=true --profiling=false --v=2
wait_for "kube-apiserver /readyz" 120 kubectl_admin --request-timeout=5s get --raw /readyz

step "kube-controller-manager and kube-scheduler"
cp_daemon kube-controller-manager "$TOOLS_BIN/kube-controller-manager" \
	--kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
	--authentication-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
	--authorization-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
	--use-service-account-credentials=true \
	--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
	--leader-elect=false --bind-address=127.0.0.1 --v=2
cp_daemon kube-scheduler "$TOOLS_BIN/kube-scheduler" \
	--kubeconfig="$PKI/kube-scheduler.kubeconfig" \
	--authentication-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
	--authorization-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
	--leader-elect=false --bind-address=127.0.0.1 --v=2

# ---- nodes --------------------------------------------------------------------------------
. "$CLUSTER_DIR/node.sh"
for n in $(seq 1 "$NODES"); do
	step "$(node_name "$n"): namespaces, mounts, cgroups; containerd"
	node_namespaces "$n"
	node_cgroups "$n"
	node_containerd "$n"
done
step "images imported into every node's containerd"
importers=()
for n in $(seq 1 "$NODES"); do
	wait_for "containerd on $(node_name "$n")" 30 node_ctr "$n" version
	node_images "$n" &
	importers+=($!)
done
for pid in "${importers[@]}"; do wait "$pid" || fail "an image import failed (see the log)"; done
for n in $(seq 1 "$NODES"); do
	step "$(node_name "$n"): kubelet and kube-proxy"
	node_kubelet "$n"
	node_kube_proxy "$n"
done

if [ "$NETWORK" = none ]; then
	step "pod network: none installed (nodes stay NotReady until one is)"
else
	step "pod network: network-$NETWORK.sh"
	network_install
fi

# Pods need their namespace's `default` ServiceAccount, which the controller-manager makes.
wait_for "the default ServiceAccount" 60 kubectl_admin get serviceaccount default
step "waiting for $NODES nodes to register"
nodes_registered() { [ "$(kubectl_admin get nodes -o name | wc -l)" -eq "$NODES" ]; }
wait_for "$NODES nodes registered" 120 nodes_registered
if [ "$NETWORK" != none ]; then
	step "waiting for $NODES nodes Ready"
	wait_for "$NODES nodes Ready" 180 kubectl_admin wait --for=condition=Ready node --all --timeout=5s
fi
if [ "$DNS" = coredns ]; then
	step "cluster DNS: CoreDNS (dns-coredns.sh)"
	dns_install
fi
kubectl_admin get nodes -o wide
step "up in $((SECONDS - T0)) s: e2e/cluster/kubectl.sh get nodes -o wide; e2e/cluster/down.sh removes it"
kubectl_admin get nodes -o wide >&3
