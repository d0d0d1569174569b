//! The IPAM's restore (what weftd runs at start-up, as root) over a generated state
//! directory: it must not panic, and what it restored stays reserved: addresses handed
//! out afterwards, also once restored cooldowns have ended, are none of the restored
//! ones and all distinct.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;
use weft_fuzz::tree::{scratch_root, Tree, IPV4_SUBNET, IPV6_PREFIX, SHORT_COOLDOWN};
use weft_ipam::{Ipam, IpamConfig};
use weft_wire::{Attachment, PodRef};

fn addresses(a: &weft_wire::Allocation) -> impl Iterator<Item = IpAddr> {
    a.ipv6
        .map(IpAddr::V6)
        .into_iter()
        .chain(a.ipv4.map(IpAddr::V4))
}

fuzz_target!(|tree: Tree| {
    let root = scratch_root();
    tree.build(&root);
    let config = IpamConfig {
        ipv6_prefix: Some(IPV6_PREFIX.parse().expect("constant prefix")),
        ipv4_subnet: Some(IPV4_SUBNET.parse().expect("constant subnet")),
        cooldown: if tree.short_cooldown {
            SHORT_COOLDOWN
        } else {
            Duration::from_secs(30)
        },
        state_dir: root.clone(),
    };
    let Ok((mut ipam, _report)) = Ipam::open(config) else {
        return;
    };
    let mut taken: HashSet<IpAddr> = ipam.allocations().flat_map(addresses).collect();
    for i in 0..4 {
        // Restored cooldowns end one by one between these ADDs.
        if tree.short_cooldown {
            std::thread::sleep(SHORT_COOLDOWN / 3);
        }
        let attachment = Attachment::new(&format!("fuzz-new-{i}"), "eth0").expect("valid");
        if ipam.lookup(&attachment).is_some() {
            continue;
        }
        if let Ok(allocation) = ipam.allocate(&attachment, PodRef::default(), None) {
            for address in addresses(&allocation) {
                assert!(
                    taken.insert(address),
                    "{address} handed to {attachment} is held already"
                );
            }
        }
    }
});
