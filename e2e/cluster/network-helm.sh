# weft installed the way operators install it (sourced by up.sh after lib.sh, for
# `up.sh --network helm`): weft's image built here and imported into every node's
# containerd, then `helm install weft charts/weft -n kube-system`. From there on
# Kubernetes does everything: weftd's DaemonSet (its init container puts weft, portmap
# and loopback into each node's /opt/cni/bin, weftd writes the conflist once it serves
# pods), weft-controller picks each node's IPv6 prefix and IPv4 subnet (WeftNode
# objects), and weftd routes the peers' prefixes (direct IPv6 routing: the nodes share
# the fabric's link).
#
# The values match the harness: pod ranges POD_CIDR_V6 (/80 per node) and POD_CIDR_V4
# (/24 per node), the family mode, `ipv6Routing: direct`, underlay interface `uplink`.
# weftd and the controller reach the apiserver through the `kubernetes` Service: kube-proxy
# runs as a node process (not a pod), so the Service works on a node before any CNI.
#
# The control plane's host runs no weftd, yet pods reach the apiserver with their own
# IPv6 source (kube-proxy does not masquerade the cluster's ranges), so its answers must
# find the pods' prefixes. The prefixes are the controller's choice, so the harness makes
# the fabric a router that knows them, as a datacenter fabric learns them (from BGP, say):
# once every WeftNode has its prefix and underlay address, the fabric namespace routes
# each prefix via its node (fabric_pod_routes). The control plane keeps its default route
# into the fabric for IPv6. Its IPv4 source is its underlay address, which pods answer
# without help, but the apiserver's own requests to pods' IPv4 addresses (pods/proxy,
# services/proxy) need each node's subnet routed via the node: once every WeftNode has its
# subnet, the control plane's namespace gets those routes (control_plane_pod_ipv4_routes).
#
# Needs: helm (e2e/helm/build.sh puts it in TOOLS_BIN), weftd and weft-controller in
# WEFT_BIN_DIR (debug builds work), the statically linked plugin WEFT_PLUGIN (default
# target/x86_64-unknown-linux-gnu/release/weft: RUSTFLAGS="-C target-feature=+crt-static"
# cargo build --release --locked -p weft-cni --target x86_64-unknown-linux-gnu), and
# CNI_PLUGINS (portmap, loopback: e2e/setup.sh). WEFT_IMAGE_TAR skips the image build.

HELM_RELEASE=weft
HELM_NAMESPACE=kube-system
WEFT_CHART=$REPO_DIR/charts/weft
WEFT_PLUGIN=${WEFT_PLUGIN:-$REPO_DIR/target/x86_64-unknown-linux-gnu/release/weft}

# helm_admin ARGS...: helm as cluster admin, from the control plane's namespace, with its
# cache and config in the cluster's state.
helm_admin() {
	in_cp env HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config" \
		HELM_DATA_HOME="$STATE/helm/data" "$TOOLS_BIN/helm" --kubeconfig="$PKI/admin.kubeconfig" "$@"
}

# weft_helm_values IMAGE: the chart's values for this cluster (YAML on stdout).
weft_helm_values() {
	local image=$1
	cat <<EOF
image:
  repository: ${image%:*}
  tag: "${image##*:}"
  # Imported into every node; nothing is ever pulled.
  pullPolicy: Never
network:
  mode: $WEFT_MODE
  ipv6Routing: direct
  ipv6Ranges:
    - range: "$POD_CIDR_V6"
      prefixLength: 80
  ipv4Network: "$POD_CIDR_V4"
  ipv4SubnetLength: 24
cni:
  # The nodes' CNI bin dirs start empty: containerd's CRI needs loopback for every pod.
  loopback: true
weftd:
  underlayInterface: uplink
EOF
}

# weft_nodes_ranged: true once every node's WeftNode has its prefix (and, unless
# IPv6-only, its subnet) and weftd published its underlay IPv6 address.
weft_nodes_ranged() {
	local lines
	lines=$(kubectl_admin get weftnodes -o jsonpath='{range .items[*]}{.metadata.name}|{.spec.ipv6Prefix}|{.spec.underlayIPv6}|{.spec.ipv4Subnet}{"\n"}{end}')
	[ "$(awk -F'|' -v mode="$WEFT_MODE" '$2 != "" && $3 != "" && (mode == "ipv6" || $4 != "")' <<<"$lines" | wc -l)" -eq "$NODES" ]
}

# fabric_pod_routes: the fabric routes each node's IPv6 prefix to the node (see the top).
fabric_pod_routes() {
	local name prefix underlay
	ip netns exec "$FABRIC_NS" sysctl -qw net.ipv6.conf.all.forwarding=1
	while read -r name prefix underlay; do
		ip -n "$FABRIC_NS" -6 route replace "$prefix" via "$underlay" dev fabric0
		echo "fabric: $prefix via $underlay ($name)"
	done < <(kubectl_admin get weftnodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.ipv6Prefix} {.spec.underlayIPv6}{"\n"}{end}')
}

# network_preflight: fails at once when a part is missing.
network_preflight() {
	local bin
	[ -n "${WEFT_IMAGE_TAR:-}" ] && return 0
	for bin in weftd weft-controller; do
		[ -x "$WEFT_BIN_DIR/$bin" ] ||
			fail "$WEFT_BIN_DIR/$bin missing: cargo build -p weftd -p weft-controller (or set WEFT_BIN_DIR)"
	done
	[ -x "$WEFT_PLUGIN" ] || fail "$WEFT_PLUGIN missing: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked -p weft-cni --target x86_64-unknown-linux-gnu (or set WEFT_PLUGIN)"
}

# network_install: weft's image on every node, `helm install`, every node Ready, the
# fabric's routes to the pod prefixes, the control plane's to the pod IPv4 subnets.
network_install() {
	local image tar n start
	[ -x "$TOOLS_BIN/helm" ] || fail "$TOOLS_BIN/helm missing: e2e/helm/build.sh"
	if [ -n "${WEFT_IMAGE_TAR:-}" ]; then
		tar=$WEFT_IMAGE_TAR
	else
		step "   building weft's image (e2e/image/build.sh --bin-dir $WEFT_BIN_DIR)"
		eval_printed "$E2E_DIR/image/build.sh" --bin-dir "$WEFT_BIN_DIR" --plugin "$WEFT_PLUGIN" \
			--plugins "$CNI_PLUGINS" --out "$STATE/weft-image.oci.tar"
		tar=$IMAGE_TAR
	fi
	# The name the archive carries (io.containerd.image.name).
	image=$(tar -xOf "$tar" index.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])')
	step "   importing $image into every node"
	import_on_nodes "$tar"
	for n in $(seq 1 "$NODES"); do
		node_ctr "$n" images list -q | grep -qxF "$image" || fail "$(node_name "$n") lacks $image after the import"
	done
	weft_helm_values "$image" >"$STATE/weft-values.yaml"
	step "   helm install $HELM_RELEASE charts/weft -n $HELM_NAMESPACE"
	start=$(date +%s.%N)
	helm_admin install "$HELM_RELEASE" "$WEFT_CHART" -n "$HELM_NAMESPACE" -f "$STATE/weft-values.yaml"
	wait_for "$NODES nodes registered" 120 \
		eval '[ "$(kubectl_admin get nodes -o name | wc -l)" -eq "$NODES" ]'
	wait_for "$NODES nodes Ready after helm install" 300 \
		kubectl_admin wait --for=condition=Ready node --all --timeout=5s
	# Kept for e2e/cluster/bench-pod-start.sh's table.
	python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$start" \
		>"$STATE/helm-install-ready-seconds"
	step "   every node Ready $(cat "$STATE/helm-install-ready-seconds") s after helm install"
	wait_for "every WeftNode with its ranges and underlay" 60 weft_nodes_ranged
	fabric_pod_routes
	control_plane_pod_ipv4_routes < <(kubectl_admin get weftnodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.ipv4Subnet}{"\n"}{end}')
	kubectl_admin get weftnodes -o wide
	kubectl_admin -n "$HELM_NAMESPACE" get pods -o wide
}
