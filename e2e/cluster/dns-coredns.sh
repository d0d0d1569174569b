# Cluster DNS the way clusters have it (sourced by up.sh after lib.sh): CoreDNS, built
# from its Go module (e2e/cluster/coredns/, the version kubeadm of the pinned Kubernetes
# deploys), running as pods on the pod network behind the `kube-dns` Service in
# kube-system, with the cluster's families (dual-stack: CLUSTER_DNS_V4 and
# CLUSTER_DNS_V6, the addresses every kubelet names as clusterDNS).
#
# The Corefile is kubeadm's minus `forward`: nothing outside the cluster's namespaces is
# reachable, so names outside cluster.local get SERVFAIL instead of a timeout.
# RBAC as kubeadm's (ClusterRole system:coredns: endpoints, services, pods, namespaces,
# endpointslices; list and watch).

COREDNS_REPLICAS=2

# coredns_build: the coredns binary and image, built when missing or of another version
# (e2e/cluster/build.sh; the Go build takes minutes the first time). Sets COREDNS_IMAGE.
coredns_build() {
	local version out
	version=$(awk '$1 == "github.com/coredns/coredns" { print $2 }' "$CLUSTER_DIR/coredns/go.mod")
	COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$version
	if [ -f "$IMAGES/coredns.tar" ] && [ "$(cat "$IMAGES/coredns.stamp" 2>/dev/null)" = "$version" ]; then
		return 0
	fi
	if ! "$TOOLS_BIN/coredns" -version 2>/dev/null | grep -qF "CoreDNS-${version#v}"; then
		"$CLUSTER_DIR/build.sh" coredns "$TOOLS_BIN" >/dev/null
	fi
	out=$("$CLUSTER_DIR/build.sh" coredns-image "$TOOLS_BIN" "$IMAGES")
	[ "$out" = "COREDNS_IMAGE=$COREDNS_IMAGE" ] || fail "build.sh coredns-image said '$out', want COREDNS_IMAGE=$COREDNS_IMAGE"
	echo "$version" >"$IMAGES/coredns.stamp"
}

# coredns_manifests: CoreDNS's RBAC, Corefile, Deployment and the kube-dns Service.
coredns_manifests() {
	local policy=SingleStack cluster_ips families
	[ "${#IP_FAMILIES[@]}" -eq 1 ] || policy=RequireDualStack
	cluster_ips=$(tr ',' '\n' <<<"$CLUSTER_DNS" | sed 's/^/  - /')
	families=$(printf '  - %s\n' "${IP_FAMILIES[@]}")
	cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: $COREDNS_REPLICAS
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      # Its own upstream is the node's resolver (none here: see the top).
      dnsPolicy: Default
      tolerations:
      - key: CriticalAddonsOnly
        operator: Exists
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {k8s-app: kube-dns}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities:
            add: [NET_BIND_SERVICE]
            drop: [ALL]
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap:
          name: coredns
          items: [{key: Corefile, path: Corefile}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
  annotations:
    prometheus.io/port: "9153"
    prometheus.io/scrape: "true"
spec:
  selector: {k8s-app: kube-dns}
  ipFamilyPolicy: $policy
  ipFamilies:
$families
  clusterIP: ${CLUSTER_DNS%%,*}
  clusterIPs:
$cluster_ips
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
EOF
}

# dns_install: CoreDNS's image on every node, deployed and answering (its pods Ready),
# on a pod network that serves pods.
dns_install() {
	local start=$SECONDS
	import_on_nodes "$IMAGES/coredns.tar" --base-name "${COREDNS_IMAGE%:*}"
	coredns_manifests | kubectl_admin apply -f -
	kubectl_admin -n kube-system rollout status deployment/coredns --timeout=180s
	step "   CoreDNS ready in $((SECONDS - start)) s: kube-dns at $CLUSTER_DNS"
}
