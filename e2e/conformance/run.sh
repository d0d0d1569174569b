#!/usr/bin/env bash
# Runs the upstream Kubernetes e2e suite's [sig-network] tests that apply to a CNI
# (Conformance and [Feature:IPv6DualStack]) against weft on a real cluster:
#   1. builds e2e.test if its sources changed (e2e/conformance/build.sh);
#   2. brings up the cluster (e2e/cluster/up.sh --family F --network N, 3 nodes);
#   3. gives the nodes the images the selected tests need (see IMAGE ALIASES);
#   4. runs e2e.test from the control plane's network namespace, one spec at a time,
#      the JUnit report and the full log into the results directory it names;
#   5. prints passed/failed/skipped and the failures' names;
#   6. always takes the cluster down (e2e/cluster/down.sh), also on failure or Ctrl-C.
# Holds /tmp/weft-cluster.lock from before up.sh until after down.sh: one cluster at a
# time on this machine (kubelet's sysctls are global; up.sh replaces a running cluster).
#
# Usage: e2e/conformance/run.sh [--family ipv4-primary|ipv6-primary]
#                               [--network weft-standalone|...] [--sample | --netpol]
#                               [--focus REGEX] [--skip REGEX] [--results DIR]
#   --family   the cluster's family order (dual-stack either way); default ipv4-primary
#   --network  how weft is installed, passed to up.sh; default helm (the chart, as
#              operators install it)
#   --sample   the CI sample (SAMPLE_FOCUS below) instead of the full selection
#   --netpol   the upstream NetworkPolicy suite (NETPOL_FOCUS below, 47 specs) instead
#              of the full selection, with its own skip (NETPOL_SKIP); with --sample,
#              its CI sample (NETPOL_SAMPLE_FOCUS)
#   --focus    a ginkgo focus regex instead of the full selection
#   --skip     a regex of specs to skip on top of SKIP below
#   --results  where the JUnit report (junit_01.xml) and e2e.log go; default
#              /var/log/weft-conformance/<UTC time>-<family>
# Exits 0 when every selected spec passed, 1 otherwise.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_DIR=$(dirname "$HERE")
CLUSTER_DIR=$E2E_DIR/cluster
LOCK=/tmp/weft-cluster.lock

# What applies to a CNI: every [sig-network] Conformance spec and every dual-stack spec.
FOCUS='\[sig-network\].*(\[Conformance\]|\[Feature:IPv6DualStack\])'
# Skipped, each for a reason this harness cannot change:
#   LoadBalancer  needs a cloud provider's load balancer controller (type=LoadBalancer
#                 Services stay pending without one)
#   ExternalIP    Services' externalIPs route through the cluster's edge, which a cloud
#                 or the operator provides, not the CNI
#   SCTP          needs the sctp kernel module and is a feature of its own, not of
#                 the Conformance/dual-stack selection
#   Disruptive    restarts or partitions nodes over SSH (provider-specific; --provider
#                 local has no SSH to the nodes)
#   Serial        changes cluster-wide state and must run alone; none is selected by
#                 FOCUS today, the skip keeps a future one from running unplanned
#   Flaky         upstream marks them unreliable
SKIP='LoadBalancer|ExternalIP|SCTP|Disruptive|Serial|\[Flaky\]'
# The CI sample: every dual-stack spec plus the Conformance specs that exercise the
# datapath itself (pod-to-pod, Services through kube-proxy, hostPort) rather than the
# API machinery around it.
SAMPLE_FOCUS='\[sig-network\].*(\[Feature:IPv6DualStack\]|Networking Granular Checks: Pods.*\[Conformance\]|Services should (serve a basic endpoint from pods|serve multiport endpoints from pods|be able to create a functioning NodePort service|be able to switch session affinity for service with type clusterIP).*\[Conformance\]|HostPort.*\[Conformance\])'

# The upstream NetworkPolicy suite (test/e2e/network/netpol): 45 datapath specs over TCP
# and UDP, 2 of the API. It probes the cluster's primary family only, so it runs once per
# --family. Its skip is its own: the 3 SCTP connectivity specs need the kernel's SCTP
# (CONFIG_IP_SCTP, absent here), while two TCP specs whose names say "SCTP" check that
# a policy naming SCTP isolates correctly and must run (SKIP's plain "SCTP" would drop
# them). `e2e.test --ginkgo.dry-run` with these selects 47 of 927 specs (v1.35.8).
NETPOL_FOCUS='\[sig-network\] Netpol'
NETPOL_SKIP='\[Feature:SCTPConnectivity\]|Disruptive|Serial|\[Flaky\]'
# The CI sample of it (--netpol --sample, 12 specs by dry run): default deny, each peer form
# (pod, namespace, both, ipBlock with except), ports by number and name, egress, UDP, a
# policy update and a relabelled pod.
NETPOL_SAMPLE_FOCUS='\[sig-network\] Netpol .*(should support a .default-deny-ingress. policy \[|should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector|should enforce policy based on Ports|should allow ingress access on one named port|should enforce except clause while egress access to server in CIDR block|should deny egress from pods based on PodSelector|should enforce updated policy|should deny ingress access to updated pod|should enforce policy based on NamespaceSelector with MatchExpressions \[)'

ARGS=("$@") # for the re-run under the lock below
FAMILY=ipv4-primary
NETWORK=helm
USER_FOCUS=
USER_SKIP=
SAMPLE=
NETPOL=
RESULTS=
while [ $# -gt 0 ]; do
	case $1 in
	--family) FAMILY=${2:?--family F}; shift 2 ;;
	--network) NETWORK=${2:?--network N}; shift 2 ;;
	--focus) USER_FOCUS=${2:?--focus REGEX}; shift 2 ;;
	--skip) USER_SKIP=${2:?--skip REGEX}; shift 2 ;;
	--sample) SAMPLE=1; shift ;;
	--netpol) NETPOL=1; shift ;;
	--results) RESULTS=${2:?--results DIR}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
case $FAMILY in ipv4-primary | ipv6-primary) ;; *) echo "--family: ipv4-primary or ipv6-primary (the dual-stack specs need both families)" >&2; exit 2 ;; esac
[ -z "$SAMPLE" ] || [ -z "$USER_FOCUS" ] || { echo "--sample and --focus exclude each other" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (the cluster does)" >&2; exit 1; }
[ -z "$NETPOL" ] || [ -z "$USER_FOCUS" ] || { echo "--netpol excludes --focus" >&2; exit 2; }
[ -z "$SAMPLE" ] || FOCUS=$SAMPLE_FOCUS
[ -z "$NETPOL" ] || { FOCUS=$NETPOL_FOCUS; SKIP=$NETPOL_SKIP; }
[ -z "$NETPOL" ] || [ -z "$SAMPLE" ] || FOCUS=$NETPOL_SAMPLE_FOCUS
[ -z "$USER_FOCUS" ] || FOCUS=$USER_FOCUS
[ -z "$USER_SKIP" ] || SKIP="$SKIP|$USER_SKIP"

# Re-run under the cluster lock (flock(1) holds it and does not hand it to the cluster's
# daemons, which would otherwise keep it after this script ends).
if [ "${WEFT_CLUSTER_LOCK_HELD:-}" != "$LOCK" ]; then
	if ! flock -n "$LOCK" true; then echo "run.sh: waiting for $LOCK (another cluster is up)" >&2; fi
	exec env WEFT_CLUSTER_LOCK_HELD="$LOCK" flock "$LOCK" "$0" "${ARGS[@]}"
fi

. "$CLUSTER_DIR/lib.sh"
. "$HERE/lib.sh"
T0=$SECONDS
say() { printf '[%4d s] %s\n' "$((SECONDS - T0))" "$*"; }

RESULTS=${RESULTS:-/var/log/weft-conformance/$(date -u +%Y%m%dT%H%M%SZ)-$FAMILY}
mkdir -p "$RESULTS"
say "results in $RESULTS"

say "e2e.test: e2e/conformance/build.sh (builds only when its sources changed)"
# Assigned first: under `set -e` a failing build.sh stops here (inside `eval "$(…)"` it
# would not).
built=$("$HERE/build.sh")
eval "$built"

cluster_down() {
	local status=$?
	say "taking the cluster down (e2e/cluster/down.sh)"
	"$CLUSTER_DIR/down.sh" || { say "down.sh failed: see its log"; status=1; }
	exit "$status"
}
trap cluster_down EXIT
trap 'exit 130' INT TERM

say "cluster: e2e/cluster/up.sh --family $FAMILY --network $NETWORK"
"$CLUSTER_DIR/up.sh" --family "$FAMILY" --network "$NETWORK"
load_cluster_env
say "images the selected specs need beyond pause and agnhost"
alias_images

say "e2e.test --ginkgo.focus='$FOCUS' --ginkgo.skip='$SKIP' (log: $RESULTS/e2e.log)"
started=$SECONDS
status=0
run_suite "$FOCUS" "$SKIP" "$RESULTS" || status=$?
{
	echo "suite ran in $((SECONDS - started)) s (e2e.test exit status $status), $FAMILY, network $NETWORK"
	summarize "$RESULTS/junit_01.xml"
} | tee "$RESULTS/summary.txt"
# The report, not e2e.test's status, decides: a suite that never wrote one failed.
[ "$status" -eq 0 ] && ! grep -q '^failed [1-9]' "$RESULTS/summary.txt"
