#!/usr/bin/env bash
# Builds weft's test Kubernetes binaries into BIN_DIR from the wrapper modules
# e2e/controlplane/update.sh pins. GROUP (default controlplane) says which:
#   controlplane  kube-apiserver, kubectl and kube-controller-manager (node IPAM, the
#                 anchor of e2e/bench-controller.sh) from kube/, etcd from etcd/
#   cluster       kube-scheduler, kubelet, kube-proxy and agnhost (the Kubernetes e2e
#                 suite's test image binary) from kube/, for e2e/cluster/
# Called by e2e/setup.sh, which decides when a build is needed; Go's module and build
# caches stay in their default places, so a rebuild of unchanged sources only links.
# Static (CGO_ENABLED=0), stripped (-s -w), -trimpath; the version is stamped the way
# Kubernetes' hack/lib/version.sh does, so /version and `kubectl version` tell the truth.
# Builds run under `nice -n 10`: the machine is shared with other compilers.
# Prints the versions built on stdout: KUBE_VERSION=... (and ETCD_VERSION=... for
# controlplane)
set -euo pipefail
BIN_DIR=${1:?usage: $0 BIN_DIR [controlplane|cluster]}
GROUP=${2:-controlplane}
cd "$(dirname "$0")"

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
export PATH GOTOOLCHAIN=local CGO_ENABLED=0

kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' kube/go.mod)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' etcd/go.mod)
[[ $kube_version =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "bad k8s.io/kubernetes version '$kube_version' in kube/go.mod" >&2; exit 1; }
minor=${BASH_REMATCH[1]}
[ -n "$etcd_version" ] || { echo "no etcd version in etcd/go.mod" >&2; exit 1; }

kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
	kube_ldflags+=" -X $p.gitTreeState=clean"
done
etcd_ldflags="-s -w"

mkdir -p "$BIN_DIR"
build() { # DIR OUT PACKAGE LDFLAGS: build to a temporary name, then rename (never half a binary)
	local start=$SECONDS
	echo "building $2 ($3)" >&2
	(cd "$1" && nice -n 10 go build -trimpath -ldflags="$4" -o "$BIN_DIR/.$2.tmp" "$3")
	mv -f "$BIN_DIR/.$2.tmp" "$BIN_DIR/$2"
	echo "built $2 in $((SECONDS - start)) s" >&2
}
# One at a time: each build already uses every core.
case $GROUP in
controlplane)
	build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
	build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
	build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
	build etcd etcd go.etcd.io/etcd/server/v3 "$etcd_ldflags"
	echo "KUBE_VERSION=$kube_version"
	echo "ETCD_VERSION=$etcd_version"
	;;
cluster)
	build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
	build kube kubelet k8s.io/kubernetes/cmd/kubelet "$kube_ldflags"
	build kube kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kube_ldflags"
	build kube agnhost k8s.io/kubernetes/test/images/agnhost "$kube_ldflags"
	echo "KUBE_VERSION=$kube_version"
	;;
*)
	echo "unknown group '$GROUP' (controlplane or cluster)" >&2
	exit 2
	;;
esac
