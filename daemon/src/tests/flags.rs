use super::*;

fn parse(args: &[&str]) -> Result<Config, String> {
    let mut argv = vec!["weftd", "--node-name", "n1"];
    argv.extend_from_slice(args);
    Flags::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .validate()
        .map_err(|e| e.to_string())
}

#[test]
fn dual_stack_needs_both_ranges() {
    let c = parse(&[
        "--ipv6-prefix",
        "2001:0db8:1000:0001::/80",
        "--ipv4-subnet",
        "10.255.1.0/24",
    ])
    .unwrap();
    assert_eq!(c.ipv6_prefix.unwrap().to_string(), "2001:db8:1000:1::/80");
    assert!(parse(&["--ipv4-subnet", "10.255.1.0/24"])
        .unwrap_err()
        .contains("--ipv6-prefix: required"));
    assert!(parse(&["--ipv6-prefix", "2001:db8::/80"])
        .unwrap_err()
        .contains("--ipv4-subnet: required"));
}

#[test]
fn single_family_modes_drop_the_other_range() {
    let c = parse(&["--mode", "ipv6", "--ipv6-prefix", "2001:db8::/80"]).unwrap();
    assert!(c.ipv4_subnet.is_none());
    let c = parse(&[
        "--mode",
        "ipv4",
        "--ipv4-subnet",
        "10.255.1.0/24",
        "--ipv6-prefix",
        "2001:db8::/80",
    ])
    .unwrap();
    assert!(c.ipv6_prefix.is_none());
}

#[test]
fn bad_values_name_the_flag_and_value() {
    let e = parse(&[
        "--ipv6-prefix",
        "2001:db8::/40",
        "--ipv4-subnet",
        "10.255.1.0/24",
    ])
    .unwrap_err();
    assert!(
        e.contains("--ipv6-prefix") && e.contains("2001:db8::/40") && e.contains("/64 to /120"),
        "{e}"
    );
    let e = parse(&[
        "--ipv6-prefix",
        "2001:db8::/80",
        "--ipv4-subnet",
        "10.255.1.0/30",
    ])
    .unwrap_err();
    assert!(e.contains("10.255.1.0/30"), "{e}");
    let e = parse(&["--mode", "v6"]).unwrap_err();
    assert!(e.contains("'v6'"), "{e}");
    let e = parse(&[
        "--mode",
        "ipv4",
        "--ipv4-subnet",
        "10.255.1.0/24",
        "--metrics-addr",
        "2001:db8::1:9641",
    ])
    .unwrap_err();
    assert!(e.contains("[IPV6]:PORT"), "{e}");
    let e = parse(&[
        "--mode",
        "ipv4",
        "--ipv4-subnet",
        "10.255.1.0/24",
        "--socket",
        "rel.sock",
    ])
    .unwrap_err();
    assert!(e.contains("--socket"), "{e}");
}

#[test]
fn metrics_address_takes_bracketed_ipv6() {
    let c = parse(&[
        "--mode",
        "ipv4",
        "--ipv4-subnet",
        "10.255.1.0/24",
        "--metrics-addr",
        "[2001:db8::1]:9641",
    ])
    .unwrap();
    assert_eq!(
        c.metrics_addrs,
        vec!["[2001:db8::1]:9641".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn datapath_flags_have_their_defaults_and_name_bad_values() {
    let ranges = [
        "--ipv6-prefix",
        "2001:db8::/80",
        "--ipv4-subnet",
        "10.255.1.0/24",
    ];
    let c = parse(&ranges).unwrap();
    assert_eq!(c.ipv6_routing, Ipv6Routing::Fabric);
    assert_eq!((c.vxlan_vni, c.vxlan_port), (1, 4789));
    assert_eq!(c.resync, Duration::from_secs(60));
    assert!(c.peers.is_none());

    let mut args = ranges.to_vec();
    args.extend([
        "--ipv6-routing",
        "direct",
        "--vxlan-vni",
        "4096",
        "--vxlan-port",
        "8472",
        "--peers",
        "/etc/weft/peers.json",
    ]);
    let c = parse(&args).unwrap();
    assert_eq!(c.ipv6_routing, Ipv6Routing::Direct);
    assert_eq!((c.vxlan_vni, c.vxlan_port), (4096, 8472));
    assert_eq!(
        c.peers.as_deref(),
        Some(std::path::Path::new("/etc/weft/peers.json"))
    );

    for (flag, value) in [
        ("--ipv6-routing", "bgp"),
        ("--vxlan-vni", "16777216"),
        ("--vxlan-port", "0"),
        ("--peers", "peers.json"),
        ("--resync-seconds", "0"),
        ("--resync-seconds", "18446744073709551615"),
        ("--cooldown-seconds", "86401"),
        ("--cooldown-seconds", "18446744073709551616"),
    ] {
        let mut args = ranges.to_vec();
        args.extend([flag, value]);
        let e = parse(&args).unwrap_err();
        assert!(e.contains(flag) && e.contains(value), "{flag} {value}: {e}");
    }
}

#[test]
fn kubernetes_mode_takes_ranges_and_peers_from_the_apiserver_only() {
    let c = parse(&["--kubeconfig", "/etc/weft/kubeconfig"]).unwrap();
    assert_eq!(
        c.source,
        Source::Kubernetes {
            kubeconfig: Some("/etc/weft/kubeconfig".into()),
            network: "default".into()
        }
    );
    let c = parse(&["--in-cluster", "--network", "prod"]).unwrap();
    assert_eq!(
        c.source,
        Source::Kubernetes {
            kubeconfig: None,
            network: "prod".into()
        }
    );
    for (flag, value) in [
        ("--ipv6-prefix", "2001:db8::/80"),
        ("--ipv4-subnet", "10.255.1.0/24"),
        ("--peers", "/etc/weft/peers.json"),
    ] {
        let e = parse(&["--in-cluster", flag, value]).unwrap_err();
        assert!(e.contains(flag) && e.contains("--kubeconfig"), "{e}");
    }
    // The plan's settings come from the WeftNetwork: given anyway, they are refused, not
    // silently ignored.
    for (flag, value) in [
        ("--mode", "ipv6"),
        ("--ipv6-routing", "direct"),
        ("--vxlan-vni", "7"),
        ("--vxlan-port", "8472"),
    ] {
        let e = parse(&["--kubeconfig", "/k", "--network", "prod", flag, value]).unwrap_err();
        assert!(
            e.contains(flag) && e.contains("--kubeconfig") && e.contains("WeftNetwork 'prod'"),
            "{e}"
        );
    }
    let e = parse(&["--kubeconfig", "kubeconfig"]).unwrap_err();
    assert!(
        e.contains("--kubeconfig: 'kubeconfig' is not an absolute path"),
        "{e}"
    );
    assert!(parse(&["--kubeconfig", "/k", "--in-cluster"]).is_err());
}

#[test]
fn conflist_and_proc_sys_flags() {
    let dual = [
        "--ipv6-prefix",
        "2001:db8::/80",
        "--ipv4-subnet",
        "10.255.1.0/24",
    ];
    let with = |extra: &[&str]| {
        let mut args = dual.to_vec();
        args.extend_from_slice(extra);
        parse(&args)
    };
    let c = with(&[]).unwrap();
    assert!(c.conflist.is_none(), "no conflist unless asked");
    assert_eq!(c.proc_sys.dir(), std::path::Path::new("/proc/sys"));

    let c = with(&[
        "--cni-conflist",
        "/etc/cni/net.d/05-weft.conflist",
        "--socket",
        "/run/w/weftd.sock",
        "--proc-sys",
        "/host/proc/sys",
    ])
    .unwrap();
    let conflist = c.conflist.unwrap();
    assert_eq!(
        conflist.path,
        std::path::Path::new("/etc/cni/net.d/05-weft.conflist")
    );
    let written: serde_json::Value = serde_json::from_slice(&conflist.content).unwrap();
    assert_eq!(written["plugins"][0]["socket"], "/run/w/weftd.sock");
    assert_eq!(c.proc_sys.dir(), std::path::Path::new("/host/proc/sys"));

    let e = with(&["--cni-conflist-template", "/etc/weft/cni/conflist.json"]).unwrap_err();
    assert!(
        e.contains("--cni-conflist-template") && e.contains("--cni-conflist <PATH>"),
        "{e}"
    );
    let e = with(&[
        "--cni-conflist",
        "/etc/cni/net.d/05-weft.conflist",
        "--cni-conflist-template",
        "conflist.json",
    ])
    .unwrap_err();
    assert!(
        e.contains("--cni-conflist-template: 'conflist.json' is not an absolute path"),
        "{e}"
    );
    let e = with(&["--proc-sys", "host/proc/sys"]).unwrap_err();
    assert!(
        e.contains("--proc-sys: 'host/proc/sys' is not an absolute path"),
        "{e}"
    );
}

#[test]
fn the_policy_relay_needs_kubernetes_mode_an_https_url_and_its_ca() {
    let c = parse(&[
        "--kubeconfig",
        "/k",
        "--policy-relay",
        "https://weft-policy-relay.kube-system.svc:9643",
        "--policy-relay-ca",
        "/etc/weft/relay/ca.crt",
    ])
    .unwrap();
    assert_eq!(
        c.policy.relay,
        Some(PolicyRelay {
            url: "https://weft-policy-relay.kube-system.svc:9643".into(),
            ca: "/etc/weft/relay/ca.crt".into(),
            server_name: None,
        })
    );
    // A Service's link variable (IPv6 in brackets) and the name to check instead.
    let c = parse(&[
        "--kubeconfig",
        "/k",
        "--policy-relay",
        "tcp://[fd00::17]:9643",
        "--policy-relay-ca",
        "/ca",
        "--policy-relay-server-name",
        "weft-policy-relay.kube-system.svc",
    ])
    .unwrap();
    let relay = c.policy.relay.unwrap();
    assert_eq!(relay.url, "https://[fd00::17]:9643");
    assert_eq!(
        relay.server_name.as_deref(),
        Some("weft-policy-relay.kube-system.svc")
    );
    for (args, needle) in [
        (
            vec![
                "--kubeconfig",
                "/k",
                "--policy-relay",
                "http://relay:9643",
                "--policy-relay-ca",
                "/ca",
            ],
            "--policy-relay: 'http://relay:9643' is not https://HOST[:PORT]",
        ),
        (
            vec![
                "--kubeconfig",
                "/k",
                "--policy-relay",
                "https://relay:9643/x",
                "--policy-relay-ca",
                "/ca",
            ],
            "is not https://HOST[:PORT]",
        ),
        (
            vec![
                "--kubeconfig",
                "/k",
                "--policy-relay",
                "https://relay:9643",
                "--policy-relay-ca",
                "ca.crt",
            ],
            "--policy-relay-ca: 'ca.crt' is not an absolute path",
        ),
        (
            vec!["--kubeconfig", "/k", "--policy-relay", "https://relay:9643"],
            "--policy-relay-ca",
        ),
    ] {
        let e = parse(&args).unwrap_err();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn policy_timing_flags_have_their_defaults_and_bounds() {
    let c = parse(&["--kubeconfig", "/k"]).unwrap();
    assert_eq!(
        c.policy,
        PolicySettings {
            wait: Duration::from_secs(2),
            report: Duration::from_secs(10),
            relay: None,
        }
    );
    let c = parse(&["--kubeconfig", "/k", "--policy-wait-seconds", "0"]).unwrap();
    assert_eq!(c.policy.wait, Duration::ZERO);
    for (flag, value) in [
        ("--policy-wait-seconds", "5"),
        ("--policy-report-seconds", "0"),
        ("--policy-report-seconds", "x"),
    ] {
        let e = parse(&["--kubeconfig", "/k", flag, value]).unwrap_err();
        assert!(e.contains(flag) && e.contains(value), "{e}");
    }
}
