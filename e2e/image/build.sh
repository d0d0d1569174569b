#!/usr/bin/env bash
# Builds weft's container image with no registry: the Dockerfile's runtime stage, made
# by e2e/image/rootfs.sh from prebuilt binaries and this machine's Debian files, packed
# by umoci into an OCI image layout and written as a tar that
# `ctr -n k8s.io images import FILE` accepts. Nothing is pulled.
#
#   e2e/image/build.sh [--bin-dir DIR] [--plugin FILE] [--plugins DIR] [--tag NAME:TAG]
#                      [--revision REV] [--out FILE]
#
#   --bin-dir   weftd, weft-controller (default: target/release, from
#               cargo build --release --locked --bins -p weftd -p weft-controller)
#   --plugin    the weft plugin, statically linked: it runs on each node, whatever its
#               libc (default: target/x86_64-unknown-linux-gnu/release/weft, from
#               RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked
#               -p weft-cni --target x86_64-unknown-linux-gnu, as e2e/bench-cni.sh builds it)
#   --plugins   portmap, bandwidth, loopback, built from their Go module by e2e/setup.sh
#               (default: $WEFT_CNI_PLUGINS, else ~/.cache/weft/tools/plugins)
#   --tag       the image name (default: weft.dev/weft:<workspace version>, a name no
#               registry serves, so a node has it only by import)
#   --revision  the image's org.opencontainers.image.revision label (default: the work
#               tree's `git describe --always --dirty`); two builds with different
#               revisions are two images (different config, different image ID) even
#               from the same binaries
#   --out       the OCI tar (default: target/image/weft-<tag>.oci.tar)
#
# Needs: umoci, busybox-static, nftables, iproute2, binutils (Debian packages) and Go (for
# e2e/image/daemonset-wait, from Go's build cache after the first time).
# Prints IMAGE=<name> and IMAGE_TAR=<file> on stdout; everything else goes to stderr.
set -euo pipefail
exec 3>&1 1>&2

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=$target/release
plugin=$target/x86_64-unknown-linux-gnu/release/weft
plugins_dir=${WEFT_CNI_PLUGINS:-${HOME:?}/.cache/weft/tools/plugins}
version=$(awk -F'"' '/^\[workspace.package\]/ { ws = 1 } ws && $1 ~ /^version/ { print $2; exit }' "$repo/Cargo.toml")
tag=weft.dev/weft:$version
revision=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
out=
while [ $# -gt 0 ]; do
	case $1 in
	--bin-dir) bin_dir=${2:?}; shift 2 ;;
	--plugin) plugin=${2:?}; shift 2 ;;
	--plugins) plugins_dir=${2:?}; shift 2 ;;
	--tag) tag=${2:?}; shift 2 ;;
	--revision) revision=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	*) echo "usage: $0 [--bin-dir DIR] [--plugin FILE] [--plugins DIR] [--tag NAME:TAG] [--revision REV] [--out FILE]" >&2; exit 2 ;;
	esac
done
image_tag=${tag##*:}
[ "${tag%:*}" != "$tag" ] && [[ $image_tag =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] ||
	{ echo "--tag: '$tag' is not NAME:TAG" >&2; exit 2; }
out=${out:-$target/image/weft-${image_tag}.oci.tar}

log() { printf 'image/build.sh: %s\n' "$*" >&2; }
command -v umoci >/dev/null || { log "umoci not found: apt-get install umoci"; exit 1; }
command -v strip >/dev/null || { log "strip not found: apt-get install binutils"; exit 1; }
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=/usr/local/go/bin:$PATH ;;
esac
command -v go >/dev/null || { log "go not found (expected /usr/local/go/bin/go)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/weft-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The Go programs in one directory, as the Dockerfile's Go stage leaves them: stripped
# (its `-ldflags "-s -w"`; a third of each plugin is symbols and DWARF).
mkdir "$work/go-bin"
for p in portmap bandwidth loopback; do
	[ -x "$plugins_dir/$p" ] || { log "missing $plugins_dir/$p (e2e/setup.sh builds it)"; exit 1; }
	strip --strip-all -o "$work/go-bin/$p" "$plugins_dir/$p"
done
(cd "$here/daemonset-wait" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
	go build -trimpath -ldflags='-s -w' -o "$work/go-bin/daemonset-wait" .)

# weft's programs in one directory, as the Dockerfile's Rust stage leaves them.
mkdir "$work/weft-bin"
for b in "$bin_dir/weftd" "$bin_dir/weft-controller" "$plugin"; do
	[ -x "$b" ] || { log "missing $b: see --bin-dir and --plugin in $0"; exit 1; }
done
cp "$bin_dir/weftd" "$bin_dir/weft-controller" "$work/weft-bin/"
cp "$plugin" "$work/weft-bin/weft"

"$here/rootfs.sh" "$work/rootfs" "$work/weft-bin" "$work/go-bin"

# One layer; weftd is the default entry point, the chart names each container's program.
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:$image_tag"
umoci unpack --image "$layout:$image_tag" "$work/bundle" >/dev/null
cp -a "$work/rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$layout:$image_tag" "$work/bundle"
umoci config --image "$layout:$image_tag" \
	--architecture amd64 --os linux \
	--config.entrypoint /usr/bin/weftd \
	--config.env PATH=/usr/sbin:/usr/bin \
	--config.label org.opencontainers.image.title=weft \
	--config.label org.opencontainers.image.version="$version" \
	--config.label org.opencontainers.image.revision="$revision" \
	--history.created_by e2e/image/build.sh >/dev/null
umoci gc --layout "$layout"
# containerd's importer takes the whole name from io.containerd.image.name; the OCI
# ref.name (the tag alone) stays for `ctr images import --base-name NAME`.
index=$layout/index.json
sed -i "s|\"org.opencontainers.image.ref.name\":|\"io.containerd.image.name\":\"$tag\",&|" "$index"
grep -q "\"io.containerd.image.name\":\"$tag\"" "$index" || { log "cannot name the image in $index"; exit 1; }

mkdir -p "$(dirname "$out")"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$out.tmp" oci-layout index.json blobs
mv -f "$out.tmp" "$out"
log "image $tag: $(du -sk --apparent-size "$work/rootfs" | cut -f1) KiB unpacked, $(($(stat -c %s "$out") / 1024)) KiB as $out"
printf 'IMAGE=%q\nIMAGE_TAR=%q\n' "$tag" "$out" >&3
