#!/usr/bin/env bash
# Prepare a Debian 12 machine with the real tools weft's tests drive:
#   - Debian packages: iproute2, nftables, iptables, ping, iperf3, procps,
#     Debian's CNI reference plugins (/usr/lib/cni) and prometheus/promtool.
#   - Pinned Go builds: cnitool (CNI 1.1.0: gc/status) and the upstream
#     reference plugins (CNI 1.1.0 capable), in a cache dir.
#   - The test control plane: kube-apiserver, kubectl and etcd, built from the
#     wrapper Go modules in e2e/controlplane/ (their go.mod/go.sum are the pins;
#     e2e/controlplane/update.sh regenerates them), in the same cache dir.
#     The first build compiles Kubernetes (long); later runs only check a stamp.
#   - helm v4 from the wrapper module in e2e/helm/ (the chart's tests use it).
#   - With --cluster, also the cluster tier's (e2e/cluster/): runc, umoci, mmdebstrap
#     and gcc from Debian; kube-scheduler, kubelet, kube-proxy and agnhost from the same
#     wrapper module as the control plane; containerd, its runc shim and ctr from
#     e2e/cluster/containerd/; the pause and agnhost images as OCI archives (built here,
#     never pulled). Stamped like the control plane: binaries and images separately.
#
# Idempotent: a second run does no apt and no Go work and takes well under a second.
# Only the final KEY=VALUE lines go to stdout, so callers can do:
#   eval "$(e2e/setup.sh)"            (or: eval "$(e2e/setup.sh --cluster)")
# Everything else goes to stderr.
set -euo pipefail

CLUSTER=
for arg in "$@"; do
	case $arg in
	--cluster) CLUSTER=1 ;;
	*) echo "setup.sh: unknown argument '$arg' (--cluster)" >&2; exit 2 ;;
	esac
done

# Keep fd 3 as the real stdout for the final lines; all chatter -> stderr.
exec 3>&1 1>&2

# ---- pinned versions (the stamp below is derived from these) --------------
# cni v1.3.1: newest release; its cnitool has `gc` and `status` (spec 1.1.0).
CNI_VERSION=v1.3.1
# plugins v1.9.1: newest v1.x release; plugins speak CNI up to 1.1.0.
PLUGINS_VERSION=v1.9.1
PLUGINS=(
	main/bridge main/loopback main/ptp
	ipam/host-local
	meta/portmap meta/bandwidth meta/tuning
)

APT_PACKAGES=(
	iproute2 nftables iptables containernetworking-plugins
	iputils-ping iperf3 procps prometheus openssl conntrack
)
# The cluster tier: the OCI runtime, the image tools, busybox for weft's image (the
# chart's scripts), a C compiler and binutils for the static pause binary and the
# image's stripped programs, and curl (readiness checks inside nodes).
CLUSTER_APT_PACKAGES=(runc umoci mmdebstrap busybox-static gcc binutils libc6-dev curl)

TOOLS_DIR=${WEFT_TOOLS_DIR:-${HOME:?HOME must be set}/.cache/weft/tools}
BIN_DIR=$TOOLS_DIR/bin
PLUGINS_DIR=$TOOLS_DIR/plugins
STAMP=$TOOLS_DIR/versions.stamp
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
CONTROLPLANE_SRC=$E2E_DIR/controlplane
CLUSTER_SRC=$E2E_DIR/cluster
CLUSTER_STAMP=$TOOLS_DIR/cluster.stamp
CLUSTER_BINS=(kube-scheduler kubelet kube-proxy agnhost containerd containerd-shim-runc-v2 ctr)
IMAGES_DIR=$TOOLS_DIR/images
IMAGES_STAMP=$IMAGES_DIR/images.stamp
CONTROLPLANE_STAMP=$TOOLS_DIR/controlplane.stamp
HELM_SRC=$(cd "$(dirname "$0")" && pwd)/helm
HELM_STAMP=$TOOLS_DIR/helm.stamp
CONTROLPLANE_BINS=(kube-apiserver kubectl etcd kube-controller-manager)

log() { printf 'setup.sh: %s\n' "$*" >&2; }

# stamp_ok STAMP WANT DIR NAME...: STAMP says WANT and every DIR/NAME is executable.
stamp_ok() {
	local stamp=$1 want=$2 dir=$3 n
	shift 3
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] || return 1
	for n in "$@"; do [ -x "$dir/$n" ] || return 1; done
}

# require_built DIR NAME...: exits naming the first DIR/NAME a build did not leave.
require_built() {
	local dir=$1 n
	shift
	for n in "$@"; do
		[ -x "$dir/$n" ] || { log "missing $dir/$n after build"; exit 1; }
	done
}

# go_build_behind_stamp WHAT STAMP WANT BUILD BIN...: unless STAMP already says WANT and
# every BIN is in BIN_DIR, runs the command BUILD (stdout discarded), checks that it
# left every BIN and records WANT. A half-finished build never looks complete.
go_build_behind_stamp() {
	local what=$1 stamp=$2 want=$3 build=$4 start
	shift 4
	if stamp_ok "$stamp" "$want" "$BIN_DIR" "$@"; then
		log "$what up to date ($want)"
		return
	fi
	command -v go >/dev/null || { log "go not found (expected /usr/local/go/bin/go)"; exit 1; }
	log "building $what with $(go version): $want"
	rm -f "$stamp"
	start=$SECONDS
	"$build" >/dev/null
	require_built "$BIN_DIR" "$@"
	log "$what built in $((SECONDS - start)) s"
	printf '%s\n' "$want" >"$stamp"
}

# Serialise concurrent runs (apt and the Go builds are not safe to race).
mkdir -p "$TOOLS_DIR"
exec 9>"$TOOLS_DIR/.lock"
if ! flock -n 9; then
	log "another setup.sh holds $TOOLS_DIR/.lock; waiting"
	flock 9
fi

# ---- apt --------------------------------------------------------------------
is_installed() {
	# `dpkg -s` also succeeds for removed-but-not-purged packages; check status.
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
[ -z "$CLUSTER" ] || APT_PACKAGES+=("${CLUSTER_APT_PACKAGES[@]}")
for pkg in "${APT_PACKAGES[@]}"; do
	is_installed "$pkg" || missing+=("$pkg")
done

POLICY_RC=/usr/sbin/policy-rc.d
created_policy_rc=
cleanup() {
	if [ -n "$created_policy_rc" ]; then rm -f "$POLICY_RC"; fi
}
trap cleanup EXIT

if [ "${#missing[@]}" -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for another apt/dpkg instead of failing on its lock.
	apt_opts=(-y -qq -o DPkg::Lock::Timeout=300)
	apt-get "${apt_opts[@]}" update
	# We run prometheus by hand with our own config; stop package maintainer
	# scripts from starting its daemon (it would take :9090). policy-rc.d
	# exit 101 = "action forbidden"; honoured by invoke-rc.d and
	# deb-systemd-invoke. Only add it if the host has none (containers often do).
	if [ ! -e "$POLICY_RC" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
		chmod 755 "$POLICY_RC"
		created_policy_rc=1
	fi
	# No recommends: prometheus recommends prometheus-node-exporter (another
	# daemon, :9100) which the tests do not want.
	apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
	cleanup
	created_policy_rc=
fi

# The package enables prometheus.service for the next boot; disable it so a
# daemon on :9090 never competes with the one the tests start. Cheap, so it
# runs every time. `systemctl disable` also works offline (no systemd as
# PID 1, e.g. containers); `--now` (stop) only where systemd is running.
if command -v systemctl >/dev/null; then
	if [ -d /run/systemd/system ]; then
		if systemctl is-enabled --quiet prometheus.service 2>/dev/null ||
			systemctl is-active --quiet prometheus.service 2>/dev/null; then
			log "stopping and disabling Debian's prometheus.service"
			systemctl disable --now prometheus.service >/dev/null 2>&1 || true
		fi
	elif systemctl is-enabled --quiet prometheus.service 2>/dev/null; then
		log "disabling Debian's prometheus.service (systemd not running)"
		systemctl disable prometheus.service >/dev/null 2>&1 || true
	fi
fi

PROMETHEUS=$(command -v prometheus || echo /usr/bin/prometheus)
[ -x "$PROMETHEUS" ] || { log "prometheus binary not found"; exit 1; }
[ -x /usr/lib/cni/bridge ] || { log "Debian CNI plugins missing in /usr/lib/cni"; exit 1; }

# ---- Go builds --------------------------------------------------------------
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
export PATH
# Never try to download a newer Go toolchain (only the module proxy is reachable).
export GOTOOLCHAIN=local
# Static binaries, like upstream's release builds, and no need for a C compiler.
export CGO_ENABLED=0

plugin_names=()
for p in "${PLUGINS[@]}"; do plugin_names+=("${p##*/}"); done

want_stamp="cni=$CNI_VERSION plugins=$PLUGINS_VERSION list=${plugin_names[*]} cgo=0 ldflags=1"

tools_ok() {
	[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] || return 1
	[ -x "$BIN_DIR/cnitool" ] || return 1
	local n
	for n in "${plugin_names[@]}"; do [ -x "$PLUGINS_DIR/$n" ] || return 1; done
}

if tools_ok; then
	log "Go tools up to date ($want_stamp)"
else
	command -v go >/dev/null || { log "go not found (expected /usr/local/go/bin/go)"; exit 1; }
	log "building Go tools with $(go version): $want_stamp"
	rm -f "$STAMP" # a half-finished build must not look complete
	mkdir -p "$BIN_DIR" "$PLUGINS_DIR"
	# Both modules are plain (no replace directives), so `go install mod@ver`
	# works; module and build caches stay in Go's defaults for fast reruns.
	GOBIN=$BIN_DIR go install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
	pkgs=()
	for p in "${PLUGINS[@]}"; do
		pkgs+=("github.com/containernetworking/plugins/plugins/$p@$PLUGINS_VERSION")
	done
	# Stamp the version the way upstream's build_linux.sh does (else "version unknown").
	GOBIN=$PLUGINS_DIR go install \
		-ldflags "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$PLUGINS_VERSION" \
		"${pkgs[@]}"
	tools_ok_files=1
	for n in "${plugin_names[@]}"; do
		[ -x "$PLUGINS_DIR/$n" ] || { log "missing $PLUGINS_DIR/$n after build"; tools_ok_files=; }
	done
	[ -n "$tools_ok_files" ] || exit 1
	printf '%s\n' "$want_stamp" >"$STAMP"
fi

# ---- the test control plane (kube-apiserver, kubectl, etcd) --------------------
# The pins are the wrapper modules' go.mod and go.sum; the stamp names the versions
# and hashes those files and the build script, so any change rebuilds (from Go's
# caches: unchanged packages are not compiled again).
kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$CONTROLPLANE_SRC/kube/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$CONTROLPLANE_SRC/etcd/go.mod")
controlplane_hash=$(cat "$CONTROLPLANE_SRC"/kube/go.mod "$CONTROLPLANE_SRC"/kube/go.sum \
	"$CONTROLPLANE_SRC"/etcd/go.mod "$CONTROLPLANE_SRC"/etcd/go.sum \
	"$CONTROLPLANE_SRC"/build.sh | sha256sum | cut -c1-16)
want_controlplane="kubernetes=$kube_version etcd=$etcd_version sources=$controlplane_hash"

build_controlplane() {
	log "(the first build compiles Kubernetes: about ten minutes on 2 cores)"
	"$CONTROLPLANE_SRC/build.sh" "$BIN_DIR"
}
go_build_behind_stamp "the control plane" "$CONTROLPLANE_STAMP" "$want_controlplane" \
	build_controlplane "${CONTROLPLANE_BINS[@]}"

# ---- helm (the chart's tests render and install charts/weft with it) -------------
helm_version=$(awk '$1 == "helm.sh/helm/v4" { print $2 }' "$HELM_SRC/go.mod")
helm_hash=$(cat "$HELM_SRC"/go.mod "$HELM_SRC"/go.sum "$HELM_SRC"/build.sh | sha256sum | cut -c1-16)
want_helm="helm=$helm_version sources=$helm_hash"
build_helm() { "$HELM_SRC/build.sh" "$BIN_DIR"; }
go_build_behind_stamp helm "$HELM_STAMP" "$want_helm" build_helm helm

# ---- the cluster tier (--cluster) -----------------------------------------------------
# Binaries: the same kube module as the control plane plus the containerd module; the
# stamp hashes both modules and both build scripts. Images: the stamp hashes the image
# recipe (e2e/cluster/build.sh) and the agnhost binary they carry.
if [ -n "$CLUSTER" ]; then
	containerd_version=$(awk '$1 == "github.com/containerd/containerd/v2" { print $2 }' "$CLUSTER_SRC/containerd/go.mod")
	cluster_hash=$(cat "$CONTROLPLANE_SRC"/kube/go.mod "$CONTROLPLANE_SRC"/kube/go.sum \
		"$CONTROLPLANE_SRC"/build.sh "$CLUSTER_SRC"/containerd/go.mod \
		"$CLUSTER_SRC"/containerd/go.sum "$CLUSTER_SRC"/build.sh | sha256sum | cut -c1-16)
	want_cluster="kubernetes=$kube_version containerd=$containerd_version sources=$cluster_hash"

	build_cluster() {
		"$CONTROLPLANE_SRC/build.sh" "$BIN_DIR" cluster
		"$CLUSTER_SRC/build.sh" containerd "$BIN_DIR"
	}
	go_build_behind_stamp "the cluster tier" "$CLUSTER_STAMP" "$want_cluster" \
		build_cluster "${CLUSTER_BINS[@]}"

	want_images="recipe=$(sha256sum <"$CLUSTER_SRC/build.sh" | cut -c1-16) agnhost=$(sha256sum <"$BIN_DIR/agnhost" | cut -c1-16)"
	if stamp_ok "$IMAGES_STAMP" "$want_images" "$IMAGES_DIR" && [ -f "$IMAGES_DIR/pause.tar" ] &&
		[ -f "$IMAGES_DIR/agnhost.tar" ] && [ -f "$IMAGES_DIR/images.env" ]; then
		log "cluster images up to date ($want_images)"
	else
		log "building the cluster images: $want_images"
		rm -f "$IMAGES_STAMP"
		start=$SECONDS
		mkdir -p "$IMAGES_DIR"
		"$CLUSTER_SRC/build.sh" images "$BIN_DIR" "$IMAGES_DIR" >"$IMAGES_DIR/images.env.tmp"
		mv -f "$IMAGES_DIR/images.env.tmp" "$IMAGES_DIR/images.env"
		log "cluster images built in $((SECONDS - start)) s"
		printf '%s\n' "$want_images" >"$IMAGES_STAMP"
	fi
fi

# ---- result for `eval` --------------------------------------------------------
printf 'WEFT_TOOLS_BIN=%q\n' "$BIN_DIR" >&3
printf 'WEFT_CNI_PLUGINS=%q\n' "$PLUGINS_DIR" >&3
printf 'PROMETHEUS=%q\n' "$PROMETHEUS" >&3
printf 'WEFT_KUBE_BIN=%q\n' "$BIN_DIR" >&3
printf 'KUBE_APISERVER=%q\n' "$BIN_DIR/kube-apiserver" >&3
printf 'ETCD=%q\n' "$BIN_DIR/etcd" >&3
printf 'KUBECTL=%q\n' "$BIN_DIR/kubectl" >&3
printf 'HELM=%q\n' "$BIN_DIR/helm" >&3
if [ -n "$CLUSTER" ]; then
	printf 'WEFT_CLUSTER_IMAGES=%q\n' "$IMAGES_DIR" >&3
	# PAUSE_IMAGE=... and AGNHOST_IMAGE=...: the image references the archives carry.
	cat "$IMAGES_DIR/images.env" >&3
fi
