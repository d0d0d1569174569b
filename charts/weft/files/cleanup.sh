#!/bin/sh
# Removes weft from one node (the uninstall clean-up, opt-in; never run on a weftd
# restart). It runs after the release's weftd pods were deleted: it first waits for
# weftd's socket to go (weftd removes it on exit), so no weftd re-creates what it
# removes.
#   cleanup.sh CONFLIST PLUGIN SOCKET
# Removes: the conflist (first, so the runtime stops sending pods to weft), the weft
# plugin, the VXLAN device weft-vxlan, the nft table `inet weft` (and an older `ip weft`) and every
# route of protocol 119 (weft's peer and pod routes). The reference plugins stay: other
# CNIs use them too. Each step tolerates "already gone".
set -u
# Full paths: the image's busybox sh runs its own applets before PATH, and busybox's
# `ip route flush proto 119` flushes every route, whatever the protocol.
ip=/usr/sbin/ip
nft=/usr/sbin/nft
conflist=$1
plugin=$2
socket=$3

waited=0
while [ -S "$socket" ] && [ "$waited" -lt 60 ]; do
	sleep 1
	waited=$((waited + 1))
done
[ -S "$socket" ] && echo "weftd's socket $socket is still there after 60 s (a weftd killed hard?); cleaning up anyway"

rm -f "$conflist" && echo "removed $conflist"
rm -f "$plugin" && echo "removed $plugin"
if $ip link show weft-vxlan >/dev/null 2>&1; then
	$ip link delete weft-vxlan && echo "removed the VXLAN device weft-vxlan"
fi
# weft's tables: `inet weft`, and `ip weft` on nodes that ran a weftd writing that one.
for family in inet ip; do
	if $nft list table "$family" weft >/dev/null 2>&1; then
		$nft delete table "$family" weft && echo "removed the nft table $family weft"
	fi
done
$ip -4 route flush proto 119 && echo "flushed IPv4 routes of protocol 119"
$ip -6 route flush proto 119 && echo "flushed IPv6 routes of protocol 119"
echo "weft removed from this node"
