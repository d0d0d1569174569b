//! weftd's own surfaces under attack: a pod flooding the metrics port with idle
//! connections, a second weftd on the same state directory, a socket path taken over by
//! another process.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_e2e::{binary, unique_name, Netns, Node, NodeOptions, HOST_V4};

/// Connections the attacking pod tries to hold open at once.
const FLOOD: usize = 3000;
/// weft-health's cap of connections per source address (`MAX_PER_SOURCE`; this crate
/// talks to weftd from outside and does not link it).
const PER_SOURCE_CAP: usize = 16;

/// The most descriptors weftd had open at any sample.
static FDS_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Descriptors weftd holds open now.
fn open_fds(node: &Node) -> usize {
    let pid = node.weftd_pid().unwrap();
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Median and worst of a sample of durations, in milliseconds.
fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

/// `rounds` ADD+DEL pairs of a fresh pod through the real plugin and socket, and as
/// many scrapes from inside the node: (ADD, DEL, scrape) durations. Every one must
/// succeed.
fn measure(node: &Node, tag: &str, rounds: usize) -> [Vec<Duration>; 3] {
    let mut timings: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        FDS_PEAK.fetch_max(open_fds(node), Ordering::Relaxed);
        let pod = Netns::new("p");
        let id = format!("{tag}-{i}");
        let started = Instant::now();
        node.add(&id, &pod).expect_ok();
        timings[0].push(started.elapsed());
        let started = Instant::now();
        let del = node.del(&id, Some(&pod));
        assert!(del.ok(), "DEL {id}: {del:?}");
        timings[1].push(started.elapsed());
        let started = Instant::now();
        let (status, body) = node.http_get("/metrics");
        assert_eq!(status, 200, "scrape {tag} {i} failed");
        assert!(body.contains("weft_ipam_addresses_in_use"));
        timings[2].push(started.elapsed());
    }
    timings
}

/// Inside `pod`, keeps trying to hold [`FLOOD`] idle connections to `target`: opens
/// until it holds that many, drops the ones the server closed, again, until `stop`.
/// Counts the connections it opened in `opened` and the most it held in `held_peak`.
fn flood(
    pod: &Netns,
    target: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    held_peak: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let ns = weft_netlink::Netns::open(Path::new(&pod.path())).unwrap();
    std::thread::spawn(move || {
        let _inside = ns.enter().unwrap();
        let mut held: Vec<std::net::TcpStream> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            while held.len() < FLOOD && !stop.load(Ordering::Relaxed) {
                // A dropped SYN is retried after 1 s: a full accept queue is the
                // attacker's success, not a reason to stop.
                if let Ok(stream) =
                    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))
                {
                    stream.set_nonblocking(true).unwrap();
                    held.push(stream);
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                if held.len().is_multiple_of(256) {
                    break;
                }
            }
            // A closed connection reads end-of-stream; an open idle one would block.
            held.retain(|s| {
                let mut byte = [0u8; 1];
                matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            held_peak.fetch_max(held.len(), Ordering::Relaxed);
        }
    })
}

#[test]
fn a_pod_flooding_the_metrics_port_stops_no_add_del_or_scrape() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // weftd starts with the limits a node gives it (soft 1024 here, as under systemd);
    // raising its own is its job.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(1024), hard).unwrap();
    // Pods reach the node's ports (the default): the worst case for the endpoint.
    let node = Node::start(NodeOptions {
        extra_args: vec!["--pod-host-access".into(), "accept".into()],
        ..NodeOptions::default()
    });
    // The flood needs descriptors of its own, in this test process.
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let attacker = Netns::new("p");
    node.add("attacker", &attacker).expect_ok();
    let target: std::net::SocketAddr = format!("{HOST_V4}:9641").parse().unwrap();
    assert_eq!(
        attacker.http_get(&target.to_string(), "/healthz").0,
        200,
        "the pod cannot reach the port: the flood would prove nothing"
    );

    let rounds = 15;
    let [add0, del0, scrape0] = measure(&node, "calm", rounds);
    let calm_fds = FDS_PEAK.swap(0, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flooding = flood(
        &attacker,
        target,
        stop.clone(),
        opened.clone(),
        peak.clone(),
    );
    let started = Instant::now();
    while opened.load(Ordering::Relaxed) < FLOOD && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ramp = started.elapsed();
    let [add1, del1, scrape1] = measure(&node, "flood", rounds);
    stop.store(true, Ordering::Relaxed);
    flooding.join().unwrap();
    let opened = opened.load(Ordering::Relaxed);
    let overflows = node.netns.run(
        "nstat",
        &["-az", "TcpExtListenOverflows", "TcpExtListenDrops"],
    );
    eprintln!("{}", String::from_utf8_lossy(&overflows.stdout));

    let flood_fds = FDS_PEAK.load(Ordering::Relaxed);
    let (a0, d0, s0) = (summary(add0), summary(del0), summary(scrape0));
    let (a1, d1, s1) = (summary(add1), summary(del1), summary(scrape1));
    eprintln!(
        "idle-connection flood ({opened} connections opened, the first {FLOOD} in {ramp:?}; at most {} open from the pod's side, accept queue included; weftd's descriptors {calm_fds} calm, at most {flood_fds} in the flood)\n\
         ms median/worst   ADD {:.1}/{:.1} -> {:.1}/{:.1}   DEL {:.1}/{:.1} -> {:.1}/{:.1}   scrape {:.1}/{:.1} -> {:.1}/{:.1}",
        peak.load(Ordering::Relaxed), a0.0, a0.1, a1.0, a1.1, d0.0, d0.1, d1.0, d1.1, s0.0, s0.1, s1.0, s1.1
    );
    assert!(
        opened >= FLOOD,
        "the flood opened only {opened} connections"
    );
    assert!(
        flood_fds <= calm_fds + PER_SOURCE_CAP + 8,
        "weftd held {flood_fds} descriptors in the flood, {calm_fds} without it"
    );
    // Generous bounds: the machine is shared; the calm figures are a few ms.
    for (what, (median, worst)) in [("ADD", a1), ("DEL", d1), ("scrape", s1)] {
        assert!(
            median < 500.0 && worst < 3000.0,
            "{what} under the flood: median {median} ms, worst {worst} ms"
        );
    }
    assert!(
        node.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        node.log()
    );
}

/// Runs weftd in `ns` with `args` for at most 5 s: (exit code, stderr).
fn run_weftd(ns: &Netns, args: &[&str], log: &Path) -> (Option<i32>, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(binary("weftd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn a_second_weftd_on_the_same_state_dir_is_refused_naming_dir_and_holder() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    node.add("kept", &pod).expect_ok();
    let scratch = std::env::temp_dir().join(unique_name("weft-second"));
    fs::create_dir_all(&scratch).unwrap();
    let state = node.state_dir().display().to_string();
    let socket = scratch
        .join("sock")
        .join("weftd.sock")
        .display()
        .to_string();
    // Its own socket, its own namespace and port: only the state dir is shared.
    let other = Netns::new("d");
    let (code, stderr) = run_weftd(
        &other,
        &[
            "--node-name",
            "second",
            "--mode",
            "ipv6",
            "--ipv6-prefix",
            "2001:db8:1000:1::/80",
            "--state-dir",
            &state,
            "--socket",
            &socket,
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &scratch.join("weftd.log"),
    );
    assert_eq!(code, Some(2), "a second weftd started on {state}: {stderr}");
    let holder = format!("pid {}", node.weftd_pid().unwrap());
    for needle in [
        state.as_str(),
        "another weftd",
        holder.as_str(),
        "one weftd per state directory",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert!(
        !Path::new(&socket).exists(),
        "the refused weftd bound its socket"
    );
    assert_eq!(node.allocation_records(), vec!["kept@eth0".to_string()]);
    node.add("after", &Netns::new("p")).expect_ok();
    fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn weftd_removes_only_the_socket_it_bound() {
    let mut node = Node::start(NodeOptions::default());
    let socket = node.socket();
    // Another process takes the path over (its own socket, a new inode).
    fs::remove_file(&socket).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    node.stop();
    let meta = fs::symlink_metadata(&socket).expect("weftd removed a socket it did not bind");
    assert!(meta.file_type().is_socket());
    drop(other);
    fs::remove_file(&socket).unwrap();
}

#[test]
fn the_plugin_socket_closes_silent_connections_and_serves_meanwhile() {
    use std::io::Read;
    let node = Node::start(NodeOptions::default());
    let opened = Instant::now();
    let silent: Vec<std::os::unix::net::UnixStream> = (0..50)
        .map(|_| std::os::unix::net::UnixStream::connect(node.socket()).unwrap())
        .collect();
    node.add("meanwhile", &Netns::new("p")).expect_ok();
    for mut stream in silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).unwrap(), 0, "weftd answered silence");
    }
    // weftd's PLUGIN_IDLE_TIMEOUT is 10 s.
    let closed = opened.elapsed();
    assert!(
        closed >= Duration::from_secs(9) && closed < Duration::from_secs(15),
        "silent connections closed after {closed:?}"
    );
    node.add("after", &Netns::new("p")).expect_ok();
}

#[test]
fn gc_touches_only_its_own_network_and_nothing_without_a_list() {
    let node = Node::start(NodeOptions::default());
    let config_of = |name: &str| {
        let mut config = node.plugin_config("1.1.0");
        config["name"] = name.into();
        config
    };
    let (a, b) = (config_of("net-a"), config_of("net-b"));
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("p")).collect();
    let add = |id: &str, pod: &Netns, config: &serde_json::Value| {
        node.plugin()
            .call("ADD", id, Some(&pod.path()), "eth0", config)
            .expect_ok()
    };
    add("a-live", &pods[0], &a);
    add("a-gone", &pods[1], &a);
    add("b-pod", &pods[2], &b);
    let gc = |config: &serde_json::Value| node.plugin().call("GC", "", None, "", config);

    // No list: the runtime said nothing about which pods live. Nothing goes, and the
    // plugin says so.
    let out = gc(&a);
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr
            .contains("without cni.dev/valid-attachments releases nothing"),
        "{out:?}"
    );
    assert_eq!(node.allocation_records().len(), 3);

    // net-a's list names a-live: a-gone goes; net-b's pod, absent from net-a's list, stays.
    let mut listed = a.clone();
    listed["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "a-live", "ifname": "eth0"}]);
    assert!(gc(&listed).ok());
    assert_eq!(
        node.allocation_records(),
        vec!["a-live@eth0".to_string(), "b-pod@eth0".to_string()]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.weft_veths().len() != 2 {
        assert!(Instant::now() < deadline, "veths: {:?}", node.weft_veths());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pods[2].ping(HOST_V4),
        "net-b's pod lost its network to net-a's GC"
    );
    let record = fs::read_to_string(node.state_dir().join("allocations/b-pod@eth0")).unwrap();
    assert!(record.contains(r#""network":"net-b""#), "{record}");
}

/// weftd's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are the 12th
    // and 13th of them, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(") ").unwrap().1;
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

#[test]
fn out_of_descriptors_the_metrics_accept_backs_off_instead_of_spinning() {
    use socket2::{Domain, Socket, Type};
    let node = Node::start(NodeOptions::default());
    let pid = node.weftd_pid().unwrap();
    let set_limit = |limit: &str| {
        let out = Command::new("prlimit")
            .args([
                "--pid",
                &pid.to_string(),
                &format!("--nofile={limit}:{limit}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    // A node that gives weftd 64 descriptors in all; it uses about 20.
    set_limit("64");
    // Eight sources of 16 connections each, every one within the per-source cap: past
    // 64 descriptors accept(2) fails with EMFILE until some close.
    let ns = weft_netlink::Netns::open(Path::new(&node.netns.path())).unwrap();
    let holding = std::thread::spawn(move || {
        let _inside = ns.enter().unwrap();
        let target: std::net::SocketAddr = "127.0.0.1:9641".parse().unwrap();
        let mut held = Vec::new();
        for source in 2..10 {
            for _ in 0..16 {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                let from: std::net::SocketAddr = format!("127.0.0.{source}:0").parse().unwrap();
                socket.bind(&from.into()).unwrap();
                if socket
                    .connect_timeout(&target.into(), Duration::from_secs(1))
                    .is_ok()
                {
                    held.push(socket);
                }
            }
        }
        held
    });
    let held = holding.join().unwrap();
    assert!(held.len() > 64, "only {} connections", held.len());
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_time(pid) - before;
    eprintln!("weftd out of descriptors: {spent:?} of CPU in 3 s");
    let log = node.log();
    assert!(
        log.contains("out of resources, backing off"),
        "accept never ran out of descriptors:\n{log}"
    );
    // Spinning on accept would take a whole core: 3 s.
    assert!(
        spent < Duration::from_millis(300),
        "weftd spun: {spent:?} of CPU in 3 s"
    );

    // Descriptors back (the connections close; raising a limit again needs a privilege
    // containers lack): served again within the longest backoff.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.http_get("/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "the endpoint did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    node.add("after", &Netns::new("p")).expect_ok();
}
