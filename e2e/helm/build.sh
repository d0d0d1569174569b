#!/usr/bin/env bash
# Builds helm (the version go.mod pins: tool helm.sh/helm/v4/cmd/helm) into BIN_DIR, for
# the chart tests (e2e/tests/chart.rs) and the cluster tier's `helm install`. Static
# (CGO_ENABLED=0), stripped, -trimpath, version stamped as helm's Makefile does, built
# under `nice` so it yields to the engineers' cargo builds. Written to a temporary name
# and renamed: never half a binary. Prints HELM_VERSION=... on stdout.
#
# e2e/setup.sh decides when to call it, from a stamp of the version and this directory's
# go.mod, go.sum and build.sh (the same way it builds the control plane).
set -euo pipefail
BIN_DIR=${1:?usage: $0 BIN_DIR}
cd "$(dirname "$0")"

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
export PATH GOTOOLCHAIN=local CGO_ENABLED=0

version=$(awk '$1 == "helm.sh/helm/v4" { print $2 }' go.mod)
[[ $version =~ ^v4\.[0-9]+\.[0-9]+$ ]] || { echo "bad helm.sh/helm/v4 version '$version' in go.mod" >&2; exit 1; }
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

mkdir -p "$BIN_DIR"
start=$SECONDS
echo "building helm $version" >&2
nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$BIN_DIR/.helm.tmp" helm.sh/helm/v4/cmd/helm
mv -f "$BIN_DIR/.helm.tmp" "$BIN_DIR/helm"
echo "built helm in $((SECONDS - start)) s" >&2
echo "HELM_VERSION=$version"
