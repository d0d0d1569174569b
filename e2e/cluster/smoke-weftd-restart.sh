# smoke.sh's step 9 (sourced, helm only): a node's weftd pod killed while pods run.
# Uses smoke.sh's k, NS, PODS, POD_NODE, POD_IPS, IP_FAMILIES, pod_range and in_net.

WEFTD_SELECTOR=app.kubernetes.io/component=weftd
PING_INTERVAL=0.2
PING_COUNT=100 # 20 s: across the kill, the DaemonSet's new pod and its /readyz

# weftd_pod NODE: the name of weftd's pod on NODE (not one being deleted).
weftd_pod() {
	k -n kube-system get pods -l "$WEFTD_SELECTOR" --field-selector "spec.nodeName=$1" \
		-o jsonpath='{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}' |
		awk 'NF == 1 { print $1; exit }'
}

weftd_restart_check() {
	local target_node target client ips ip i old new started ready_after
	target=${PODS[0]}
	target_node=${POD_NODE[$target]}
	client=
	for i in "${PODS[@]}"; do [ "${POD_NODE[$i]}" = "$target_node" ] || client=$i; done
	[ -n "$client" ] || { step "9. skipped: one node"; return 0; }
	step "9. weftd's pod on $target_node killed; $client (${POD_NODE[$client]}) pings $target meanwhile"
	IFS=, read -r -a ips <<<"${POD_IPS[$target]%,}"
	local logs=()
	for i in "${!ips[@]}"; do
		logs+=("$LOG_DIR/smoke-ping-$i.log")
		k -n "$NS" exec "$client" -- ping -q -i "$PING_INTERVAL" -c "$PING_COUNT" -W 1 "${ips[i]}" >"${logs[i]}" 2>&1 &
	done
	sleep 2
	old=$(weftd_pod "$target_node")
	[ -n "$old" ] || fail "no weftd pod on $target_node"
	started=$SECONDS
	k -n kube-system delete pod "$old" --wait=false
	# A pod created while weftd is gone: it waits for the CNI, then starts.
	k -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: after-restart
spec:
  nodeName: $target_node
  terminationGracePeriodSeconds: 1
  containers:
  - name: agnhost
    image: $AGNHOST_IMAGE
    imagePullPolicy: Never
    args: [netexec, --http-port=8080, --udp-port=-1]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
EOF
	wait_for "a new weftd pod on $target_node" 60 eval '[ -n "$(weftd_pod "$target_node")" ] && [ "$(weftd_pod "$target_node")" != "$old" ]'
	new=$(weftd_pod "$target_node")
	k -n kube-system wait --for=condition=Ready "pod/$new" --timeout=90s
	step "   weftd pod $old replaced by $new, Ready $((SECONDS - started)) s after the kill"
	k -n "$NS" wait --for=condition=Ready pod/after-restart --timeout=120s
	ready_after=$((SECONDS - started))
	local new_ips n
	n=${target_node#node-}
	IFS=, read -r -a new_ips <<<"$(k -n "$NS" get pod after-restart -o jsonpath='{range .status.podIPs[*]}{.ip},{end}')"
	[ "${#new_ips[@]}" -eq "${#IP_FAMILIES[@]}" ] || fail "after-restart has podIPs ${new_ips[*]}, want ${IP_FAMILIES[*]}"
	for i in "${!new_ips[@]}"; do
		[ "$(family_of "${new_ips[i]}")" = "${IP_FAMILIES[i]}" ] || fail "after-restart: podIPs[$i] ${new_ips[i]} is not ${IP_FAMILIES[i]}"
		in_net "${new_ips[i]}" "$(pod_range "$n" "${IP_FAMILIES[i]}")" || fail "after-restart: ${new_ips[i]} outside $target_node's range"
		k -n "$NS" exec "$client" -- ping -c 1 -W 2 "${new_ips[i]}" || fail "$client cannot ping after-restart at ${new_ips[i]}"
	done
	step "   after-restart (created while weftd was gone) Ready $ready_after s after the kill: ${new_ips[*]}, reachable"
	wait
	local summary lost=()
	for i in "${!ips[@]}"; do
		summary=$(grep 'packets transmitted' "${logs[i]}") || fail "ping $client -> ${ips[i]}: no summary ($(cat "${logs[i]}"))"
		echo "ping $client -> ${ips[i]}: $summary"
		[[ $summary == *" 0% packet loss"* ]] || lost+=("${ips[i]}: $summary")
	done
	[ "${#lost[@]}" -eq 0 ] || fail "pings lost while weftd restarted: ${lost[*]}"
	step "   $PING_COUNT pings every ${PING_INTERVAL} s per family to $target (${ips[*]}) across the restart: none lost"
}
