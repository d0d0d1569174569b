#!/usr/bin/env python3
"""Pod start through kubelet, timed from a watch (used by e2e/cluster/bench-pod-start.sh).

    pod_start.py watch NAMESPACE COUNT TIMEOUT_S -- KUBECTL...
        Watches NAMESPACE's pods with KUBECTL (a command that runs kubectl) until COUNT
        pods are Ready, printing "<name> <created_s> <ready_s>" per pod: the local
        monotonic times at which the watch first saw the pod and saw it Ready. The
        apiserver's own timestamps have whole seconds only; the watch event arrives
        within milliseconds of the write. Prints "ready" on stderr when the watch is
        established, so the caller creates the pods only after that.

    pod_start.py stats FILE
        From watch's output: "count p50 p90 p99 max makespan" in seconds, where a pod's
        start is ready - created and the makespan is last ready - first created.

    pod_start.py cni METRICS_BEFORE METRICS_AFTER
        From two scrapes of a node's containerd /v1/metrics: "count mean_s", the CNI
        chain's set-up (containerd_cri_network_plugin_operations_duration_seconds,
        operation_type set_up_pod: the time containerd spent in the CNI ADD of every
        network of the pod) between the scrapes.

    pod_start.py table DIR HELM_READY_S
        The markdown table of a run: DIR holds <network>-r<round>.starts and .cni files
        (networks weft and bridge); each row weft, bridge and weft / bridge.
"""
import glob
import os
import subprocess
import sys
import time

READY = "True"


def watch(namespace, count, timeout, kubectl):
    template = (
        '{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}'
    )
    command = kubectl + [
        "-n", namespace, "get", "pods", "--watch", "--output", f"jsonpath={template}",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    created, ready = {}, {}
    deadline = time.monotonic() + timeout
    print("ready", file=sys.stderr, flush=True)
    try:
        for line in proc.stdout:
            now = time.monotonic()
            fields = line.split()
            if not fields:
                continue
            name = fields[0]
            created.setdefault(name, now)
            if len(fields) > 1 and fields[1] == READY and name not in ready:
                ready[name] = now
            if len(ready) >= count:
                break
            if now > deadline:
                sys.exit(f"pod_start: {len(ready)} of {count} pods Ready after {timeout} s")
    finally:
        proc.kill()
        proc.wait()
    if len(ready) < count:
        sys.exit(f"pod_start: the watch ended with {len(ready)} of {count} pods Ready")
    for name in sorted(ready):
        print(f"{name} {created[name]:.3f} {ready[name]:.3f}")


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def starts_and_makespan(path):
    """Each pod's start (sorted) and the batch's makespan, from watch's output."""
    rows = [line.split() for line in open(path) if line.strip()]
    created = [float(r[1]) for r in rows]
    ready = [float(r[2]) for r in rows]
    return sorted(r - c for c, r in zip(created, ready)), max(ready) - min(created)


def stats(path):
    starts, makespan = starts_and_makespan(path)
    print(
        len(starts),
        *(f"{percentile(starts, q):.3f}" for q in (0.5, 0.9, 0.99)),
        f"{starts[-1]:.3f}",
        f"{makespan:.3f}",
    )


def network_summary(directory, network):
    """The rows of one network over every round of a run."""
    starts, makespans, cni_count, cni_total = [], [], 0, 0.0
    for path in sorted(glob.glob(os.path.join(directory, f"{network}-r*.starts"))):
        batch_starts, makespan = starts_and_makespan(path)
        starts += batch_starts
        makespans.append(makespan)
        count, mean = open(path[: -len(".starts")] + ".cni").read().split()
        cni_count += int(count)
        cni_total += int(count) * float(mean)
    if not starts:
        sys.exit(f"pod_start: no {network}-r*.starts in {directory}")
    starts.sort()
    mean_start = sum(starts) / len(starts)
    cni_mean = cni_total / cni_count
    return {
        "pods": len(starts),
        "start p50 (s)": percentile(starts, 0.5),
        "start p90 (s)": percentile(starts, 0.9),
        "start p99 (s)": percentile(starts, 0.99),
        "start mean (s)": mean_start,
        "batch all Ready (s, mean)": sum(makespans) / len(makespans),
        "CNI ADD per pod (ms, containerd)": cni_mean * 1000,
        "CNI share of a pod's start": cni_mean / mean_start,
    }


def table(directory, helm_ready):
    weft = network_summary(directory, "weft")
    bridge = network_summary(directory, "bridge")
    print("| pod start through kubelet | weft | bridge + host-local | weft / bridge |")
    print("|---|---|---|---|")
    for row, value in weft.items():
        anchor = bridge[row]
        if row == "pods":
            print(f"| {row} | {value} | {anchor} | |")
            continue
        digits = 1 if "(ms" in row else 3
        print(f"| {row} | {value:.{digits}f} | {anchor:.{digits}f} | {value / anchor:.2f} |")
    print(f"\n`helm install` to every node Ready: {helm_ready} s")


def set_up_pod(path):
    """(count, sum) of containerd's CNI set-up histogram in one scrape."""
    count = total = 0.0
    # containerd's timer appends its unit again: ..._duration_seconds_seconds_count.
    metric = "containerd_cri_network_plugin_operations_duration_seconds"
    for line in open(path):
        if not line.startswith(metric) or 'operation_type="set_up_pod"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        series = name.split("{", 1)[0]
        if series.endswith("_count"):
            count = float(value)
        elif series.endswith("_sum"):
            total = float(value)
    return count, total


def cni(before_path, after_path):
    count0, sum0 = set_up_pod(before_path)
    count1, sum1 = set_up_pod(after_path)
    count = count1 - count0
    if count <= 0:
        sys.exit(f"pod_start: containerd counted no CNI set-up between {before_path} and {after_path}")
    print(int(count), f"{(sum1 - sum0) / count:.4f}")


def main(argv):
    if len(argv) >= 6 and argv[1] == "watch" and argv[5] == "--":
        watch(argv[2], int(argv[3]), float(argv[4]), argv[6:])
    elif len(argv) == 3 and argv[1] == "stats":
        stats(argv[2])
    elif len(argv) == 4 and argv[1] == "cni":
        cni(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "table":
        table(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
