//! weftd as the Helm chart runs it: the CNI conflist it writes for the runtime
//! (`--cni-conflist`, `--cni-conflist-template`) and its sysctls under `--proc-sys`.
//!
//! The conflist's promises: it appears only once weftd serves pods (a runtime that
//! finds it can run the plugin against a socket that answers, and `/readyz` is never
//! 200 without it), a deleted or changed one is back within a resync, identical content
//! is never rewritten, and weftd never removes it, not even on SIGTERM (cilium#24009:
//! without it pods cannot be deleted). Bad flags are in malformed_input.rs.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use weft_e2e::{pod_address, wait_until, Netns, Node, NodeOptions, TempDir, HOST_V4, HOST_V6};

/// Where the tests have weftd write: a conf dir weftd has to create.
fn conflist_path(dir: &TempDir) -> PathBuf {
    dir.path().join("net.d").join("05-weft.conflist")
}

/// weftd's standard test flags plus `extra`, resyncing every second.
fn options(extra: &[&str]) -> NodeOptions {
    let mut extra_args: Vec<String> = vec!["--resync-seconds".into(), "1".into()];
    extra_args.extend(extra.iter().map(|a| a.to_string()));
    NodeOptions {
        extra_args,
        ..NodeOptions::default()
    }
}

/// A started node whose weftd writes the conflist at the returned path, in the
/// returned directory.
fn node_writing_conflist(tag: &str) -> (TempDir, PathBuf, Node) {
    let dir = TempDir::new(tag);
    let path = conflist_path(&dir);
    let node = Node::start(options(&["--cni-conflist", &path.display().to_string()]));
    (dir, path, node)
}

/// A node namespace with the stub uplink `Node::start` gives it.
fn node_namespace() -> Netns {
    let netns = Netns::new("n");
    netns.add_stub_uplink(1500, &[format!("{HOST_V4}/24"), format!("{HOST_V6}/64")]);
    netns
}

/// The plugin's config as a runtime builds it from a conflist: the list's `cniVersion`
/// and `name` with its first plugin's entry.
fn first_plugin_config(conflist: &Value) -> Value {
    let mut config = conflist["plugins"][0].clone();
    config["cniVersion"] = conflist["cniVersion"].clone();
    config["name"] = conflist["name"].clone();
    config
}

/// CNI STATUS with the config the conflist at `path` gives the runtime: whether the
/// plugin reached a weftd that serves.
fn status_through(node: &Node, path: &Path) -> Result<(), String> {
    let conflist: Value = serde_json::from_slice(&fs::read(path).unwrap())
        .map_err(|e| format!("the conflist does not parse: {e}"))?;
    let out = node
        .plugin()
        .call("STATUS", "", None, "", &first_plugin_config(&conflist));
    match out.ok() {
        true => Ok(()),
        false => Err(format!("{out:?}")),
    }
}

#[test]
fn the_conflist_appears_only_once_weftd_serves_and_then_leads_to_it() {
    let dir = TempDir::new("conflist-order");
    let path = conflist_path(&dir);
    let flag = path.display().to_string();
    let mut node = Node::spawn_in(node_namespace(), options(&["--cni-conflist", &flag]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // In this order: a 200 seen first must find the file; a file seen first must
        // lead to a socket that answers.
        let ready = node.http_get("/readyz").0 == 200;
        if path.exists() {
            status_through(&node, &path)
                .unwrap_or_else(|e| panic!("the conflist exists but STATUS fails: {e}"));
            if ready {
                break;
            }
        } else {
            assert!(!ready, "/readyz is 200 before the conflist exists");
        }
        assert!(
            Instant::now() < deadline,
            "weftd did not become ready:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let written: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"cniVersion": "1.1.0", "name": "weft",
            "plugins": [{"type": "weft", "socket": node.socket().display().to_string(),
                "capabilities": {"io.kubernetes.cri.pod-annotations": true}}]}),
        "without a template: weft alone on --socket, asking for the pod's annotations"
    );
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    let pod = Netns::new("p");
    let config = first_plugin_config(&written);
    node.plugin()
        .call(
            "ADD",
            "through-the-conflist",
            Some(&pod.path()),
            "eth0",
            &config,
        )
        .expect_ok();
    node.plugin()
        .call(
            "DEL",
            "through-the-conflist",
            Some(&pod.path()),
            "eth0",
            &config,
        )
        .expect_ok();
    node.stop();
}

#[test]
fn no_conflist_while_weftd_waits_for_its_allocation() {
    // Kubernetes mode against an apiserver that never answers (a closed port inside
    // the node's own namespace): weftd lives (/healthz) but serves no pod yet.
    let dir = TempDir::new("conflist-wait");
    let kubeconfig = dir.path().join("kubeconfig");
    fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\n",
    )
    .unwrap();
    let path = conflist_path(&dir);
    let flag = path.display().to_string();
    let mut node = Node::spawn_in(
        node_namespace(),
        NodeOptions {
            kubeconfig: Some(kubeconfig),
            ipv6_prefix: None,
            ipv4_subnet: None,
            ..options(&["--cni-conflist", &flag])
        },
    );
    wait_until("/healthz", Duration::from_secs(10), || {
        node.http_get("/healthz").0 == 200
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", node.log()));
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(node.http_get("/readyz").0, 503, "{}", node.log());
        assert!(
            !path.exists() && !path.parent().unwrap().exists(),
            "the conflist was written before weftd serves pods"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.stop();
}

#[test]
fn a_deleted_or_changed_conflist_is_restored_and_sigterm_leaves_it() {
    let (_dir, path, mut node) = node_writing_conflist("conflist-keep");
    let content = fs::read(&path).unwrap();

    // Identical content is not rewritten: the same inode, unmodified, over resyncs.
    let before = fs::metadata(&path).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (after.ino(), after.mtime_nsec(), after.mtime()),
        (before.ino(), before.mtime_nsec(), before.mtime()),
        "an identical conflist was rewritten"
    );

    // Deleted, then changed: each time back within a resync (one second here).
    let restored = || fs::read(&path).is_ok_and(|c| c == content);
    fs::remove_file(&path).unwrap();
    wait_until(
        "the deleted conflist back",
        Duration::from_secs(4),
        restored,
    )
    .unwrap_or_else(|e| panic!("{e}:\n{}", node.log()));
    fs::write(&path, b"{\"cniVersion\": \"1.1.0\", \"name\": \"edited\"}").unwrap();
    wait_until(
        "the changed conflist restored",
        Duration::from_secs(4),
        restored,
    )
    .unwrap_or_else(|e| panic!("{e}:\n{}", node.log()));
    // Only the conflist: no temporary file is left beside it.
    let names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["05-weft.conflist"]);

    node.stop();
    assert!(
        !node.socket().exists(),
        "weftd did not stop (its socket is still there)"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        content,
        "SIGTERM removed or changed the conflist"
    );
}

#[test]
fn a_template_is_written_byte_for_byte_over_the_previous_conflist() {
    let (dir, path, mut node) = node_writing_conflist("conflist-template");
    let default = fs::read_to_string(&path).unwrap();

    // The shape the chart renders (weft, then portmap, compact), on this node's socket;
    // weftd restarted with it replaces what the previous run wrote.
    let template = dir.path().join("conflist.json");
    let text = format!(
        "{{\"cniVersion\":\"1.0.0\",\"name\":\"k8s-pod-network\",\"plugins\":[{{\"capabilities\":{{\"io.kubernetes.cri.pod-annotations\":true}},\"socket\":\"{}\",\"type\":\"weft\"}},{{\"capabilities\":{{\"portMappings\":true}},\"type\":\"portmap\"}}]}}",
        node.socket().display()
    );
    fs::write(&template, &text).unwrap();
    node.options_mut().extra_args.extend([
        "--cni-conflist-template".into(),
        template.display().to_string(),
    ]);
    node.restart();
    assert_ne!(default, text);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

/// A sysctl tree of regular files: each key with its value.
fn fake_proc_sys(dir: &Path, keys: &[(&str, &str)]) {
    for (key, value) in keys {
        let file = dir.join(key);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, format!("{value}\n")).unwrap();
    }
}

fn read_key(dir: &Path, key: &str) -> String {
    fs::read_to_string(dir.join(key)).unwrap().trim().to_owned()
}

#[test]
fn proc_sys_is_the_root_of_every_sysctl_weftd_touches() {
    let dir = TempDir::new("proc-sys");
    let root = dir.path().join("host/proc/sys");
    fake_proc_sys(
        &root,
        &[
            ("net/ipv4/ip_forward", "0"),
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/all/accept_ra", "1"),
            ("net/ipv6/conf/default/accept_ra", "1"),
            ("net/ipv6/conf/eth9/accept_ra", "1"),
            ("net/ipv6/conf/lo/accept_ra", "0"),
            ("net/ipv6/conf/weft-vxlan/disable_ipv6", "0"),
        ],
    );
    // Already right: read, never written (its modification time stays in the past).
    let forwarding = root.join("net/ipv6/conf/all/forwarding");
    let past = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&forwarding)
        .unwrap()
        .set_modified(past)
        .unwrap();

    let node = Node::start(options(&["--proc-sys", &root.display().to_string()]));
    assert_eq!(read_key(&root, "net/ipv4/ip_forward"), "1");
    assert_eq!(read_key(&root, "net/ipv6/conf/eth9/accept_ra"), "2");
    assert_eq!(
        read_key(&root, "net/ipv6/conf/weft-vxlan/disable_ipv6"),
        "1"
    );
    // `all` and `default` are not interfaces; lo does not take RAs.
    assert_eq!(read_key(&root, "net/ipv6/conf/all/accept_ra"), "1");
    assert_eq!(read_key(&root, "net/ipv6/conf/default/accept_ra"), "1");
    assert_eq!(read_key(&root, "net/ipv6/conf/lo/accept_ra"), "0");
    assert_eq!(
        fs::metadata(&forwarding).unwrap().modified().unwrap(),
        past,
        "a forwarding switch already on was written again"
    );
    // The namespace's own /proc/sys was not touched.
    assert_eq!(node.netns.sysctl("net.ipv4.ip_forward"), "0");
    assert_eq!(node.netns.sysctl("net.ipv6.conf.all.forwarding"), "0");
}

#[test]
fn proc_sys_through_a_symlink_to_the_real_tree_turns_forwarding_on() {
    // The chart's layout: DIR/net is the node's /proc/sys/net, mounted elsewhere.
    let dir = TempDir::new("proc-sys-link");
    let root = dir.path().join("host/proc/sys");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/proc/sys/net", root.join("net")).unwrap();
    let node = Node::start(options(&["--proc-sys", &root.display().to_string()]));
    assert_eq!(node.netns.sysctl("net.ipv4.ip_forward"), "1");
    assert_eq!(node.netns.sysctl("net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(
        node.netns.sysctl("net.ipv6.conf.weft-vxlan.disable_ipv6"),
        "1"
    );
    let pod = Netns::new("p");
    let other = Netns::new("p");
    node.add("proc-sys-a", &pod).expect_ok();
    let result = node.add("proc-sys-b", &other).expect_ok();
    let v4 = pod_address(&result, false);
    assert!(pod.ping(&v4), "pod to pod over IPv4 through the node");
}
