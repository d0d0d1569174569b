//! The test control plane itself: a real etcd and kube-apiserver in a namespace, served
//! on an IPv6 underlay address, reached from a second namespace over a veth, surviving an
//! apiserver restart, and leaving nothing behind. Needs root and e2e/setup.sh's binaries.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;
use weft_e2e::{ControlPlane, Netns};

const SERVER_V6: &str = "2001:db8:ffff::2";
const SERVER_V4: &str = "192.0.2.2";
const CLIENT_V6: &str = "2001:db8:ffff::3";
const CLIENT_V4: &str = "192.0.2.3";

/// Two namespaces on one veth: the control plane's and a client's, each with an address
/// from 2001:db8:ffff::/64 and 192.0.2.0/24 (no DAD: usable at once).
fn two_namespaces() -> (Netns, Netns) {
    let server = Netns::new("cps");
    let client = Netns::new("cpc");
    server.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        client.name(),
    ]);
    for (ns, v6, v4) in [
        (&server, SERVER_V6, SERVER_V4),
        (&client, CLIENT_V6, CLIENT_V4),
    ] {
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    (server, client)
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn control_plane_on_an_ipv6_underlay() {
    let names;
    let dir;
    {
        let (server_ns, client_ns) = two_namespaces();
        names = [server_ns.name().to_owned(), client_ns.name().to_owned()];
        let mut cp = ControlPlane::start(&server_ns, SERVER_V6.parse::<IpAddr>().unwrap());
        dir = cp.dir().to_owned();
        eprintln!("control plane ready in {:?}", cp.startup_time());
        assert_eq!(cp.server(), "https://[2001:db8:ffff::2]:6443");

        assert_eq!(cp.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
        let version = cp.kubectl_ok(&["get", "--raw", "/version"]);
        assert!(version.contains("\"gitVersion\": \"v1.35."), "{version}");

        // A Node and a ConfigMap, written and read back.
        ok(
            cp.kubectl_input(
                &["create", "-f", "-"],
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    \
                 topology.kubernetes.io/zone: z1\nspec:\n  podCIDRs: [\"2001:db8:1000:1::/80\"]\n",
            ),
            "create node n1",
        );
        cp.kubectl_ok(&[
            "create",
            "configmap",
            "weft-test",
            "--from-literal=prefix=2001:db8:1000::/48",
        ]);
        let read_back = |cp: &ControlPlane| {
            let zone = cp.kubectl_ok(&[
                "get",
                "node",
                "n1",
                "-o",
                "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone} {.spec.podCIDRs[0]}",
            ]);
            assert_eq!(zone, "z1 2001:db8:1000:1::/80");
            let prefix = cp.kubectl_ok(&[
                "get",
                "configmap",
                "weft-test",
                "-o",
                "jsonpath={.data.prefix}",
            ]);
            assert_eq!(prefix, "2001:db8:1000::/48");
        };
        read_back(&cp);

        // The apiserver goes away; etcd keeps the data; a new apiserver serves it.
        cp.stop_apiserver();
        assert!(!cp.apiserver_running());
        assert!(!cp.ready());
        let restarted = Instant::now();
        cp.start_apiserver();
        eprintln!("apiserver restarted in {:?}", restarted.elapsed());
        read_back(&cp);

        // A second namespace reaches the apiserver over the IPv6 underlay with a generated
        // kubeconfig (same server URL), as a node's weftd will.
        let kubeconfig = cp.dir().join("nodes/n1.kubeconfig");
        cp.write_kubeconfig(&kubeconfig, "system:node:n1", &["system:nodes"]);
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        assert!(
            text.contains("server: https://[2001:db8:ffff::2]:6443"),
            "{text}"
        );
        // Its identity authenticates; RBAC decides what it may do.
        let whoami = ok(
            cp.kubectl_from(
                &client_ns,
                &kubeconfig,
                &[
                    "auth",
                    "whoami",
                    "-o",
                    "jsonpath={.status.userInfo.username}",
                ],
            ),
            "whoami from the client namespace",
        );
        assert_eq!(whoami, "system:node:n1");
        // The admin kubeconfig works from there too.
        let nodes = ok(
            cp.kubectl_from(
                &client_ns,
                &cp.kubeconfig(),
                &["get", "nodes", "-o", "name"],
            ),
            "get nodes from the client namespace",
        );
        assert_eq!(nodes.trim(), "node/n1");
    }
    // Dropped: both processes gone, the directory and both namespaces removed.
    assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
    let left = netns_list();
    for name in &names {
        assert!(
            !left.contains(name.as_str()),
            "namespace {name} left behind"
        );
    }
}

#[test]
fn control_plane_on_ipv4_and_cleanup_on_panic() {
    let (server_ns, _client_ns) = two_namespaces();
    let dir = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cp = ControlPlane::start(&server_ns, SERVER_V4.parse::<IpAddr>().unwrap());
        *dir.lock().unwrap() = Some(cp.dir().to_owned());
        assert_eq!(cp.server(), "https://192.0.2.2:6443");
        assert_eq!(cp.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
        panic!("a test fails while the control plane runs");
    }));
    assert!(result.is_err());
    let dir = dir
        .into_inner()
        .unwrap()
        .expect("the control plane started");
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Nothing listens any more: the apiserver process is gone.
    let listening = server_ns.run("ss", &["-Htln"]);
    let text = String::from_utf8_lossy(&listening.stdout);
    assert!(!text.contains(":6443") && !text.contains(":2379"), "{text}");
}
