#!/usr/bin/env bash
# The cluster tier of weft's test command (e2e/test.sh runs it after the build): a real
# cluster of 3 kubelet + containerd nodes (e2e/cluster/up.sh), weft installed by
# `helm install` of charts/weft from an image built here, then
#   smoke.sh           pods on every node with both families, the cross-node ping and TCP
#                      matrix, dual-stack ClusterIP/NodePort Services, CoreDNS, the
#                      downward API, the gateways, hostNetwork pods, address release, a
#                      killed weftd pod
#   attacks.sh         a node's weftd token refused another node's WeftNode; a pod's
#                      spoofed sources dropped (each after the legitimate path worked)
#   prometheus.sh      a real Prometheus with Kubernetes service discovery scrapes every
#                      weftd and both controller replicas
#   helm-lifecycle.sh  helm upgrade to a new image rolls weftd with no ping lost;
#                      uninstall cleans every node and keeps the CRDs; a reinstall
# on an IPv4-primary dual-stack cluster; then smoke.sh again on an IPv6-primary
# dual-stack cluster and on an IPv6-only one (up.sh replaces the running cluster); and
# always down.sh, which removes everything and checks nothing is left. Then the upstream
# conformance sample (e2e/conformance/run.sh --sample: every [Feature:IPv6DualStack]
# spec and the datapath's Conformance specs) on a cluster of its own, and the upstream
# NetworkPolicy suite's sample (run.sh --netpol --sample, 12 specs) on another. Holds
# /tmp/weft-cluster.lock: one cluster at a time (kubelet's host sysctls are global).
# Needs root and the debug build of weftd and weft-controller (e2e/test.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/../.."

. e2e/lib.sh
weft_build_static_plugin
e2e/setup.sh --cluster >/dev/null

start=$SECONDS
(
	# The cluster's daemons (up.sh starts them) must not inherit the lock (8>&-): the
	# subshell's end releases it for run.sh below.
	exec 8>/tmp/weft-cluster.lock
	flock 8
	trap e2e/cluster/down.sh EXIT
	e2e/cluster/up.sh --network helm 8>&-
	e2e/cluster/smoke.sh --keep
	e2e/cluster/attacks.sh
	e2e/cluster/prometheus.sh
	e2e/cluster/helm-lifecycle.sh
	for family in ipv6-primary ipv6-only; do
		e2e/cluster/up.sh --network helm --family "$family" 8>&-
		e2e/cluster/smoke.sh
	done
)
e2e/conformance/run.sh --sample --family ipv6-primary
e2e/conformance/run.sh --netpol --sample --family ipv6-primary
echo "cluster tier: passed in $((SECONDS - start)) s"
