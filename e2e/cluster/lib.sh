# Shared by e2e/cluster/*.sh (sourced, not run): the cluster's layout, its names and
# addresses, logging with elapsed times, and running commands inside a node.
#
# One cluster at a time per WEFT_CLUSTER_NAME (default weftc): its namespaces are
# <name>-fabric, <name>-cp and <name>-node-<n>; its state lives in WEFT_CLUSTER_STATE
# (default /var/lib/weft-cluster/<name>) and every run's logs in WEFT_CLUSTER_LOGS
# (default /var/log/weft-cluster/<name>), which down.sh keeps.
#
# Addresses (documentation prefixes on the underlay; the rest exists only inside the
# cluster's namespaces):
#   fabric bridge   192.0.2.1/24         2001:db8:ffff::1/64
#   control plane   192.0.2.2            2001:db8:ffff::2       (apiserver :6443)
#   node n          192.0.2.(10+n)       2001:db8:ffff::(10+n)
#   pods on node n  10.244.n.0/24        2001:db8:1000:n::/80   (cluster 10.244.0.0/16,
#                                                               2001:db8:1000::/48)
#   Services        10.96.0.0/16         2001:db8:fffe::/112
#   cluster DNS     10.96.0.10           2001:db8:fffe::a       (the kube-dns Service)

CLUSTER_NAME=${WEFT_CLUSTER_NAME:-weftc}
[[ $CLUSTER_NAME =~ ^[a-z][a-z0-9]{0,7}$ ]] ||
	{ echo "WEFT_CLUSTER_NAME must be 1-8 lowercase letters/digits, starting with a letter" >&2; exit 2; }
STATE=${WEFT_CLUSTER_STATE:-/var/lib/weft-cluster/$CLUSTER_NAME}
LOG_ROOT=${WEFT_CLUSTER_LOGS:-/var/log/weft-cluster/$CLUSTER_NAME}
CLUSTER_ENV=$STATE/cluster.env
PKI=$STATE/pki
NS_DIR=$STATE/ns # node mount and UTS namespaces, bound to files (a private mount)
PID_DIR=$STATE/pids
LOGS_KEPT=10 # runs whose logs stay in LOG_ROOT

FABRIC_NS=$CLUSTER_NAME-fabric
CP_NS=$CLUSTER_NAME-cp
CP_V4=192.0.2.2
CP_V6=2001:db8:ffff::2
FABRIC_V4=192.0.2.1
FABRIC_V6=2001:db8:ffff::1
APISERVER_PORT=6443
CONTAINERD_METRICS_PORT=1338 # each node's containerd, on the node's 127.0.0.1
POD_CIDR_V4=10.244.0.0/16
POD_CIDR_V6=2001:db8:1000::/48
SERVICE_CIDR_V4=10.96.0.0/16
SERVICE_CIDR_V6=2001:db8:fffe::/112
# The first address of each Service range: the `kubernetes` Service's ClusterIP.
SERVICE_APISERVER_V4=10.96.0.1
SERVICE_APISERVER_V6=2001:db8:fffe::1
# The kube-dns Service's ClusterIPs (kubeadm's choice: the range's tenth address), which
# every kubelet names as clusterDNS.
CLUSTER_DNS_V4=10.96.0.10
CLUSTER_DNS_V6=2001:db8:fffe::a
# Where each node's processes find kubelet's cgroups (cgroupfs driver): /<name>/node-<n>.
CGROUP_PARENT=$CLUSTER_NAME
# The sysctls kubelet sets in the host's (global) namespaces at every start
# (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables); up.sh saves them once,
# down.sh restores them.
KUBELET_HOST_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths every node mounts its own copy over; created (and recorded, so down.sh
# removes them) when the host lacks them.
NODE_MOUNTPOINTS=(/etc/cni/net.d /opt/cni/bin /var/lib/kubelet /var/lib/containerd
	/var/lib/cni /var/log/pods /var/log/containers)

node_name() { echo "node-$1"; }
node_ns() { echo "$CLUSTER_NAME-node-$1"; }
node_dir() { echo "$STATE/nodes/node-$1"; }
node_v4() { echo "192.0.2.$((10 + $1))"; }
node_v6() { echo "2001:db8:ffff::$((10 + $1))"; }
node_pod_v4() { echo "10.244.$1.0/24"; }
node_pod_v6() { printf '2001:db8:1000:%x::/80\n' "$1"; }

# load_cluster_env: the settings up.sh recorded (NODES, FAMILY, LOG_DIR, ...); fails
# when no cluster is up.
load_cluster_env() {
	[ -f "$CLUSTER_ENV" ] || { echo "no cluster '$CLUSTER_NAME' ($CLUSTER_ENV missing): run e2e/cluster/up.sh" >&2; exit 1; }
	# shellcheck disable=SC1090
	. "$CLUSTER_ENV"
}

# begin_check NAME [helm]: how every check script starts: as root, with the running
# cluster's settings and its family's, NAME's log and the ERR trap; with `helm`, a
# cluster whose weft helm did not install is refused.
begin_check() {
	[ "$(id -u)" -eq 0 ] || { echo "$0: needs root" >&2; exit 1; }
	load_cluster_env
	if [ "${2:-}" = helm ] && [ "$NETWORK" != helm ]; then
		echo "$0: the cluster runs weft $NETWORK, not helm (up.sh --network helm)" >&2
		exit 1
	fi
	family_settings "$FAMILY"
	start_log "$1"
	trap on_error ERR
}

# family_settings FAMILY: the family-dependent settings (sets IP_FAMILIES, WEFT_MODE,
# SERVICE_CIDRS, CLUSTER_CIDRS, CLUSTER_DNS, APISERVER_ADDR, APISERVER_URL).
#   ipv4-primary  dual-stack, IPv4 listed first (Kubernetes' default order)
#   ipv6-primary  dual-stack, IPv6 first
#   ipv6-only     single-stack IPv6
family_settings() {
	case $1 in
	ipv4-primary)
		IP_FAMILIES=(IPv4 IPv6)
		WEFT_MODE=dual
		SERVICE_CIDRS=$SERVICE_CIDR_V4,$SERVICE_CIDR_V6
		CLUSTER_CIDRS=$POD_CIDR_V4,$POD_CIDR_V6
		CLUSTER_DNS=$CLUSTER_DNS_V4,$CLUSTER_DNS_V6
		APISERVER_ADDR=$CP_V4
		APISERVER_URL=https://$CP_V4:$APISERVER_PORT
		;;
	ipv6-primary)
		IP_FAMILIES=(IPv6 IPv4)
		WEFT_MODE=dual
		SERVICE_CIDRS=$SERVICE_CIDR_V6,$SERVICE_CIDR_V4
		CLUSTER_CIDRS=$POD_CIDR_V6,$POD_CIDR_V4
		CLUSTER_DNS=$CLUSTER_DNS_V6,$CLUSTER_DNS_V4
		APISERVER_ADDR=$CP_V6
		APISERVER_URL=https://[$CP_V6]:$APISERVER_PORT
		;;
	ipv6-only)
		IP_FAMILIES=(IPv6)
		WEFT_MODE=ipv6
		SERVICE_CIDRS=$SERVICE_CIDR_V6
		CLUSTER_CIDRS=$POD_CIDR_V6
		CLUSTER_DNS=$CLUSTER_DNS_V6
		APISERVER_ADDR=$CP_V6
		APISERVER_URL=https://[$CP_V6]:$APISERVER_PORT
		;;
	*)
		echo "unknown family '$1': ipv4-primary, ipv6-primary or ipv6-only" >&2
		exit 2
		;;
	esac
}

# node_ips N: kubelet's --node-ip for node N, primary family first.
node_ips() {
	case $FAMILY in
	ipv4-primary) echo "$(node_v4 "$1"),$(node_v6 "$1")" ;;
	ipv6-primary) echo "$(node_v6 "$1"),$(node_v4 "$1")" ;;
	ipv6-only) node_v6 "$1" ;;
	esac
}

# ---- logging ------------------------------------------------------------------------
# start_log NAME: from here on stdout and stderr go to LOG_DIR/NAME.log (verbose); fd 3
# is the terminal, where `step` prints progress with the time since start_log.
start_log() {
	if [ -z "${LOG_DIR:-}" ]; then
		LOG_DIR=$LOG_ROOT/$(date -u +%Y%m%dT%H%M%SZ)
		# Keep the newest runs' logs only.
		if [ -d "$LOG_ROOT" ]; then
			find "$LOG_ROOT" -mindepth 1 -maxdepth 1 -type d -name '20*Z' | sort -r |
				tail -n +"$LOGS_KEPT" | xargs -r rm -rf
		fi
	fi
	mkdir -p "$LOG_DIR"
	LOG=$LOG_DIR/$1.log
	exec 3>&1 1>>"$LOG" 2>&1
	T0=$SECONDS
	printf '%s: log %s\n' "$1" "$LOG" >&3
	echo "== $(date -u +%FT%TZ) $0 $*"
}

# show TEXT: TEXT into the log and onto the terminal (fd 3, a dup of it: `tee
# /dev/fd/3` would reopen it, truncating a terminal that is a file, such as CI's log).
show() {
	echo "$1"
	echo "$1" >&3
}

step() {
	printf '[%4d s] %s\n' "$((SECONDS - T0))" "$*" >&3
	echo "== [$((SECONDS - T0)) s] $*"
}

# fail MESSAGE: says so on the terminal with the log's tail (and FAIL_HINT, if set), and
# exits 1.
fail() {
	printf '[%4d s] FAILED: %s\n' "$((SECONDS - T0))" "$*" >&3
	echo "== FAILED: $*"
	{
		echo "--- last lines of $LOG ---"
		tail -n 25 "$LOG"
		[ -z "${FAIL_HINT:-}" ] || echo "$FAIL_HINT"
	} >&3
	exit 1
}

# eval_printed CMD...: runs CMD, which prints shell assignments, and evaluates them. A
# failing CMD stops the script here; inside `eval "$(CMD)"` its status would be lost.
eval_printed() {
	local printed
	printed=$("$@") || fail "$1 failed (its messages are above)"
	eval "$printed"
}

# on_error: an ERR trap for `set -eE` scripts; names the failing command. Failures inside
# command and process substitutions are the caller's to judge (their status is what it
# sees), so only the main shell reports.
on_error() {
	local status=$? line=${BASH_LINENO[0]} cmd=$BASH_COMMAND
	if [ "$BASH_SUBSHELL" -eq 0 ]; then
		trap - ERR
		fail "'$cmd' exited $status (${BASH_SOURCE[1]}:$line)"
	fi
}

# wait_for WHAT TIMEOUT_S COMMAND...: retries COMMAND every half second until it succeeds.
wait_for() {
	local what=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || fail "$what: not after ${timeout} s"
		sleep 0.5
	done
}

# ---- namespaces and processes -----------------------------------------------------------
# quiet_dad NS: no duplicate address detection for interfaces made later in NS: the
# addresses are unique by construction and must work at once.
quiet_dad() {
	nsenter --net="/run/netns/$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}
# new_netns NS: a network namespace with loopback up and no DAD.
new_netns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	quiet_dad "$1"
}
# wire NS PORT V4 V6: a veth `uplink` in NS, its peer PORT on the fabric bridge, the
# addresses, and default routes into the fabric (which has nowhere further to send them).
wire() {
	local ns=$1 port=$2 v4=$3 v6=$4
	ip -n "$ns" link add uplink type veth peer name "$port" netns "$FABRIC_NS"
	ip -n "$FABRIC_NS" link set "$port" master fabric0 up
	ip -n "$ns" addr add "$v4/24" dev uplink
	ip -n "$ns" addr add "$v6/64" dev uplink nodad
	ip -n "$ns" link set uplink up
	ip -n "$ns" route add default via "$FABRIC_V4"
	ip -n "$ns" -6 route add default via "$FABRIC_V6"
}

# in_cp COMMAND...: runs COMMAND in the control plane's network namespace.
in_cp() { nsenter --net="/run/netns/$CP_NS" -- "$@"; }

# in_node N COMMAND...: runs COMMAND inside node N: its network, mount and UTS namespaces.
in_node() {
	local n=$1
	shift
	nsenter --net="/run/netns/$(node_ns "$n")" --mount="$NS_DIR/node-$n.mnt" \
		--uts="$NS_DIR/node-$n.uts" --wd=/ -- "$@"
}

# control_plane_pod_ipv4_routes: reads "NODE_NAME SUBNET" lines (node-<n> and the pod
# IPv4 subnet that node owns) and routes each subnet in the control plane's namespace via
# that node's underlay IPv4 address. A control-plane node running weftd would have the
# overlay route; this one runs none, and without the routes the apiserver's pods/proxy
# and services/proxy (what the upstream e2e suite reads DNS results and Proxy answers
# through) cannot reach a pod's IPv4 address. Nothing to do on an IPv6-only cluster.
control_plane_pod_ipv4_routes() {
	local name subnet n
	[ "$WEFT_MODE" != ipv6 ] || return 0
	while read -r name subnet; do
		n=${name#node-}
		[[ $n =~ ^[0-9]+$ && -n $subnet ]] || fail "no node number or pod IPv4 subnet in '$name $subnet'"
		ip -n "$CP_NS" -4 route replace "$subnet" via "$(node_v4 "$n")"
		echo "control plane: $subnet via $(node_v4 "$n") ($name)"
	done
}

# kubectl_admin ARGS...: kubectl as cluster admin, from the control plane's namespace.
kubectl_admin() {
	in_cp "$TOOLS_BIN/kubectl" --kubeconfig="$PKI/admin.kubeconfig" \
		--cache-dir="$STATE/kubectl-cache" "$@"
}

# daemon NAME LOG COMMAND...: starts COMMAND in the background, in its own session,
# output to LOG, and records its PID in PID_DIR/NAME.pid (nsenter execs the program, so
# the PID is the daemon's).
daemon() {
	local name=$1 log=$2
	shift 2
	mkdir -p "$PID_DIR" "$(dirname "$log")"
	setsid "$@" </dev/null >>"$log" 2>&1 3>&- &
	echo $! >"$PID_DIR/$name.pid"
	echo "started $name (pid $!): $*"
}

# daemon_in_node N NAME COMMAND...: `daemon` inside node N (its network, mount and UTS
# namespaces), as NAME-node-N, logging to LOG_DIR/node-N/NAME.log, with the cluster's
# tools first on PATH (containerd finds its shim there).
daemon_in_node() {
	local n=$1 name=$2
	shift 2
	daemon "$name-$(node_name "$n")" "$LOG_DIR/$(node_name "$n")/$name.log" \
		nsenter --net="/run/netns/$(node_ns "$n")" --mount="$NS_DIR/node-$n.mnt" \
		--uts="$NS_DIR/node-$n.uts" --wd=/ -- env PATH="$TOOLS_BIN:$PATH" "$@"
}

# import_on_nodes ARCHIVE [CTR_IMPORT_ARGS...]: the OCI archive into every node's
# containerd, in parallel (waiting for exactly those imports: the shell's other children
# are the cluster's daemons).
import_on_nodes() {
	local archive=$1 n pids=() pid
	shift
	for n in $(seq 1 "$NODES"); do
		in_node "$n" "$TOOLS_BIN/ctr" --address /run/containerd/containerd.sock --namespace k8s.io \
			images import "$@" "$archive" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || fail "importing $archive failed on a node (see the log)"; done
}

# load_tools: what e2e/setup.sh --cluster built (sets TOOLS_BIN, CNI_PLUGINS, IMAGES,
# PAUSE_IMAGE, AGNHOST_IMAGE).
load_tools() {
	local out
	out=$("$E2E_DIR/setup.sh" --cluster) || fail "e2e/setup.sh --cluster failed (its output is above)"
	eval "$out"
	TOOLS_BIN=$WEFT_TOOLS_BIN
	CNI_PLUGINS=$WEFT_CNI_PLUGINS
	IMAGES=$WEFT_CLUSTER_IMAGES
}
