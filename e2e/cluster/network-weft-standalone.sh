# How weft gets onto the nodes in this step of the cluster tier (sourced by up.sh after
# lib.sh): by the harness, not by Kubernetes. The Helm chart replaces exactly this file
# (`up.sh --network none`, then `helm install`); nothing else in the harness knows how
# weft is installed.
#
# Per node, what the probe in /work/shared/CLUSTER.md ran:
#   - the `weft` plugin and the reference `loopback` and `portmap` plugins (portmap
#     chained for hostPort; containerd's CRI brings lo up with `loopback`) copied into
#     the node's /opt/cni/bin, each to a temporary name and renamed;
#   - weftd started by the harness in the node's namespaces, standalone: ranges from
#     flags, the other nodes from one peers file, `--ipv6-routing direct` (the nodes share
#     the fabric's link) and the IPv4 overlay over VXLAN on the IPv4 underlay; its state
#     and socket at their defaults under /run/weft (the node's own tmpfs);
#   - once weftd answers /readyz, the conflist written (temp + rename) into the node's
#     /etc/cni/net.d: kubelet reports the node Ready only after that.
# And on the control plane's host, which runs no weftd here: the routes weftd would
# install there in direct routing (each node's IPv6 pod prefix via the node's underlay
# address). Pods reach the apiserver through the `kubernetes` Service with their own
# IPv6 source (kube-proxy does not masquerade the cluster's ranges), so without them
# its answers would go to the fabric, which knows no pod prefix. Pod IPv4 needs nothing:
# weftd masquerades it when it leaves the overlay.
# Needs WEFT_BIN_DIR (weftd and weft, e.g. target/debug) and CNI_PLUGINS (the reference
# plugins e2e/setup.sh builds; spec 1.1.0, which Debian's 1.1.1 plugins do not speak).

WEFT_CONFLIST=10-weft.conflist

# weft_peers_file: every node's entry (name, underlay addresses, pod ranges).
weft_peers_file() {
	local n entries=()
	for n in $(seq 1 "$NODES"); do
		local entry="{\"name\": \"$(node_name "$n")\", \"underlayIPv4\": \"$(node_v4 "$n")\""
		entry+=", \"underlayIPv6\": \"$(node_v6 "$n")\", \"ipv6Prefix\": \"$(node_pod_v6 "$n")\""
		[ "$WEFT_MODE" = ipv6 ] || entry+=", \"ipv4Subnet\": \"$(node_pod_v4 "$n")\""
		entries+=("$entry}")
	done
	local IFS=,
	printf '[%s]\n' "${entries[*]}"
}

# install_file SRC DEST_DIR NAME: copy to a temporary name, then rename (a running binary
# is never overwritten: "text file busy").
install_file() {
	install -m 0755 "$1" "$2/.$3.tmp"
	mv -f "$2/.$3.tmp" "$2/$3"
}

weft_node_install() { # N
	local n=$1 dir name
	dir=$(node_dir "$n")
	name=$(node_name "$n")
	install_file "$WEFT_BIN_DIR/weft" "$dir/cni-bin" weft
	install_file "$CNI_PLUGINS/loopback" "$dir/cni-bin" loopback
	install_file "$CNI_PLUGINS/portmap" "$dir/cni-bin" portmap
	local args=(--node-name "$name" --mode "$WEFT_MODE" --ipv6-prefix "$(node_pod_v6 "$n")"
		--peers "$STATE/weft-peers.json" --ipv6-routing direct --underlay-interface uplink)
	[ "$WEFT_MODE" = ipv6 ] || args+=(--ipv4-subnet "$(node_pod_v4 "$n")")
	daemon_in_node "$n" weftd "$WEFT_BIN_DIR/weftd" "${args[@]}"
}

weft_node_ready() { # N
	in_node "$1" curl -fsS --max-time 2 http://127.0.0.1:9641/readyz
}

weft_node_conflist() { # N
	local conf
	conf=$(node_dir "$1")/cni-conf
	cat >"$conf/.$WEFT_CONFLIST.tmp" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "weft",
  "plugins": [
    {"type": "weft", "socket": "/run/weft/weftd.sock",
     "capabilities": {"io.kubernetes.cri.pod-annotations": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	mv -f "$conf/.$WEFT_CONFLIST.tmp" "$conf/$WEFT_CONFLIST"
}

# weft_control_plane_routes: see the top of this file.
weft_control_plane_routes() {
	local n
	for n in $(seq 1 "$NODES"); do
		ip -n "$CP_NS" -6 route replace "$(node_pod_v6 "$n")" via "$(node_v6 "$n")"
	done
}

# weft_control_plane_pod_ipv4_routes: each node's fixed pod IPv4 subnet via the node
# (control_plane_pod_ipv4_routes in lib.sh says why).
weft_control_plane_pod_ipv4_routes() {
	local n
	control_plane_pod_ipv4_routes < <(for n in $(seq 1 "$NODES"); do echo "$(node_name "$n") $(node_pod_v4 "$n")"; done)
}

# network_preflight: fails at once when weft's binaries are missing.
network_preflight() {
	local bin
	for bin in weftd weft; do
		[ -x "$WEFT_BIN_DIR/$bin" ] ||
			fail "$WEFT_BIN_DIR/$bin missing: cargo build -p weftd -p weft-cni (or set WEFT_BIN_DIR)"
	done
}

# network_install: weft on every node, ready to serve pods.
network_install() {
	local n
	weft_peers_file >"$STATE/.weft-peers.json.tmp"
	mv -f "$STATE/.weft-peers.json.tmp" "$STATE/weft-peers.json"
	for n in $(seq 1 "$NODES"); do weft_node_install "$n"; done
	weft_control_plane_routes
	weft_control_plane_pod_ipv4_routes
	for n in $(seq 1 "$NODES"); do
		wait_for "weftd on $(node_name "$n") ready" 30 weft_node_ready "$n"
		weft_node_conflist "$n"
	done
}
