//! Malformed input, end to end, against the real `weft` and `weftd` binaries.
//!
//! Two promises are checked for every bad input:
//! - a clear refusal: a CNI error object on stdout with the right code and a message that
//!   names the variable or field and the value, a non-zero exit, and never a panic;
//! - no lost state: pods added before keep exactly their addresses (CHECK passes), no
//!   refused call leaves an allocation behind, and a good ADD still works afterwards.
//!
//! Areas, in file order: the plugin's config (codes 6, 1, 7), its environment (4, 3),
//! huge inputs, the socket to weftd (50, 11) with fake daemons served from this process,
//! weftd's flags (the conflist and sysctl root among them) and socket safety, and
//! garbage written to weftd's own socket.
//!
//! Several tests pin down bugs this suite found (a refused second weftd sweeping live
//! veths, unvalidated attachments on the socket, a CNI_NETNS that is not a network
//! namespace, CHECK's error order); they stay as regressions.
// Helpers panic on harness failures like the tests do (as in the harness crate itself).
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_e2e::{binary, unique_name, Netns, Node, NodeOptions, Plugin, PluginOutput};

// ---- helpers -------------------------------------------------------------------------

/// Asserts that `out` is a refusal: a non-zero exit (not a signal), exactly one CNI error
/// object on stdout with `code`, a message containing every needle, and no panic.
/// Returns the message.
#[track_caller]
fn refused(out: &PluginOutput, code: u64, needles: &[&str]) -> String {
    assert!(!out.stderr.contains("panicked"), "weft panicked: {out:?}");
    assert!(
        matches!(out.status, Some(s) if s != 0),
        "expected a non-zero exit status (None = killed by a signal): {out:?}"
    );
    let error: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"));
    assert_eq!(error["code"].as_u64(), Some(code), "wrong code: {out:?}");
    assert!(
        error["cniVersion"].is_string(),
        "the error object has no cniVersion: {out:?}"
    );
    let msg = error["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("the error object has no msg: {out:?}"));
    for needle in needles {
        assert!(
            msg.contains(needle),
            "message {msg:?} does not mention {needle:?}"
        );
    }
    // Whatever the input, the message is something a human reads in `kubectl describe`.
    assert!(
        msg.len() <= 1024,
        "message of {} bytes: {msg:.300}",
        msg.len()
    );
    msg.to_owned()
}

/// The usual variables of an ADD/DEL/CHECK call, eth0.
fn cni_env<'a>(command: &'a str, container_id: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

/// `config` with `key` set to `value`, as stdin bytes.
fn with(config: &Value, key: &str, value: Value) -> Vec<u8> {
    let mut config = config.clone();
    config[key] = value;
    config.to_string().into_bytes()
}

/// `config` without `key`, as stdin bytes.
fn without(config: &Value, key: &str) -> Vec<u8> {
    let mut config = config.clone();
    config.as_object_mut().unwrap().remove(key);
    config.to_string().into_bytes()
}

/// The "no state lost" check after a batch of bad calls: the pods added before still hold
/// exactly what ADD gave them (CHECK compares weftd's record and the kernel with the ADD
/// result), no refused call left an allocation behind, and a good ADD still works and
/// gets fresh addresses.
#[track_caller]
fn assert_state_intact(node: &Node, kept: &[(&str, &Netns, &Value)]) {
    for (id, pod, result) in kept {
        node.check(id, pod, result).expect_ok();
    }
    let mut expected: Vec<String> = kept.iter().map(|(id, _, _)| format!("{id}@eth0")).collect();
    expected.sort();
    assert_eq!(
        node.allocation_records(),
        expected,
        "a refused call changed the allocations"
    );
    let pod = Netns::new("p");
    let fresh = node.add("after-bad-input", &pod).expect_ok();
    let taken: Vec<&Value> = kept
        .iter()
        .flat_map(|(_, _, r)| r["ips"].as_array().unwrap())
        .map(|ip| &ip["address"])
        .collect();
    let fresh_ips = fresh["ips"].as_array().unwrap();
    assert!(!fresh_ips.is_empty(), "{fresh}");
    for ip in fresh_ips {
        assert!(
            !taken.contains(&&ip["address"]),
            "address handed out twice: {ip}"
        );
    }
    assert!(
        !node.log().contains("panicked"),
        "weftd panicked:\n{}",
        node.log()
    );
}

/// A private (0700) temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("weft-malformed-{}", unique_name(tag)));
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A node namespace with no weftd, for calls that must fail before weftd matters or that
/// talk to a fake daemon.
fn bare_node() -> (Netns, Plugin) {
    let ns = Netns::new("n");
    let plugin = Plugin::new(&ns);
    (ns, plugin)
}

/// A config for a network served at `socket`.
fn config_for(socket: &Path) -> Value {
    json!({"cniVersion": "1.1.0", "name": "malformed", "type": "weft",
        "socket": socket.display().to_string()})
}

/// Nothing of a refused ADD is left: no interface in the pod, and the node has exactly
/// `host_veths` weft veths (those of the pods added before).
#[track_caller]
fn assert_untouched(node_ns: &Netns, pod: &Netns, host_veths: usize) {
    let pod_links = pod.ip(&["-o", "link"]);
    assert!(
        !pod_links.contains("eth0"),
        "the pod got an eth0: {pod_links}"
    );
    // Host veths only: weftd's own `weft-vxlan` device is no pod's.
    let node_links = node_ns.ip(&["-o", "link", "show", "type", "veth"]);
    assert_eq!(
        node_links.matches(": weft").count(),
        host_veths,
        "weft veths in the node: {node_links}"
    );
}

/// Whether an ADD result lists a pod interface called `name`.
fn has_pod_interface(result: &Value, name: &str) -> bool {
    result["interfaces"].as_array().is_some_and(|ifs| {
        ifs.iter()
            .any(|i| i["name"] == name && i["sandbox"].is_string())
    })
}

/// Something at the configured socket path that is not weftd: a unix socket in a private
/// temp dir, each connection handed to `answer` on its own thread.
#[derive(Debug)]
struct FakeDaemon {
    _dir: TempDir,
    socket: PathBuf,
}

impl FakeDaemon {
    fn start(answer: Answer) -> FakeDaemon {
        let dir = TempDir::new("fake");
        let socket = dir.0.join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // Detached: the accept loop lives until the test binary exits.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer(stream));
            }
        });
        FakeDaemon { _dir: dir, socket }
    }
}

/// Reads the plugin's request line, so answers come after the question.
fn read_request(stream: &UnixStream) {
    let _ = BufReader::new(stream).read_line(&mut String::new());
}

/// What a weftd run did.
#[derive(Debug)]
struct Exit {
    /// Exit code; None when it was still running at the limit and was killed.
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// Runs weftd inside `ns` with `args`, plus harmless defaults for --node-name,
/// --state-dir, --socket (both under `dir`) and --metrics-addr unless `args` sets them.
/// It is killed after `limit`: a weftd that wrongly accepted its flags would run forever
/// (and, in its own namespace with paths under `dir`, touch nothing outside the test).
fn run_weftd(ns: &Netns, dir: &Path, args: &[&str], limit: Duration) -> Exit {
    let state = dir.join("state").display().to_string();
    let socket = dir.join("sock").join("weftd.sock").display().to_string();
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (flag, value) in [
        ("--node-name", "malformed"),
        ("--state-dir", state.as_str()),
        ("--socket", socket.as_str()),
        ("--metrics-addr", "127.0.0.1:0"),
    ] {
        if !args.contains(&flag) {
            argv.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    // stderr to a file: nobody has to drain a pipe while we poll.
    let log_path = dir.join(format!("{}.log", unique_name("weftd")));
    let log = fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(binary("weftd"))
        .args(&argv)
        .env_remove("NODE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > limit {
            // `ip netns exec` execs weftd, so this is weftd's PID.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Exit {
        code,
        stderr: fs::read_to_string(&log_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Asserts that a refused weftd loaded no state: its state dir holds at most the lock
/// file a weftd takes before anything else.
#[track_caller]
fn assert_state_not_loaded(state: &Path) {
    let entries: Vec<String> = fs::read_dir(state)
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        entries.iter().all(|e| e == "weftd.lock"),
        "a refused weftd loaded its state: {entries:?}"
    );
}

/// Asserts that weftd refused to start: exit 2 quickly, no panic, every needle in stderr.
#[track_caller]
fn weftd_refused(exit: &Exit, needles: &[&str]) {
    assert!(
        !exit.stderr.contains("panicked"),
        "weftd panicked: {exit:?}"
    );
    assert_eq!(
        exit.code,
        Some(2),
        "weftd should exit 2 (None: it was still running): {exit:?}"
    );
    assert!(
        exit.elapsed < Duration::from_secs(5),
        "slow refusal: {exit:?}"
    );
    for needle in needles {
        assert!(
            exit.stderr.contains(needle),
            "weftd's message does not mention {needle:?}: {}",
            exit.stderr
        );
    }
}

/// The IPv6 /128 of an ADD result.
fn ipv6_of(result: &Value) -> std::net::Ipv6Addr {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|ip| ip["address"].as_str()?.parse::<ipnet::Ipv6Net>().ok())
        .unwrap_or_else(|| panic!("no IPv6 address in {result}"))
        .addr()
}

/// One request line on weftd's socket and its answer line, parsed.
fn exchange(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("weftd answered {line:?} with non-JSON ({e}): {answer:?}"))
}

// ---- the plugin's config: decode errors (code 6) --------------------------------------

#[test]
fn config_that_does_not_decode_is_code_6_naming_the_field() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    // A real pod netns and valid variables: the config is the only thing wrong, and the
    // good config below succeeds with exactly these variables.
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let env = cni_env("ADD", "bad-config", &pod_path);
    let good = node.plugin_config("1.1.0");

    let deep = format!(
        r#"{{"cniVersion":"1.1.0","name":"n","type":"weft","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "broken JSON",
            br#"{"cniVersion":"1.1.0","name":"#.to_vec(),
            vec!["not a valid JSON", "EOF"],
        ),
        ("empty stdin", Vec::new(), vec!["not a valid JSON"]),
        (
            "not UTF-8",
            b"\xff\xfe{}".to_vec(),
            vec!["not a valid JSON"],
        ),
        (
            "an array",
            b"[1, 2]".to_vec(),
            vec!["expected a JSON object", "an array [1,2]"],
        ),
        (
            "a string",
            br#""weft""#.to_vec(),
            vec!["expected a JSON object", "a string"],
        ),
        (
            "null",
            b"null".to_vec(),
            vec!["expected a JSON object", "null"],
        ),
        // 100 000 levels would overflow a naive recursive parser's stack (a SIGSEGV,
        // caught by refused()'s exit-status check).
        (
            "nested 100 000 deep",
            deep.into_bytes(),
            vec!["recursion limit"],
        ),
        (
            "cniVersion a number",
            with(&good, "cniVersion", json!(1.1)),
            vec!["cniVersion", "expected a string", "a number 1.1"],
        ),
        (
            "name an object",
            with(&good, "name", json!({"a": 1})),
            vec!["name", "expected a string", "an object"],
        ),
        (
            "socket a number",
            with(&good, "socket", json!(5)),
            vec!["socket", "expected a string", "a number 5"],
        ),
        (
            "prevResult an array",
            with(&good, "prevResult", json!([1])),
            vec!["prevResult", "expected an object", "an array"],
        ),
    ];
    for (what, stdin, needles) in &cases {
        let out = node.plugin().raw(&env, stdin);
        eprintln!("case: {what}");
        refused(&out, 6, needles);
    }
    assert_untouched(&node.netns, &pod, 1);

    // GC's attachment list: a malformed GC must not collect anything (it would release
    // every pod's addresses if it treated a bad list as an empty one).
    let gc_env = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
    for (list, needles) in [
        (
            json!({"containerID": "keeper", "ifname": "eth0"}),
            vec![
                "cni.dev/valid-attachments",
                "expected an array",
                "an object",
            ],
        ),
        (
            json!("keeper"),
            vec!["cni.dev/valid-attachments", "a string"],
        ),
        (
            json!([{"containerID": "keeper"}]),
            vec!["cni.dev/valid-attachments[0].ifname", "missing"],
        ),
        (
            json!([{"containerID": "keeper", "ifname": 0}]),
            vec!["cni.dev/valid-attachments[0].ifname", "not a string"],
        ),
        (
            json!([{"ifname": "eth0"}]),
            vec!["cni.dev/valid-attachments[0].containerID", "missing"],
        ),
    ] {
        let out = node
            .plugin()
            .raw(&gc_env, &with(&good, "cni.dev/valid-attachments", list));
        refused(&out, 6, &needles);
    }

    // The variables were fine all along: the good config goes through.
    node.plugin()
        .raw(&env, good.to_string().as_bytes())
        .expect_ok();
    node.del("bad-config", Some(&pod)).expect_ok();
    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

// ---- the plugin's config: versions (code 1) and VERSION --------------------------------

#[test]
fn unknown_cni_versions_are_code_1_and_version_always_answers() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let env = cni_env("ADD", "versioned", &pod_path);
    let good = node.plugin_config("1.1.0");

    for version in ["9.9.9", "0.3.1", "1.1", "", "1.1.0 "] {
        let out = node
            .plugin()
            .raw(&env, &with(&good, "cniVersion", json!(version)));
        refused(
            &out,
            1,
            &["cniVersion", &format!("'{version}'"), "0.4.0, 1.0.0, 1.1.0"],
        );
    }
    // Missing is a different mistake: the field itself.
    let out = node.plugin().raw(&env, &without(&good, "cniVersion"));
    refused(&out, 7, &["cniVersion", "missing"]);
    assert_untouched(&node.netns, &pod, 1);

    // STATUS and GC arrived in 1.1.0. A GC refused for its version must not collect.
    for command in ["STATUS", "GC"] {
        for old in ["1.0.0", "0.4.0"] {
            let out = node.plugin().raw(
                &[("CNI_COMMAND", command), ("CNI_PATH", "/opt/cni/bin")],
                node.plugin_config(old).to_string().as_bytes(),
            );
            let msg = refused(&out, 1, &["cniVersion", old, "1.1.0"]);
            // The message names the command (currently as "Status"/"Gc", see the report).
            assert!(
                msg.to_lowercase().contains(&command.to_lowercase()),
                "{msg}"
            );
        }
    }

    // VERSION needs only CNI_COMMAND, and answers whatever stdin holds.
    let supported = json!(["0.4.0", "1.0.0", "1.1.0"]);
    let version_env = [("CNI_COMMAND", "VERSION")];
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let answer = node
            .plugin()
            .raw(
                &version_env,
                json!({"cniVersion": version}).to_string().as_bytes(),
            )
            .expect_ok();
        assert_eq!(
            answer,
            json!({"cniVersion": version, "supportedVersions": supported})
        );
    }
    let garbage: [&[u8]; 6] = [
        b"",
        b"garbage",
        b"\xff\x00\xfe",
        b"[]",
        br#"{"cniVersion": 5}"#,
        br#"{"cniVersion": "9.9.9"}"#,
    ];
    for stdin in garbage {
        let out = node.plugin().raw(&version_env, stdin);
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        assert_eq!(
            out.expect_ok(),
            json!({"cniVersion": "1.1.0", "supportedVersions": supported}),
            "VERSION with stdin {stdin:?}"
        );
    }

    // Every supported version really works for ADD (the refusals above are about the
    // value, not about versioned configs in general).
    // (A fresh pod each time: DEL removes the previous veth in the background.)
    for version in ["0.4.0", "1.0.0"] {
        let id = format!("v{}", version.replace('.', ""));
        let versioned_pod = Netns::new("p");
        let out = node.plugin().raw(
            &cni_env("ADD", &id, &versioned_pod.path()),
            node.plugin_config(version).to_string().as_bytes(),
        );
        assert_eq!(out.expect_ok()["cniVersion"], version);
        node.del(&id, Some(&versioned_pod)).expect_ok();
    }
    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

// ---- the plugin's config: invalid values (code 7) -------------------------------------

#[test]
fn config_values_that_are_not_acceptable_are_code_7_naming_field_and_value() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let env = cni_env("ADD", "invalid-config", &pod_path);
    let good = node.plugin_config("1.1.0");

    let cases: Vec<(Vec<u8>, Vec<&str>)> = vec![
        (without(&good, "name"), vec!["name", "missing"]),
        (with(&good, "name", json!("")), vec!["name", "''"]),
        (with(&good, "name", json!("-net")), vec!["name", "'-net'"]),
        (
            with(&good, "name", json!("my net")),
            vec!["name", "'my net'"],
        ),
        (with(&good, "name", json!("a/b")), vec!["name", "'a/b'"]),
        (with(&good, "name", json!("ünï")), vec!["name", "'ünï'"]),
        (without(&good, "type"), vec!["type", "missing"]),
        (
            with(&good, "type", json!("bridge")),
            vec!["type", "'bridge'", "'weft'"],
        ),
        (with(&good, "type", json!("Weft")), vec!["type", "'Weft'"]),
        (
            with(&good, "socket", json!("run/weft/weftd.sock")),
            vec!["socket", "'run/weft/weftd.sock'", "absolute"],
        ),
        (
            with(&good, "socket", json!("")),
            vec!["socket", "''", "absolute"],
        ),
    ];
    for (stdin, needles) in &cases {
        refused(&node.plugin().raw(&env, stdin), 7, needles);
    }
    assert_untouched(&node.netns, &pod, 1);

    // An attachment that breaks the container ID rules in GC's list: refused, and GC
    // collects nothing.
    let out = node.plugin().raw(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &with(
            &good,
            "cni.dev/valid-attachments",
            json!([{"containerID": "-keeper", "ifname": "eth0"}]),
        ),
    );
    refused(&out, 7, &["cni.dev/valid-attachments[0]", "'-keeper'"]);

    // CHECK needs the result it checks against.
    let out = node.plugin().raw(
        &cni_env("CHECK", "keeper", &keeper_pod.path()),
        good.to_string().as_bytes(),
    );
    refused(&out, 7, &["prevResult", "CHECK"]);

    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

// ---- the plugin's environment (code 4) ------------------------------------------------

#[test]
fn bad_environment_is_code_4_naming_the_variable_and_value() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let good = node.plugin_config("1.1.0").to_string().into_bytes();
    let base = cni_env("ADD", "env-test", &pod_path);
    // `base` with `var` replaced (Some) or removed (None).
    let env_with = |var: &str, value: Option<&'static str>| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| *k != var)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(v) = value {
            env.push((var.to_owned(), v.to_owned()));
        }
        env
    };
    let run = |env: &[(String, String)]| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        node.plugin().raw(&pairs, &good)
    };

    // CNI_COMMAND.
    refused(
        &run(&env_with("CNI_COMMAND", None)),
        4,
        &["CNI_COMMAND", "not set"],
    );
    refused(
        &run(&env_with("CNI_COMMAND", Some(""))),
        4,
        &["CNI_COMMAND", "not set"],
    );
    for bad in ["FROB", "add", "ADD ", "DELETE"] {
        let env = env_with("CNI_COMMAND", Some(bad));
        refused(&run(&env), 4, &["CNI_COMMAND", &format!("'{bad}'")]);
    }

    // Required variables, absent or empty (the spec treats both as unset).
    for var in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"] {
        refused(&run(&env_with(var, None)), 4, &[var, "required for ADD"]);
        refused(
            &run(&env_with(var, Some(""))),
            4,
            &[var, "required for ADD"],
        );
    }

    // Container IDs: alphanumeric first, then alphanumerics, '_', '.', '-'.
    for bad in [
        "-leading-dash",
        "has space",
        "a/b",
        "a@b",
        "../../etc",
        ".hidden",
        "ünï",
    ] {
        let env = env_with("CNI_CONTAINERID", Some(bad));
        refused(&run(&env), 4, &["CNI_CONTAINERID", &format!("'{bad}'")]);
    }
    let long: &'static str = "a".repeat(10_000).leak();
    let msg = refused(
        &run(&env_with("CNI_CONTAINERID", Some(long))),
        4,
        &["CNI_CONTAINERID", "10000 bytes"],
    );
    assert!(
        msg.len() < 400,
        "the message echoes the whole ID: {} bytes",
        msg.len()
    );
    let just_over: &'static str = "b".repeat(201).leak();
    refused(
        &run(&env_with("CNI_CONTAINERID", Some(just_over))),
        4,
        &["CNI_CONTAINERID", "201 bytes"],
    );

    // Interface names: the kernel's rules.
    for bad in ["a234567890abcdef", "a/b", "..", ".", "eth 0", "eth:0"] {
        let env = env_with("CNI_IFNAME", Some(bad));
        refused(&run(&env), 4, &["CNI_IFNAME", &format!("'{bad}'")]);
    }

    // CNI_NETNS must be absolute.
    for bad in ["var/run/netns/x", "./x", "x"] {
        let env = env_with("CNI_NETNS", Some(bad));
        refused(
            &run(&env),
            4,
            &["CNI_NETNS", &format!("'{bad}'"), "absolute"],
        );
    }

    // CNI_ARGS: KEY=VALUE pairs joined by ';'.
    for (bad, pair) in [
        ("junk", "'junk'"),
        ("IgnoreUnknown=1;K8S_POD_NAME", "'K8S_POD_NAME'"),
    ] {
        let env = env_with("CNI_ARGS", Some(bad));
        refused(&run(&env), 4, &["CNI_ARGS", pair]);
    }

    // DEL validates too: a bad ID must not release anything (nor reach weftd).
    let out = node.plugin().raw(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "keeper/../keeper"),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
    );
    refused(&out, 4, &["CNI_CONTAINERID", "'keeper/../keeper'"]);
    assert_untouched(&node.netns, &pod, 1);

    // The spec allows upper case in container IDs, and boundary lengths are fine:
    // 200-byte IDs, 15-byte interface names, and an unparsed but well-formed CNI_ARGS.
    let upper = "ABCDEF0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789";
    let env = env_with("CNI_CONTAINERID", Some(upper));
    let mut env = env
        .into_iter()
        .chain([(
            "CNI_ARGS".to_string(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;OTHER=a=b".to_string(),
        )])
        .collect::<Vec<_>>();
    let added = run(&env).expect_ok();
    assert!(has_pod_interface(&added, "eth0"), "{added}");
    assert!(node.allocation_records().contains(&format!("{upper}@eth0")));
    env.retain(|(k, _)| k != "CNI_COMMAND");
    env.push(("CNI_COMMAND".into(), "DEL".into()));
    run(&env).expect_ok();

    let max_id: &'static str = "M".repeat(200).leak();
    let other_pod = Netns::new("p");
    let other_path = other_pod.path();
    let out = node.plugin().raw(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", max_id),
            ("CNI_NETNS", &other_path),
            ("CNI_IFNAME", "e23456789abcdef"),
        ],
        &good,
    );
    let r = out.expect_ok();
    assert!(has_pod_interface(&r, "e23456789abcdef"), "{r}");
    let del = node.plugin().raw(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", max_id),
            ("CNI_IFNAME", "e23456789abcdef"),
        ],
        &good,
    );
    del.expect_ok();

    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

// ---- the pod's namespace (code 3) -----------------------------------------------------

#[test]
fn a_netns_path_that_does_not_exist_is_code_3_and_allocates_nothing() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let gone = format!("/var/run/netns/{}", unique_name("gone"));
    let good = node.plugin_config("1.1.0").to_string().into_bytes();

    let out = node.plugin().raw(&cni_env("ADD", "no-netns", &gone), &good);
    refused(&out, 3, &["CNI_NETNS", &gone]);
    let mut config = node.plugin_config("1.1.0");
    config["prevResult"] = keeper.clone();
    let out = node.plugin().raw(
        &cni_env("CHECK", "keeper", &gone),
        config.to_string().as_bytes(),
    );
    refused(&out, 3, &["CNI_NETNS", &gone]);
    // The spec wants DEL to succeed when the namespace is already gone.
    node.plugin()
        .raw(&cni_env("DEL", "no-netns", &gone), &good)
        .expect_ok();

    // No allocation was made for the refused ADD, so none cools down either.
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_cooling{family="ipv4"}"#),
        Some(0.0)
    );
    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

#[test]
fn a_netns_path_that_is_not_a_network_namespace_is_refused_without_leaking() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let good = node.plugin_config("1.1.0").to_string().into_bytes();
    // Paths that exist and open, but are a regular file, a directory and a namespace of
    // another kind: setns(2) refuses them before weftd allocates anything.
    for (i, path) in ["/etc/hostname", "/tmp", "/proc/1/ns/mnt"]
        .iter()
        .enumerate()
    {
        let out = node
            .plugin()
            .raw(&cni_env("ADD", &format!("not-netns-{i}"), path), &good);
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        assert!(matches!(out.status, Some(s) if s != 0), "{out:?}");
        assert!(out.error_code().is_some(), "no CNI error object: {out:?}");
    }
    // Rolled back: no veth, no allocation.
    let links = node.netns.ip(&["-o", "link", "show", "type", "veth"]);
    assert_eq!(
        links.matches(": weft").count(),
        1,
        "only the keeper's host veth: {links}"
    );
    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

#[test]
fn a_netns_path_that_is_not_a_network_namespace_is_code_3() {
    let node = Node::start(NodeOptions::default());
    let good = node.plugin_config("1.1.0").to_string().into_bytes();
    for (i, path) in ["/etc/hostname", "/tmp", "/proc/1/ns/mnt"]
        .iter()
        .enumerate()
    {
        let out = node
            .plugin()
            .raw(&cni_env("ADD", &format!("not-netns-{i}"), path), &good);
        refused(&out, 3, &["CNI_NETNS", *path]);
    }
    // Refused before weftd was asked: no address was allocated and sent to cool down.
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_cooling{family="ipv6"}"#),
        Some(0.0)
    );
}

// ---- huge inputs ----------------------------------------------------------------------

#[test]
fn twenty_mib_of_stdin_is_refused_quickly_and_big_unknown_fields_are_fine() {
    let node = Node::start(NodeOptions::default());
    let keeper_pod = Netns::new("p");
    let keeper = node.add("keeper", &keeper_pod).expect_ok();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let env = cni_env("ADD", "huge", &pod_path);

    // 20 MiB that start like a valid config: refused by size, before parsing.
    let mut huge = br#"{"cniVersion":"1.1.0","name":"n","type":"weft","pad":""#.to_vec();
    huge.resize(20 << 20, b'x');
    let started = Instant::now();
    let out = node.plugin().raw(&env, &huge);
    let took = started.elapsed();
    refused(&out, 6, &["stdin", "exceeds", "16777216 bytes"]);
    assert!(took < Duration::from_secs(5), "20 MiB took {took:?}");
    assert_untouched(&node.netns, &pod, 1);

    // A valid config carrying a 1 MiB unknown field: accepted (unknown fields are the
    // runtime's business), and the result is normal.
    let padded = with(
        &node.plugin_config("1.1.0"),
        "org.example/padding",
        json!("p".repeat(1 << 20)),
    );
    let r = node.plugin().raw(&env, &padded).expect_ok();
    assert!(has_pod_interface(&r, "eth0"), "{r}");
    node.del("huge", Some(&pod)).expect_ok();
    assert_state_intact(&node, &[("keeper", &keeper_pod, &keeper)]);
}

// ---- the socket to weftd: nothing there, or not weftd (codes 50 and 11) ----------------

#[test]
fn a_socket_path_where_nothing_listens_is_code_50_naming_the_path() {
    let (node_ns, plugin) = bare_node();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let dir = TempDir::new("nolisten");
    let missing = dir.0.join("missing.sock");
    // A socket file whose server is gone (what a crashed weftd leaves).
    let stale = dir.0.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(fs::symlink_metadata(&stale)
        .unwrap()
        .file_type()
        .is_socket());
    let regular = dir.0.join("regular-file");
    fs::write(&regular, b"not a socket").unwrap();

    for socket in [&missing, &stale, &regular, &dir.0] {
        let config = config_for(socket).to_string().into_bytes();
        let path = socket.display().to_string();
        for env in [
            cni_env("ADD", "c1", &pod_path),
            cni_env("CHECK", "c1", &pod_path),
            vec![("CNI_COMMAND", "STATUS")],
            vec![("CNI_COMMAND", "GC")],
        ] {
            let stdin = if env[0].1 == "CHECK" {
                with(
                    &config_for(socket),
                    "prevResult",
                    json!({"cniVersion": "1.1.0"}),
                )
            } else {
                config.clone()
            };
            refused(&plugin.raw(&env, &stdin), 50, &["weftd", &path]);
        }
        // DEL without weftd fails too, so the runtime retries and nothing leaks.
        refused(
            &plugin.raw(&cni_env("DEL", "c1", &pod_path), &config),
            50,
            &["weftd", &path],
        );
    }
    assert_untouched(&node_ns, &pod, 0);
}

/// How a fake daemon treats one connection.
type Answer = fn(UnixStream);

/// Answers one request line with an HTTP error, as a wrong service would.
fn answer_http(stream: UnixStream) {
    read_request(&stream);
    let _ = (&stream).write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
}

/// Accepts and hangs up without reading or answering.
fn hang_up(stream: UnixStream) {
    drop(stream);
}

/// Answers with valid protocol JSON of the wrong shape for any request.
fn answer_wrong_shape(stream: UnixStream) {
    read_request(&stream);
    let _ = (&stream).write_all(b"{\"result\":\"released\",\"allocation\":null}\n");
}

/// Answers with an endless line: the plugin must stop reading at its size limit.
fn answer_endlessly(stream: UnixStream) {
    read_request(&stream);
    let chunk = vec![b'x'; 1 << 16];
    while (&stream).write_all(&chunk).is_ok() {}
}

/// Answers half a message and closes.
fn answer_half(stream: UnixStream) {
    read_request(&stream);
    let _ = (&stream).write_all(b"{\"result\":\"allocation\",\"alloc");
}

/// Reads the request and never answers (holding the connection well past the plugin's
/// 10 s timeout).
fn answer_never(stream: UnixStream) {
    read_request(&stream);
    std::thread::sleep(Duration::from_secs(30));
    drop(stream);
}

#[test]
fn a_socket_that_is_not_weftd_is_code_50_and_wires_nothing() {
    let (node_ns, plugin) = bare_node();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    // (what the fake does, its behaviour, whether weft's message names the socket today:
    // a well-formed answer of the wrong kind does not, see the report.)
    let fakes: [(&str, Answer, bool); 5] = [
        ("answers HTTP", answer_http, true),
        ("hangs up", hang_up, true),
        ("answers the wrong message", answer_wrong_shape, false),
        ("answers endlessly", answer_endlessly, true),
        ("answers half a message", answer_half, true),
    ];
    for (what, answer, names_socket) in fakes {
        eprintln!("case: a fake daemon that {what}");
        let fake = FakeDaemon::start(answer);
        let path = fake.socket.display().to_string();
        let config = config_for(&fake.socket).to_string().into_bytes();
        let started = Instant::now();
        let add = refused(
            &plugin.raw(&cni_env("ADD", "c1", &pod_path), &config),
            50,
            &["weftd"],
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}: {add}",
            started.elapsed()
        );
        let status = refused(
            &plugin.raw(&[("CNI_COMMAND", "STATUS")], &config),
            50,
            &["weftd"],
        );
        // Which socket misbehaved is what the operator needs to know.
        if names_socket {
            for msg in [&add, &status] {
                assert!(msg.contains(&path), "{msg:?} does not name {path}");
            }
        } else {
            assert!(add.contains("unexpected message"), "{add}");
        }
    }
    assert_untouched(&node_ns, &pod, 0);
}

/// Slow by design: the plugin's answer timeout is 10 s.
#[test]
fn a_socket_that_never_answers_is_code_11_after_the_timeout() {
    let (node_ns, plugin) = bare_node();
    let pod = Netns::new("p");
    let pod_path = pod.path();
    let fake = FakeDaemon::start(answer_never);
    let config = config_for(&fake.socket).to_string().into_bytes();
    let started = Instant::now();
    let out = plugin.raw(&cni_env("ADD", "c1", &pod_path), &config);
    let took = started.elapsed();
    refused(
        &out,
        11,
        &[
            "weftd",
            &fake.socket.display().to_string(),
            "did not answer within",
        ],
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "the plugin gave up after {took:?}, expected ~10 s"
    );
    assert_untouched(&node_ns, &pod, 0);
}

// ---- weftd's flags --------------------------------------------------------------------

#[test]
fn weftd_refuses_bad_flags_naming_flag_and_value_before_touching_anything() {
    let ns = Netns::new("d");
    let dir = TempDir::new("flags");
    let v6 = ["--ipv6-prefix", "2001:db8:1000:1::/80"];
    let v4 = ["--ipv4-subnet", "10.255.1.0/24"];
    let dual = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec![v6[0], v6[1], v4[0], v4[1]];
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| *a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend_from_slice(pair);
        }
        args
    };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            dual(&["--ipv6-prefix", "2001:db8::/40"]),
            vec!["--ipv6-prefix", "'2001:db8::/40'", "/64 to /120"],
        ),
        (
            dual(&["--ipv6-prefix", "2001:db8::5/80"]),
            vec![
                "--ipv6-prefix",
                "'2001:db8::5/80'",
                "host bits",
                "2001:db8::/80",
            ],
        ),
        (
            dual(&["--ipv6-prefix", "2001:db8:1000:1::"]),
            vec!["--ipv6-prefix", "'2001:db8:1000:1::'", "prefix length"],
        ),
        (
            dual(&["--ipv6-prefix", "10.255.0.0/80"]),
            vec!["--ipv6-prefix", "'10.255.0.0/80'", "not an IPv6 prefix"],
        ),
        (
            dual(&["--ipv6-prefix", "2001:db8::/eighty"]),
            vec!["--ipv6-prefix", "'eighty'"],
        ),
        (
            dual(&["--ipv4-subnet", "10.255.1.0/30"]),
            vec!["--ipv4-subnet", "'10.255.1.0/30'", "/16 to /28"],
        ),
        (
            dual(&["--ipv4-subnet", "10.255.1.7/24"]),
            vec![
                "--ipv4-subnet",
                "'10.255.1.7/24'",
                "host bits",
                "10.255.1.0/24",
            ],
        ),
        (
            dual(&["--mode", "v6"]),
            vec!["--mode", "'v6'", "dual, ipv6 or ipv4"],
        ),
        (
            dual(&["--metrics-addr", "2001:db8::1:9641"]),
            vec!["--metrics-addr", "'2001:db8::1:9641'", "[IPV6]:PORT"],
        ),
        (
            dual(&["--metrics-addr", "[::]:99999"]),
            vec!["--metrics-addr", "'99999'"],
        ),
        // Periods weftd adds to an instant: past a day they are refused, not overflowed.
        (
            dual(&["--cooldown-seconds", "18446744073709551615"]),
            vec!["--cooldown-seconds", "'18446744073709551615'", "0..=86400"],
        ),
        (
            dual(&["--resync-seconds", "86401"]),
            vec!["--resync-seconds", "'86401'", "1..=86400"],
        ),
        (
            vec!["--mode", "dual", v6[0], v6[1]],
            vec!["--ipv4-subnet", "required", "dual"],
        ),
        (
            vec!["--mode", "ipv6"],
            vec!["--ipv6-prefix", "required", "ipv6"],
        ),
        (
            dual(&["--socket", "run/weftd.sock"]),
            vec!["--socket", "'run/weftd.sock'", "absolute"],
        ),
        (
            dual(&["--state-dir", "state"]),
            vec!["--state-dir", "'state'", "absolute"],
        ),
        (dual(&["--node-name", "  "]), vec!["--node-name", "empty"]),
        (
            dual(&["--cooldown-seconds", "soon"]),
            vec!["--cooldown-seconds", "'soon'"],
        ),
    ];
    for (args, needles) in &cases {
        let exit = run_weftd(&ns, &dir.0, args, Duration::from_secs(5));
        weftd_refused(&exit, needles);
    }
    // Flags are checked before weftd touches the system: no state directory, no socket
    // directory, forwarding untouched in its namespace.
    assert!(
        !dir.0.join("state").exists(),
        "a refused weftd created its state dir"
    );
    assert!(
        !dir.0.join("sock").exists(),
        "a refused weftd created its socket dir"
    );
    assert_eq!(ns.sysctl("net/ipv6/conf/all/forwarding"), "0");

    // Control: the same defaults with good flags do start (and are killed at the limit),
    // so the refusals above are about the values.
    let exit = run_weftd(&ns, &dir.0, &dual(&[]), Duration::from_millis(1500));
    assert_eq!(
        exit.code, None,
        "weftd with good flags did not stay up: {exit:?}"
    );
}

#[test]
fn weftd_refuses_bad_conflist_and_proc_sys_flags_naming_flag_path_and_problem() {
    let ns = Netns::new("d");
    let dir = TempDir::new("conflist-flags");
    let conflist = dir.0.join("net.d").join("05-weft.conflist");
    let conflist_flag = conflist.display().to_string();
    let socket = dir.0.join("sock").join("weftd.sock").display().to_string();
    let template = |name: &str, text: &str| -> String {
        let path = dir.0.join(name);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let not_json = template("not-json.json", "{\"cniVersion\": ");
    let no_version = template(
        "no-version.json",
        r#"{"name":"k8s","plugins":[{"type":"weft"}]}"#,
    );
    let portmap_first = template(
        "portmap-first.json",
        r#"{"cniVersion":"1.1.0","name":"k8s","plugins":[{"type":"portmap"},{"type":"weft"}]}"#,
    );
    let other_socket = template(
        "other-socket.json",
        r#"{"cniVersion":"1.1.0","name":"k8s","plugins":[{"type":"weft","socket":"/run/elsewhere.sock"}]}"#,
    );
    let missing = dir.0.join("missing.json").display().to_string();
    let base = [
        "--ipv6-prefix",
        "2001:db8:1000:1::/80",
        "--ipv4-subnet",
        "10.255.1.0/24",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            with(&[
                "--cni-conflist",
                &conflist_flag,
                "--cni-conflist-template",
                &not_json,
            ]),
            vec!["--cni-conflist-template", &not_json, "not JSON"],
        ),
        (
            with(&[
                "--cni-conflist",
                &conflist_flag,
                "--cni-conflist-template",
                &no_version,
            ]),
            vec!["--cni-conflist-template", &no_version, "no 'cniVersion'"],
        ),
        (
            with(&[
                "--cni-conflist",
                &conflist_flag,
                "--cni-conflist-template",
                &portmap_first,
            ]),
            vec![
                "--cni-conflist-template",
                &portmap_first,
                "plugins[0].type is \"portmap\"",
            ],
        ),
        (
            with(&[
                "--cni-conflist",
                &conflist_flag,
                "--cni-conflist-template",
                &other_socket,
            ]),
            vec![
                "--cni-conflist-template",
                "/run/elsewhere.sock",
                &socket,
                "--socket",
            ],
        ),
        (
            with(&[
                "--cni-conflist",
                &conflist_flag,
                "--cni-conflist-template",
                &missing,
            ]),
            vec!["--cni-conflist-template", &missing, "No such file"],
        ),
        (
            with(&["--cni-conflist-template", &portmap_first]),
            vec!["--cni-conflist-template", "--cni-conflist <PATH>"],
        ),
        (
            with(&["--cni-conflist", "net.d/05-weft.conflist"]),
            vec!["--cni-conflist", "'net.d/05-weft.conflist'", "absolute"],
        ),
        (
            with(&["--cni-conflist", "/etc/cni/net.d/05-weft.conf"]),
            vec![
                "--cni-conflist",
                "'/etc/cni/net.d/05-weft.conf'",
                ".conflist",
            ],
        ),
        (
            with(&["--proc-sys", "host/proc/sys"]),
            vec!["--proc-sys", "'host/proc/sys'", "absolute"],
        ),
    ];
    for (args, needles) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let exit = run_weftd(&ns, &dir.0, &args, Duration::from_secs(5));
        weftd_refused(&exit, needles);
    }
    assert!(
        !conflist.parent().unwrap().exists(),
        "a refused weftd wrote the conflist"
    );
    assert!(
        !dir.0.join("state").exists(),
        "a refused weftd created its state dir"
    );

    // A --proc-sys without the node's net/ is refused when weftd first needs it, naming
    // the flag and the key, before the state dir or the conflist.
    let empty = dir.0.join("empty-proc-sys");
    fs::create_dir(&empty).unwrap();
    let empty_flag = empty.display().to_string();
    let args = with(&["--proc-sys", &empty_flag, "--cni-conflist", &conflist_flag]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exit = run_weftd(&ns, &dir.0, &args, Duration::from_secs(5));
    weftd_refused(&exit, &["--proc-sys", &empty_flag, "ip_forward"]);
    // The state dir's lock comes first (one weftd per state dir); nothing else in it.
    assert_state_not_loaded(&dir.0.join("state"));
    assert!(!conflist.exists());
    assert_eq!(ns.sysctl("net.ipv4.ip_forward"), "0");

    // Control: a good template on weftd's socket is accepted and written as it is.
    let good_text = format!(
        r#"{{"cniVersion":"1.1.0","name":"k8s","plugins":[{{"type":"weft","socket":"{socket}"}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#
    );
    let good = template("good.json", &good_text);
    let args = with(&[
        "--cni-conflist",
        &conflist_flag,
        "--cni-conflist-template",
        &good,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exit = run_weftd(&ns, &dir.0, &args, Duration::from_millis(2000));
    assert_eq!(
        exit.code, None,
        "weftd with a good template did not stay up: {exit:?}"
    );
    assert_eq!(fs::read_to_string(&conflist).unwrap(), good_text);
}

#[test]
fn weftd_accepts_every_ipv6_text_form_of_its_prefix() {
    let prefix: ipnet::Ipv6Net = "2001:db8:1000:1::/80".parse().unwrap();
    for form in [
        "2001:0db8:1000:0001:0000:0000:0000:0000/80",
        "2001:DB8:1000:1::/80",
        "2001:Db8:1000:1:0:0:0:0/80",
        "[2001:db8:1000:1::]/80",
    ] {
        let node = Node::start(NodeOptions {
            ipv6_prefix: Some(form.into()),
            ..NodeOptions::default()
        });
        let pod = Netns::new("p");
        let r = node.add("text-form", &pod).expect_ok();
        let addr = ipv6_of(&r);
        assert!(prefix.contains(&addr), "{form}: the pod got {addr}");
        let on_pod = pod.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]);
        assert!(on_pod.contains(&format!("{addr}/128")), "{form}: {on_pod}");
    }
}

// ---- weftd's socket safety ------------------------------------------------------------

/// weftd (IPv6 only) started on `state`; the flag as given and how it ended.
fn weftd_on_state_dir(ns: &Netns, dir: &Path, state: &Path) -> (String, Exit) {
    let flag = state.display().to_string();
    let args = [
        "--mode",
        "ipv6",
        "--ipv6-prefix",
        "2001:db8:1000:1::/80",
        "--state-dir",
        &flag,
    ];
    let exit = run_weftd(ns, dir, &args, Duration::from_secs(5));
    (flag, exit)
}

#[test]
fn weftd_refuses_a_state_directory_others_can_write_or_own() {
    let ns = Netns::new("d");
    let dir = TempDir::new("statedir");
    for mode in [0o777, 0o770, 0o1777] {
        let state = dir.0.join(format!("state-{mode:o}"));
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(mode)).unwrap();
        let (flag, exit) = weftd_on_state_dir(&ns, &dir.0, &state);
        let shown = format!("mode {:o}", mode & 0o7777);
        weftd_refused(
            &exit,
            &["--state-dir", &flag, "writable by group or others", &shown],
        );
        assert!(
            fs::read_dir(&state).unwrap().next().is_none(),
            "weftd wrote into {flag}"
        );
    }
    // Owned by another user: refused too, naming both uids.
    let foreign = dir.0.join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let (flag, exit) = weftd_on_state_dir(&ns, &dir.0, &foreign);
    weftd_refused(
        &exit,
        &["--state-dir", &flag, "owned by uid 65534", "uid 0"],
    );
}

#[test]
fn weftd_refuses_a_socket_directory_others_can_write() {
    let ns = Netns::new("d");
    let dir = TempDir::new("sockdir");
    let args = ["--mode", "ipv6", "--ipv6-prefix", "2001:db8:1000:1::/80"];
    for mode in [0o777, 0o775, 0o1777] {
        let public = dir.0.join(format!("public-{mode:o}"));
        fs::create_dir(&public).unwrap();
        fs::set_permissions(&public, fs::Permissions::from_mode(mode)).unwrap();
        let socket = public.join("weftd.sock").display().to_string();
        let mut argv = args.to_vec();
        argv.extend(["--socket", &socket]);
        let exit = run_weftd(&ns, &dir.0, &argv, Duration::from_secs(5));
        weftd_refused(
            &exit,
            &[
                "--socket",
                &public.display().to_string(),
                "writable by group or others",
            ],
        );
        assert!(
            fs::read_dir(&public).unwrap().next().is_none(),
            "weftd left something in {}",
            public.display()
        );
    }

    // A path that exists and is not a socket is refused and left alone.
    let regular = dir.0.join("not-a-socket");
    fs::write(&regular, b"precious").unwrap();
    let socket = regular.display().to_string();
    let mut argv = args.to_vec();
    argv.extend(["--socket", &socket]);
    let exit = run_weftd(&ns, &dir.0, &argv, Duration::from_secs(5));
    weftd_refused(&exit, &["--socket", &socket, "not a socket"]);
    assert_eq!(fs::read(&regular).unwrap(), b"precious");
}

#[test]
fn weftd_checks_its_socket_before_touching_the_system() {
    let ns = Netns::new("d");
    let dir = TempDir::new("sockfirst");
    let public = dir.0.join("public");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o777)).unwrap();
    let socket = public.join("weftd.sock").display().to_string();
    let args = [
        "--mode",
        "ipv6",
        "--ipv6-prefix",
        "2001:db8:1000:1::/80",
        "--socket",
        &socket,
    ];
    let exit = run_weftd(&ns, &dir.0, &args, Duration::from_secs(5));
    weftd_refused(&exit, &["--socket"]);
    assert_eq!(
        ns.sysctl("net/ipv6/conf/all/forwarding"),
        "0",
        "a weftd that refused to start turned forwarding on"
    );
    assert!(
        !dir.0.join("state").exists(),
        "a weftd that refused to start created (and loaded) its state dir"
    );
}

#[test]
fn a_refused_second_weftd_leaves_live_pods_alone() {
    let node = Node::start(NodeOptions::default());
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("p")).collect();
    for (i, pod) in pods.iter().enumerate() {
        node.add(&format!("live-{i}"), pod).expect_ok();
    }
    // A mistyped --state-dir (and a free metrics port) on the node's own socket: refused
    // with "another process is serving", but its start-up "orphan" sweep sees every live
    // veth as foreign. The sweep races the exit, so try a few times.
    let dir = TempDir::new("sweep");
    let socket = node.socket().display().to_string();
    for round in 0..10 {
        let state = dir.0.join(format!("state-{round}")).display().to_string();
        let args = [
            "--mode",
            "dual",
            "--ipv6-prefix",
            "2001:db8:1000:1::/80",
            "--ipv4-subnet",
            "10.255.1.0/24",
            "--state-dir",
            &state,
            "--socket",
            &socket,
        ];
        let exit = run_weftd(&node.netns, &dir.0, &args, Duration::from_secs(5));
        weftd_refused(&exit, &["--socket", "another process is serving"]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        node.weft_veths().len(),
        3,
        "live pods lost their host veths"
    );
    assert!(
        pods[0].ping(weft_e2e::HOST_V4),
        "a live pod lost its network"
    );
}

#[test]
fn weftd_socket_is_0600_and_a_second_weftd_on_it_is_refused() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    let kept = node.add("kept", &pod).expect_ok();
    let meta = fs::symlink_metadata(node.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.mode() & 0o7777,
        0o600,
        "socket mode {:o}",
        meta.mode() & 0o7777
    );
    assert_eq!(meta.uid(), 0);

    // A second weftd on the same socket path (in its own namespace, so that the socket is
    // the only thing the two share) must not steal or remove it.
    let other = Netns::new("d");
    let dir = TempDir::new("second");
    let socket = node.socket().display().to_string();
    let args = [
        "--mode",
        "ipv6",
        "--ipv6-prefix",
        "2001:db8:1000:2::/80",
        "--socket",
        &socket,
    ];
    let exit = run_weftd(&other, &dir.0, &args, Duration::from_secs(5));
    weftd_refused(&exit, &["--socket", "another process is serving", &socket]);

    // The same again with the node's own flags, namespace and state dir (an accidental
    // double start): refused by the state dir's lock, which comes first.
    let state = node.state_dir().display().to_string();
    let exit = run_weftd(
        &node.netns,
        &dir.0,
        &[
            "--mode",
            "dual",
            "--ipv6-prefix",
            "2001:db8:1000:1::/80",
            "--ipv4-subnet",
            "10.255.1.0/24",
            "--state-dir",
            &state,
            "--socket",
            &socket,
            "--metrics-addr",
            "[::]:9641",
        ],
        Duration::from_secs(5),
    );
    weftd_refused(&exit, &["--state-dir", &state, "another weftd"]);

    let meta = fs::symlink_metadata(node.socket()).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "the first weftd's socket is gone"
    );
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_state_intact(&node, &[("kept", &pod, &kept)]);
}

// ---- garbage on weftd's own socket ----------------------------------------------------

#[test]
fn weftd_answers_garbage_on_its_socket_and_keeps_serving() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    let kept = node.add("kept", &pod).expect_ok();

    let mut stream = UnixStream::connect(node.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let garbage: [(&[u8], &str); 10] = [
        (b"not json\n", "does not parse"),
        (b"\n", "does not parse"),
        (b"\xff\xfe\x00\n", "does not parse"),
        (b"{}\n", "op"),
        (b"[]\n", "does not parse"),
        (b"null\n", "does not parse"),
        (b"{\"op\":\"frob\"}\n", "frob"),
        (b"{\"op\":\"allocate\"}\n", "attachment"),
        (
            b"{\"op\":\"allocate\",\"attachment\":{\"containerId\":1,\"ifname\":\"eth0\"}}\n",
            "does not parse",
        ),
        (b"{\"op\":\"gc\",\"valid\":{}}\n", "does not parse"),
    ];
    for (line, needle) in garbage {
        let answer = exchange(&mut stream, &mut reader, line);
        assert_eq!(answer["result"], "error", "{line:?}: {answer}");
        assert_eq!(answer["kind"], "bad_request", "{line:?}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "{line:?}: {message}");
        // The same connection still works after each bad line.
        let status = exchange(&mut stream, &mut reader, b"{\"op\":\"status\"}\n");
        assert_eq!(status["result"], "network", "after {line:?}: {status}");
    }

    // 17 MiB without a newline: answered with an error and the connection is closed,
    // instead of weftd buffering forever.
    let big = UnixStream::connect(node.socket()).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = big.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        // weftd stops reading at its limit, so this write ends in EPIPE: expected.
        let _ = writer.write_all(&vec![b'x'; 17 << 20]);
    });
    let mut reader = BufReader::new(big.try_clone().unwrap());
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["kind"], "bad_request", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("size limit"),
        "{answer}"
    );
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "more after the error: {:?}",
            &rest[..rest.len().min(200)]
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    flood.join().unwrap();

    assert_state_intact(&node, &[("kept", &pod, &kept)]);
}

#[test]
fn weftd_refuses_invalid_attachments_on_its_socket() {
    let node = Node::start(NodeOptions::default());
    let mut stream = UnixStream::connect(node.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for (id, ifname) in [
        ("../../escaped", "eth0"),
        ("-lead", "eth0"),
        ("c", "a/b"),
        ("c", ""),
        ("has space", "eth0"),
    ] {
        for op in ["allocate", "release", "lookup"] {
            let line = format!(
                "{}\n",
                json!({"op": op, "attachment": {"containerId": id, "ifname": ifname}})
            );
            let answer = exchange(&mut stream, &mut reader, line.as_bytes());
            assert_eq!(
                answer["kind"], "bad_request",
                "{op} {id:?}/{ifname:?}: {answer}"
            );
        }
    }
    // Nothing was written, inside the state dir or (via "..") outside it.
    assert!(
        node.allocation_records().is_empty(),
        "{:?}",
        node.allocation_records()
    );
    let escaped = node.state_dir().join("../escaped@eth0");
    assert!(!escaped.exists(), "weftd wrote {}", escaped.display());
}

#[test]
fn check_without_prev_result_is_code_7_even_without_weftd() {
    let (_node_ns, plugin) = bare_node();
    let pod = Netns::new("p");
    let dir = TempDir::new("check");
    let config = config_for(&dir.0.join("missing.sock"));
    let out = plugin.raw(
        &cni_env("CHECK", "c1", &pod.path()),
        config.to_string().as_bytes(),
    );
    refused(&out, 7, &["prevResult", "CHECK"]);
}
