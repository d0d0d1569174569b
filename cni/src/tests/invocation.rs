use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(pairs: &[(&str, &str)]) -> String {
    Invocation::parse(&env(pairs), &b"{}"[..])
        .unwrap_err()
        .to_string()
}

#[test]
fn add_needs_container_netns_and_ifname() {
    let ok = env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "Abc_1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=6f1c-9a",
        ),
    ]);
    let inv = Invocation::parse(&ok, &b"{}"[..]).unwrap();
    assert_eq!(inv.pod.name.as_deref(), Some("web-0"));
    assert_eq!(inv.pod.uid.as_deref(), Some("6f1c-9a"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0")
    ])
    .contains("CNI_CONTAINERID"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0")
    ])
    .contains("CNI_NETNS"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", "/x")
    ])
    .contains("CNI_IFNAME"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "-c"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0")
    ])
    .contains("CNI_CONTAINERID"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", "rel"),
        ("CNI_IFNAME", "eth0")
    ])
    .contains("absolute"));
    assert!(err(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "junk")
    ])
    .contains("CNI_ARGS"));
}

#[test]
fn cni_args_mac_is_read_and_checked() {
    let base = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
    ];
    let mut with_mac = base.to_vec();
    with_mac.push(("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:07"));
    let inv = Invocation::parse(&env(&with_mac), &b"{}"[..]).unwrap();
    assert_eq!(inv.mac, Some([2, 0, 0, 0, 0, 7]));
    let mut bad = base.to_vec();
    bad.push(("CNI_ARGS", "MAC=01:00:5e:00:00:01"));
    assert!(err(&bad).contains("CNI_ARGS: MAC"));
}

#[test]
fn del_takes_a_missing_netns() {
    let inv = Invocation::parse(
        &env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ]),
        &b"{}"[..],
    )
    .unwrap();
    assert!(inv.netns.is_none());
}

#[test]
fn unknown_and_missing_commands_are_invalid_env() {
    assert!(err(&[]).contains("CNI_COMMAND"));
    let e = Invocation::parse(&env(&[("CNI_COMMAND", "FROB")]), &b""[..]).unwrap_err();
    assert_eq!(e.code(), 4);
}

#[test]
fn huge_stdin_is_refused() {
    let big = std::io::repeat(b' ').take(MAX_STDIN_BYTES + 10);
    let e = Invocation::parse(&env(&[("CNI_COMMAND", "VERSION")]), big).unwrap_err();
    assert_eq!(e.code(), 6);
}
