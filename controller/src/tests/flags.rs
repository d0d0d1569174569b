use super::*;

fn parse(args: &[&str]) -> Result<Flags, String> {
    let mut argv = vec!["weft-controller"];
    argv.extend_from_slice(args);
    Flags::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .validate()
}

#[test]
fn defaults_are_the_documented_ones() {
    let f = parse(&[]).unwrap();
    assert_eq!(f.kubeconfig, None);
    assert_eq!(f.network, "default");
    assert_eq!(f.metrics_addr.0, ["[::]:9642".parse().unwrap()]);
    assert_eq!(f.lease_namespace, "kube-system");
    assert_eq!(f.lease_name, "weft-controller");
    assert_eq!(f.workers, 32);
    assert_eq!(f.log_level, tracing::Level::INFO);
    let id = f.identity();
    assert!(
        id.ends_with(&format!("-{}", std::process::id())),
        "identity {id}"
    );
}

#[test]
fn metrics_addr_takes_every_ipv6_text_form() {
    for (text, want) in [
        ("[::]:9642", "[::]:9642"),
        ("[0:0:0:0:0:0:0:0]:9642", "[::]:9642"),
        ("[2001:0DB8:0000::0001]:1", "[2001:db8::1]:1"),
        ("[::1]:80", "[::1]:80"),
        ("[::ffff:192.0.2.1]:80", "[::ffff:192.0.2.1]:80"),
        ("192.0.2.1:9642", "192.0.2.1:9642"),
        (":9642", "[::]:9642"),
    ] {
        let f = parse(&["--metrics-addr", text]).unwrap();
        assert_eq!(f.metrics_addr.0, [want.parse().unwrap()], "{text}");
    }
    let e = parse(&["--metrics-addr", "2001:db8::1:9642"]).unwrap_err();
    assert!(
        e.contains("--metrics-addr") && e.contains("[IPV6]:PORT"),
        "{e}"
    );
}

#[test]
fn names_are_checked_and_errors_name_the_flag() {
    let e = parse(&["--network", "Bad_Name"]).unwrap_err();
    assert!(e.starts_with("--network: 'Bad_Name'"), "{e}");
    let e = parse(&["--lease-namespace", ""]).unwrap_err();
    assert!(e.starts_with("--lease-namespace"), "{e}");
    let e = parse(&["--identity", " "]).unwrap_err();
    assert!(e.starts_with("--identity"), "{e}");
    let f = parse(&[
        "--kubeconfig",
        "/tmp/kc",
        "--network",
        "prod.weft",
        "--identity",
        "replica-a",
        "--workers",
        "0",
    ])
    .unwrap();
    assert_eq!(f.identity(), "replica-a");
    assert_eq!(f.network, "prod.weft");
    assert_eq!(f.kubeconfig, Some(PathBuf::from("/tmp/kc")));
}
