//! weft driven by libcni's own client, cnitool (containernetworking/cni v1.3.1), the way a
//! runtime drives it: alone through the whole lifecycle (ADD, CHECK, DEL, GC, STATUS), in
//! chains with the real reference meta plugins (portmap, bandwidth, tuning, loopback), and
//! at every cniVersion weft speaks. What these prove beyond single_node.rs is that
//! weft's results, as libcni caches and hands them on as `prevResult`, are accepted and
//! used correctly by plugins weft does not control.
//!
//! Two plugin sets are used: the Go-module build (v1.9.1, CNI up to 1.1.0) and Debian's
//! package in /usr/lib/cni (v1.1.1, CNI up to 1.0.0). Everything each test creates lives
//! in its own node namespace (nftables/iptables rules, IFB devices, veths), which the
//! harness removes on drop.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_e2e::{
    binary, run_in, Netns, Node, NodeOptions, Plugin, PluginOutput, Tools, HOST_V4, HOST_V6,
};

/// Ports of the portmap tests: the host port on the node, the pod's listener.
const HOST_PORT: u16 = 8080;
const POD_PORT: u16 = 80;
/// What the pod's listener says, so a reply cannot come from anything else.
const GREETING: &str = "hello from the pod";

/// cnitool bound to one node (it runs inside the node's namespace, like a runtime on the
/// node) and one directory of reference plugins. It keeps copies, not a borrow, so a
/// test can still stop the node.
struct Cnitool {
    node_netns: PathBuf,
    conf_dir: PathBuf,
    network: String,
    cnitool: PathBuf,
    /// `CNI_PATH`: weft's build directory first, then the reference plugins.
    cni_path: String,
    /// `CAP_ARGS`: runtimes pass the same capability args on ADD, CHECK and DEL.
    cap_args: Option<String>,
}

impl Cnitool {
    fn new(node: &Node, tools: &Tools, plugins: &Path) -> Self {
        let weft_dir = binary("weft").parent().unwrap().to_owned();
        Cnitool {
            node_netns: PathBuf::from(node.netns.path()),
            conf_dir: node.conf_dir(),
            network: node.network_name().to_owned(),
            cnitool: tools.cnitool.clone(),
            cni_path: format!("{}:{}", weft_dir.display(), plugins.display()),
            cap_args: None,
        }
    }

    fn with_cap_args(mut self, cap_args: &Value) -> Self {
        self.cap_args = Some(cap_args.to_string());
        self
    }

    /// `cnitool VERB NETNAME POD_NETNS`, whatever the outcome.
    fn run(&self, verb: &str, pod: &Netns) -> PluginOutput {
        let mut env = vec![
            ("NETCONFPATH", self.conf_dir.display().to_string()),
            ("CNI_PATH", self.cni_path.clone()),
            // portmap runs nft / iptables; the reference plugins ignore unknown CNI_ARGS
            // keys only with IgnoreUnknown.
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=cnitool".to_owned(),
            ),
        ];
        if let Some(caps) = &self.cap_args {
            env.push(("CAP_ARGS", caps.clone()));
        }
        run_in(
            &self.node_netns,
            Command::new(&self.cnitool).env_clear().envs(env).args([
                verb,
                &self.network,
                &pod.path(),
            ]),
            b"",
        )
    }

    /// Runs `verb`, which must succeed.
    fn ok(&self, verb: &str, pod: &Netns) -> PluginOutput {
        let out = self.run(verb, pod);
        assert!(out.ok(), "cnitool {verb} failed: {out:?}");
        out
    }

    /// ADD, which must succeed; the result cnitool printed.
    fn add(&self, pod: &Netns) -> Value {
        self.ok("add", pod).json()
    }

    /// Runs `verb`, which must fail; stdout and stderr together.
    fn fails(&self, verb: &str, pod: &Netns) -> String {
        let out = self.run(verb, pod);
        assert!(!out.ok(), "cnitool {verb} should have failed: {out:?}");
        format!("{}{}", out.stdout, out.stderr)
    }
}

/// The container ID cnitool derives from the netns path: `cnitool-` and the first 10
/// bytes of its SHA-512, in hex.
fn container_id(pod: &Netns) -> String {
    let out = Command::new("sh")
        .args(["-c", r#"printf %s "$1" | sha512sum"#, "sh", &pod.path()])
        .output()
        .unwrap();
    assert!(out.status.success(), "sha512sum: {out:?}");
    format!("cnitool-{}", &String::from_utf8_lossy(&out.stdout)[..20])
}

/// libcni's cache entry for an attachment of `node`'s network.
fn cache_file(node: &Node, pod: &Netns) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/cni/results/{}-{}-eth0",
        node.network_name(),
        container_id(pod)
    ))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Index of the pod interface in `result` (named eth0, with a sandbox), checked to be the
/// one every listed `ips` entry of weft points at.
fn pod_interface(result: &Value, pod: &Netns) -> usize {
    let interfaces = result["interfaces"].as_array().unwrap();
    let index = interfaces
        .iter()
        .position(|i| i["name"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {result:#}"));
    assert_eq!(interfaces[index]["sandbox"], pod.path(), "{result:#}");
    index
}

/// weft's (IPv6, IPv4) addresses in `result`, without prefix lengths: the entries that
/// point at eth0, checked to be a /128 from the node's prefix and a /32 from its subnet.
fn weft_ips(result: &Value, pod: &Netns) -> (String, String) {
    let eth0 = pod_interface(result, pod);
    let ours: Vec<&str> = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ip| ip["interface"] == eth0)
        .map(|ip| ip["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "weft lists one address per family: {result:#}"
    );
    let v6 = ours[0]
        .strip_suffix("/128")
        .unwrap_or_else(|| panic!("{result:#}"));
    let v4 = ours[1]
        .strip_suffix("/32")
        .unwrap_or_else(|| panic!("{result:#}"));
    assert!(v6.starts_with("2001:db8:1000:1::"), "{v6}");
    assert!(v4.starts_with("10.255.1."), "{v4}");
    (v6.to_owned(), v4.to_owned())
}

/// The host veth weft reports (no sandbox, weft's prefix).
fn host_veth(result: &Value) -> String {
    let name = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("weft"), "{result:#}");
    assert!(result["interfaces"][0].get("sandbox").is_none());
    name
}

/// Runs `f` on a thread inside the namespace at `path`.
fn in_netns<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    let ns = weft_netlink::Netns::open(Path::new(path)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = ns.enter().unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Opens a TCP connection from the node to `host_addr:HOST_PORT` while the pod listens
/// on POD_PORT (both families); what the connection read, or why it failed. This is
/// what a hostPort is for: only a correct DNAT to the pod's address answers.
fn via_host_port(node: &Node, pod: &Netns, host_addr: &str) -> Result<String, String> {
    let listener = in_netns(&pod.path(), || TcpListener::bind(("::", POD_PORT)).unwrap());
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.write_all(GREETING.as_bytes());
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let target: SocketAddr = if host_addr.contains(':') {
        format!("[{host_addr}]:{HOST_PORT}")
    } else {
        format!("{host_addr}:{HOST_PORT}")
    }
    .parse()
    .unwrap();
    let answer = in_netns(&node.netns.path(), move || {
        let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(3))
            .map_err(|e| format!("connect {target}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text)
            .map_err(|e| format!("read from {target}: {e}"))?;
        Ok(text)
    });
    server.join().unwrap();
    answer
}

/// Capability args for portmap and bandwidth, as a runtime derives them from a pod spec.
fn pod_capabilities() -> Value {
    json!({
        "portMappings": [{"hostPort": HOST_PORT, "containerPort": POD_PORT, "protocol": "tcp"}],
        // 8 Mbit/s both ways, bursts in bits.
        "bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 800_000,
                      "egressRate": 8_000_000, "egressBurst": 800_000},
    })
}

fn portmap(backend: Option<&str>) -> Value {
    let mut conf = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    if let Some(backend) = backend {
        conf["backend"] = json!(backend);
    }
    conf
}

fn bandwidth() -> Value {
    json!({"type": "bandwidth", "capabilities": {"bandwidth": true}})
}

/// tuning sets a sysctl whose default (0) differs, so its effect is visible in the pod.
fn tuning() -> Value {
    json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}})
}

#[test]
fn cnitool_add_check_del_gc_status_at_1_1_0() {
    let mut node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    // Node::start wrote a weft-only 1.1.0 conflist.
    let cni = Cnitool::new(&node, &tools, &tools.plugins);
    let (p1, p2, p3) = (Netns::new("p"), Netns::new("p"), Netns::new("p"));

    // ADD: the printed (final) result lists both addresses on eth0 in the pod.
    let r1 = cni.add(&p1);
    assert_eq!(r1["cniVersion"], "1.1.0");
    assert_eq!(r1["interfaces"].as_array().unwrap().len(), 2, "{r1:#}");
    assert_eq!(pod_interface(&r1, &p1), 1);
    assert_eq!(r1["interfaces"][1]["mtu"], 1500);
    host_veth(&r1);
    let (v6, v4) = weft_ips(&r1, &p1);
    let addrs = p1.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {v4}/32")), "{addrs}");
    assert!(addrs.contains(&format!("inet6 {v6}/128")), "{addrs}");

    // weft keyed the allocation by the container ID cnitool derived, and libcni cached
    // the result it will hand to CHECK and DEL.
    assert_eq!(
        node.allocation_records(),
        vec![format!("{}@eth0", container_id(&p1))]
    );
    assert!(cache_file(&node, &p1).exists());

    let r2 = cni.add(&p2);
    let (v6_2, v4_2) = weft_ips(&r2, &p2);
    assert_ne!(v4, v4_2);
    assert!(p1.ping(&v4_2) && p1.ping(&v6_2), "pod to pod");
    assert!(p2.ping(&v4) && p2.ping(&v6), "pod to pod, other way");
    assert!(p1.ping(HOST_V4) && p1.ping(HOST_V6), "pod to host");

    // CHECK passes on the cached result, then names the route that went missing.
    cni.ok("check", &p1);
    p1.ip(&["-4", "route", "del", "default"]);
    let drift = cni.fails("check", &p1);
    assert!(
        drift.contains("route 0.0.0.0/0 via 169.254.1.1 dev eth0 is missing"),
        "{drift}"
    );

    // DEL twice: the second finds nothing and still succeeds (spec: DEL is idempotent).
    cni.ok("del", &p1);
    assert!(!cache_file(&node, &p1).exists());
    cni.ok("del", &p1);
    assert_eq!(
        node.allocation_records(),
        vec![format!("{}@eth0", container_id(&p2))]
    );
    wait_until("p1's host veth to go", || node.weft_veths().len() == 1);

    // GC: libcni first DELs every attachment it has cached (p2), then sends GC without
    // `cni.dev/valid-attachments` (cnitool passes no GC arguments). Without a list weft
    // learns nothing about which pods live, so p3, added behind libcni's back, keeps
    // its addresses and its network (a GC with a list frees it: single_node.rs).
    node.add("behind-libcni", &p3).expect_ok();
    assert_eq!(node.allocation_records().len(), 2);
    cni.ok("gc", &p1);
    assert_eq!(
        node.allocation_records(),
        vec!["behind-libcni@eth0".to_string()]
    );
    assert!(!cache_file(&node, &p2).exists());
    wait_until("p2's host veth to go", || node.weft_veths().len() == 1);
    assert!(p3.ip(&["-o", "link"]).contains("eth0"));

    // STATUS: fine while weftd serves, an error naming weftd once it is gone (code 50,
    // which cnitool does not print; single_node.rs checks the code).
    cni.ok("status", &p1);
    node.stop();
    let down = cni.fails("status", &p1);
    assert!(down.contains("weftd is not reachable"), "{down}");
}

#[test]
fn chain_with_reference_plugins_at_1_1_0() {
    let node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    let mut tuning = tuning();
    tuning["txQLen"] = json!(1234);
    node.write_conflist(
        "1.1.0",
        &[portmap(Some("nftables")), bandwidth(), tuning.clone()],
    );
    let cni = Cnitool::new(&node, &tools, &tools.plugins).with_cap_args(&pod_capabilities());
    let pod = Netns::new("p");
    let cid = container_id(&pod);

    // The final result, after three plugins rewrote it, still carries weft's entries;
    // bandwidth appended its IFB (a host-side device, no sandbox).
    let r = cni.add(&pod);
    assert_eq!(r["cniVersion"], "1.1.0");
    let host_if = host_veth(&r);
    assert_eq!(pod_interface(&r, &pod), 1);
    let (v6, v4) = weft_ips(&r, &pod);
    let interfaces = r["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 3, "{r:#}");
    let ifb = interfaces[2]["name"].as_str().unwrap().to_owned();
    assert!(
        ifb.starts_with("bwp") && interfaces[2].get("sandbox").is_none(),
        "{r:#}"
    );
    assert_eq!(r["routes"].as_array().unwrap().len(), 2, "{r:#}");

    // portmap took weft's addresses (not the host veth's side) from prevResult: its
    // nftables rules DNAT to them, and a connection to the node's port reaches the pod.
    let rules = node.netns.run("nft", &["list", "ruleset"]);
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!("dnat to {v4}:{POD_PORT}")),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("dnat to [{v6}]:{POD_PORT}")),
        "{rules}"
    );
    assert!(rules.contains(&cid), "{rules}");
    assert_eq!(via_host_port(&node, &pod, HOST_V4).as_deref(), Ok(GREETING));
    assert_eq!(via_host_port(&node, &pod, HOST_V6).as_deref(), Ok(GREETING));

    // bandwidth found weft's host veth as eth0's peer and shaped it: a tbf for traffic
    // into the pod, an ingress qdisc redirecting the pod's traffic to the shaped IFB.
    let qdiscs = node.netns.run("tc", &["qdisc", "show", "dev", &host_if]);
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        qdiscs.contains("qdisc tbf") && qdiscs.contains("rate 8Mbit"),
        "{qdiscs}"
    );
    assert!(qdiscs.contains("qdisc ingress"), "{qdiscs}");
    let ifb_qdiscs = node.netns.ip(&["-d", "link", "show", &ifb]);
    assert!(ifb_qdiscs.contains("ifb"), "{ifb_qdiscs}");

    // tuning changed the pod's eth0 (and saved the old queue length for its DEL).
    let tuning_backup = PathBuf::from(format!("/run/cni/tuning/{cid}_eth0.json"));
    assert!(tuning_backup.exists());
    assert_eq!(pod.sysctl("net/ipv4/conf/eth0/arp_notify"), "1");
    assert!(pod
        .ip(&["-o", "link", "show", "eth0"])
        .contains("qlen 1234"));

    // CHECK runs every plugin of the chain on the cached result: it passes, and it is
    // not only weft looking: undoing tuning's sysctl makes tuning's CHECK fail.
    cni.ok("check", &pod);
    pod.run("sysctl", &["-qw", "net.ipv4.conf.eth0.arp_notify=0"]);
    let drift = cni.fails("check", &pod);
    assert!(
        drift.contains("arp_notify is 1, current value is 0"),
        "{drift}"
    );
    pod.run("sysctl", &["-qw", "net.ipv4.conf.eth0.arp_notify=1"]);
    cni.ok("check", &pod);
    // STATUS goes to every plugin of a 1.1.0 list; the meta plugins have nothing to say.
    cni.ok("status", &pod);

    // DEL, in reverse order: tuning, bandwidth (IFB gone at once), portmap (rules gone),
    // weft (allocation gone, veth removed in the background).
    cni.ok("del", &pod);
    assert!(node
        .netns
        .run("ip", &["link", "show", &ifb])
        .stdout
        .is_empty());
    let rules = node.netns.run("nft", &["list", "ruleset"]);
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&cid) && !rules.contains(&v4), "{rules}");
    assert!(node.allocation_records().is_empty());
    wait_until("the host veth to go", || node.weft_veths().is_empty());
    assert!(!tuning_backup.exists());
}

#[test]
fn chain_with_debian_plugins_at_1_0_0() {
    let node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    // portmap last: CHECK runs in list order, see below.
    node.write_conflist("1.0.0", &[bandwidth(), tuning(), portmap(None)]);
    let cni = Cnitool::new(&node, &tools, &tools.debian_plugins).with_cap_args(&pod_capabilities());
    let pod = Netns::new("p");
    let cid = container_id(&pod);

    // weft's 1.0.0 result (no 1.1.0 fields) went through three 1.0.0-only plugins.
    let r = cni.add(&pod);
    assert_eq!(r["cniVersion"], "1.0.0");
    let host_if = host_veth(&r);
    let (v6, v4) = weft_ips(&r, &pod);
    assert!(r["interfaces"][1].get("mtu").is_none(), "{r:#}");
    let qdiscs = node.netns.run("tc", &["qdisc", "show", "dev", &host_if]);
    assert!(String::from_utf8_lossy(&qdiscs.stdout).contains("qdisc tbf"));
    assert_eq!(pod.sysctl("net/ipv4/conf/eth0/arp_notify"), "1");
    // This portmap only has the iptables backend.
    let nat4 = node.netns.run("iptables-save", &["-t", "nat"]);
    let nat4 = String::from_utf8_lossy(&nat4.stdout);
    assert!(
        nat4.contains(&format!("--to-destination {v4}:{POD_PORT}")),
        "{nat4}"
    );
    let nat6 = node.netns.run("ip6tables-save", &["-t", "nat"]);
    let nat6 = String::from_utf8_lossy(&nat6.stdout);
    assert!(
        nat6.contains(&format!("--to-destination [{v6}]:{POD_PORT}")),
        "{nat6}"
    );
    assert_eq!(via_host_port(&node, &pod, HOST_V4).as_deref(), Ok(GREETING));
    assert_eq!(via_host_port(&node, &pod, HOST_V6).as_deref(), Ok(GREETING));

    // CHECK: weft, bandwidth and tuning pass; portmap v1.1.1 then fails on its own
    // rules (it checks the IPv4 rules in ip6tables too, containernetworking/plugins
    // issue 819, fixed upstream). Failing there proves the three before it passed.
    let check = cni.fails("check", &pod);
    assert!(
        check.contains("could not check ipv6 dnat") && check.contains(&v4),
        "{check}"
    );

    cni.ok("del", &pod);
    let nat4 = node.netns.run("iptables-save", &["-t", "nat"]);
    let nat4 = String::from_utf8_lossy(&nat4.stdout);
    assert!(!nat4.contains(&v4) && !nat4.contains(&cid), "{nat4}");
    assert!(node.allocation_records().is_empty());
    wait_until("the host veth to go", || node.weft_veths().is_empty());
}

#[test]
fn debian_plugins_refuse_a_1_1_0_chain_with_code_1() {
    let node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    node.write_conflist("1.1.0", &[bandwidth(), tuning(), portmap(None)]);
    let cni = Cnitool::new(&node, &tools, &tools.debian_plugins).with_cap_args(&pod_capabilities());
    let pod = Netns::new("p");

    // weft (first) succeeds, the first Debian plugin refuses the version; libcni does
    // not roll back, so weft's allocation stays until a DEL or GC reaches weft.
    let refused = cni.fails("add", &pod);
    assert!(
        refused.contains(r#"plugin type="bandwidth" failed (add): incompatible CNI versions"#),
        "{refused}"
    );
    assert_eq!(node.allocation_records().len(), 1);

    // The code behind that message is 1 (incompatible CNI version), from each of them,
    // given a real weft result as prevResult.
    let other = Netns::new("p");
    let result = node.add("direct", &other).expect_ok();
    for plugin in ["portmap", "bandwidth", "tuning"] {
        let config = json!({"cniVersion": "1.1.0", "name": node.network_name(),
            "type": plugin, "runtimeConfig": pod_capabilities(), "prevResult": result});
        let out = Plugin::with_binary(tools.debian_plugins.join(plugin), &node.netns).call(
            "ADD",
            "direct",
            Some(&other.path()),
            "eth0",
            &config,
        );
        assert_eq!(out.error_code(), Some(1), "{plugin}: {out:?}");
        assert!(out.stdout.contains("incompatible CNI versions"), "{out:?}");
    }
}

#[test]
fn weft_after_another_plugin_keeps_prev_result_and_points_ips_at_its_own_eth0() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    // What a plugin before weft could have produced: its own interface with a vendor
    // field, an address on it, a route, DNS, and a top-level field weft does not know.
    let prev = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": pod.path(),
                        "x-vendor": {"vlan": 42}}],
        "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1", "interface": 0}],
        "routes": [{"dst": "192.0.2.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"], "domain": "example.test",
                "search": ["example.test"], "options": ["ndots:2"]},
        "x-unknown": {"kept": [1, 2, 3]},
    });
    let mut config = node.plugin_config("1.1.0");
    config["prevResult"] = prev.clone();
    let r = node
        .plugin()
        .call("ADD", "not-first", Some(&pod.path()), "eth0", &config)
        .expect_ok();

    // Everything of the previous plugin is there, unchanged and first.
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0], prev["interfaces"][0]);
    assert_eq!(r["ips"][0], prev["ips"][0]);
    assert_eq!(r["routes"][0], prev["routes"][0]);
    assert_eq!(r["dns"], prev["dns"]);
    assert_eq!(r["x-unknown"], prev["x-unknown"]);
    // weft's entries are appended: host veth, then eth0; its ips point at eth0 (2).
    let interfaces = r["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 3, "{r:#}");
    assert!(interfaces[1]["name"].as_str().unwrap().starts_with("weft"));
    assert_eq!(pod_interface(&r, &pod), 2);
    let (v6, v4) = weft_ips(&r, &pod);
    assert_eq!(r["ips"].as_array().unwrap().len(), 3, "{r:#}");
    assert_eq!(r["routes"].as_array().unwrap().len(), 3, "{r:#}");
    assert!(pod.ping(HOST_V4) && pod.ping(HOST_V6), "pod to host");
    assert!(node.netns.ping(&v4) && node.netns.ping(&v6), "host to pod");
    // CHECK accepts the merged result (it finds its addresses among the others).
    node.check("not-first", &pod, &r).expect_ok();
}

#[test]
fn real_chain_with_weft_second_after_loopback() {
    // loopback is the one reference plugin that sensibly runs before an interface
    // plugin: it ignores CNI_IFNAME, brings up `lo` and reports it (with 127.0.0.1/8
    // and ::1/128) as interface 0. weft must then report eth0 at index 2, and portmap
    // after it must pick weft's addresses, not loopback's, to DNAT to.
    let node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    let list = json!({"cniVersion": "1.1.0", "name": node.network_name(), "plugins": [
        {"type": "loopback"},
        {"type": "weft", "socket": node.socket().display().to_string()},
        portmap(Some("nftables")),
    ]});
    std::fs::write(
        node.conf_dir().join("weft.conflist"),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    let cni = Cnitool::new(&node, &tools, &tools.plugins).with_cap_args(&pod_capabilities());
    let pod = Netns::new("p");

    let r = cni.add(&pod);
    assert_eq!(
        r["interfaces"][0],
        json!({"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": pod.path()})
    );
    let loopback_ips: Vec<&Value> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ip| ip["interface"] == 0)
        .collect();
    assert_eq!(loopback_ips.len(), 2, "{r:#}");
    assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
    assert!(r["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .starts_with("weft"));
    assert_eq!(pod_interface(&r, &pod), 2);
    let (_, v4) = weft_ips(&r, &pod);
    let rules = node.netns.run("nft", &["list", "ruleset"]);
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!("dnat to {v4}:{POD_PORT}")) && !rules.contains("dnat to 127."),
        "{rules}"
    );
    assert_eq!(via_host_port(&node, &pod, HOST_V4).as_deref(), Ok(GREETING));

    cni.ok("check", &pod);
    cni.ok("del", &pod);
    assert!(node.allocation_records().is_empty());
    assert!(
        pod.ip(&["-o", "link", "show", "lo"]).contains("state DOWN"),
        "loopback's DEL ran too"
    );
}

/// Asserts the shape `version` prescribes: `ips[].version` only before 1.0.0, interface
/// and route MTUs and route scopes only from 1.1.0.
fn assert_shape(result: &Value, version: &str) {
    assert_eq!(result["cniVersion"], version, "{result:#}");
    let ips = result["ips"].as_array().unwrap();
    if version == "0.4.0" {
        assert_eq!(ips[0]["version"], "6", "{result:#}");
        assert_eq!(ips[1]["version"], "4", "{result:#}");
    } else {
        assert!(
            ips.iter().all(|ip| ip.get("version").is_none()),
            "{result:#}"
        );
    }
    for interface in result["interfaces"].as_array().unwrap() {
        assert!(interface.get("mtu").is_none(), "{result:#}");
    }
    for route in result["routes"].as_array().unwrap() {
        assert!(
            route.get("mtu").is_none() && route.get("scope").is_none(),
            "{result:#}"
        );
    }
}

#[test]
fn cnitool_at_0_4_0_and_1_0_0_gets_results_shaped_for_the_version() {
    let node = Node::start(NodeOptions::default());
    let tools = Tools::find();
    let cni = Cnitool::new(&node, &tools, &tools.plugins);
    for version in ["0.4.0", "1.0.0"] {
        node.write_conflist(version, &[]);
        let pod = Netns::new("p");
        let r = cni.add(&pod);
        weft_ips(&r, &pod);
        assert_shape(&r, version);
        // libcni re-parses a result into its version's types, dropping fields that
        // version lacks (1.0.0 has no `ips[].version`, 0.4.0 no MTUs), so what cnitool
        // prints cannot show every extra field weft might emit: check weft's own output.
        let direct = Netns::new("p");
        let raw = node
            .plugin()
            .call(
                "ADD",
                "direct",
                Some(&direct.path()),
                "eth0",
                &node.plugin_config(version),
            )
            .expect_ok();
        assert_shape(&raw, version);
        node.del("direct", None).expect_ok();

        // libcni hands the cached result back as this version's prevResult.
        cni.ok("check", &pod);
        pod.ip(&["-6", "route", "del", "default"]);
        let drift = cni.fails("check", &pod);
        assert!(
            drift.contains("route ::/0 via fe80::1"),
            "{version}: {drift}"
        );
        cni.ok("del", &pod);
        cni.ok("del", &pod);
        assert!(node.allocation_records().is_empty(), "{version}");
    }
}

/// weft takes the MAC a runtime asks for (the `mac` capability, or `MAC` in CNI_ARGS)
/// and pins it on the host; a MAC changed behind weft's back by a later plugin breaks
/// the pinned neighbours, and CHECK says so by name.
#[test]
fn requested_macs_are_honoured_and_a_mac_changed_later_is_named_by_check() {
    let tools = Tools::find();
    let node = Node::start(NodeOptions::default());
    let list = json!({"cniVersion": "1.1.0", "name": node.network_name(), "plugins": [
        {"type": "weft", "socket": node.socket().display().to_string(), "capabilities": {"mac": true}}]});
    std::fs::write(node.conf_dir().join("weft.conflist"), list.to_string()).unwrap();
    let with_mac = Cnitool::new(&node, &tools, &tools.plugins)
        .with_cap_args(&json!({"mac": "02:00:00:00:be:ef"}));
    let pod = Netns::new("p");
    let result = with_mac.add(&pod);
    assert_eq!(
        result["interfaces"][1]["mac"], "02:00:00:00:be:ef",
        "{result}"
    );
    assert!(pod
        .ip(&["link", "show", "eth0"])
        .contains("02:00:00:00:be:ef"));
    assert!(
        pod.ping(HOST_V4) && pod.ping(HOST_V6),
        "the requested MAC is what the host pinned"
    );
    with_mac.ok("check", &pod);

    let by_args = Netns::new("p");
    let path = by_args.path();
    let config = node.plugin_config("1.1.0").to_string();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "mac-args"),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:ca:fe"),
    ];
    let out = node.plugin().raw(&env, config.as_bytes()).expect_ok();
    assert_eq!(out["interfaces"][1]["mac"], "02:00:00:00:ca:fe");
    assert!(by_args.ping(HOST_V6));

    node.write_conflist(
        "1.1.0",
        &[json!({"type": "tuning", "mac": "02:11:22:33:44:55"})],
    );
    let changed = Netns::new("p");
    let plain = Cnitool::new(&node, &tools, &tools.plugins);
    plain.add(&changed);
    let message = plain.fails("check", &changed);
    assert!(
        message.contains("02:11:22:33:44:55") && message.contains("changed the MAC"),
        "{message}"
    );
}
