#!/bin/sh
# Installs CNI plugins from the image onto the node (weftd's init container).
#   install-cni.sh SRC_DIR DEST_DIR PLUGIN...
# Each plugin is copied to a temporary name in DEST_DIR and renamed over the old one:
# rename(2) swaps the directory entry atomically, a runtime executing the old binary
# keeps its inode (never "text file busy", calico#8932) and never sees half a file.
# A plugin identical to the installed one is left alone, so a weftd restart writes
# nothing.
set -eu
src=$1
dest=$2
shift 2
mkdir -p "$dest"
for plugin in "$@"; do
	if cmp -s "$src/$plugin" "$dest/$plugin"; then
		echo "$dest/$plugin: up to date"
		continue
	fi
	tmp=$dest/.$plugin.weft-install
	rm -f "$tmp"
	cp "$src/$plugin" "$tmp"
	chmod 0755 "$tmp"
	mv -f "$tmp" "$dest/$plugin"
	echo "$dest/$plugin: installed"
done
