#!/usr/bin/env bash
# weft demo on one machine: weftd standalone on a namespace "node" holding a delegated
# IPv6 /80 and an overlay IPv4 /24, three pods wired by the real CNI plugin, every pod
# pinging every other pod and the node over both families, then DEL and clean-up.
# Needs root (network namespaces). Everything it creates it removes, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"
cargo build --workspace --bins --quiet
BIN=$(pwd)/target/debug

TAG=weftdemo$$
NODE=$TAG-node
PODS=("$TAG-a" "$TAG-b" "$TAG-c")
DIR=$(mktemp -d /tmp/weft-demo.XXXXXX)
chmod 700 "$DIR"
SOCKET=$DIR/weftd.sock
CONF="{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"socket\":\"$SOCKET\"}"
WEFTD_PID=

cleanup() {
	[ -n "$WEFTD_PID" ] && kill "$WEFTD_PID" 2>/dev/null && wait "$WEFTD_PID" 2>/dev/null
	for ns in "${PODS[@]}" "$NODE"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$DIR"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "node $NODE: uplink 198.51.100.1/24 + 2001:db8:ffff::1/64 (documentation prefixes)"
ip netns add "$NODE"
ip -n "$NODE" link set lo up
ip -n "$NODE" link add name uplink type veth peer name uplink-peer
ip -n "$NODE" addr add 198.51.100.1/24 dev uplink
ip -n "$NODE" addr add 2001:db8:ffff::1/64 dev uplink nodad
ip -n "$NODE" link set uplink up
ip -n "$NODE" link set uplink-peer up

say "weftd --mode dual --ipv6-prefix 2001:db8:1000:1::/80 --ipv4-subnet 10.255.1.0/24"
ip netns exec "$NODE" "$BIN/weftd" --node-name demo-node --mode dual \
	--ipv6-prefix 2001:db8:1000:1::/80 --ipv4-subnet 10.255.1.0/24 \
	--underlay-interface uplink --state-dir "$DIR/state" --socket "$SOCKET" \
	--metrics-addr '[::]:9641' 2>"$DIR/weftd.log" &
WEFTD_PID=$!
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.05; done
[ -S "$SOCKET" ] || { cat "$DIR/weftd.log"; exit 1; }

cni() { # cni COMMAND POD: runs the plugin inside the node, as kubelet's runtime would
	ip netns exec "$NODE" env -i CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
		CNI_NETNS="/var/run/netns/$2" CNI_IFNAME=eth0 CNI_PATH="$BIN" "$BIN/weft" <<<"$CONF"
}

declare -A V4 V6
for pod in "${PODS[@]}"; do
	ip netns add "$pod"
	start=$(date +%s%N)
	result=$(cni ADD "$pod")
	took=$((($(date +%s%N) - start) / 1000))
	V6[$pod]=$(grep -o '"address":"[0-9a-f:]*/128"' <<<"$result" | cut -d'"' -f4 | cut -d/ -f1)
	V4[$pod]=$(grep -o '"address":"[0-9.]*/32"' <<<"$result" | cut -d'"' -f4 | cut -d/ -f1)
	say "pod $pod wired in ${took} us (including process start)"
	ip -n "$pod" -br addr show dev eth0
	ip -n "$pod" route show default
	ip -n "$pod" -6 route show default
done

say "ping matrix (every pod to every pod and to the node, both families)"
ok=0 fail=0
for from in "${PODS[@]}"; do
	for to in "${PODS[@]}" node; do
		[ "$from" = "$to" ] && continue
		for fam in 6 4; do
			if [ "$to" = node ]; then
				dst=$([ $fam = 6 ] && echo 2001:db8:ffff::1 || echo 198.51.100.1)
			else
				dst=$([ $fam = 6 ] && echo "${V6[$to]}" || echo "${V4[$to]}")
			fi
			if ip netns exec "$from" ping -c1 -W2 -n "$dst" >/dev/null; then
				printf '  %-18s -> %-24s ok\n' "$from" "$dst"; ok=$((ok + 1))
			else
				printf '  %-18s -> %-24s FAILED\n' "$from" "$dst"; fail=$((fail + 1))
			fi
		done
	done
done

say "weftd metrics (excerpt)"
ip netns exec "$NODE" bash -c 'exec 3<>/dev/tcp/::1/9641; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
	grep -E '^weft_(ipam_addresses_in_use|cni_requests_total)' || true

say "DEL every pod"
for pod in "${PODS[@]}"; do cni DEL "$pod" && echo "  $pod released"; done

say "$ok pings ok, $fail failed"
[ "$fail" -eq 0 ]
