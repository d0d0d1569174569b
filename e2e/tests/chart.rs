//! The Helm chart (charts/weft), rendered by the pinned helm (e2e/helm) with several value
//! sets: the objects each value changes, and bad values refused by values.schema.json
//! with their path. `helm lint` must be clean. Rendering is client-side (`helm
//! template`), so no cluster is involved; `kubectl patch --local` with an empty patch
//! turns the YAML into JSON without touching it.
//!
//! Needs helm and kubectl in `WEFT_TOOLS_BIN` (e2e/helm/build.sh, e2e/setup.sh), or
//! `HELM` and `KUBECTL` naming them.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const NAMESPACE: &str = "kube-system";
const RELEASE: &str = "weft";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(variable: &str, name: &str, builder: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| weft_e2e::tools_bin().join(name));
    assert!(
        path.exists(),
        "{} is missing: {builder} builds it (or set {variable})",
        path.display()
    );
    path
}

fn helm_binary() -> PathBuf {
    tool("HELM", "helm", "e2e/helm/build.sh ~/.cache/weft/tools/bin")
}

/// `helm` with no repositories, plugins or cache of the user's: the chart alone.
fn isolated(mut helm: Command) -> Command {
    let home = std::env::temp_dir().join(format!("weft-chart-test-helm-{}", std::process::id()));
    helm.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    helm
}

fn helm() -> Command {
    isolated(Command::new(helm_binary()))
}

/// `helm template` with `--set` values (`json:` before one makes it `--set-json`): its
/// stdout, or its stderr as the error.
fn template(values: &[&str]) -> Result<String, String> {
    let mut helm = helm();
    helm.args(["template", RELEASE])
        .arg(repo().join("charts/weft"))
        .args(["--namespace", NAMESPACE]);
    for value in values {
        match value.strip_prefix("json:") {
            Some(json) => helm.args(["--set-json", json]),
            None => helm.args(["--set", value]),
        };
    }
    let out = helm.output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The rendered objects, as JSON.
fn render(values: &[&str]) -> Vec<Value> {
    let yaml = template(values).unwrap_or_else(|e| panic!("helm template {values:?}: {e}"));
    let mut kubectl = Command::new(tool("KUBECTL", "kubectl", "e2e/setup.sh"))
        .args([
            "patch", "--local", "-f", "-", "--type", "merge", "-p", "{}", "-o", "json",
        ])
        .args(["--kubeconfig", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kubectl
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = kubectl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl could not read the rendered chart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}

/// The one object of `kind` named `name`.
fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}: found {}", found.len());
    found[0]
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

fn container<'a>(pod_spec: &'a Value, list: &str, name: &str) -> &'a Value {
    pod_spec[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} entry {name}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn weftd(objects: &[Value]) -> &Value {
    &object(objects, "DaemonSet", "weft-weftd")["spec"]["template"]["spec"]
}

fn conflist(objects: &[Value]) -> Value {
    let map = object(objects, "ConfigMap", "weft-cni-conflist");
    serde_json::from_str(map["data"]["conflist.json"].as_str().unwrap()).unwrap()
}

#[test]
fn defaults_render_every_object_once() {
    let objects = render(&[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/weft-controller",
            "ClusterRole/weft-controller-events",
            "ClusterRole/weft-weftd",
            "ClusterRoleBinding/weft-controller",
            "ClusterRoleBinding/weft-controller-events",
            "ClusterRoleBinding/weft-weftd",
            "ConfigMap/weft-cni-conflist",
            "CustomResourceDefinition/weftaddressgroups.weft.dev",
            "CustomResourceDefinition/weftclaimblocks.weft.dev",
            "CustomResourceDefinition/weftnetworks.weft.dev",
            "CustomResourceDefinition/weftnodepolicies.weft.dev",
            "CustomResourceDefinition/weftnodes.weft.dev",
            "CustomResourceDefinition/weftpolicies.weft.dev",
            "CustomResourceDefinition/weftpolicyindexes.weft.dev",
            "DaemonSet/weft-weftd",
            "Deployment/weft-controller",
            "PodDisruptionBudget/weft-controller",
            "Role/weft-controller-lease",
            "RoleBinding/weft-controller-lease",
            "Secret/weft-policy-relay-tls",
            "Service/weft-policy-relay",
            "ServiceAccount/weft-controller",
            "ServiceAccount/weft-weftd",
            "ValidatingAdmissionPolicy/weft-controller-lease-and-events",
            "ValidatingAdmissionPolicy/weft-controller-node-pod-cidrs",
            "ValidatingAdmissionPolicy/weft-weftd-own-weftnode",
            "ValidatingAdmissionPolicy/weft-weftd-own-weftnodepolicy",
            "ValidatingAdmissionPolicyBinding/weft-controller-lease-and-events",
            "ValidatingAdmissionPolicyBinding/weft-controller-node-pod-cidrs",
            "ValidatingAdmissionPolicyBinding/weft-weftd-own-weftnode",
            "ValidatingAdmissionPolicyBinding/weft-weftd-own-weftnodepolicy",
            "WeftNetwork/default",
        ]
    );
}

#[test]
fn weftd_runs_with_net_admin_only_on_every_node() {
    let objects = render(&[]);
    let daemonset = object(&objects, "DaemonSet", "weft-weftd");
    assert_eq!(
        daemonset["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    );
    let pod = weftd(&objects);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "Default");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["serviceAccountName"], "weft-weftd");
    let weftd = container(pod, "containers", "weftd");
    assert_eq!(
        weftd["securityContext"],
        json!({"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
               "seccompProfile": {"type": "RuntimeDefault"},
               "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}})
    );
    assert_eq!(
        weftd["env"][0],
        json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    );
    assert_eq!(
        weftd["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 9641})
    );
    assert_eq!(
        weftd["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 9641})
    );
    let args = strings(&weftd["args"]);
    for expected in [
        "--in-cluster",
        "--network=default",
        "--state-dir=/run/weft/state",
        "--socket=/run/weft/weftd.sock",
        "--metrics-addr=:9641",
        "--cni-conflist=/host/cni-conf/05-weft.conflist",
        "--cni-conflist-template=/etc/weft/cni/conflist.json",
        "--proc-sys=/host/proc/sys",
    ] {
        assert!(
            args.contains(&expected),
            "weftd args {args:?} lack {expected}"
        );
    }
    // State on the node's tmpfs, never in an emptyDir; /proc/sys/net writable.
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().all(|v| v.get("emptyDir").is_none()));
    let host_path = |name: &str| &volumes.iter().find(|v| v["name"] == name).unwrap()["hostPath"];
    assert_eq!(
        host_path("run"),
        &json!({"path": "/run/weft", "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        host_path("proc-sys-net"),
        &json!({"path": "/proc/sys/net", "type": "Directory"})
    );
    assert_eq!(host_path("cni-bin")["path"], "/opt/cni/bin");
    assert_eq!(host_path("cni-conf")["path"], "/etc/cni/net.d");
    let annotations = &daemonset["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9641");
}

#[test]
fn the_init_container_installs_the_chained_plugins_by_rename() {
    let objects = render(&[]);
    let install = container(weftd(&objects), "initContainers", "install-cni");
    assert_eq!(
        strings(&install["args"]),
        ["/usr/lib/weft/cni", "/host/cni-bin", "weft", "portmap"]
    );
    let script = install["command"][2].as_str().unwrap();
    assert_eq!(
        script,
        std::fs::read_to_string(repo().join("charts/weft/files/install-cni.sh")).unwrap()
    );
    assert_eq!(
        install["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert_eq!(
        conflist(&objects),
        json!({"cniVersion": "1.1.0", "name": "weft", "plugins": [
            {"type": "weft", "socket": "/run/weft/weftd.sock",
                "capabilities": {"io.kubernetes.cri.pod-annotations": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]})
    );

    let objects = render(&[
        "cni.portmap=false",
        "cni.bandwidth=true",
        "cni.loopback=true",
        "cni.cniVersion=1.0.0",
    ]);
    let install = container(weftd(&objects), "initContainers", "install-cni");
    assert_eq!(
        strings(&install["args"]),
        [
            "/usr/lib/weft/cni",
            "/host/cni-bin",
            "weft",
            "bandwidth",
            "loopback"
        ]
    );
    assert_eq!(
        conflist(&objects),
        json!({"cniVersion": "1.0.0", "name": "weft", "plugins": [
            {"type": "weft", "socket": "/run/weft/weftd.sock",
                "capabilities": {"io.kubernetes.cri.pod-annotations": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}}]})
    );
}

#[test]
fn a_changed_conflist_rolls_weftd() {
    let checksum = |values: &[&str]| {
        let objects = render(values);
        object(&objects, "DaemonSet", "weft-weftd")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/cni-conflist"]
            .clone()
    };
    assert_ne!(checksum(&[]), checksum(&["cni.bandwidth=true"]));
    assert_eq!(checksum(&[]), checksum(&["controller.replicas=3"]));
}

#[test]
fn values_move_weftd_paths_ports_and_privilege() {
    let objects = render(&[
        "weftd.runDir=/run/weft-b",
        "weftd.metricsPort=19641",
        "weftd.maxUnavailable=10%",
        "weftd.privileged=true",
        "weftd.underlayInterface=eth1",
        "cni.binDir=/usr/libexec/cni",
        "cni.confDir=/etc/cni/conf.d",
        "cni.conflistName=00-weft.conflist",
        "apiServer.host=2001:db8::1",
        "apiServer.port=6443",
    ]);
    let daemonset = object(&objects, "DaemonSet", "weft-weftd");
    assert_eq!(
        daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        "10%"
    );
    let pod = weftd(&objects);
    let weftd = container(pod, "containers", "weftd");
    assert_eq!(weftd["securityContext"], json!({"privileged": true}));
    let args = strings(&weftd["args"]);
    for expected in [
        "--state-dir=/run/weft-b/state",
        "--socket=/run/weft-b/weftd.sock",
        "--metrics-addr=:19641",
        "--underlay-interface=eth1",
        "--cni-conflist=/host/cni-conf/00-weft.conflist",
    ] {
        assert!(
            args.contains(&expected),
            "weftd args {args:?} lack {expected}"
        );
    }
    assert!(!args.iter().any(|a| a.starts_with("--proc-sys")));
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["name"] != "proc-sys-net"));
    assert_eq!(weftd["readinessProbe"]["httpGet"]["port"], 19641);
    let env = weftd["env"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "KUBERNETES_SERVICE_HOST", "value": "2001:db8::1"})));
    assert!(env.contains(&json!({"name": "KUBERNETES_SERVICE_PORT", "value": "6443"})));
    assert_eq!(
        conflist(&objects)["plugins"][0],
        json!({"type": "weft", "socket": "/run/weft-b/weftd.sock",
            "capabilities": {"io.kubernetes.cri.pod-annotations": true}})
    );
}

#[test]
fn the_controller_spreads_two_leader_elected_replicas() {
    let objects = render(&[]);
    let deployment = object(&objects, "Deployment", "weft-controller");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "weft-controller");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "DoNotSchedule"
    );
    let controller = container(pod, "containers", "controller");
    let args = strings(&controller["args"]);
    for expected in [
        "--network=default",
        "--metrics-addr=:9642",
        "--lease-namespace=kube-system",
        "--lease-name=weft-controller",
        "--identity=$(POD_NAME)",
    ] {
        assert!(
            args.contains(&expected),
            "controller args {args:?} lack {expected}"
        );
    }
    assert_eq!(
        controller["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 9642})
    );
    assert_eq!(
        controller["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 9642})
    );
    assert_eq!(
        controller["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    let pdb = object(&objects, "PodDisruptionBudget", "weft-controller");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);

    let objects = render(&["controller.replicas=3", "controller.leaseName=weft-b"]);
    let deployment = object(&objects, "Deployment", "weft-controller");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let role = object(&objects, "Role", "weft-controller-lease");
    assert_eq!(role["rules"][1]["resourceNames"], json!(["weft-b"]));
}

/// The rules README lists for each program, and nothing more.
#[test]
fn rbac_is_least_privilege_per_service_account() {
    let objects = render(&[]);
    assert_eq!(
        object(&objects, "ClusterRole", "weft-weftd")["rules"],
        json!([
            {"apiGroups": ["weft.dev"], "resources": ["weftnodes"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnodes/status"], "verbs": ["patch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnetworks"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftpolicies", "weftaddressgroups", "weftnodepolicies", "weftpolicyindexes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnodepolicies/status"], "verbs": ["patch"]},
        ])
    );
    assert_eq!(
        object(&objects, "ClusterRole", "weft-controller")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnetworks"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnetworks/status"], "verbs": ["patch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnodes"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftnodes/status"], "verbs": ["patch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftclaimblocks"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftpolicies", "weftaddressgroups", "weftnodepolicies", "weftpolicyindexes"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["weft.dev"], "resources": ["weftpolicies/status"], "verbs": ["patch"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
        ])
    );
    // Events in every namespace (NetworkPolicies' are in theirs), create and patch only;
    // the admission policy says about what and where.
    assert_eq!(
        object(&objects, "ClusterRole", "weft-controller-events")["rules"],
        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}])
    );
    for (binding, account) in [
        ("weft-weftd", "weft-weftd"),
        ("weft-controller", "weft-controller"),
        ("weft-controller-events", "weft-controller"),
    ] {
        assert_eq!(
            object(&objects, "ClusterRoleBinding", binding)["subjects"],
            json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}])
        );
    }
}

#[test]
fn the_admission_policy_binds_weftd_to_its_own_weftnode() {
    let objects = render(&[]);
    let policy = object(
        &objects,
        "ValidatingAdmissionPolicy",
        "weft-weftd-own-weftnode",
    );
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == \"system:serviceaccount:kube-system:weft-weftd\""
    );
    let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["resources"], json!(["weftnodes", "weftnodes/status"]));
    let validation = policy["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    assert!(validation.contains(
        "request.name in request.userInfo.extra['authentication.kubernetes.io/node-name']"
    ));
    let binding = object(
        &objects,
        "ValidatingAdmissionPolicyBinding",
        "weft-weftd-own-weftnode",
    );
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));

    // The controller's: Node writes limited to podCIDRs, its one Lease (named by the
    // values), its own Events.
    let objects = render(&["controller.leaseName=weft-b"]);
    for (name, resources) in [
        ("weft-controller-node-pod-cidrs", vec!["nodes"]),
        ("weft-controller-lease-and-events", vec!["leases", "events"]),
    ] {
        let policy = object(&objects, "ValidatingAdmissionPolicy", name);
        assert_eq!(
            policy["spec"]["matchConditions"][0]["expression"],
            "request.userInfo.username == \"system:serviceaccount:kube-system:weft-controller\"",
            "{name}"
        );
        let matched: Vec<&str> = policy["spec"]["matchConstraints"]["resourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| strings(&r["resources"]))
            .collect();
        assert_eq!(matched, resources, "{name}");
        let binding = object(&objects, "ValidatingAdmissionPolicyBinding", name);
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    }
    let lease = object(
        &objects,
        "ValidatingAdmissionPolicy",
        "weft-controller-lease-and-events",
    );
    assert!(lease["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap()
        .contains("request.name == \"weft-b\""));
    // Events: about Nodes and the WeftNetwork in 'default', about a NetworkPolicy in
    // that policy's namespace (RBAC grants events in every namespace).
    let events = lease["spec"]["validations"][1]["expression"]
        .as_str()
        .unwrap();
    for part in [
        "request.namespace == 'default'",
        "object.?regarding.?kind.orValue('') == 'NetworkPolicy'",
        "object.?regarding.?namespace.orValue('') == request.namespace",
    ] {
        assert!(events.contains(part), "{events}");
    }

    let objects = render(&["admissionPolicy.enabled=false"]);
    assert!(objects.iter().all(|o| {
        o["kind"] != "ValidatingAdmissionPolicy" && o["kind"] != "ValidatingAdmissionPolicyBinding"
    }));
}

/// `value` with every number as a float: YAML writes the generated `0.0` as `0`.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The CRDs are crates/api's, kept on uninstall, upgraded with the release.
#[test]
fn crds_are_the_generated_ones_and_kept() {
    let objects = render(&[]);
    let dir = repo().join("crates/api/crds");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let generated: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let name = generated["metadata"]["name"].as_str().unwrap();
        let rendered = object(&objects, "CustomResourceDefinition", name);
        assert_eq!(
            numbers_as_floats(&rendered["spec"]),
            numbers_as_floats(&generated["spec"]),
            "{name}"
        );
        assert_eq!(
            rendered["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        files += 1;
    }
    assert_eq!(
        files,
        objects
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .count()
    );
}

#[test]
fn the_weftnetwork_is_rendered_from_values() {
    let objects = render(&[]);
    let network = object(&objects, "WeftNetwork", "default");
    assert_eq!(
        network["spec"],
        json!({"mode": "dual", "ipv6Routing": "fabric", "ipv6Ranges": [{"range": "2001:db8:1000::/64"}],
               "ipv4Network": "10.255.0.0/16", "ipv4SubnetLength": 24, "vxlanVNI": 1,
               "vxlanPort": 4789, "releaseCooldownSeconds": 30})
    );
    // No cluster to look the CRD up in: created after it, by a post-install hook.
    assert_eq!(
        network["metadata"]["annotations"]["helm.sh/hook"],
        "post-install"
    );
    assert_eq!(
        network["metadata"]["annotations"]["meta.helm.sh/release-name"],
        RELEASE
    );

    let objects = render(&[
        "network.name=plan-b",
        "network.mode=ipv6",
        "network.ipv6Routing=direct",
        "network.ipv6Ranges[0].range=2001:db8:1000::/56",
        "network.ipv6Ranges[0].zone=zone-a",
        "network.ipv6Ranges[0].prefixLength=64",
        "network.ipv6Ranges[0].reserved={2001:db8:1000::/64,2001:db8:1000:10::-2001:db8:1000:1f::}",
        "network.ipv6Ranges[0].gateway=2001:db8:1000:ff::1",
        "network.ipv6Ranges[1].range=2001:db8:2000::/64",
        "network.ipv4Network=10.96.0.0/12",
        "network.ipv4SubnetLength=26",
        "network.vxlanVNI=4096",
        "network.vxlanPort=8472",
        "network.releaseCooldownSeconds=0",
    ]);
    let network = object(&objects, "WeftNetwork", "plan-b");
    assert_eq!(
        network["spec"],
        json!({"mode": "ipv6", "ipv6Routing": "direct", "ipv6Ranges": [
                   {"range": "2001:db8:1000::/56", "zone": "zone-a", "prefixLength": 64,
                    "reserved": ["2001:db8:1000::/64", "2001:db8:1000:10::-2001:db8:1000:1f::"],
                    "gateway": "2001:db8:1000:ff::1"},
                   {"range": "2001:db8:2000::/64"}],
               "ipv4Network": "10.96.0.0/12", "ipv4SubnetLength": 26, "vxlanVNI": 4096,
               "vxlanPort": 8472, "releaseCooldownSeconds": 0})
    );
    let weftd = container(weftd(&objects), "containers", "weftd");
    assert!(strings(&weftd["args"]).contains(&"--network=plan-b"));

    let objects = render(&["network.mode=ipv4", "json:network.ipv6Ranges=[]"]);
    assert_eq!(
        object(&objects, "WeftNetwork", "default")["spec"]["ipv6Ranges"],
        json!([])
    );
}

#[test]
fn prometheus_annotations_and_pod_monitor_follow_values() {
    let objects = render(&[
        "prometheus.annotations=false",
        "prometheus.podMonitor.enabled=true",
    ]);
    let annotations = &object(&objects, "Deployment", "weft-controller")["spec"]["template"]
        ["metadata"]["annotations"];
    assert!(annotations.get("prometheus.io/scrape").is_none());
    let monitor = object(&objects, "PodMonitor", "weft");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchExpressions"][0]["values"],
        json!(["weftd", "controller"])
    );
    assert!(render(&[]).iter().all(|o| o["kind"] != "PodMonitor"));
}

#[test]
fn uninstall_cleanup_is_opt_in_and_only_a_post_delete_hook() {
    let hooks = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"] == "post-delete")
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert!(hooks(&render(&[])).is_empty());
    let objects = render(&["uninstall.cleanup=true"]);
    let mut names = hooks(&objects);
    names.sort();
    assert_eq!(
        names,
        [
            "DaemonSet/weft-cleanup",
            "Job/weft-cleanup-wait",
            "Role/weft-cleanup",
            "RoleBinding/weft-cleanup",
            "ServiceAccount/weft-cleanup",
        ]
    );
    let daemonset = object(&objects, "DaemonSet", "weft-cleanup");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let cleanup = container(pod, "initContainers", "cleanup");
    assert_eq!(
        strings(&cleanup["args"]),
        [
            "/host/cni-conf/05-weft.conflist",
            "/host/cni-bin/weft",
            "/run/weft/weftd.sock"
        ]
    );
    assert_eq!(
        cleanup["command"][2].as_str().unwrap(),
        std::fs::read_to_string(repo().join("charts/weft/files/cleanup.sh")).unwrap()
    );
    let job = object(&objects, "Job", "weft-cleanup-wait");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["/usr/bin/daemonset-wait", NAMESPACE, "weft-cleanup"])
    );
    // The waiter runs after the objects it needs and the DaemonSet it waits for.
    let weight = |kind: &str, name: &str| {
        object(&objects, kind, name)["metadata"]["annotations"]["helm.sh/hook-weight"]
            .as_str()
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    assert!(weight("ServiceAccount", "weft-cleanup") < weight("DaemonSet", "weft-cleanup"));
    assert!(weight("DaemonSet", "weft-cleanup") < weight("Job", "weft-cleanup-wait"));
    let role = object(&objects, "Role", "weft-cleanup");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": ["weft-cleanup"], "verbs": ["get"]}])
    );
}

/// Each bad value fails `helm template` naming its path.
#[test]
fn bad_values_fail_naming_their_path() {
    for (value, path) in [
        ("network.mode=triple", "/network/mode"),
        ("network.ipv6Routing=bgp", "/network/ipv6Routing"),
        (
            "network.ipv6Ranges[0].range=10.0.0.0/8",
            "/network/ipv6Ranges/0/range",
        ),
        (
            "network.ipv6Ranges[0].prefixLength=130",
            "/network/ipv6Ranges/0/prefixLength",
        ),
        (
            "network.ipv6Ranges[0].reserved={not-an-address}",
            "/network/ipv6Ranges/0/reserved/0",
        ),
        ("json:network.ipv6Ranges=[]", "/network/ipv6Ranges"),
        ("network.ipv4Network=10.255.0.0/33", "/network/ipv4Network"),
        ("network.ipv4SubnetLength=30", "/network/ipv4SubnetLength"),
        ("network.vxlanVNI=16777216", "/network/vxlanVNI"),
        ("network.vxlanPort=0", "/network/vxlanPort"),
        ("network.name=Default_Net", "/network/name"),
        ("cni.conflistName=weft.conf", "/cni/conflistName"),
        ("cni.cniVersion=0.3.1", "/cni/cniVersion"),
        ("cni.binDir=opt/cni/bin", "/cni/binDir"),
        ("weftd.runDir=/var/lib/weft", "/weftd/runDir"),
        ("weftd.maxUnavailable=0", "/weftd/maxUnavailable"),
        ("weftd.metricsPort=80", "/weftd/metricsPort"),
        ("weftd.logLevel=verbose", "/weftd/logLevel"),
        ("weftd.extraArgs={mode}", "/weftd/extraArgs/0"),
        ("weftd.speed=1", "/weftd"),
        ("controller.replicas=0", "/controller/replicas"),
        ("policyRelay.port=443", "/policyRelay/port"),
        (
            "policyRelay.existingSecret=Relay_TLS",
            "/policyRelay/existingSecret",
        ),
        ("apiServer.host=192.0.2.1", "/apiServer/port"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("uninstall.timeoutSeconds=5", "/uninstall/timeoutSeconds"),
    ] {
        let Err(error) = template(&[value]) else {
            panic!("--set {value} was accepted");
        };
        let value = value.trim_start_matches("json:");
        assert!(
            error.contains(&format!("'{path}'")),
            "--set {value}: the error does not name {path}: {error}"
        );
    }
}

/// The policy relay: a Service over the controllers, a certificate for its name, the
/// controllers serving it, weftd connecting by the Service's ClusterIP and holding the CA
/// only; off, or with the operator's Secret, as the values say.
#[test]
fn the_policy_relay_is_on_with_a_certificate_for_its_service() {
    let objects = render(&[]);
    let service = object(&objects, "Service", "weft-policy-relay");
    assert_eq!(service["spec"]["ports"][0]["port"], 9643);
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "controller"
    );
    let secret = object(&objects, "Secret", "weft-policy-relay-tls");
    let pem = |key: &str| {
        let text = secret["data"][key].as_str().unwrap();
        let out = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        out.stdin
            .as_ref()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        out.wait_with_output().unwrap().stdout
    };
    // The certificate names the Service and is signed by ca.crt.
    let dir = std::env::temp_dir().join(format!("weft-chart-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for key in ["tls.crt", "ca.crt"] {
        std::fs::write(dir.join(key), pem(key)).unwrap();
    }
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        sans.contains("DNS:weft-policy-relay.kube-system.svc,"),
        "{sans}"
    );
    let verified = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(verified.status.success(), "{verified:?}");

    let controller = &object(&objects, "Deployment", "weft-controller")["spec"]["template"]["spec"];
    let args = strings(&container(controller, "containers", "controller")["args"]);
    for arg in [
        "--relay-addr=:9643",
        "--relay-cert=/etc/weft/relay/tls.crt",
        "--relay-key=/etc/weft/relay/tls.key",
    ] {
        assert!(args.contains(&arg), "{args:?}");
    }
    let args = strings(&container(weftd(&objects), "containers", "weftd")["args"]);
    for arg in [
        "--policy-relay=$(WEFT_POLICY_RELAY_PORT)",
        "--policy-relay-ca=/etc/weft/relay/ca.crt",
        "--policy-relay-server-name=weft-policy-relay.kube-system.svc",
    ] {
        assert!(args.contains(&arg), "{args:?}");
    }
    let volumes = weftd(&objects)["volumes"].as_array().unwrap();
    let relay = volumes.iter().find(|v| v["name"] == "relay-ca").unwrap();
    assert_eq!(
        relay["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "weftd gets the CA, never the relay's key"
    );

    let off = render(&["policyRelay.enabled=false"]);
    assert!(kinds(&off).iter().all(|k| !k.contains("policy-relay")));
    let args = strings(&container(weftd(&off), "containers", "weftd")["args"]);
    assert!(args.iter().all(|a| !a.contains("relay")), "{args:?}");

    let theirs = render(&["policyRelay.existingSecret=relay-from-cert-manager"]);
    assert!(kinds(&theirs).iter().all(|k| !k.starts_with("Secret/")));
    let volumes = weftd(&theirs)["volumes"].as_array().unwrap();
    let relay = volumes.iter().find(|v| v["name"] == "relay-ca").unwrap();
    assert_eq!(relay["secret"]["secretName"], "relay-from-cert-manager");
}

#[test]
fn helm_lint_is_clean() {
    let out = helm()
        .args(["lint", "--strict"])
        .arg(repo().join("charts/weft"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    assert!(
        !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
        "{stdout}"
    );
}

/// The chart installed by helm on a real kube-apiserver (no kubelets: nothing runs, the
/// objects are what is checked): the WeftNetwork's first-install hook after the CRDs,
/// the per-node admission policy and RBAC with weftd's own pod-bound token, adoption of
/// the hook's WeftNetwork by `helm upgrade`, and CRDs kept by `helm uninstall`.
mod installed {
    use super::{helm_binary, isolated, repo, NAMESPACE, RELEASE};
    use serde_json::{json, Value};
    use std::path::Path;
    use std::process::Output;
    use weft_e2e::{serving_namespace, ControlPlane, Netns};

    const SERVER_V6: &str = "2001:db8:ffff::2";

    /// A control plane in a namespace of its own; field order is drop order.
    struct Cluster {
        cp: ControlPlane,
        ns: Netns,
    }

    impl Cluster {
        fn start() -> Cluster {
            let ns = serving_namespace("chart", &[&format!("{SERVER_V6}/64")]);
            let cp = ControlPlane::start(&ns, SERVER_V6.parse().unwrap());
            Cluster { cp, ns }
        }

        /// helm against this apiserver, from the control plane's namespace.
        fn helm(&self, args: &[&str]) -> Output {
            let mut helm = isolated(std::process::Command::new("ip"));
            helm.args(["netns", "exec", self.ns.name()])
                .arg(helm_binary())
                .args(args)
                .args(["--namespace", NAMESPACE])
                .arg(format!("--kubeconfig={}", self.cp.kubeconfig().display()));
            helm.output().unwrap()
        }

        fn helm_ok(&self, args: &[&str]) -> String {
            let out = self.helm(args);
            assert!(
                out.status.success(),
                "helm {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }

        fn get(&self, args: &[&str]) -> Value {
            let mut all = args.to_vec();
            all.extend(["-o", "json"]);
            serde_json::from_str(&self.cp.kubectl_ok(&all)).unwrap()
        }

        fn create(&self, doc: Value) {
            self.cp
                .kubectl_input_ok(&["create", "-f", "-"], &doc.to_string());
        }

        /// A kubeconfig holding a token for `account`, bound to `pod` (whose node the
        /// apiserver writes into the token).
        fn token_kubeconfig(&self, account: &str, pod: &str) -> std::path::PathBuf {
            let token = self.cp.kubectl_ok(&[
                "create",
                "token",
                account,
                "-n",
                NAMESPACE,
                "--bound-object-kind=Pod",
                &format!("--bound-object-name={pod}"),
            ]);
            self.cp.token_kubeconfig(pod, &token)
        }

        fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
            self.cp.kubectl_from(&self.ns, kubeconfig, args)
        }
    }

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    }

    fn weftnode(name: &str) -> Value {
        json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
               "metadata": {"name": name}, "spec": {"nodeName": name}})
    }

    /// weftd's pod on `node`, as the DaemonSet would make it (nothing runs it here).
    fn weftd_pod(name: &str, node: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"nodeName": node, "serviceAccountName": "weft-weftd",
                        "containers": [{"name": "weftd", "image": "weft.dev/weft:0.1.0"}]}})
    }

    fn patch_underlay(cluster: &Cluster, kubeconfig: &Path, node: &str) -> Output {
        cluster.kubectl_as(
            kubeconfig,
            &[
                "patch",
                "weftnode",
                node,
                "--type=merge",
                "-p",
                r#"{"spec":{"underlayIPv4":"192.0.2.7"}}"#,
            ],
        )
    }

    #[test]
    fn install_upgrade_uninstall_on_an_apiserver() {
        let cluster = Cluster::start();
        let chart = repo().join("charts/weft");
        let chart = chart.to_str().unwrap();
        cluster.helm_ok(&["install", RELEASE, chart]);

        // The CRDs came with the release, the WeftNetwork after them (a hook).
        let network = cluster.get(&["get", "weftnetwork", "default"]);
        assert_eq!(
            network["spec"]["ipv6Ranges"],
            json!([{"range": "2001:db8:1000::/64", "prefixLength": 80}])
        );
        let crd = cluster.get(&["get", "crd", "weftnodes.weft.dev"]);
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );

        // weftd's token, bound to its pod on node-a, writes node-a's WeftNode only.
        for name in ["node-a", "node-b"] {
            cluster.create(node(name));
            cluster.create(weftnode(name));
        }
        cluster.create(weftd_pod("weftd-a", "node-a"));
        let weftd_a = cluster.token_kubeconfig("weft-weftd", "weftd-a");
        let own = patch_underlay(&cluster, &weftd_a, "node-a");
        assert!(
            own.status.success(),
            "{}",
            String::from_utf8_lossy(&own.stderr)
        );
        let other = patch_underlay(&cluster, &weftd_a, "node-b");
        let refused = String::from_utf8_lossy(&other.stderr);
        assert!(!other.status.success());
        assert!(
            refused.contains(
                "weftd may write only the WeftNode of the node its token is bound to, not node-b"
            ),
            "{refused}"
        );
        assert_eq!(
            cluster.get(&["get", "weftnode", "node-b"])["spec"].get("underlayIPv4"),
            None
        );
        // Its NetworkPolicy report goes to node-a's WeftNodePolicy only.
        for name in ["node-a", "node-b"] {
            cluster.create(
                json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNodePolicy",
                                  "metadata": {"name": name}, "spec": {"nodeName": name}}),
            );
        }
        // As weftd writes it: server-side apply of the status, no read first (weftd may
        // not get the subresource).
        let report = |node: &str| {
            let doc = std::env::temp_dir().join(format!(
                "weft-chart-{}-{node}-status.json",
                std::process::id()
            ));
            let status = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNodePolicy",
                                "metadata": {"name": node}, "status": {"pendingPods": 1}});
            std::fs::write(&doc, status.to_string()).unwrap();
            let out = cluster.kubectl_as(
                &weftd_a,
                &[
                    "apply",
                    "--server-side",
                    "--subresource=status",
                    "--field-manager=weftd",
                    "-f",
                    doc.to_str().unwrap(),
                ],
            );
            std::fs::remove_file(&doc).unwrap();
            out
        };
        let own = report("node-a");
        assert!(
            own.status.success(),
            "{}",
            String::from_utf8_lossy(&own.stderr)
        );
        let other = report("node-b");
        let refused = String::from_utf8_lossy(&other.stderr);
        assert!(
            refused.contains("weftd may report only on the WeftNodePolicy of the node its token is bound to, not node-b"),
            "{refused}"
        );
        // And RBAC: no creating or deleting WeftNodes, no writing the plan or policies.
        for (verb, resource, allowed) in [
            ("patch", "weftnodes", "yes"),
            ("patch", "weftnodes/status", "yes"),
            ("watch", "weftnetworks", "yes"),
            ("watch", "weftpolicies", "yes"),
            ("watch", "weftaddressgroups", "yes"),
            ("patch", "weftpolicies", "no"),
            ("patch", "weftnodepolicies", "no"),
            ("create", "weftnodes", "no"),
            ("delete", "weftnodes", "no"),
            ("patch", "weftnetworks", "no"),
            ("get", "nodes", "no"),
        ] {
            let out = cluster.kubectl_as(&weftd_a, &["auth", "can-i", verb, resource]);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                allowed,
                "weftd {verb} {resource}"
            );
        }

        // The upgrade adopts the hook's WeftNetwork and changes it, and keeps the
        // relay's certificate (weftd's running pods hold its CA).
        let relay_tls = || {
            cluster.get(&["get", "secret", "-n", NAMESPACE, "weft-policy-relay-tls"])["data"]
                .clone()
        };
        let installed_tls = relay_tls();
        assert!(installed_tls["ca.crt"].is_string(), "{installed_tls}");
        cluster.helm_ok(&[
            "upgrade",
            RELEASE,
            chart,
            "--set",
            "network.releaseCooldownSeconds=90",
        ]);
        let network = cluster.get(&["get", "weftnetwork", "default"]);
        assert_eq!(network["spec"]["releaseCooldownSeconds"], 90);
        assert_eq!(network["metadata"]["annotations"].get("helm.sh/hook"), None);
        assert_eq!(
            relay_tls(),
            installed_tls,
            "the upgrade made a new certificate"
        );

        // Uninstall keeps the CRDs and what they hold.
        cluster.helm_ok(&["uninstall", RELEASE]);
        cluster.get(&[
            "get",
            "crd",
            "weftnetworks.weft.dev",
            "weftnodes.weft.dev",
            "weftclaimblocks.weft.dev",
        ]);
        cluster.get(&["get", "weftnode", "node-a"]);
        let out = cluster
            .cp
            .kubectl(&["get", "daemonset", "-n", NAMESPACE, "weft-weftd"]);
        assert!(
            !out.status.success(),
            "weftd's DaemonSet outlived the release"
        );
    }

    /// `helm template` of the uninstall hooks alone, with the clean-up on.
    fn cleanup_hooks() -> String {
        let out = super::helm()
            .args(["template", RELEASE])
            .arg(repo().join("charts/weft"))
            .args(["--namespace", NAMESPACE, "--set", "uninstall.cleanup=true"])
            .args(["--show-only", "templates/uninstall-cleanup.yaml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// e2e/image/daemonset-wait, built with Go (cached after the first build).
    fn daemonset_wait(dir: &Path) -> std::path::PathBuf {
        let out = dir.join("daemonset-wait");
        let path = format!(
            "/usr/local/go/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let built = std::process::Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(repo().join("e2e/image/daemonset-wait"))
            .env("PATH", path)
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    }

    fn set_cleanup_status(cluster: &Cluster, ready: u32) {
        let status = json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2, "numberMisscheduled": 0,
            "updatedNumberScheduled": 2, "numberReady": ready}});
        cluster.cp.kubectl_ok(&[
            "patch",
            "daemonset",
            "weft-cleanup",
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    /// The uninstall Job's waiter, as the Job runs it (its ServiceAccount's token and CA
    /// where a pod has them, the apiserver from the environment): it reads the clean-up
    /// DaemonSet with only the hook's Role, verifying the apiserver's certificate, and
    /// exits once every scheduled pod is ready, not before.
    #[test]
    fn the_uninstall_waiter_waits_for_every_node() {
        let cluster = Cluster::start();
        cluster
            .cp
            .kubectl_input_ok(&["create", "-f", "-"], &cleanup_hooks());
        let waiter = daemonset_wait(cluster.cp.dir());
        let account = cluster.cp.dir().join("cleanup-account");
        std::fs::create_dir_all(&account).unwrap();
        let token = cluster
            .cp
            .kubectl_ok(&["create", "token", "weft-cleanup", "-n", NAMESPACE]);
        std::fs::write(account.join("token"), token.trim()).unwrap();
        std::fs::copy(cluster.cp.ca_cert(), account.join("ca.crt")).unwrap();
        // A private mount namespace gets the pod's view of /run/secrets.
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io && \
             cp -r {account} /run/secrets/kubernetes.io/serviceaccount && \
             exec {waiter} {NAMESPACE} weft-cleanup",
            account = account.display(),
            waiter = waiter.display(),
        );
        let mut wait = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                cluster.ns.name(),
                "unshare",
                "--mount",
                "sh",
                "-c",
                &script,
            ])
            .env("KUBERNETES_SERVICE_HOST", SERVER_V6)
            .env("KUBERNETES_SERVICE_PORT", "6443")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let still_waiting = |wait: &mut std::process::Child| {
            std::thread::sleep(std::time::Duration::from_secs(3));
            wait.try_wait().unwrap().is_none()
        };
        assert!(
            still_waiting(&mut wait),
            "it stopped waiting before any node was scheduled"
        );
        set_cleanup_status(&cluster, 1);
        assert!(
            still_waiting(&mut wait),
            "it stopped waiting with one node of two clean"
        );
        set_cleanup_status(&cluster, 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wait.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = wait.kill();
        let out = wait.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("2 of 2 nodes done"), "{stdout}");
    }
}
