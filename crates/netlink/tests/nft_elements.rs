//! Set and verdict map elements written over nfnetlink, checked against the real kernel
//! through `nft -j list`. Runs as root; every test works in a network namespace of its
//! own, unshared by its thread, which goes with the thread.

// The helpers' unwraps are the tests' asserts.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use weft_netlink::nft_set::{is_missing, FAMILY_INET};
use weft_netlink::{
    interface_address_key, set_key, Errno, KeyField, NetlinkError, NftSets, SetChange, Verdict,
    VerdictElement,
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// The maps and sets of NetworkPolicy's layout (docs/networkpolicy-design.md §2.2),
/// with the pod guard's IPv4 set, which shares their transactions.
const LAYOUT: &str = "
    chain np-e-a { }
    chain np-e-b { }
    map np-egress-pods { type ifname : verdict; }
    set np-self { type ifname . ifname; }
    set np-v4-off { type ifname; }
    set np-lp-http-v4 { type ipv4_addr . inet_proto . inet_service; }
    set np-lp-http-v6 { type ipv6_addr . inet_proto . inet_service; }
    set pod-sources-v4 { type ifname . ipv4_addr; }
";

/// A table with [`LAYOUT`] in a namespace of the calling thread's own, and an
/// nfnetlink socket opened there.
struct Table {
    name: String,
    sets: NftSets,
}

impl Table {
    fn new(tag: &str) -> Table {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let name = format!("weft-test-{}-{tag}", std::process::id());
        nft(&format!("table inet {name} {{ {LAYOUT} }}"));
        Table {
            name,
            sets: NftSets::connect().unwrap(),
        }
    }

    fn apply(&mut self, changes: &[SetChange<'_>]) -> Result<(), NetlinkError> {
        self.sets.apply(FAMILY_INET, &self.name, changes)
    }

    /// The elements of set or map `set`, as `nft` prints them, sorted.
    fn elements(&self, set: &str) -> Vec<String> {
        let output = Command::new("nft")
            .args(["-j", "list", "table", "inet", &self.name])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let listed = json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|object| [&object["set"], &object["map"]])
            .find(|object| object["name"] == set)
            .unwrap_or_else(|| panic!("no set or map {set}"));
        let mut elements: Vec<String> = listed["elem"]
            .as_array()
            .map(|elements| elements.iter().map(render).collect())
            .unwrap_or_default();
        elements.sort();
        elements
    }
}

/// One element of `nft -j` as `nft` prints it, names unquoted: `a . b`,
/// `192.0.2.1 . tcp . 80`, `a : jump c`.
fn render(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Array(pair) => format!("{} : {}", render(&pair[0]), render(&pair[1])),
        Value::Object(object) => {
            let (kind, inner) = object.iter().next().unwrap();
            match (kind.as_str(), inner) {
                ("concat", Value::Array(fields)) => {
                    fields.iter().map(render).collect::<Vec<_>>().join(" . ")
                }
                (verdict, Value::Null) => verdict.to_owned(),
                (verdict, target) => format!("{verdict} {}", render(&target["target"])),
            }
        }
        other => panic!("unexpected element {other}"),
    }
}

/// Runs `script` through `nft -f -`, which must succeed.
fn nft(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {script}");
}

/// Runs `test` on a thread of its own (its namespace goes with it).
fn on_own_thread(test: impl FnOnce() + Send + 'static) {
    std::thread::spawn(test).join().unwrap();
}

fn ifname(name: &str) -> Vec<u8> {
    set_key(&[KeyField::Ifname(name)]).unwrap()
}

fn element<'a>(name: &str, verdict: Verdict<'a>) -> VerdictElement<'a> {
    VerdictElement {
        key: ifname(name),
        verdict,
    }
}

fn egress(elements: Vec<VerdictElement<'_>>) -> SetChange<'_> {
    SetChange::AddVerdicts {
        map: "np-egress-pods",
        elements,
    }
}

fn replace(elements: Vec<VerdictElement<'_>>) -> SetChange<'_> {
    SetChange::ReplaceVerdicts {
        map: "np-egress-pods",
        elements,
    }
}

#[test]
fn verdicts_land_and_change_only_by_replacement() {
    on_own_thread(|| {
        let mut table = Table::new("verdicts");
        let elements = || {
            vec![
                element("weft0a", Verdict::Accept),
                element("weft0b", Verdict::Drop),
                element("weft0c", Verdict::Jump("np-e-a")),
                element("weft0d", Verdict::Goto("np-e-b")),
            ]
        };
        table.apply(&[egress(elements())]).unwrap();
        let listed = [
            "weft0a : accept",
            "weft0b : drop",
            "weft0c : jump np-e-a",
            "weft0d : goto np-e-b",
        ];
        assert_eq!(table.elements("np-egress-pods"), listed);
        // The same elements again: the kernel keeps them (no NLM_F_EXCL).
        table.apply(&[egress(elements())]).unwrap();
        assert_eq!(table.elements("np-egress-pods"), listed);

        // Another verdict for a key that is there: refused, EEXIST, without NLM_F_EXCL.
        let jump = || vec![element("weft0b", Verdict::Jump("np-e-a"))];
        let refused = table.apply(&[egress(jump())]).unwrap_err();
        assert_eq!(refused.errno(), Some(Errno::Exists), "{refused}");
        assert_eq!(table.elements("np-egress-pods"), listed);

        // Delete and add in one transaction: drop becomes jump.
        table.apply(&[replace(jump())]).unwrap();
        assert_eq!(
            table.elements("np-egress-pods"),
            [
                "weft0a : accept",
                "weft0b : jump np-e-a",
                "weft0c : jump np-e-a",
                "weft0d : goto np-e-b",
            ]
        );

        // Replacing a key that is not there refuses the batch, the present key included.
        let absent = vec![
            element("weft0a", Verdict::Drop),
            element("weft0z", Verdict::Drop),
        ];
        let refused = table.apply(&[replace(absent)]).unwrap_err();
        assert!(is_missing(&refused), "{refused}");
        assert_eq!(table.elements("np-egress-pods")[0], "weft0a : accept");

        let gone = SetChange::Delete {
            set: "np-egress-pods",
            keys: vec![ifname("weft0a"), ifname("weft0c")],
        };
        table.apply(&[gone]).unwrap();
        assert_eq!(
            table.elements("np-egress-pods"),
            ["weft0b : jump np-e-a", "weft0d : goto np-e-b"]
        );
        let flush = SetChange::Flush {
            set: "np-egress-pods",
        };
        table.apply(&[flush]).unwrap();
        assert!(table.elements("np-egress-pods").is_empty());
    });
}

/// One element of a set of the layout: its key, how `nft` writes it, how it lists it.
struct Case {
    set: &'static str,
    key: Vec<u8>,
    script: &'static str,
    listed: &'static str,
}

/// Every key form of the layout, one element each (two for the IPv4 ports).
fn cases() -> Vec<Case> {
    let v4 = Ipv4Addr::new(198, 51, 100, 4);
    let v6: Ipv6Addr = "2001:db8::53".parse().unwrap();
    let pair = [KeyField::Ifname("weft0a"), KeyField::Ifname("weft0b")];
    let port_v4 = [
        KeyField::Ipv4(v4),
        KeyField::Proto(TCP),
        KeyField::Service(443),
    ];
    let port_v6 = [
        KeyField::Ipv6(v6),
        KeyField::Proto(UDP),
        KeyField::Service(53),
    ];
    let sctp = [
        KeyField::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
        KeyField::Proto(SCTP),
        KeyField::Service(65535),
    ];
    let case = |set, key, script, listed| Case {
        set,
        key,
        script,
        listed,
    };
    vec![
        case(
            "np-self",
            set_key(&pair).unwrap(),
            r#""weft0a" . "weft0b""#,
            "weft0a . weft0b",
        ),
        case(
            "np-v4-off",
            ifname("fifteen-bytes-x"),
            r#""fifteen-bytes-x""#,
            "fifteen-bytes-x",
        ),
        case(
            "np-lp-http-v4",
            set_key(&port_v4).unwrap(),
            "198.51.100.4 . tcp . 443",
            "198.51.100.4 . tcp . 443",
        ),
        case(
            "np-lp-http-v4",
            set_key(&sctp).unwrap(),
            "192.0.2.1 . 132 . 65535",
            "192.0.2.1 . sctp . 65535",
        ),
        case(
            "np-lp-http-v6",
            set_key(&port_v6).unwrap(),
            "2001:db8::53 . udp . 53",
            "2001:db8::53 . udp . 53",
        ),
        case(
            "pod-sources-v4",
            interface_address_key("weft0a", IpAddr::V4(v4)).unwrap(),
            r#""weft0a" . 198.51.100.4"#,
            "weft0a . 198.51.100.4",
        ),
    ]
}

/// One change per case, made by `change(set, keys)`.
fn per_case(
    cases: &[Case],
    change: impl Fn(&'static str, Vec<Vec<u8>>) -> SetChange<'static>,
) -> Vec<SetChange<'static>> {
    cases
        .iter()
        .map(|case| change(case.set, vec![case.key.clone()]))
        .collect()
}

/// One batch: every case's element, then `verdicts` in the egress map.
fn batch(cases: &[Case], verdicts: Vec<VerdictElement<'static>>) -> Vec<SetChange<'static>> {
    let mut changes = per_case(cases, |set, keys| SetChange::Add { set, keys });
    changes.push(egress(verdicts));
    changes
}

#[test]
fn concatenated_keys_are_the_bytes_nft_writes() {
    on_own_thread(|| {
        let mut table = Table::new("keys");
        let cases = cases();
        // Ours, listed by nft: it decodes each key into the fields it was built from.
        let verdicts = vec![element("weft0a", Verdict::Jump("np-e-a"))];
        table.apply(&batch(&cases, verdicts)).unwrap();
        for case in &cases {
            let listed = table.elements(case.set);
            assert!(listed.iter().any(|e| e == case.listed), "{listed:?}");
        }
        assert_eq!(table.elements("np-egress-pods"), ["weft0a : jump np-e-a"]);
        let flushes: Vec<_> = cases
            .iter()
            .map(|case| case.set)
            .chain(["np-egress-pods"])
            .map(|set| SetChange::Flush { set })
            .collect();
        table.apply(&flushes).unwrap();

        // nft's, deleted by ours: a delete finds only the very bytes nft stored.
        let script: String = cases
            .iter()
            .map(|case| {
                let (name, set, element) = (&table.name, case.set, case.script);
                format!("add element inet {name} {set} {{ {element} }}\n")
            })
            .collect();
        nft(&script);
        table
            .apply(&per_case(&cases, |set, keys| SetChange::Delete {
                set,
                keys,
            }))
            .unwrap();
        for case in &cases {
            assert!(table.elements(case.set).is_empty(), "{}", case.set);
        }
    });
}

#[test]
fn one_bad_element_refuses_the_whole_batch() {
    on_own_thread(|| {
        let mut table = Table::new("atomic");
        let cases = cases();
        let verdicts = vec![
            element("weft0a", Verdict::Accept),
            element("weft0b", Verdict::Jump("np-e-missing")),
        ];
        let refused = table.apply(&batch(&cases, verdicts)).unwrap_err();
        assert!(is_missing(&refused), "{refused}");
        assert!(table.elements("np-egress-pods").is_empty());
        for case in &cases {
            assert!(table.elements(case.set).is_empty(), "{}", case.set);
        }

        // The same batch without the bad element lands whole.
        let verdicts = vec![element("weft0a", Verdict::Accept)];
        table.apply(&batch(&cases, verdicts)).unwrap();
        assert_eq!(table.elements("np-egress-pods"), ["weft0a : accept"]);
        for case in &cases {
            assert!(table.elements(case.set).contains(&case.listed.to_owned()));
        }
    });
}
