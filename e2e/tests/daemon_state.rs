//! weftd's state under pressure: parallel ADDs, kill -9 at arbitrary instants, address
//! exhaustion and cooldown, and a real Prometheus scraping the metrics.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use weft_e2e::{Netns, Node, NodeOptions};

fn addresses(result: &serde_json::Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_owned())
        .collect()
}

/// A cheap varying number for chaos timing (no RNG dependency; the spread is what matters).
fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max.max(1)
}

/// Runs `f(i)` for i in 0..n on `threads` threads.
fn parallel<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = Mutex::new(0usize);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = {
                    let mut n_ = next.lock().unwrap();
                    let i = *n_;
                    *n_ += 1;
                    i
                };
                if i >= n {
                    break;
                }
                let r = f(i);
                out.lock().unwrap().push((i, r));
            });
        }
    });
    let mut out = out.into_inner().unwrap();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn parallel_adds_never_share_an_address_and_parallel_dels_free_all() {
    let node = Node::start(NodeOptions::default());
    let pods: Vec<Netns> = (0..40).map(|_| Netns::new("p")).collect();
    let results = parallel(pods.len(), 16, |i| {
        node.add(&format!("par-{i}"), &pods[i]).expect_ok()
    });
    let mut seen = HashSet::new();
    for r in &results {
        for a in addresses(r) {
            assert!(seen.insert(a.clone()), "{a} handed out twice");
        }
    }
    assert_eq!(seen.len(), 80);
    assert!(pods[0].ping(addresses(&results[39])[0].trim_end_matches("/128")));
    parallel(pods.len(), 16, |i| {
        node.del(&format!("par-{i}"), Some(&pods[i])).expect_ok()
    });
    assert!(node.allocation_records().is_empty());
}

#[test]
fn kill_9_at_any_instant_loses_and_duplicates_nothing() {
    // A /28 has 14 pod addresses; no cooldown, so "nothing lost" is checkable exactly:
    // once every pod is gone, all 14 must be allocatable again.
    let mut node = Node::start(NodeOptions {
        ipv4_subnet: Some("10.255.1.0/28".into()),
        cooldown_seconds: 0,
        ..NodeOptions::default()
    });
    let pods: Vec<Netns> = (0..10).map(|_| Netns::new("p")).collect();
    let mut live: Vec<(usize, Vec<String>)> = Vec::new();
    for _round in 0..4 {
        // SIGKILL lands while ADDs are in flight: some finish, some die mid-request,
        // some find no daemon at all.
        let pid = node.weftd_pid().unwrap().to_string();
        let pending: Vec<usize> = (0..pods.len())
            .filter(|i| !live.iter().any(|(l, _)| l == i))
            .collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                parallel(pending.len(), 4, |k| {
                    node.add(&format!("chaos-{}", pending[k]), &pods[pending[k]])
                })
            });
            std::thread::sleep(Duration::from_micros(jitter(15_000)));
            std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap();
        });
        node.restart();
        // What the runtime does next: DEL after every failed or unknown ADD, then retry,
        // with more kills between the calls.
        live.clear();
        for (i, pod) in pods.iter().enumerate() {
            let cid = format!("chaos-{i}");
            node.del(&cid, Some(pod)).expect_ok();
            let fresh = node.add(&cid, pod);
            if fresh.ok() {
                live.push((i, addresses(&fresh.json())));
            }
            if i % 3 == 0 {
                node.restart();
            }
        }
    }
    // Every live pod is recorded, with the addresses its result reported, none shared.
    let records = node.allocation_records();
    assert_eq!(
        records.len(),
        live.len(),
        "records {records:?} vs live pods {live:?}"
    );
    let mut seen = HashSet::new();
    for (_, addrs) in &live {
        for a in addrs {
            assert!(seen.insert(a.clone()), "{a} handed out twice");
        }
    }
    // Nothing lost: after every pod is gone, all 14 IPv4 addresses come back.
    for (i, pod) in pods.iter().enumerate() {
        node.del(&format!("chaos-{i}"), Some(pod)).expect_ok();
    }
    let fresh: Vec<Netns> = (0..14).map(|_| Netns::new("q")).collect();
    for (i, pod) in fresh.iter().enumerate() {
        node.add(&format!("refill-{i}"), pod).expect_ok();
    }
    let one_more = Netns::new("q");
    assert_eq!(node.add("refill-extra", &one_more).error_code(), Some(100));
}

#[test]
fn exhaustion_is_a_clear_error_and_cooling_addresses_say_try_again_later() {
    let node = Node::start(NodeOptions {
        ipv4_subnet: Some("10.255.7.0/28".into()),
        ..NodeOptions::default()
    });
    let pods: Vec<Netns> = (0..15).map(|_| Netns::new("p")).collect();
    for (i, pod) in pods.iter().take(14).enumerate() {
        node.add(&format!("ex-{i}"), pod).expect_ok();
    }
    let full = node.add("ex-14", &pods[14]);
    assert_eq!(full.error_code(), Some(100), "{full:?}");
    let msg = full.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("10.255.7.0/28") && msg.contains("14"), "{msg}");
    assert!(
        node.allocation_records().len() == 14,
        "the failed ADD kept an address"
    );
    // STATUS tells the runtime this node cannot take pods now.
    let status = node
        .plugin()
        .call("STATUS", "", None, "", &node.plugin_config("1.1.0"));
    assert_eq!(status.error_code(), Some(50), "{status:?}");
    assert!(
        status.json()["msg"]
            .as_str()
            .unwrap()
            .contains("no ipv4 address can be allocated"),
        "{status:?}"
    );

    node.del("ex-0", Some(&pods[0])).expect_ok();
    let cooling = node.add("ex-14", &pods[14]);
    assert_eq!(cooling.error_code(), Some(11), "{cooling:?}");
    assert!(cooling.json()["msg"]
        .as_str()
        .unwrap()
        .contains("cooling down"));
    assert_eq!(
        node.metric(r#"weft_ipam_requests_total{operation="allocate",result="exhausted"}"#),
        Some(1.0)
    );
}

#[test]
fn a_real_prometheus_scrapes_weftd() {
    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        std::path::Path::new(&prometheus).exists(),
        "prometheus missing: run e2e/setup.sh"
    );
    let node = Node::start(NodeOptions::default());
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("p")).collect();
    for (i, pod) in pods.iter().enumerate() {
        node.add(&format!("prom-{i}"), pod).expect_ok();
    }
    let dir = std::env::temp_dir().join(format!("weft-prom-{}", node.netns.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weftd\n    static_configs:\n      - targets: ['[::1]:9641']\n";
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", node.netns.name(), &prometheus])
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.listen-address=[::1]:9090")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let query = "/api/v1/query?query=weft_ipam_addresses_in_use%7Bfamily%3D%22ipv6%22%7D";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let found = loop {
        let (status, body) = node.netns.http_get("[::1]:9090", query);
        if status == 200 && body.contains(r#""value":["#) {
            break Some(body);
        }
        last = body;
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let body = found.unwrap_or_else(|| {
        panic!("Prometheus never returned the sample; last answer {last}\nlog: {log}")
    });
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sample = &value["data"]["result"][0];
    assert_eq!(sample["metric"]["job"], "weftd");
    assert_eq!(sample["value"][1], "3", "{body}");
}

#[test]
fn promtool_accepts_the_exposition() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    node.add("lint", &pod).expect_ok();
    let (_, body) = node.http_get("/metrics");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus package) is installed by e2e/setup.sh");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_restarted_weftd_removes_host_veths_no_allocation_owns() {
    let mut node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    let result = node.add("owned", &pod).expect_ok();
    let owned = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    // What a kill -9 leaves behind when the background removal queue dies with weftd.
    node.netns.ip(&[
        "link",
        "add",
        "name",
        "weft0rphan00001",
        "type",
        "veth",
        "peer",
        "name",
        "orphan-peer",
    ]);
    node.kill9();
    node.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.weft_veths() != vec![owned.clone()] {
        assert!(
            Instant::now() < deadline,
            "veths now: {:?}",
            node.weft_veths()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pod.ping(weft_e2e::HOST_V4),
        "the owned pod keeps its network"
    );
}

#[test]
fn a_record_weftd_cannot_read_keeps_its_address_and_odd_entries_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let mut node = Node::start(NodeOptions::default());
    let (torn_pod, kept_pod) = (Netns::new("p"), Netns::new("p"));
    let torn = addresses(&node.add("torn", &torn_pod).expect_ok());
    node.add("kept", &kept_pod).expect_ok();
    node.kill9();
    // A record cut short mid-write (never by weftd's renames; by a disk, an operator),
    // and entries weftd never writes: a symlink to a record elsewhere, a directory, a
    // name that is not UTF-8.
    let records = node.state_dir().join("allocations");
    let bytes = std::fs::read(records.join("torn@eth0")).unwrap();
    std::fs::write(records.join("torn@eth0"), &bytes[..bytes.len() - 20]).unwrap();
    let elsewhere = node.state_dir().with_extension("elsewhere");
    std::fs::write(&elsewhere, b"{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, records.join("linked@eth0")).unwrap();
    std::fs::create_dir(records.join("a-directory")).unwrap();
    std::fs::write(
        records.join(std::ffi::OsStr::from_bytes(b"bad\xff@eth0")),
        b"{}",
    )
    .unwrap();
    node.restart();

    assert_eq!(node.metric("weft_ipam_quarantined_records"), Some(1.0));
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_in_use{family="ipv4"}"#),
        Some(2.0),
        "the torn record's address was freed"
    );
    let log = node.log();
    for needle in [
        "quarantined",
        "torn@eth0",
        "a symlink",
        "a directory",
        "not UTF-8",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} not in weftd's log:\n{log}"
        );
    }
    // New pods never get the torn record's addresses.
    let fresh: Vec<Netns> = (0..3).map(|_| Netns::new("p")).collect();
    for (i, pod) in fresh.iter().enumerate() {
        let got = addresses(&node.add(&format!("fresh-{i}"), pod).expect_ok());
        assert!(
            got.iter().all(|a| !torn.contains(a)),
            "{got:?} reuses {torn:?}"
        );
    }
    // The torn pod's DEL ends the quarantine: its addresses cool down like any.
    assert!(node.del("torn", Some(&torn_pod)).ok());
    assert_eq!(node.metric("weft_ipam_quarantined_records"), Some(0.0));
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_cooling{family="ipv4"}"#),
        Some(1.0)
    );
    std::fs::remove_file(elsewhere).unwrap();
}

/// Kills the process on drop (weftd in its own mount namespace: its tmpfs goes with it).
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_full_state_dir_fails_add_cleanly_and_leaves_no_temp_file() {
    use std::process::{Command, Stdio};
    let node_ns = Netns::new("n");
    node_ns.add_stub_uplink(1500, &[format!("{}/24", weft_e2e::HOST_V4)]);
    let dir = std::env::temp_dir().join(weft_e2e::unique_name("weft-enospc"));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let socket = dir.join("sock").join("weftd.sock");
    let log = std::fs::File::create(dir.join("weftd.log")).unwrap();
    // A 32 KiB tmpfs (8 pages: boot_id, the lock, then one per record) mounted in a
    // mount namespace of weftd's own, so nothing outside the test sees it.
    let script =
        r#"mount -t tmpfs -o size=32k,mode=0700 weft-enospc "$0" && exec ip netns exec "$@""#;
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(&state)
        .arg(node_ns.name())
        .arg(weft_e2e::binary("weftd"))
        .args([
            "--node-name",
            "enospc",
            "--mode",
            "ipv4",
            "--ipv4-subnet",
            "10.255.1.0/24",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--underlay-interface",
            "uplink",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let weftd = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(dir.join("weftd.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `unshare` and `sh` exec, so the child is weftd: its view of the state dir.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", weftd.0.id()))
        .join(state.strip_prefix("/").unwrap());
    let plugin = weft_e2e::Plugin::new(&node_ns);
    let config = serde_json::json!({"cniVersion": "1.1.0", "name": "enospc", "type": "weft", "socket": socket});
    let pods: Vec<Netns> = (0..12).map(|_| Netns::new("p")).collect();
    let mut full = None;
    for (i, pod) in pods.iter().enumerate() {
        let out = plugin.call(
            "ADD",
            &format!("fill-{i}"),
            Some(&pod.path()),
            "eth0",
            &config,
        );
        if !out.ok() {
            full = Some((i, out));
            break;
        }
    }
    let (added, out) = full.expect("12 records fit in 32 KiB: the tmpfs is not in place");
    let message = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("No space left on device"),
        "ADD {added}: {out:?}"
    );
    assert!(added >= 2, "only {added} records fit");
    eprintln!("{added} records fit; ADD {added}: {message}");
    let left: Vec<_> = std::fs::read_dir(inside.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
    let records = std::fs::read_dir(inside.join("allocations"))
        .unwrap()
        .count();
    assert_eq!(records, added, "the failed ADD left a record");
    assert!(
        !pods[added].ip(&["-o", "link"]).contains("eth0"),
        "the failed ADD left its veth"
    );
    // weftd keeps serving.
    let status = plugin.call("STATUS", "", None, "", &config);
    assert!(status.ok(), "{status:?}");
    drop(weftd);
    std::fs::remove_dir_all(&dir).unwrap();
}
