#!/bin/sh
# Removes weft from one node (the uninstall clean-up, opt-in; never run on a weftd
# restart). It runs after the release's weftd pods were deleted: it first waits for
# weftd's socket to go (weftd removes it on exit), so no weftd re-creates what it
# removes.
#   cleanup.sh CONFLIST PLUGIN SOCKET
# Removes what weftd creates: the conflist (first, so the runtime stops sending pods to
# weft) and weftd's temporary copy of it (.NAME.weftd-tmp beside it), the weft plugin,
# the VXLAN device weft-vxlan, the pods' IPv4 gateway 169.254.1.1/32 on lo, the nft
# tables `inet weft`, `ip weft-nat` and `arp weft`, and every route of protocol 119
# (weft's peer routes and the unreachable routes of the node's own ranges). The
# reference plugins stay: other CNIs use them too. Each step tolerates "already gone".
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
rm -f "${conflist%/*}/.${conflist##*/}.weftd-tmp"
rm -f "$plugin" && echo "removed $plugin"
if $ip link show weft-vxlan >/dev/null 2>&1; then
	$ip link delete weft-vxlan && echo "removed the VXLAN device weft-vxlan"
fi
if [ -n "$($ip -4 addr show dev lo to 169.254.1.1/32 2>/dev/null)" ]; then
	$ip addr del 169.254.1.1/32 dev lo && echo "removed the pods' IPv4 gateway 169.254.1.1 from lo"
fi
# weft's tables.
for table in "inet weft" "ip weft-nat" "arp weft"; do
	# $table unquoted on purpose: family and name are two words.
	# shellcheck disable=SC2086
	if $nft list table $table >/dev/null 2>&1; then
		$nft delete table $table && echo "removed the nft table $table"
	fi
done
$ip -4 route flush proto 119 && echo "flushed IPv4 routes of protocol 119"
$ip -6 route flush proto 119 && echo "flushed IPv6 routes of protocol 119"
echo "weft removed from this node"
