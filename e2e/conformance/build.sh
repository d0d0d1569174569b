#!/usr/bin/env bash
# Builds the upstream Kubernetes e2e suite (network tests only; see e2e_test.go) into
# BIN_DIR/e2e.test from this wrapper module (update.sh pins it to the Kubernetes
# version of e2e/controlplane/kube/go.mod), unless BIN_DIR/e2e.test is already what the
# sources say: a stamp (BIN_DIR/e2e.test.stamp) names the version and hashes go.mod,
# go.sum, e2e_test.go and this script, so a second call returns at once.
# Static (CGO_ENABLED=0), stripped, -trimpath, the version stamped the way Kubernetes'
# hack/lib/version.sh does (the suite compares it with the server's); under `nice -n 10`
# (the machine is shared with other compilers). Go's caches stay in their default
# places. The first build compiles much of Kubernetes: minutes.
# Prints E2E_TEST=<path> on stdout; everything else goes to stderr.
#
# Usage: e2e/conformance/build.sh [BIN_DIR]   (default ~/.cache/weft/tools/bin)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN_DIR=${1:-${WEFT_TOOLS_DIR:-${HOME:?HOME must be set}/.cache/weft/tools}/bin}
OUT=$BIN_DIR/e2e.test
STAMP=$OUT.stamp

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
export PATH GOTOOLCHAIN=local CGO_ENABLED=0

kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$HERE/go.mod")
[[ $kube_version =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "bad k8s.io/kubernetes version '$kube_version' in $HERE/go.mod" >&2; exit 1; }
minor=${BASH_REMATCH[1]}
sources=$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/e2e_test.go" "$HERE/build.sh" | sha256sum | cut -c1-16)
want="kubernetes=$kube_version sources=$sources"

if [ -x "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
	echo "build.sh: e2e.test up to date ($want)" >&2
else
	ldflags="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ldflags+=" -X $p.gitTreeState=clean"
	done
	echo "build.sh: building e2e.test with $(go version): $want (minutes on 2 cores)" >&2
	rm -f "$STAMP" # a half-finished build must not look complete
	mkdir -p "$BIN_DIR"
	start=$SECONDS
	(cd "$HERE" && nice -n 10 go test -c -trimpath -ldflags="$ldflags" -o "$BIN_DIR/.e2e.test.tmp" .)
	mv -f "$BIN_DIR/.e2e.test.tmp" "$OUT"
	printf '%s\n' "$want" >"$STAMP"
	echo "build.sh: built e2e.test in $((SECONDS - start)) s" >&2
fi
echo "E2E_TEST=$OUT"
