# The cluster's certificates and kubeconfigs (sourced by up.sh after lib.sh): one CA,
# the apiserver's serving certificate, the service-account key and a client certificate
# per identity, EC P-256 from the `openssl` command, the way e2e/src/controlplane.rs
# makes them. kubelets serve with the self-signed certificates they generate (the
# apiserver does not verify kubelets: no --kubelet-certificate-authority). The
# certificates' extensions are e2e/controlplane/openssl.cnf's sections.

# pki_req ARGS...: `openssl req -x509` with the common options, in PKI.
pki_req() {
	(cd "$PKI" && openssl req -x509 -config openssl.cnf -newkey ec \
		-pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 "$@")
}

# pki_cert NAME SUBJECT SECTION [SANS]: NAME.crt and NAME.key signed by the CA.
pki_cert() {
	local args=(-CA ca.crt -CAkey ca.key -subj "$2" -extensions "$3" -keyout "$1.key" -out "$1.crt")
	[ -z "${4:-}" ] || args+=(-addext "subjectAltName=$4")
	pki_req "${args[@]}"
}

# kubeconfig NAME USER SUBJECT: NAME.kubeconfig for USER with a new client certificate
# (SUBJECT: /O=group.../CN=user), the apiserver at APISERVER_URL, all data embedded.
kubeconfig() {
	local name=$1 user=$2
	pki_cert "$name" "$3" client
	cat >"$PKI/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: "$user"
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: $CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: "$user"
current-context: $CLUSTER_NAME
EOF
}

# make_pki NODES: everything the control plane and NODES nodes need.
make_pki() {
	local nodes=$1 n
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	cp "$CLUSTER_DIR/../controlplane/openssl.cnf" "$PKI/openssl.cnf"
	pki_req -subj "/CN=$CLUSTER_NAME-ca" -extensions ca -keyout ca.key -out ca.crt
	local sans="IP:$CP_V4,IP:$CP_V6,IP:127.0.0.1,IP:::1,IP:$SERVICE_APISERVER_V4,IP:$SERVICE_APISERVER_V6"
	sans+=",DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	sans+=",DNS:kubernetes.default.svc.cluster.local"
	pki_cert apiserver /CN=kube-apiserver serving "$sans"
	# The apiserver's identity towards kubelets (exec, logs): kubelets ask the apiserver
	# (webhook authorization), and system:masters may do anything.
	pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
	# SEC1 ("EC PRIVATE KEY"): the apiserver reads the public half from it too.
	(cd "$PKI" && openssl ecparam -name prime256v1 -genkey -noout -out sa.key)
	kubeconfig admin admin "/O=system:masters/CN=admin"
	# Users the default RBAC policy already binds (system:kube-controller-manager,
	# system:kube-scheduler, system:node-proxier for system:kube-proxy).
	kubeconfig kube-controller-manager system:kube-controller-manager /CN=system:kube-controller-manager
	kubeconfig kube-scheduler system:kube-scheduler /CN=system:kube-scheduler
	kubeconfig kube-proxy system:kube-proxy /CN=system:kube-proxy
	# kubelets: the Node authorizer and NodeRestriction confine each to its own Node.
	for n in $(seq 1 "$nodes"); do
		kubeconfig "kubelet-$(node_name "$n")" "system:node:$(node_name "$n")" \
			"/O=system:nodes/CN=system:node:$(node_name "$n")"
	done
	chmod 600 "$PKI"/*.key "$PKI"/*.kubeconfig
}
