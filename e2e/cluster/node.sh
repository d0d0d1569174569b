# One Kubernetes node in namespaces (sourced by up.sh after lib.sh): what makes node N
# a node of its own on a shared machine (/work/shared/CLUSTER.md, "Several nodes on one
# machine"). Nothing here knows the pod network; network-*.sh installs that.

# node_namespaces N: node N's network namespace wired to the fabric, and its mount and
# UTS namespaces, bound to files in NS_DIR (a private mount, so the binds stay on the
# host's side), set up as below.
node_namespaces() {
	local n=$1 ns dir
	ns=$(node_ns "$n")
	dir=$(node_dir "$n")
	new_netns "$ns"
	wire "$ns" "n$n" "$(node_v4 "$n")" "$(node_v6 "$n")"
	mkdir -p "$dir"/{cgroup,cni-cache,cni-conf,cni-bin,pod-logs,container-logs}
	if ! mountpoint -q "$NS_DIR"; then
		mkdir -p "$NS_DIR"
		mount --bind "$NS_DIR" "$NS_DIR"
		mount --make-private "$NS_DIR"
	fi
	touch "$NS_DIR/node-$n.mnt" "$NS_DIR/node-$n.uts"
	unshare --mount="$NS_DIR/node-$n.mnt" --uts="$NS_DIR/node-$n.uts" --propagation private true
	in_node "$n" hostname "$(node_name "$n")"
	in_node "$n" bash -euc "$NODE_MOUNTS" node-mounts "$dir" "$NS_DIR"
}

# Run inside node N's namespaces with its directory and NS_DIR as arguments:
# - a sysfs of the node's network namespace (/sys/class/net follows the namespace that
#   mounted sysfs), the host's cgroup tree moved back under it (the move needs a private
#   parent, so before / turns shared);
# - the node's own /run (tmpfs: containerd's state and sockets, runc's root, weft's
#   state and socket, pod netns files), /var/lib/kubelet (tmpfs: kubelet makes
#   device-plugins/kubelet.sock there whatever --root-dir says) and /var/lib/containerd
#   (tmpfs: images and snapshots, gone with the node in no time), its own directories
#   over /var/lib/cni (libcni's result cache), /var/log/pods, /var/log/containers,
#   /etc/cni/net.d and /opt/cni/bin (a DaemonSet's hostPath is per node);
# - NS_DIR unmounted here (the node needs none of the namespace files);
# - / made rshared, as kind's entrypoint does, for kubelet's mount propagation.
# shellcheck disable=SC2016 # expanded by the inner bash
NODE_MOUNTS='
dir=$1 ns_dir=$2
mount --rbind /sys/fs/cgroup "$dir/cgroup"
mount -t sysfs sysfs /sys
mount --move "$dir/cgroup" /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0750 tmpfs /var/lib/kubelet
mount -t tmpfs -o mode=0711 tmpfs /var/lib/containerd
mount --bind "$dir/cni-cache" /var/lib/cni
mount --bind "$dir/pod-logs" /var/log/pods
mount --bind "$dir/container-logs" /var/log/containers
mount --bind "$dir/cni-conf" /etc/cni/net.d
mount --bind "$dir/cni-bin" /opt/cni/bin
umount -l "$ns_dir"
mount --make-rshared /
'

# cgroup_hierarchies: the mounted cgroup hierarchies (v1 controllers, name=systemd and
# the unified v2 mount of this hybrid layout; runc joins that one too).
cgroup_hierarchies() {
	findmnt -rn -t cgroup,cgroup2 -o TARGET | grep '^/sys/fs/cgroup/'
}

# node_cgroups N: kubelet's cgroupRoot /CGROUP_PARENT/node-N in every hierarchy (kubelet
# does not create it); a cpuset directory starts empty, so cpus and mems come from the
# parent.
node_cgroups() {
	local n=$1 h rel
	for h in $(cgroup_hierarchies); do
		for rel in "$CGROUP_PARENT" "$CGROUP_PARENT/node-$n"; do
			mkdir -p "$h/$rel"
			if [ -f "$h/$rel/cpuset.cpus" ]; then
				cat "$(dirname "$h/$rel")/cpuset.cpus" >"$h/$rel/cpuset.cpus"
				cat "$(dirname "$h/$rel")/cpuset.mems" >"$h/$rel/cpuset.mems"
			fi
		done
	done
}

# node_containerd N: containerd with CRI for kubelet, at its default paths inside the
# node (they are the node's own: see NODE_MOUNTS).
node_containerd() {
	local n=$1 dir
	dir=$(node_dir "$n")
	cat >"$dir/containerd.toml" <<EOF
version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
# opt would create /opt/containerd on the host's disk; the others need what we lack.
disabled_plugins = ['io.containerd.internal.v1.opt', 'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs',
  'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']

[grpc]
  address = '/run/containerd/containerd.sock'

# The CRI's own timings, e.g. containerd_cri_network_plugin_operations_duration_seconds
# (how long the CNI chain took per pod: e2e/bench-pod-start.sh reads it), on the node's
# own loopback.
[metrics]
  address = '127.0.0.1:$CONTAINERD_METRICS_PORT'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    # Imported, never pulled: the sandbox image is pinned, so image GC keeps it.
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'

  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        Root = '/run/containerd/runc'
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/opt/cni/bin']
      conf_dir = '/etc/cni/net.d'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true
EOF
	daemon_in_node "$n" containerd "$TOOLS_BIN/containerd" --config "$dir/containerd.toml" --log-level info
}

# node_ctr N ARGS...: ctr against node N's containerd, in its Kubernetes namespace.
node_ctr() {
	local n=$1
	shift
	in_node "$n" "$TOOLS_BIN/ctr" --address /run/containerd/containerd.sock --namespace k8s.io "$@"
}

# node_images N: the locally built images into node N's containerd.
node_images() {
	local n=$1
	node_ctr "$n" images import --base-name "${PAUSE_IMAGE%:*}" "$IMAGES/pause.tar"
	node_ctr "$n" images import --base-name "${AGNHOST_IMAGE%:*}" "$IMAGES/agnhost.tar"
	node_ctr "$n" images list -q
}

# node_kubelet N: kubelet for node N.
node_kubelet() {
	local n=$1 dir name ips
	dir=$(node_dir "$n")
	name=$(node_name "$n")
	ips=$(node_ips "$n")
	cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's hybrid cgroup layout counts as v1, which kubelet 1.35 refuses by default.
failCgroupV1: false
cgroupDriver: cgroupfs
# Each node its own: kubelets sharing one kill each other's pods (orphan clean-up).
cgroupRoot: /$CGROUP_PARENT/node-$n
podLogsDir: /var/log/pods
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
# The apiserver reaches kubelets at their InternalIP (exec, logs).
address: ${ips%%,*}
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
rotateCertificates: false
# The host's resolvers are outside the cluster's namespaces: pods get cluster DNS only
# (CoreDNS behind the kube-dns Service, dns-coredns.sh), hostNetwork pods no resolver.
resolvConf: ""
clusterDomain: cluster.local
clusterDNS: [${CLUSTER_DNS//,/, }]
# kind's settings for test nodes: no swap check, no disk-pressure eviction, no image GC.
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  imagefs.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
EOF
	daemon_in_node "$n" kubelet "$TOOLS_BIN/kubelet" --config="$dir/kubelet.yaml" \
		--kubeconfig="$PKI/kubelet-$name.kubeconfig" --root-dir=/var/lib/kubelet \
		--hostname-override="$name" --node-ip="$ips" --v=2
}

# node_kube_proxy N: kube-proxy in nftables mode for node N.
node_kube_proxy() {
	local n=$1 dir
	dir=$(node_dir "$n")
	cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: $(node_name "$n")
clientConnection:
  kubeconfig: $PKI/kube-proxy.kubeconfig
# Every node's pod ranges: traffic from them to a Service is not masqueraded.
clusterCIDR: $CLUSTER_CIDRS
nodePortAddresses: [primary]
metricsBindAddress: 127.0.0.1:10249
conntrack:
  # nf_conntrack_max is global (kind leaves it too); the per-namespace ones are fine.
  maxPerCore: 0
  tcpBeLiberal: true
EOF
	daemon_in_node "$n" kube-proxy "$TOOLS_BIN/kube-proxy" --config="$dir/kube-proxy.yaml" --v=2
}
