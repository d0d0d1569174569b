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
#   build.sh prometheus BIN_DIR
#       prometheus from the wrapper module prometheus/ (update.sh pins it): static,
#       stripped, its version stamped as Prometheus' promu does; without the web UI's
#       assets (the checks use the HTTP API only).
#   build.sh prometheus-image BIN_DIR IMAGES_DIR
#       prometheus.tar  weft.dev/e2e/prometheus:<version>: BIN_DIR/prometheus alone,
#                       entry point /prometheus, user 65534
#   build.sh images BIN_DIR IMAGES_DIR
#       The two images every node imports (nothing is ever pulled: no registry is
#       reachable), as OCI archives for `ctr images import`:
#         pause.tar    registry.k8s.io/pause:$PAUSE_VERSION, Kubernetes'
#                      build/pause/linux/pause.c compiled statically (from the pinned
#                      k8s.io/kubernetes module), user 65535, like upstream's
#         agnhost.tar  registry.k8s.io/e2e-test-images/agnhost:<its VERSION file>: the
#                      pinned agnhost binary (BIN_DIR/agnhost) on a Debian root
#                      filesystem (mmdebstrap) with sh, bash, ping, curl, OpenBSD
#                      netcat, iproute2 and dig: what the upstream e2e helpers run;
#                      porter's /localhost.crt and /localhost.key, like upstream's
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
	version=$(module_version containerd "$module")
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

# module_version DIR MODULE: the version the wrapper module DIR pins of MODULE.
module_version() {
	local version
	version=$(awk -v m="$2" '$1 == m { print $2 }' "$HERE/$1/go.mod")
	[ -n "$version" ] || { log "no $2 version in $HERE/$1/go.mod"; exit 1; }
	echo "$version"
}

# go_program WRAPPER_DIR PACKAGE BIN_DIR NAME LDFLAGS: one static Go program from a wrapper
# module, to a per-process temporary name, then renamed (two runs may build it at once).
go_program() {
	local dir=$1 package=$2 bin_dir=$3 name=$4 ldflags=$5 start=$SECONDS
	mkdir -p "$bin_dir"
	log "building $name ($package)"
	(cd "$HERE/$dir" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags="-s -w $ldflags" \
		-o "$bin_dir/.$name.tmp.$$" "$package")
	mv -f "$bin_dir/.$name.tmp.$$" "$bin_dir/$name"
	log "built $name in $((SECONDS - start)) s"
}

# binary_image BIN_DIR IMAGES_DIR NAME TAG CONFIG_ARGS...: IMAGES_DIR/NAME.tar, an image
# holding BIN_DIR/NAME alone as /NAME (a static program needs nothing else).
binary_image() {
	local bin_dir=$1 images_dir=$2 name=$3 tag=$4 work
	shift 4
	[ -x "$bin_dir/$name" ] || { log "$bin_dir/$name missing ($0 $name $bin_dir)"; exit 1; }
	command -v umoci >/dev/null || { log "umoci not found (e2e/setup.sh --cluster installs it)"; exit 1; }
	mkdir -p "$images_dir"
	work=$(mktemp -d "${TMPDIR:-/tmp}/weft-$name-image.XXXXXX")
	# shellcheck disable=SC2064 # expand now: the trap must remove this directory
	trap "rm -rf '$work'" EXIT
	fill_binary() { install -m 0755 "$bin_dir/$name" "$1/$name"; }
	oci_image "$work/$name" "$tag" fill_binary --config.entrypoint="/$name" "$@"
	archive "$work/$name" "$images_dir/$name.tar"
}

build_coredns() { # BIN_DIR
	local module=github.com/coredns/coredns version
	version=$(module_version coredns "$module")
	go_program coredns "$module" "$1" coredns "-X $module/coremain.GitCommit=$version"
	echo "COREDNS_VERSION=$version"
}

build_coredns_image() { # BIN_DIR IMAGES_DIR
	local version
	version=$(module_version coredns github.com/coredns/coredns)
	binary_image "$1" "$2" coredns "$version"
	echo "COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$version"
}

build_prometheus() { # BIN_DIR
	local module=github.com/prometheus/prometheus version
	version=$(module_version prometheus "$module")
	go_program prometheus "$module/cmd/prometheus" "$1" prometheus \
		"-X github.com/prometheus/common/version.Version=$version"
	echo "PROMETHEUS_VERSION=$version"
}

build_prometheus_image() { # BIN_DIR IMAGES_DIR
	local version
	version=$(module_version prometheus github.com/prometheus/prometheus)
	binary_image "$1" "$2" prometheus "$version" --config.user=65534:65534
	echo "PROMETHEUS_IMAGE=weft.dev/e2e/prometheus:$version"
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
	[ -f "$kube_dir/test/images/agnhost/porter/localhost.key" ] || { log "no test/images/agnhost/porter/localhost.key in '$kube_dir'"; exit 1; }
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
		# porter's TLS ports serve these (upstream's Dockerfile: ADD porter/localhost.{crt,key});
		# without them the Proxy spec's https ports never listen.
		install -m 0644 "$kube_dir/test/images/agnhost/porter/localhost.crt" \
			"$kube_dir/test/images/agnhost/porter/localhost.key" "$1/"
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
prometheus) build_prometheus "${2:?usage: $0 prometheus BIN_DIR}" ;;
prometheus-image) build_prometheus_image "${2:?usage: $0 prometheus-image BIN_DIR IMAGES_DIR}" "${3:?usage: $0 prometheus-image BIN_DIR IMAGES_DIR}" ;;
coredns-image) build_coredns_image "${2:?usage: $0 coredns-image BIN_DIR IMAGES_DIR}" "${3:?usage: $0 coredns-image BIN_DIR IMAGES_DIR}" ;;
images) build_images "${2:?usage: $0 images BIN_DIR IMAGES_DIR}" "${3:?usage: $0 images BIN_DIR IMAGES_DIR}" ;;
*)
	echo "usage: $0 containerd BIN_DIR | coredns BIN_DIR | coredns-image BIN_DIR IMAGES_DIR | prometheus BIN_DIR | prometheus-image BIN_DIR IMAGES_DIR | images BIN_DIR IMAGES_DIR" >&2
	exit 2
	;;
esac
