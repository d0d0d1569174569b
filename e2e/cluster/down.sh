#!/usr/bin/env bash
# Removes everything e2e/cluster/up.sh made for the cluster WEFT_CLUSTER_NAME (default
# weftc), also when up.sh stopped half-way: its processes (control plane, containerd,
# kubelet, kube-proxy, weftd, container shims and every container), its network
# namespaces (and with them every veth, route and nftables/iptables rule in them), the
# node mount and UTS namespaces (and every mount in them), its cgroups, the host
# sysctls kubelet changed (restored), the mount points it had to create on the host,
# and its state directory. The logs stay (the path is printed).
# Then checks that nothing is left and exits 1 naming what is.
#
# Usage: e2e/cluster/down.sh
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root" >&2; exit 1; }

if [ -f "$CLUSTER_ENV" ]; then
	# shellcheck disable=SC1090
	. "$CLUSTER_ENV"
fi
NODES=${NODES:-9}
start_log down
trap on_error ERR
step "cluster '$CLUSTER_NAME' ($STATE)"

# ns_id PATH: the namespace a bound namespace file or /proc/PID/ns/* entry names.
ns_id() { stat -L -c %i "$1" 2>/dev/null; }

# cluster_netns: the network namespaces of this cluster (by name: also without state).
cluster_netns() { ip netns list | awk '{print $1}' | grep -E "^$CLUSTER_NAME-(fabric|cp|node-[0-9]+)$" || true; }

# cluster_cgroup_dirs: every hierarchy's CGROUP_PARENT directory that exists.
cluster_cgroup_dirs() {
	local h
	for h in $(findmnt -rn -t cgroup,cgroup2 -o TARGET | grep '^/sys/fs/cgroup/'); do
		if [ -d "$h/$CGROUP_PARENT" ]; then echo "$h/$CGROUP_PARENT"; fi
	done
}

# cluster_pids: every process of the cluster: the daemons up.sh recorded, anything in
# one of its network, node mount or UTS namespaces (containerd's shims, hostNetwork
# pods), anything in one of its cgroups (containers).
# A subshell without errexit: processes come and go while it looks, and PID 1's
# namespaces are not readable here.
cluster_pids() (
	set +e +o pipefail
	local ids=() f ns
	for f in "$NS_DIR"/node-*.mnt "$NS_DIR"/node-*.uts; do
		if mountpoint -q "$f" 2>/dev/null; then ids+=("$(ns_id "$f")"); fi
	done
	for ns in $(cluster_netns); do ids+=("$(ns_id "/run/netns/$ns")"); done
	{
		# A recorded PID counts only while it still runs a command naming the state
		# directory (every daemon's does): never a reused PID.
		local f pid
		for f in "$PID_DIR"/*.pid; do
			pid=$(cat "$f" 2>/dev/null) || continue
			if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$STATE"; then echo "$pid"; fi
		done
		local dir
		for dir in $(cluster_cgroup_dirs); do
			find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
		done
		# One stat for every process's namespaces (one fork per process is seconds on a
		# loaded machine).
		if [ "${#ids[@]}" -gt 0 ]; then
			stat -L -c '%n %i' /proc/[0-9]*/ns/net /proc/[0-9]*/ns/mnt /proc/[0-9]*/ns/uts 2>/dev/null |
				awk -v ids="${ids[*]}" 'BEGIN { n = split(ids, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
					want[$2] { split($1, path, "/"); print path[3] }'
		fi
	} | grep -E '^[0-9]+$' | sort -un
)

# running PID...: those still running (a zombie has exited: its parent reaps it).
running() {
	local pid state
	for pid in "$@"; do
		state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || continue
		[ "$state" = Z ] || echo "$pid"
	done
}

# stop_all SIGNAL WAIT_S: signals every cluster process and waits up to WAIT_S for them.
stop_all() {
	local signal=$1 wait=$2 pids
	mapfile -t pids < <(cluster_pids)
	mapfile -t pids < <(running "${pids[@]}")
	[ "${#pids[@]}" -gt 0 ] || return 0
	echo "kill -$signal ${pids[*]}"
	kill "-$signal" "${pids[@]}" 2>/dev/null || true
	local deadline=$((SECONDS + wait))
	while [ "$SECONDS" -lt "$deadline" ]; do
		[ -n "$(running "${pids[@]}")" ] || return 0
		sleep 0.2
	done
}

step "stopping kubelets, then every process of the cluster"
for f in "$PID_DIR"/kubelet-*.pid; do
	[ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
done
# SIGTERM lets etcd and the daemons exit cleanly; what has not after 3 s (the apiserver
# drains for longer, containers may ignore it) gets SIGKILL: nothing needs to survive.
stop_all TERM 3
stop_all KILL 10
stop_all KILL 5
left=$(running $(cluster_pids))
[ -z "$left" ] || fail "processes still running: $left"

step "removing the namespaces"
for ns in $(cluster_netns); do ip netns del "$ns"; done
for f in "$NS_DIR"/node-*.mnt "$NS_DIR"/node-*.uts; do
	[ -e "$f" ] || continue
	! mountpoint -q "$f" || umount "$f"
done
! mountpoint -q "$NS_DIR" 2>/dev/null || umount "$NS_DIR"

step "removing the cgroups"
remove_cgroups() {
	local dir
	for dir in $(cluster_cgroup_dirs); do
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	[ -z "$(cluster_cgroup_dirs)" ]
}
# A cgroup stays busy for a moment after its last process exits.
wait_for "cgroups removed ($(cluster_cgroup_dirs | tr '\n' ' '))" 20 remove_cgroups

if [ -f "$STATE/host-sysctls" ]; then
	step "restoring the host sysctls kubelet set"
	while IFS='=' read -r key value; do
		sysctl -qw "$key=$value"
	done <"$STATE/host-sysctls"
fi

step "removing the state and the mount points up.sh created"
if [ -d "$STATE" ]; then
	mounted=$(findmnt -rn -o TARGET | grep -F "$STATE" || true)
	[ -z "$mounted" ] || fail "still mounted under $STATE: $mounted"
	created=()
	[ ! -f "$STATE/created-mountpoints" ] || mapfile -t created <"$STATE/created-mountpoints"
	rm -rf --one-file-system "$STATE"
	rmdir "$(dirname "$STATE")" 2>/dev/null || true
	# Host paths such as /var/lib/cni are shared: once something else (say a cnitool run
	# on the host) has put files there, they are no longer ours to remove.
	for ((i = ${#created[@]} - 1; i >= 0; i--)); do
		if ! rmdir "${created[i]}" 2>/dev/null; then
			step "   kept ${created[i]}: something else has put files there since up.sh made it"
		fi
	done
fi

step "checking that nothing is left"
problems=()
[ -z "$(cluster_netns)" ] || problems+=("network namespaces: $(cluster_netns | tr '\n' ' ')")
[ -z "$(cluster_cgroup_dirs)" ] || problems+=("cgroups: $(cluster_cgroup_dirs | tr '\n' ' ')")
[ ! -e "$STATE" ] || problems+=("state: $STATE")
mounts=$(findmnt -rn -o TARGET | grep -E "^$(dirname "$STATE")|^/run/netns/$CLUSTER_NAME-" || true)
[ -z "$mounts" ] || problems+=("mounts: $mounts")
procs=$(pgrep -f -- "$STATE" || true)
[ -z "$procs" ] || problems+=("processes naming $STATE: $procs")
[ "${#problems[@]}" -eq 0 ] || fail "left behind: ${problems[*]}"
step "down in $((SECONDS - T0)) s; logs stay in $LOG_DIR"
