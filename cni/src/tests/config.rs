use super::*;

fn parse(json: &str) -> Result<NetConf> {
    NetConf::parse(json.as_bytes())
}

#[test]
fn minimal_config_gets_the_default_socket_and_keeps_prev_result() {
    let c = parse(
        r#"{"cniVersion":"1.1.0","name":"weft","type":"weft","prevResult":{"x":1},"other":true}"#,
    )
    .unwrap();
    assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(c.prev_result.unwrap()["x"], 1);
}

#[test]
fn errors_name_field_and_value_with_the_right_code() {
    let cases = [
        (
            r#"{"cniVersion":"1.1.0","name":"weft","type":"weft""#,
            6,
            "JSON",
        ),
        (r#"[1]"#, 6, "object"),
        (
            r#"{"cniVersion":"9.9.9","name":"weft","type":"weft"}"#,
            1,
            "9.9.9",
        ),
        (
            r#"{"cniVersion":"0.3.1","name":"weft","type":"weft"}"#,
            1,
            "0.3.1",
        ),
        (
            r#"{"cniVersion":1,"name":"weft","type":"weft"}"#,
            6,
            "cniVersion",
        ),
        (r#"{"cniVersion":"1.1.0","type":"weft"}"#, 7, "name"),
        (
            r#"{"cniVersion":"1.1.0","name":"-x","type":"weft"}"#,
            7,
            "'-x'",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"bridge"}"#,
            7,
            "'bridge'",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","socket":5}"#,
            6,
            "socket: expected a string, got a number 5",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","socket":"rel/x"}"#,
            7,
            "'rel/x'",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","prevResult":[]}"#,
            6,
            "prevResult",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/valid-attachments":{}}"#,
            6,
            "valid-attachments",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/valid-attachments":[{"containerID":"c"}]}"#,
            6,
            "[0].ifname",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/attachments":[{"containerID":"-c","ifname":"eth0"}]}"#,
            7,
            "cni.dev/attachments[0]",
        ),
    ];
    for (json, code, needle) in cases {
        let e = parse(json).unwrap_err();
        assert_eq!(e.code(), code, "{json}: {e}");
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

#[test]
fn attachments_come_from_either_key_and_absent_means_none() {
    let c = parse(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/attachments":[{"containerID":"c","ifname":"eth0"}]}"#).unwrap();
    assert_eq!(
        c.valid_attachments,
        Some(vec![Attachment::new("c", "eth0").unwrap()])
    );
    assert_eq!(c.name, "n");
    let c = parse(
        r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/valid-attachments":null}"#,
    )
    .unwrap();
    assert_eq!(c.valid_attachments, None);
    let c = parse(r#"{"cniVersion":"1.1.0","name":"n","type":"weft"}"#).unwrap();
    assert_eq!(c.valid_attachments, None, "an absent list is no list");
    let c =
        parse(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/valid-attachments":[]}"#)
            .unwrap();
    assert_eq!(c.valid_attachments, Some(vec![]), "an empty list is a list");
}

#[test]
fn the_ip_families_annotation_is_read_from_the_pod_annotations_capability() {
    let with = |runtime_config: &str| {
        parse(&format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"weft","runtimeConfig":{runtime_config}}}"#
        ))
    };
    let c = with(
        r#"{"io.kubernetes.cri.pod-annotations":{"weft.dev/ip-families":"IPv6","other":"x"},"portMappings":[],"mac":"02:00:00:00:00:01"}"#,
    )
    .unwrap();
    assert_eq!(c.ip_families.as_deref(), Some("IPv6"));
    assert_eq!(c.runtime_mac, Some([2, 0, 0, 0, 0, 1]));
    // Kept as written: the value is judged by ADD alone, so DEL of a pod whose ADD
    // failed on it still runs.
    let c =
        with(r#"{"io.kubernetes.cri.pod-annotations":{"weft.dev/ip-families":"IPv5"}}"#).unwrap();
    assert_eq!(c.ip_families.as_deref(), Some("IPv5"));
    for absent in [
        r#"{}"#,
        r#"{"io.kubernetes.cri.pod-annotations":null}"#,
        r#"{"io.kubernetes.cri.pod-annotations":{"other":"IPv6"}}"#,
        r#"{"io.kubernetes.cri.pod-annotations":{"weft.dev/ip-families":null}}"#,
    ] {
        assert_eq!(with(absent).unwrap().ip_families, None, "{absent}");
    }
    for (broken, needle) in [
        (
            r#"{"io.kubernetes.cri.pod-annotations":["weft.dev/ip-families"]}"#,
            r#"runtimeConfig.io.kubernetes.cri.pod-annotations: expected an object, got an array ["weft.dev/ip-families"]"#,
        ),
        (
            r#"{"io.kubernetes.cri.pod-annotations":{"weft.dev/ip-families":6}}"#,
            "runtimeConfig.io.kubernetes.cri.pod-annotations.weft.dev/ip-families: expected a string, got a number 6",
        ),
    ] {
        let e = with(broken).unwrap_err();
        assert_eq!(e.code(), 6, "{broken}: {e}");
        assert_eq!(e.to_string(), needle);
    }
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("1.1.0", "1.1.0"));
    assert!(version_at_least("1.10.0", "1.1.0"));
    assert!(!version_at_least("1.0.0", "1.1.0"));
    assert!(!version_at_least("0.4.0", "1.0.0"));
}
