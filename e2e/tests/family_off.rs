//! A pod that turns one address family off with the annotation `weft.dev/ip-families`,
//! at ADD (docs/networkpolicy-design.md section 5), driven the way containerd drives it:
//! weftd writes a conflist whose weft entry declares the capability
//! `io.kubernetes.cri.pod-annotations`, and libcni's client (cnitool) passes the pod's
//! annotations as that capability's argument (`CAP_ARGS`), which libcni hands the plugin
//! in `runtimeConfig`. The pod gets, and the result lists, the kept family only; the
//! other is unreachable both ways even when the pod configures it itself.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use weft_e2e::{
    binary, pod_address, run_in, Netns, Node, NodeOptions, PluginOutput, TempDir, Tools, HOST_V4,
    HOST_V6,
};

/// An IPv4 overlay address no pod is given (the tests allocate a handful from the
/// bottom of 10.255.1.0/24), which a pod configures by hand.
const UNALLOCATED_V4: &str = "10.255.1.200";
/// An IPv6 address of the node's prefix no pod is given.
const UNALLOCATED_V6: &str = "2001:db8:1000:1::ff00";

/// A node whose weftd writes the conflist (the chart's shape: weft declaring the pod
/// annotations capability) into a directory of its own, and cnitool reading it there.
struct AnnotatedNode {
    node: Node,
    /// Holds the template and `net/`, cnitool's `NETCONFPATH`.
    dir: TempDir,
    cnitool: PathBuf,
}

impl AnnotatedNode {
    /// Starts the node, then restarts its weftd with the conflist flags: the template
    /// names this node's network and socket, known once the node exists.
    fn start(options: NodeOptions) -> AnnotatedNode {
        let mut node = Node::start(options);
        let dir = TempDir::new("family-off");
        let template = dir.path().join("conflist.json");
        let conflist = json!({"cniVersion": "1.1.0", "name": node.network_name(),
            "plugins": [{"type": "weft", "socket": node.socket().display().to_string(),
                "capabilities": {"io.kubernetes.cri.pod-annotations": true}}]});
        fs::write(&template, conflist.to_string()).unwrap();
        let written = dir.path().join("net/10-weft.conflist");
        node.options_mut().extra_args.extend([
            "--cni-conflist".into(),
            written.display().to_string(),
            "--cni-conflist-template".into(),
            template.display().to_string(),
        ]);
        node.restart();
        let on_disk: Value = serde_json::from_slice(&fs::read(&written).unwrap()).unwrap();
        assert_eq!(on_disk, conflist, "weftd wrote the template");
        AnnotatedNode {
            node,
            dir,
            cnitool: Tools::find().cnitool,
        }
    }

    /// `cnitool VERB NETWORK POD`, with the pod's annotations as the runtime passes
    /// them (on ADD, CHECK and DEL alike), whatever the outcome.
    fn cnitool(&self, verb: &str, pod: &Netns, annotations: Option<&Value>) -> PluginOutput {
        let weft_dir = binary("weft").parent().unwrap().to_owned();
        let mut env = vec![
            (
                "NETCONFPATH",
                self.dir.path().join("net").display().to_string(),
            ),
            ("CNI_PATH", weft_dir.display().to_string()),
            (
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=family-off".into(),
            ),
        ];
        if let Some(annotations) = annotations {
            let caps = json!({"io.kubernetes.cri.pod-annotations": annotations});
            env.push(("CAP_ARGS", caps.to_string()));
        }
        let mut command = Command::new(&self.cnitool);
        command
            .env_clear()
            .envs(env)
            .args([verb, self.node.network_name(), &pod.path()]);
        run_in(&PathBuf::from(self.node.netns.path()), &mut command, b"")
    }

    /// `cnitool VERB`, which must succeed.
    fn ok(&self, verb: &str, pod: &Netns, annotations: Option<&Value>) -> PluginOutput {
        let out = self.cnitool(verb, pod, annotations);
        assert!(out.ok(), "cnitool {verb} failed: {out:?}");
        out
    }

    /// ADD of a pod whose annotation `weft.dev/ip-families` is `families` (none:
    /// not annotated); the result.
    fn add(&self, pod: &Netns, families: Option<&str>) -> Value {
        self.ok("add", pod, annotations(families).as_ref()).json()
    }

    /// ADD of a pod annotated to keep one family, checked to have that family alone:
    /// in the result (one address, so one podIP; one route), in weftd's record and in
    /// the pod (no global address, no default route of the other). Its result and
    /// address.
    fn add_keeping(&self, pod: &Netns, kept: &Kept) -> (Value, String) {
        let result = self.add(pod, Some(kept.annotation));
        let (ips, routes) = listed(&result);
        assert_eq!(ips.len(), 1, "{result:#}");
        let ok = ips[0].starts_with(kept.range) && ips[0].ends_with(kept.length);
        assert!(ok, "{result:#}");
        assert_eq!(routes, [kept.route], "{result:#}");
        let address = pod_address(&result, kept.v6);
        let (off_key, off_flag) = kept.off;
        let record = self.record_of(&address);
        assert!(
            record.get(off_key).is_none(),
            "weftd allocated {off_key}: {record}"
        );
        let global = [
            "-o", off_flag, "addr", "show", "dev", "eth0", "scope", "global",
        ];
        assert_eq!(pod.ip(&global), "", "an address of the family off");
        assert_eq!(pod.ip(&[off_flag, "route", "show", "default"]), "");
        (result, address)
    }

    /// The link-local address of the host veth `result` names, scoped to the pod's
    /// eth0, as a pod would ping it.
    fn host_veth_link_local(&self, result: &Value) -> String {
        let host = result["interfaces"][0]["name"].as_str().unwrap();
        let shown = self
            .node
            .netns
            .ip(&["-o", "-6", "addr", "show", "dev", host, "scope", "link"]);
        let cidr = shown
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .unwrap_or_else(|| panic!("no link-local address on {host}: {shown}"));
        format!("{}%eth0", cidr.split('/').next().unwrap())
    }

    /// The allocation record holding `address`, as weftd saved it.
    fn record_of(&self, address: &str) -> Value {
        let dir = self.node.state_dir().join("allocations");
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| serde_json::from_slice::<Value>(&fs::read(e.unwrap().path()).unwrap()))
            .map(Result::unwrap)
            .find(|r| r["ipv6"] == address || r["ipv4"] == address)
            .unwrap_or_else(|| panic!("no record holds {address}"))
    }
}

/// What a pod keeping one family shows.
struct Kept {
    /// The annotation's value.
    annotation: &'static str,
    /// Its address in the result, without the prefix length: the node's range.
    range: &'static str,
    /// The prefix length of its address.
    length: &'static str,
    /// Its default route in the result: (dst, gw).
    route: (&'static str, &'static str),
    /// Whether it is IPv6 (`pod_address`'s choice).
    v6: bool,
    /// The family turned off: its key in the allocation record, its `ip` flag.
    off: (&'static str, &'static str),
}

const KEEPS_IPV6: Kept = Kept {
    annotation: "IPv6",
    range: "2001:db8:1000:1::",
    length: "/128",
    route: ("::/0", "fe80::1"),
    v6: true,
    off: ("ipv4", "-4"),
};

const KEEPS_IPV4: Kept = Kept {
    annotation: "IPv4",
    range: "10.255.1.",
    length: "/32",
    route: ("0.0.0.0/0", "169.254.1.1"),
    v6: false,
    off: ("ipv6", "-6"),
};

/// The pod annotations a runtime passes: `weft.dev/ip-families` among others.
fn annotations(families: Option<&str>) -> Option<Value> {
    families.map(|f| json!({"weft.dev/ip-families": f, "example.com/other": "x"}))
}

/// The addresses and routes the result lists (its `ips` and `routes`).
fn listed(result: &Value) -> (Vec<&str>, Vec<(&str, &str)>) {
    let ips = result["ips"].as_array().unwrap();
    let routes = result["routes"].as_array().unwrap();
    (
        ips.iter()
            .map(|ip| ip["address"].as_str().unwrap())
            .collect(),
        routes
            .iter()
            .map(|r| (r["dst"].as_str().unwrap(), r["gw"].as_str().unwrap()))
            .collect(),
    )
}

/// Makes `pod` send `family` (`-4`, `-6`) from `cidr` through `gateway` as a pod with
/// NET_ADMIN could: the address, a default route, and the gateway pinned to the host
/// veth's MAC (from `result`), as weft pins the gateways of the families it gives.
fn configure_by_hand(pod: &Netns, result: &Value, family: &str, cidr: &str, gateway: &str) {
    let host_mac = result["interfaces"][0]["mac"].as_str().unwrap();
    pod.add_address("eth0", cidr);
    let neighbour = [
        "neigh", "replace", gateway, "lladdr", host_mac, "dev", "eth0",
    ];
    pod.ip(&[&[family][..], &neighbour, &["nud", "permanent"]].concat());
    pod.ip(&[
        family, "route", "add", "default", "via", gateway, "dev", "eth0", "onlink",
    ]);
}

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    weft_e2e::wait_until(what, Duration::from_secs(5), done).unwrap();
}

#[test]
fn an_ipv6_only_pod_gets_and_lists_ipv6_alone_and_ipv4_reaches_it_from_nowhere() {
    let mut node = AnnotatedNode::start(NodeOptions::default());
    let (dual, v6_only) = (Netns::new("p"), Netns::new("p"));

    // The legitimate paths first: an unannotated pod has both families, both working.
    let dual_result = node.add(&dual, None);
    assert_eq!(listed(&dual_result).0.len(), 2, "{dual_result:#}");
    let (dual_v6, dual_v4) = (
        pod_address(&dual_result, true),
        pod_address(&dual_result, false),
    );
    assert!(dual.ping(HOST_V4) && dual.ping(HOST_V6), "dual pod to node");
    assert!(
        node.node.netns.ping(&dual_v4),
        "node to the dual pod over IPv4"
    );

    let (result, v6) = node.add_keeping(&v6_only, &KEEPS_IPV6);
    assert_eq!(v6_only.ip(&["-4", "route"]), "", "no IPv4 route at all");

    // IPv6 works every way.
    assert!(
        v6_only.ping(&dual_v6) && dual.ping(&v6),
        "pod to pod over IPv6"
    );
    assert!(
        v6_only.ping(HOST_V6) && node.node.netns.ping(&v6),
        "pod and node over IPv6"
    );

    // IPv4: no address, no route. A pod that configures an overlay address itself
    // (NET_ADMIN) still reaches nothing and nothing reaches it: the node neither
    // routes that address to it nor accepts a source weftd did not allocate to it.
    assert!(!v6_only.ping(&dual_v4), "an IPv6-only pod sent IPv4");
    let own_v4 = format!("{UNALLOCATED_V4}/32");
    configure_by_hand(&v6_only, &result, "-4", &own_v4, "169.254.1.1");
    assert!(!v6_only.ping(&dual_v4), "IPv4 from the pod reached a pod");
    assert!(!v6_only.ping(HOST_V4), "IPv4 from the pod reached the node");
    assert!(
        !dual.ping(UNALLOCATED_V4),
        "a pod reached the IPv6-only pod over IPv4"
    );
    assert!(
        !node.node.netns.ping(UNALLOCATED_V4),
        "the node reached it over IPv4"
    );
    v6_only.ip(&["addr", "del", &own_v4, "dev", "eth0"]);

    // CHECK passes on the cached one-address result, also from a restarted weftd that
    // read the allocation back from its record.
    node.ok("check", &v6_only, annotations(Some("IPv6")).as_ref());
    node.node.restart();
    node.ok("check", &v6_only, annotations(Some("IPv6")).as_ref());
    assert!(node.record_of(&v6).get("ipv4").is_none());
    let later = Netns::new("p");
    let later_result = node.add(&later, None);
    assert_eq!(listed(&later_result).0.len(), 2, "{later_result:#}");
    assert_ne!(pod_address(&later_result, true), v6);
    assert!(
        later.ping(&v6),
        "the IPv6-only pod still answers after the restart"
    );

    // DEL releases it and weftd removes its veth; GC with a list that leaves the
    // other pods out collects them whatever their families.
    let veths = node.node.weft_veths().len();
    node.ok("del", &v6_only, annotations(Some("IPv6")).as_ref());
    assert_eq!(node.node.allocation_records().len(), 2);
    wait_until("the IPv6-only pod's veth to go", || {
        node.node.weft_veths().len() == veths - 1
    });
    let second = Netns::new("p");
    let (_, second_v6) = node.add_keeping(&second, &KEEPS_IPV6);
    let mut gc = node.node.plugin_config("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    node.node.plugin().call("GC", "", None, "", &gc).expect_ok();
    assert_eq!(node.node.allocation_records(), Vec::<String>::new());
    wait_until("every veth to go", || node.node.weft_veths().is_empty());
    assert!(
        !node.node.netns.ping(&second_v6),
        "a collected pod still answers"
    );
}

#[test]
fn an_ipv4_only_pod_gets_and_lists_ipv4_alone_and_ipv6_reaches_it_from_nowhere() {
    let node = AnnotatedNode::start(NodeOptions::default());
    let (dual, v4_only) = (Netns::new("p"), Netns::new("p"));
    let dual_result = node.add(&dual, None);
    let dual_v6 = pod_address(&dual_result, true);
    assert!(
        dual.ping(HOST_V6) && node.node.netns.ping(&dual_v6),
        "IPv6 works for a dual pod"
    );

    let (result, v4) = node.add_keeping(&v4_only, &KEEPS_IPV4);
    assert!(
        v4_only.ping(HOST_V4) && node.node.netns.ping(&v4),
        "IPv4 works"
    );
    assert!(dual.ping(&v4) && v4_only.ping(&pod_address(&dual_result, false)));

    // No IPv6 on its interface at all, not even a link-local address, which would
    // reach the node's end of the veth as the dual pod's does.
    assert!(
        dual.ping(&node.host_veth_link_local(&dual_result)),
        "a dual pod reaches its host veth's link-local address"
    );
    assert_eq!(v4_only.ip(&["-o", "-6", "addr", "show", "dev", "eth0"]), "");
    assert!(!v4_only.ping(&node.host_veth_link_local(&result)));
    assert!(!v4_only.ping(&dual_v6), "an IPv4-only pod sent IPv6");
    node.ok("check", &v4_only, annotations(Some("IPv4")).as_ref());

    // IPv6 turned on and configured by hand (NET_ADMIN), through the gateway the other
    // pods use, reaches no pod and not the node, and nothing reaches it.
    v4_only.set_sysctls(&["net.ipv6.conf.eth0.disable_ipv6=0"]);
    let own_v6 = format!("{UNALLOCATED_V6}/128");
    configure_by_hand(&v4_only, &result, "-6", &own_v6, "fe80::1");
    assert!(!v4_only.ping(&dual_v6), "IPv6 from the pod reached a pod");
    assert!(!v4_only.ping(HOST_V6), "IPv6 from the pod reached the node");
    assert!(
        !dual.ping(UNALLOCATED_V6),
        "a pod reached the IPv4-only pod over IPv6"
    );
    assert!(
        !node.node.netns.ping(UNALLOCATED_V6),
        "the node reached it over IPv6"
    );
    node.ok("del", &v4_only, annotations(Some("IPv4")).as_ref());
    node.ok("del", &dual, None);
}

/// ADD straight through the plugin with `runtimeConfig` as libcni builds it: the
/// error object's code, which cnitool does not print.
fn add_code(node: &AnnotatedNode, container_id: &str, pod: &Netns, families: &str) -> PluginOutput {
    let mut config = node.node.plugin_config("1.1.0");
    config["runtimeConfig"] =
        json!({"io.kubernetes.cri.pod-annotations": annotations(Some(families))});
    node.node
        .plugin()
        .call("ADD", container_id, Some(&pod.path()), "eth0", &config)
}

/// Nothing of a refused ADD is left: no record, no veth, no interface in the pod.
fn assert_nothing_left(node: &AnnotatedNode, pod: &Netns) {
    assert_eq!(node.node.allocation_records(), Vec::<String>::new());
    wait_until("no weft veth", || node.node.weft_veths().is_empty());
    assert!(
        !pod.ip(&["-o", "link"]).contains("eth0"),
        "the pod kept an interface"
    );
}

#[test]
fn a_bad_value_or_a_family_the_node_lacks_fails_add_with_code_7_and_leaves_nothing() {
    let node = AnnotatedNode::start(NodeOptions::default());
    let pod = Netns::new("p");
    for bad in ["IPv5", "ipv6", "IPv6,IPv6", ""] {
        let out = add_code(&node, "bad-value", &pod, bad);
        assert_eq!(out.error_code(), Some(7), "{bad}: {out:?}");
        let named = format!("pod annotation weft.dev/ip-families: '{bad}' ");
        assert!(out.stdout.contains(&named), "{bad}: {out:?}");
        assert_nothing_left(&node, &pod);
    }
    // Through libcni: ADD fails naming the value, and the DEL a runtime sends after a
    // failed ADD, with the same annotations, succeeds.
    let typo = annotations(Some("IPV6"));
    let out = node.cnitool("add", &pod, typo.as_ref());
    assert!(!out.ok(), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("pod annotation weft.dev/ip-families: 'IPV6' is not a family list"),
        "{out:?}"
    );
    node.ok("del", &pod, typo.as_ref());
    assert_nothing_left(&node, &pod);

    // An IPv6-only node refuses a pod keeping IPv4, alone or with IPv6.
    let v6_node = AnnotatedNode::start(NodeOptions {
        mode: "ipv6",
        ipv4_subnet: None,
        ..NodeOptions::default()
    });
    for (value, container) in [("IPv4", "unserved"), ("IPv6,IPv4", "unserved-both")] {
        let out = add_code(&v6_node, container, &pod, value);
        assert_eq!(out.error_code(), Some(7), "{value}: {out:?}");
        let named = format!(
            "pod annotation weft.dev/ip-families: '{value}' keeps a family this node cannot give: ipv4 is not served on this node, which serves ipv6 only"
        );
        assert!(out.stdout.contains(&named), "{value}: {out:?}");
        assert_nothing_left(&v6_node, &pod);
    }
    v6_node.add_keeping(&pod, &KEEPS_IPV6);
    assert!(pod.ping(HOST_V6));
    v6_node.ok("del", &pod, annotations(Some("IPv6")).as_ref());
}
