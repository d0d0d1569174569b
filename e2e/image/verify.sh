#!/usr/bin/env bash
# Proves an image from e2e/image/build.sh complete: unpacks its OCI tar with umoci and
# runs its programs inside the image's root filesystem (chroot, in fresh network and
# mount namespaces made by unshare, so nothing touches the host's network or mounts):
#   - weftd --help, weft-controller --help, daemonset-wait's usage;
#   - weft and the reference plugins answering CNI VERSION, in the image and each
#     alone in an empty root (they run on nodes, so they must be static);
#   - nft applying a table of weftd's shape and listing it, also as JSON (nft -j);
#   - iproute2 flushing only protocol-119 routes (called by path, as the chart's
#     clean-up does: the image's busybox sh prefers its own `ip` applet);
#   - the chart's scripts: install-cni.sh installing the plugins, then leaving them
#     alone; cleanup.sh removing weft's device, tables, routes and files, nothing else;
#   - weftd starting on a node made of the namespace: /readyz, its nft table;
#   - where e2e/setup.sh --cluster built containerd: `ctr -n k8s.io images import` of
#     the tar naming the image, and runc running weftd from it.
#
#   e2e/image/verify.sh IMAGE_TAR
set -euo pipefail
tar_file=${1:?usage: $0 IMAGE_TAR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-image-verify.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout"
tar -C "$work/layout" -xf "$tar_file"
tag=$(umoci ls --layout "$work/layout")
[ "$(printf '%s\n' "$tag" | wc -l)" = 1 ] || { echo "$tar_file holds several tags: $tag" >&2; exit 1; }
umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs/dev"

failures=0
check() { # NAME EXPECTED-SUBSTRING COMMAND...: COMMAND inside the image prints EXPECTED
	local name=$1 expected=$2 output
	shift 2
	# /dev as a runtime provides it, bound in the private mount namespace only.
	if output=$(unshare --net --mount sh -c 'mount --bind /dev "$0/dev" && exec chroot "$0" "$@"' \
		"$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin "$@" 2>&1) &&
		[[ $output == *"$expected"* ]]; then
		printf 'ok   %s\n' "$name"
	else
		printf 'FAIL %s: %s\n' "$name" "$(printf '%s\n' "$output" | head -n 5)"
		failures=$((failures + 1))
	fi
}

check "weftd --help" "--node-name" weftd --help
check "weft-controller --help" "--lease-name" weft-controller --help
check "daemonset-wait usage" "usage: daemonset-wait NAMESPACE NAME" sh -c 'daemonset-wait 2>&1; true'
for plugin in weft portmap bandwidth loopback; do
	check "$plugin VERSION" '"supportedVersions"' \
		sh -c "echo '{\"cniVersion\":\"1.1.0\"}' | CNI_COMMAND=VERSION /usr/lib/weft/cni/$plugin"
done
# The plugins run on the node, not in the image: each must answer in a root holding
# nothing but itself (no libc, no loader).
mkdir "$work/bare"
for plugin in weft portmap bandwidth loopback; do
	cp "$rootfs/usr/lib/weft/cni/$plugin" "$work/bare/"
	if output=$(echo '{"cniVersion":"1.1.0"}' |
		env -i CNI_COMMAND=VERSION "$(command -v unshare)" --net "$(command -v chroot)" "$work/bare" "/$plugin" 2>&1) &&
		[[ $output == *'"supportedVersions"'* ]]; then
		printf 'ok   %s answers VERSION in an empty root (static)\n' "$plugin"
	else
		printf 'FAIL %s in an empty root: %s\n' "$plugin" "$output"
		failures=$((failures + 1))
	fi
done
check "nft --version" "nftables v" nft --version
# A table of the shape weftd writes (daemon/), applied and listed back, also as the
# JSON weftd reads (`nft -j`, libjansson).
check "nft applies weft's table" 'oifname != "weft*" masquerade' sh -c '
	printf "%s\n" "table inet weft {" " chain postrouting {" \
		"  type nat hook postrouting priority srcnat; policy accept;" \
		"  ip saddr 10.255.1.0/24 oifname != \"weft*\" masquerade" " }" \
		" chain tunnel-out {" "  type filter hook output priority raw; policy accept;" \
		"  udp dport 4789 notrack" " }" "}" | nft -f - && nft list table inet weft'
check "nft -j lists it as JSON" '{"nftables": [' sh -c '
	echo "table inet weft { chain c { type filter hook output priority raw; }; }" | nft -f - &&
	nft -j list table inet weft'
# The clean-up's route flush must take weft's routes (protocol 119) and nothing else.
check "ip route flush proto 119 keeps other routes" "198.51.100.0/24 dev lo proto static" sh -c '
	ip=/usr/sbin/ip
	$ip link set lo up &&
	$ip route add 192.0.2.0/24 dev lo proto 119 && $ip route add 198.51.100.0/24 dev lo proto static &&
	$ip -4 route flush proto 119 && $ip route show && ! $ip route show | grep -q 192.0.2.0'
mkdir "$rootfs/tmp/cni-bin"
install_script=$(cat "$repo/charts/weft/files/install-cni.sh")
check "install-cni.sh installs" "/tmp/cni-bin/portmap: installed" \
	sh -c "$install_script" install-cni.sh /usr/lib/weft/cni /tmp/cni-bin weft portmap bandwidth loopback
check "install-cni.sh leaves identical plugins alone" "/tmp/cni-bin/weft: up to date" \
	sh -c "$install_script" install-cni.sh /usr/lib/weft/cni /tmp/cni-bin weft portmap bandwidth loopback
check "installed plugins are the image's" "" \
	sh -c 'for p in weft portmap bandwidth loopback; do cmp /usr/lib/weft/cni/$p /tmp/cni-bin/$p || exit 1; [ -x /tmp/cni-bin/$p ] || exit 1; done'
# The uninstall clean-up on a node made of a fresh network namespace: weft's device,
# table, routes and files go; another route and another conflist stay.
mkdir "$rootfs/tmp/cni-conf"
touch "$rootfs/tmp/cni-conf/05-weft.conflist" "$rootfs/tmp/cni-conf/10-other.conflist"
cleanup_script=$(cat "$repo/charts/weft/files/cleanup.sh")
check "cleanup.sh removes weft and only weft" "left: 10-other.conflist 198.51.100.0/24" sh -c '
	ip=/usr/sbin/ip
	$ip link set lo up && $ip addr add 192.0.2.1/32 dev lo &&
	$ip link add weft-vxlan type vxlan id 1 dstport 4789 local 192.0.2.1 nolearning &&
	$ip route add 10.255.2.0/24 dev lo proto 119 && $ip route add 198.51.100.0/24 dev lo proto static &&
	echo "table inet weft { chain postrouting { type nat hook postrouting priority srcnat; }; }" | nft -f - &&
	echo "table ip weft-nat { chain postrouting { type nat hook postrouting priority srcnat; }; }" | nft -f - &&
	sh -c "$1" cleanup.sh /tmp/cni-conf/05-weft.conflist /tmp/cni-bin/weft /tmp/no-weftd.sock >/dev/null &&
	! $ip link show weft-vxlan 2>/dev/null && ! nft list table inet weft 2>/dev/null &&
	! nft list table ip weft-nat 2>/dev/null &&
	! $ip route show proto 119 | grep -q . && [ ! -e /tmp/cni-bin/weft ] && [ -e /tmp/cni-bin/portmap ] &&
	echo "left: $(ls /tmp/cni-conf) $($ip route show proto static)"' cleanup "$cleanup_script"

# weftd itself, standalone, on a node made of the fresh network namespace: it becomes
# ready (/readyz) and installs its nft table through the image's nft.
check "weftd serves and writes its nft table" "table " sh -c '
	ip=/usr/sbin/ip
	mount -t proc proc /proc && mkdir -p /run/weft &&
	$ip link set lo up && $ip link add uplink type veth peer name uplink-peer &&
	$ip link set uplink up && $ip link set uplink-peer up &&
	$ip addr add 192.0.2.1/24 dev uplink && $ip -6 addr add 2001:db8:ffff::1/64 dev uplink nodad &&
	$ip route add default via 192.0.2.254 dev uplink || exit 1
	weftd --node-name image-check --ipv6-prefix 2001:db8:1::/80 --ipv4-subnet 10.255.1.0/24 \
		--state-dir /run/weft/state --socket /run/weft/weftd.sock --metrics-addr 127.0.0.1:19641 \
		>/tmp/weftd.log 2>&1 &
	weftd=$!
	trap "kill \$weftd" EXIT
	for i in $(seq 50); do
		wget -q -O /dev/null http://127.0.0.1:19641/readyz 2>/dev/null && break
		sleep 0.2
	done
	wget -q -O /dev/null http://127.0.0.1:19641/readyz || { cat /tmp/weftd.log; exit 1; }
	nft list tables | grep weft'

# The node's side: a private containerd (e2e/setup.sh --cluster builds it) imports the
# tar under its name, as each node's does, and runs a program of it with runc.
bin=${WEFT_TOOLS_BIN:-${HOME:?}/.cache/weft/tools/bin}
if [ -x "$bin/containerd" ] && [ -x "$bin/ctr" ] && command -v runc >/dev/null; then
	mkdir "$work/containerd"
	cat >"$work/containerd/config.toml" <<EOF
version = 3
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.podsandbox.controller.v1.podsandbox"]
[grpc]
  address = "$work/containerd/sock"
[ttrpc]
  address = "$work/containerd/sock.ttrpc"
EOF
	# Its own mount namespace: its snapshot mounts go when it does.
	unshare --mount "$bin/containerd" --config "$work/containerd/config.toml" >"$work/containerd/log" 2>&1 &
	containerd=$!
	trap 'kill "$containerd" 2>/dev/null; wait "$containerd" 2>/dev/null; rm -rf "$work"' EXIT
	ctr=("$bin/ctr" --address "$work/containerd/sock" -n k8s.io)
	for _ in $(seq 50); do [ -S "$work/containerd/sock" ] && break; sleep 0.1; done
	name=$(sed -n 's/.*"io.containerd.image.name":"\([^"]*\)".*/\1/p' "$work/layout/index.json")
	if "${ctr[@]}" images import "$tar_file" >/dev/null 2>&1 &&
		"${ctr[@]}" images ls -q 2>/dev/null | grep -qx "$name" &&
		output=$(PATH=$bin:$PATH "${ctr[@]}" run --rm "$name" "weft-image-verify-$$" /usr/bin/weftd --version 2>/dev/null) &&
		[[ $output == "weftd "* ]]; then
		printf 'ok   ctr -n k8s.io images import names it %s; runc runs weftd --version in it\n' "$name"
	else
		printf 'FAIL containerd import or run of %s: %s\n' "$name" "$(tail -n 5 "$work/containerd/log")"
		failures=$((failures + 1))
	fi
else
	echo "skip containerd import: no containerd, ctr (e2e/setup.sh --cluster) or runc"
fi

echo "image $tag: $(du -sk --apparent-size "$rootfs" | cut -f1) KiB unpacked, $(($(stat -c %s "$tar_file") / 1024)) KiB as an OCI tar, $failures failure(s)"
[ "$failures" = 0 ]
