use super::*;

#[test]
fn codes_follow_the_spec_and_weft_table() {
    assert_eq!(CniError::IncompatibleVersion(String::new()).code(), 1);
    assert_eq!(CniError::InvalidEnv(String::new()).code(), 4);
    assert_eq!(CniError::Decode(String::new()).code(), 6);
    assert_eq!(CniError::InvalidConfig(String::new()).code(), 7);
    assert_eq!(CniError::TryAgainLater(String::new()).code(), 11);
    assert_eq!(CniError::DaemonUnavailable(String::new()).code(), 50);
    assert_eq!(CniError::Exhausted(String::new()).code(), 100);
}

#[test]
fn every_label_is_one_weftd_accepts() {
    let all = [
        CniError::IncompatibleVersion(String::new()),
        CniError::UnknownContainer(String::new()),
        CniError::InvalidEnv(String::new()),
        CniError::Io(String::new()),
        CniError::Decode(String::new()),
        CniError::InvalidConfig(String::new()),
        CniError::TryAgainLater(String::new()),
        CniError::DaemonUnavailable(String::new()),
        CniError::Exhausted(String::new()),
        CniError::AlreadyAllocated(String::new()),
        CniError::InterfaceExists(String::new()),
        CniError::Drift(String::new()),
        CniError::GcIncomplete(String::new()),
        CniError::DaemonInternal(String::new()),
    ];
    for e in all {
        assert!(
            weft_wire::CNI_RESULT_LABELS.contains(&e.label()),
            "{}",
            e.label()
        );
    }
    assert!(weft_wire::CNI_RESULT_LABELS.contains(&"netlink"));
}

#[test]
fn error_json_has_the_spec_fields() {
    let json = CniError::InvalidConfig("socket: 'x' is not absolute".into()).to_json("1.1.0", None);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["code"], 7);
    assert_eq!(v["msg"], "socket: 'x' is not absolute");
    assert!(v.get("details").is_none());
}
