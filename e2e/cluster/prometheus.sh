#!/usr/bin/env bash
# A real Prometheus on the cluster `up.sh --network helm` brought up, configured the way
# clusters configure it for annotated pods: Kubernetes service discovery (role pod), keep
# pods annotated prometheus.io/scrape=true, scrape their prometheus.io/port and
# prometheus.io/path. It runs as a pod on weft (namespace weft-monitoring), built from
# its Go module (e2e/cluster/prometheus/, build.sh prometheus; built here when missing).
# Checks, through a test pod on the pod network (Prometheus' HTTP API):
#   1. every weftd pod (one per node) and every weft-controller replica is a target, up;
#   2. weftd's weft_ipam_addresses_in_use is scraped from every node.
# Leaves Prometheus running unless --remove.
#
# Usage: e2e/cluster/prometheus.sh [--remove]
set -eEuo pipefail
CLUSTER_DIR=$(cd "$(dirname "$0")" && pwd)
. "$CLUSTER_DIR/lib.sh"
REMOVE=
case ${1:-} in --remove) REMOVE=1 ;; "") ;; *) echo "usage: $0 [--remove]" >&2; exit 2 ;; esac
begin_check prometheus helm
NS=weft-monitoring
k() { kubectl_admin "$@"; }

step "prometheus: binary and image (builds what is missing; the first run takes minutes)"
version=$(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$CLUSTER_DIR/prometheus/go.mod")
image=weft.dev/e2e/prometheus:$version
if ! [ -f "$IMAGES/prometheus.tar" ] || [ "$(cat "$IMAGES/prometheus.stamp" 2>/dev/null)" != "$version" ]; then
	if ! "$TOOLS_BIN/prometheus" --version 2>/dev/null | grep -qF "version $version"; then
		"$CLUSTER_DIR/build.sh" prometheus "$TOOLS_BIN" >/dev/null
	fi
	"$CLUSTER_DIR/build.sh" prometheus-image "$TOOLS_BIN" "$IMAGES" >/dev/null
	echo "$version" >"$IMAGES/prometheus.stamp"
fi
import_on_nodes "$IMAGES/prometheus.tar" --base-name "${image%:*}"

step "Prometheus in $NS, Kubernetes service discovery of annotated pods"
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
k create namespace "$NS"
wait_for "the ServiceAccount of namespace $NS" 30 k -n "$NS" get serviceaccount default
k apply -f - <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: prometheus
  namespace: $NS
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: weft-e2e-prometheus
rules:
- apiGroups: [""]
  resources: [pods, nodes, services, endpoints]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: weft-e2e-prometheus
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: weft-e2e-prometheus
subjects:
- kind: ServiceAccount
  name: prometheus
  namespace: $NS
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: prometheus
  namespace: $NS
data:
  prometheus.yml: |
    global:
      scrape_interval: 5s
    scrape_configs:
    - job_name: kubernetes-pods
      kubernetes_sd_configs:
      - role: pod
      relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        action: replace
        target_label: __metrics_path__
        regex: (.+)
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        action: replace
        regex: (\d+);((([0-9]+?)(\.|$)){4})
        replacement: \$2:\$1
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        action: replace
        regex: (\d+);([^.]+)
        replacement: '[\$2]:\$1'
        target_label: __address__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: node
---
apiVersion: v1
kind: Pod
metadata:
  name: prometheus
  namespace: $NS
  labels: {app: prometheus}
spec:
  serviceAccountName: prometheus
  terminationGracePeriodSeconds: 1
  containers:
  - name: prometheus
    image: $image
    imagePullPolicy: Never
    args: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.path=/data,
      --web.listen-address=:9090]
    readinessProbe:
      httpGet: {path: /-/ready, port: 9090}
      periodSeconds: 2
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
    - {name: config, mountPath: /etc/prometheus, readOnly: true}
    - {name: data, mountPath: /data}
  volumes:
  - name: config
    configMap: {name: prometheus}
  - name: data
    emptyDir: {}
---
apiVersion: v1
kind: Pod
metadata:
  name: probe
  namespace: $NS
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: agnhost
    image: $AGNHOST_IMAGE
    imagePullPolicy: Never
    args: [pause]
EOF
k -n "$NS" wait --for=condition=Ready pod/prometheus pod/probe --timeout=120s
prom_ip=$(k -n "$NS" get pod prometheus -o jsonpath='{.status.podIP}')
api=http://$prom_ip:9090/api/v1
[[ $prom_ip != *:* ]] || api=http://[$prom_ip]:9090/api/v1
prom_get() { k -n "$NS" exec probe -- curl -g -fsS --max-time 5 "$api/$1"; }

weftd_pods=$(k -n kube-system get pods -l app.kubernetes.io/component=weftd -o name | wc -l)
controller_pods=$(k -n kube-system get pods -l app.kubernetes.io/component=controller -o name | wc -l)
want=$((weftd_pods + controller_pods))
step "1. $weftd_pods weftd and $controller_pods controller pods as targets, up"
# up_targets: "pod health" of every active target.
up_targets() {
	prom_get targets | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["labels"].get("pod", "?"), t["health"], t["scrapeUrl"])'
}
all_up() { [ "$(up_targets | awk '$2 == "up"' | wc -l)" -eq "$want" ]; }
wait_for "$want targets up" 60 all_up
show "$(up_targets)"
step "   $want targets up"

step "2. weft_ipam_addresses_in_use from every node"
series=$(prom_get 'query?query=weft_ipam_addresses_in_use' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print(r["metric"].get("node", "?"), r["metric"].get("family", "?"), r["value"][1])')
echo "$series" >&3
[ "$(awk '{print $1}' <<<"$series" | sort -u | wc -l)" -eq "$NODES" ] || fail "weft_ipam_addresses_in_use from $(awk '{print $1}' <<<"$series" | sort -u | tr '\n' ' '), want $NODES nodes"

if [ -n "$REMOVE" ]; then
	k delete namespace "$NS" --wait=true --timeout=120s
	k delete clusterrolebinding,clusterrole weft-e2e-prometheus
fi
step "prometheus passed in $((SECONDS - T0)) s"
