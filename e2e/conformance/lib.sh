# Shared by e2e/conformance/run.sh (sourced after e2e/cluster/lib.sh and load_cluster_env):
# the images the suite needs, running e2e.test inside the cluster, reading its report.

# Image aliases: upstream images the selected specs use that carry nothing the local
# test image (AGNHOST_IMAGE: agnhost on Debian with sh, bash, curl, OpenBSD netcat,
# iproute2, ping, dig and getent; e2e/cluster/build.sh) lacks, tagged onto it in every
# node's containerd (nothing is ever pulled). Each entry: the upstream reference, then
# why the test image stands in for it.
IMAGE_ALIASES=(
	# The DNS specs' second prober: `sh -c` loops of `dig` and `getent hosts`, results
	# written to a shared volume (test/e2e/network/dns_common.go createProbeCommand).
	"registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
)

# alias_images: tags AGNHOST_IMAGE as every IMAGE_ALIASES entry on every node.
alias_images() {
	local n ref
	for n in $(seq 1 "$NODES"); do
		for ref in "${IMAGE_ALIASES[@]}"; do
			in_node "$n" "$TOOLS_BIN/ctr" --address /run/containerd/containerd.sock --namespace k8s.io \
				images tag --force "$AGNHOST_IMAGE" "$ref" >/dev/null 2>&1 ||
				{ echo "run.sh: cannot tag $ref on $(node_name "$n")" >&2; return 1; }
		done
	done
}

# run_suite FOCUS SKIP RESULTS: e2e.test against the cluster, from the control plane's
# network namespace (the apiserver and the nodes' addresses are reachable only inside
# the cluster's namespaces), as cluster admin. Specs run one at a time (parallel
# specs need the ginkgo CLI and would fight over 2 cores anyway). The full log goes
# to RESULTS/e2e.log, the JUnit report to RESULTS/junit_01.xml; the terminal shows each
# finished spec's outcome.
run_suite() {
	local focus=$1 skip=$2 results=$3
	in_cp env HOME="$STATE" "$E2E_TEST" \
		--provider=local --kubeconfig="$PKI/admin.kubeconfig" \
		--kubectl-path="$TOOLS_BIN/kubectl" \
		--report-dir="$results" --disable-log-dump \
		--ginkgo.focus="$focus" --ginkgo.skip="$skip" \
		--ginkgo.timeout=3h --ginkgo.v --ginkgo.no-color 2>&1 |
		tee "$results/e2e.log" | spec_outcomes
	return "${PIPESTATUS[0]}"
}

# spec_outcomes: from ginkgo's verbose output, one line per finished spec: its outcome
# and its name (ginkgo prints the name first, the outcome when the spec ends).
spec_outcomes() {
	awk '
		/^\[sig-network\]/ { name = $0 }
		/^• \[FAILED\]|^• \[PANICKED\]|^• \[TIMEDOUT\]/ { printf "  FAIL %s\n", name; fflush(); next }
		/^• \[[0-9.]+ seconds\]/ { printf "  pass %s\n", name; fflush(); next }
		/^Ran [0-9]+ of [0-9]+ Specs/ { print "  " $0; fflush() }
	'
}

# summarize JUNIT: the counts (passed, failed, skipped at run time by the spec itself,
# e.g. "requires at least 2 nodes") and the failures' names. Specs the focus or skip
# left out are not counted.
summarize() {
	[ -f "$1" ] || { echo "failed 1: no JUnit report at $1 (the suite did not finish)"; return 0; }
	python3 - "$1" <<'PY'
import sys
import xml.etree.ElementTree as ET

def problem(case):
    """The first line of a failed spec's [FAILED] message, or None if it did not fail."""
    node = case.find("failure")
    if node is None:
        node = case.find("error")
    if node is None:
        return None
    for line in (node.text or "").splitlines():
        line = line.strip()
        if line.startswith("[FAILED]") or line.startswith("[PANICKED]") or line.startswith("[TIMEDOUT]"):
            return line[:240]
    return (node.get("type") or "failed")

# Suite-level nodes (set-up, reports) count only when they fail.
SUITE_NODES = ("[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]", "[ReportBeforeSuite]",
               "[ReportAfterSuite]", "[BeforeSuite]", "[AfterSuite]")
passed, failed, skipped = [], [], []
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = case.get("name", "")
    reason = problem(case)
    if reason is not None:
        failed.append((name, reason))
        continue
    if name.startswith(SUITE_NODES):
        continue
    skip = case.find("skipped")
    if skip is None:
        passed.append(name)
        continue
    # ginkgo marks specs the filters left out "skipped" and nothing more; a spec that
    # skipped itself says why ("skipped - <reason>").
    message = skip.get("message", "")
    if message and message != "skipped":
        skipped.append((name, message))
print(f"passed {len(passed)}")
print(f"failed {len(failed)}")
print(f"skipped {len(skipped)}")
for name, reason in failed:
    print(f"  FAILED  {name}\n          {reason}")
for name, message in skipped:
    print(f"  SKIPPED {name}: {message.splitlines()[0][:160]}")
PY
}
