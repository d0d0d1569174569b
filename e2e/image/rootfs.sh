#!/usr/bin/env bash
# Assembles weft's runtime root filesystem: the one definition of what the image holds,
# used by e2e/image/build.sh (no registry: this machine's Debian files) and by the
# Dockerfile's runtime stage (a debian:bookworm-slim stage's files).
#
#   e2e/image/rootfs.sh ROOT WEFT_BIN_DIR GO_BIN_DIR
#
#   WEFT_BIN_DIR  weft (statically linked), weftd, weft-controller (cargo build --release)
#   GO_BIN_DIR    portmap, bandwidth, loopback (containernetworking/plugins) and
#                 daemonset-wait (e2e/image/daemonset-wait)
#
# ROOT gets exactly what the programs load, nothing else:
#   /usr/bin/weftd, /usr/bin/weft-controller   (the entry point is chosen per container)
#   /usr/lib/weft/cni/{weft,portmap,bandwidth,loopback}   (installed onto each node)
#   /usr/sbin/nft            weftd's egress NAT runs `nft -f -`
#   /usr/sbin/ip (iproute2)  the chart's clean-up; busybox's `ip route flush proto 119`
#                            ignores the protocol and flushes every route
#   /usr/bin/busybox + applet links   sh, cmp, cp, mv for the chart's scripts
#   /usr/bin/daemonset-wait  the chart's uninstall hook
#   the shared libraries `ldd` lists for weftd, weft-controller, nft and ip, with
#   /usr/share/weft/debian-files naming each file's Debian package and version.
# Why the ldd closure and not mmdebstrap of libnftables1 and its dependencies: it is the
# smallest image that works (a debootstrapped libc6 alone brings gconv modules, locale
# data and dpkg's database, megabytes the programs never open), and weftd and
# weft-controller were linked against this very glibc, so every symbol version they
# need is there. nft and ip dlopen nothing; glibc 2.36 has its files and dns NSS
# modules built in.
set -euo pipefail
root=${1:?usage: $0 ROOT WEFT_BIN_DIR GO_BIN_DIR}
weft_bin_dir=${2:?usage: $0 ROOT WEFT_BIN_DIR GO_BIN_DIR}
go_bin_dir=${3:?usage: $0 ROOT WEFT_BIN_DIR GO_BIN_DIR}

log() { printf 'image/rootfs.sh: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not found: apt-get install $2"; exit 1; }; }
need busybox busybox-static
need nft nftables
need ip iproute2
need ldd libc-bin
for b in weft weftd weft-controller; do
	[ -x "$weft_bin_dir/$b" ] || { log "missing $weft_bin_dir/$b"; exit 1; }
done
for b in portmap bandwidth loopback daemonset-wait; do
	[ -x "$go_bin_dir/$b" ] || { log "missing $go_bin_dir/$b"; exit 1; }
done
# The plugins run on the node, beside whatever libc it has: only static ones will do.
for b in "$weft_bin_dir/weft" "$go_bin_dir/portmap" "$go_bin_dir/bandwidth" "$go_bin_dir/loopback"; do
	linkage=$(ldd "$b" 2>&1 || true)
	[[ $linkage == *"not a dynamic executable"* || $linkage == *"statically linked"* ]] ||
		{ log "$b is dynamically linked; the plugins must be static"; exit 1; }
done
[ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || { log "$root is not empty"; exit 1; }

mkdir -p "$root"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64,lib/weft/cni,share/weft} "$root"/{etc,tmp,run,var,dev,proc,sys}
chmod 1777 "$root/tmp"
# Debian 12's merged /usr, so the paths ldd prints (/lib/..., /lib64/...) resolve.
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done

install -m 0755 "$weft_bin_dir/weftd" "$weft_bin_dir/weft-controller" "$go_bin_dir/daemonset-wait" "$root/usr/bin/"
install -m 0755 "$weft_bin_dir/weft" "$go_bin_dir/portmap" "$go_bin_dir/bandwidth" "$go_bin_dir/loopback" \
	"$root/usr/lib/weft/cni/"

manifest=$root/usr/share/weft/debian-files
: >"$manifest"
copy_debian_file() { # PATH: the file's content at the same path in ROOT, and its package
	local path=$1 package
	[ -e "$root$path" ] && return 0
	mkdir -p "$root$(dirname "$path")"
	cp -L "$path" "$root$path"
	# dpkg knows a merged-/usr file under the path its package shipped it.
	package=$(dpkg-query -S "$path" 2>/dev/null || dpkg-query -S "/usr$path" 2>/dev/null ||
		dpkg-query -S "${path#/usr}" 2>/dev/null || true)
	package=${package%%:*}
	[ -n "$package" ] || { log "no Debian package owns $path"; exit 1; }
	printf '%s %s %s\n' "$path" "$package" "$(dpkg-query -W -f='${Version}' "$package")" >>"$manifest"
}
nft=$(command -v nft)
ip=$(command -v ip)
busybox=$(command -v busybox)
for program in "$nft" "$ip" "$busybox"; do copy_debian_file "$program"; done
for program in "$weft_bin_dir/weftd" "$weft_bin_dir/weft-controller" "$nft" "$ip"; do
	for lib in $(ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		copy_debian_file "$lib"
	done
done
sort -o "$manifest" "$manifest"

# `busybox --list` names busybox itself; an applet never shadows a real program.
for applet in $(busybox --list); do
	[ "$applet" = busybox ] || [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] ||
		ln -s busybox "$root/usr/bin/$applet"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
log "root filesystem in $root: $(du -sk --apparent-size "$root" | cut -f1) KiB"
