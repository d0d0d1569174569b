#!/usr/bin/env bash
# Builds what the cluster tier (e2e/cluster/) runs besides the Kubernetes binaries
# (kubelet, kube-proxy, kube-scheduler and agnhost come from e2e/controlplane/build.sh
# cluster). Called by `e2e/setup.sh --cluster`, which decides when a build is needed.
#
#   build.sh containerd BIN_DIR
#       containerd, containerd-shim-runc-v2 and ctr from the wrapper module containerd/
#       (e2e/cluster/update.sh pins it): static (CGO_ENABLED=0), -tags no_btrfs (no
#       btrfs headers needed), stripped, the version stamped the way containerd's
#       Makefile does.
#   build.sh coredns BIN_DIR
#       coredns from the wrapper module coredns/ (e2e/cluster/update.sh pins it; the
#       version kubeadm of the pinned Kubernetes deploys): static, stripped, the
#       version stamped the way CoreDNS's Makefile stamps its commit.
#   build.sh coredns-image BIN_DIR IMAGES_DIR
#       coredns.tar  registry.k8s.io/coredns/coredns:<version>: BIN_DIR/coredns alone
#                    on an empty root (a static binary needs nothing else), entry point
#                    /coredns, like upstream's distroless image
#   build.sh images BIN_DIR IMAGES_DIR
#       The two images every node imports (nothing is ever pulled: no registry is
#       reachable), as OCI archives for `ctr images import`:
#         pause.tar    registry.k8s.io/pause:$PAUSE_VERSION, Kubernetes'
#                      build/pause/linux/pause.c compiled statically (from the pinned
#                      k8s.io/kubernetes module), user 65535, like upstream's
#         agnhost.tar  registry.k8s.io/e2e-test-images/agnhost:<its VERSION file>: the
#                      pinned agnhost binary (BIN_DIR/agnhost) on a Debian root
#                      filesystem (mmdebstrap) with sh, bash, ping, curl, OpenBSD
#                      netcat, iproute2 and dig: what the upstream e2e helpers run
#       umoci assembles each image; the layout's ref.name is the tag.
# Go builds run under `nice -n 10` (the machine is shared with other compilers); Go's
# module and build caches stay in their default places.
# Prints what it built on stdout: CONTAINERD_VERSION=..., COREDNS_VERSION=...,
# COREDNS_IMAGE=... or PAUSE_IMAGE=... AGNHOST_IMAGE=...
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

# pause 3.10.1: the version kubeadm 1.35 deploys (cmd/kubeadm/app/constants PauseVersion)
# and build/pause/Makefile's TAG; checked against the pinned module below.
PAUSE_VERSION=3.10.1
# The test image's root filesystem: Debian 12 (the machine's release), essential
# packages plus what the Kubernetes e2e helpers exec inside agnhost pods.
DEBIAN_SUITE=bookworm
TEST_IMAGE_PACKAGES=bash,curl,netcat-openbsd,iputils-ping,iproute2,dnsutils,procps

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
export PATH GOTOOLCHAIN=local

log() { printf 'build.sh: %s\n' "$*" >&2; }

build_containerd() { # BIN_DIR
	local bin_dir=$1 module=github.com/containerd/containerd/v2 version ldflags
	version=$(awk -v m="$module" '$1 == m { print $2 }' "$HERE/containerd/go.mod")
	[ -n "$version" ] || { log "no $module version in $HERE/containerd/go.mod"; exit 1; }
	ldflags="-s -w -X $module/version.Version=$version -X $module/version.Package=$module"
	mkdir -p "$bin_dir"
	local cmd start
	for cmd in containerd containerd-shim-runc-v2 ctr; do
		start=$SECONDS
		log "building $cmd ($module/cmd/$cmd $version)"
		(cd "$HERE/containerd" && CGO_ENABLED=0 nice -n 10 go build -trimpath -tags no_btrfs \
			-ldflags="$ldflags" -o "$bin_dir/.$cmd.tmp" "$module/cmd/$cmd")
		mv -f "$bin_dir/.$cmd.tmp" "$bin_dir/$cmd"
		log "built $cmd in $((SECONDS - start)) s"
	done
	echo "CONTAINERD_VERSION=$version"
}

# coredns_version: the version the wrapper module coredns/ pins.
coredns_version() {
	local version
	version=$(awk '$1 == "github.com/coredns/coredns" { print $2 }' "$HERE/coredns/go.mod")
	[ -n "$version" ] || { log "no github.com/coredns/coredns version in $HERE/coredns/go.mod"; exit 1; }
	echo "$version"
}

build_coredns() { # BIN_DIR
	local bin_dir=$1 module=github.com/coredns/coredns version start=$SECONDS
	version=$(coredns_version)
	mkdir -p "$bin_dir"
	log "building coredns ($module $version)"
	(cd "$HERE/coredns" && CGO_ENABLED=0 nice -n 10 go build -trimpath \
		-ldflags="-s -w -X $module/coremain.GitCommit=$version" -o "$bin_dir/.coredns.tmp.$$" "$module")
	mv -f "$bin_dir/.coredns.tmp.$$" "$bin_dir/coredns"
	log "built coredns in $((SECONDS - start)) s"
	echo "COREDNS_VERSION=$version"
}

build_coredns_image() { # BIN_DIR IMAGES_DIR
	local bin_dir=$1 images_dir=$2 version work
	version=$(coredns_version)
	[ -x "$bin_dir/coredns" ] || { log "$bin_dir/coredns missing ($0 coredns $bin_dir)"; exit 1; }
	command -v umoci >/dev/null || { log "umoci not found (e2e/setup.sh --cluster installs it)"; exit 1; }
	mkdir -p "$images_dir"
	work=$(mktemp -d "${TMPDIR:-/tmp}/weft-coredns-image.XXXXXX")
	# shellcheck disable=SC2064 # expand now: the trap must remove this directory
	trap "rm -rf '$work'" EXIT
	fill_coredns() { install -m 0755 "$bin_dir/coredns" "$1/coredns"; }
	oci_image "$work/coredns" "$version" fill_coredns --config.entrypoint=/coredns
	archive "$work/coredns" "$images_dir/coredns.tar"
	echo "COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$version"
}

# kube_module_dir: the pinned k8s.io/kubernetes module's source (downloaded if need be).
kube_module_dir() {
	local version
	version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$HERE/../controlplane/kube/go.mod")
	(cd "$HERE/../controlplane/kube" && go mod download -json "k8s.io/kubernetes@$version") |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# oci_image LAYOUT TAG ROOTFS_FILLER CONFIG_ARGS...: a one-layer image in a new OCI layout;
# ROOTFS_FILLER is a command run with the bundle's rootfs directory as its argument.
oci_image() {
	local layout=$1 tag=$2 filler=$3
	shift 3
	local bundle=$layout.bundle
	umoci init --layout "$layout"
	umoci new --image "$layout:$tag"
	umoci unpack --image "$layout:$tag" "$bundle"
	"$filler" "$bundle/rootfs"
	umoci repack --image "$layout:$tag" "$bundle"
	umoci config --image "$layout:$tag" "$@"
	umoci gc --layout "$layout"
	rm -rf "$bundle"
}

# archive LAYOUT OUT: the layout as one tar for `ctr images import` (temp + rename).
archive() {
	tar -C "$1" -cf "$2.tmp" .
	mv -f "$2.tmp" "$2"
}

build_images() { # BIN_DIR IMAGES_DIR
	local bin_dir=$1 images_dir=$2 kube_dir work start
	[ -x "$bin_dir/agnhost" ] || { log "$bin_dir/agnhost missing (e2e/controlplane/build.sh BIN_DIR cluster)"; exit 1; }
	for tool in umoci mmdebstrap gcc; do
		command -v "$tool" >/dev/null || { log "$tool not found (e2e/setup.sh --cluster installs it)"; exit 1; }
	done
	kube_dir=$(kube_module_dir)
	[ -f "$kube_dir/build/pause/linux/pause.c" ] || { log "no build/pause/linux/pause.c in '$kube_dir'"; exit 1; }
	local makefile_tag agnhost_version
	makefile_tag=$(awk '$1 == "TAG" && $2 == "?=" { print $3 }' "$kube_dir/build/pause/Makefile")
	[ "$makefile_tag" = "$PAUSE_VERSION" ] ||
		{ log "the pinned Kubernetes builds pause $makefile_tag, this script says $PAUSE_VERSION: update PAUSE_VERSION"; exit 1; }
	agnhost_version=$(tr -d '[:space:]' <"$kube_dir/test/images/agnhost/VERSION")
	mkdir -p "$images_dir"
	work=$(mktemp -d "${TMPDIR:-/tmp}/weft-images.XXXXXX")
	# shellcheck disable=SC2064 # expand now: the trap must remove this directory
	trap "rm -rf '$work'" EXIT

	start=$SECONDS
	log "building the pause image $PAUSE_VERSION"
	# Upstream's flags (build/pause/Makefile CFLAGS).
	gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-weft" \
		-o "$work/pause.bin" "$kube_dir/build/pause/linux/pause.c"
	fill_pause() { install -m 0755 "$work/pause.bin" "$1/pause"; }
	oci_image "$work/pause" "$PAUSE_VERSION" fill_pause \
		--config.user=65535:65535 --config.entrypoint=/pause
	archive "$work/pause" "$images_dir/pause.tar"
	log "pause image built in $((SECONDS - start)) s"

	start=$SECONDS
	log "building the agnhost image $agnhost_version (mmdebstrap $DEBIAN_SUITE: $TEST_IMAGE_PACKAGES)"
	nice -n 10 mmdebstrap --variant=essential --include="$TEST_IMAGE_PACKAGES" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		"$DEBIAN_SUITE" "$work/rootfs.tar" >&2
	fill_agnhost() {
		tar -C "$1" --numeric-owner -xf "$work/rootfs.tar"
		install -m 0755 "$bin_dir/agnhost" "$1/agnhost"
		ln -sf agnhost "$1/agnhost-2" # the entrypoint-tester specs run agnhost-2
		mkdir -p "$1/uploads"         # netexec's upload directory
	}
	oci_image "$work/agnhost" "$agnhost_version" fill_agnhost \
		--config.entrypoint=/agnhost --config.cmd=pause
	archive "$work/agnhost" "$images_dir/agnhost.tar"
	log "agnhost image built in $((SECONDS - start)) s"

	echo "PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_VERSION"
	echo "AGNHOST_IMAGE=registry.k8s.io/e2e-test-images/agnhost:$agnhost_version"
}

case ${1:-} in
containerd) build_containerd "${2:?usage: $0 containerd BIN_DIR}" ;;
coredns) build_coredns "${2:?usage: $0 coredns BIN_DIR}" ;;
coredns-image) build_coredns_image "${2:?usage: $0 coredns-image BIN_DIR IMAGES_DIR}" "${3:?usage: $0 coredns-image BIN_DIR IMAGES_DIR}" ;;
images) build_images "${2:?usage: $0 images BIN_DIR IMAGES_DIR}" "${3:?usage: $0 images BIN_DIR IMAGES_DIR}" ;;
*)
	echo "usage: $0 containerd BIN_DIR | coredns BIN_DIR | coredns-image BIN_DIR IMAGES_DIR | images BIN_DIR IMAGES_DIR" >&2
	exit 2
	;;
esac
