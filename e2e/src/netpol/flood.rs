//! Senders hammering addresses that may not answer or not exist yet (a pod about to
//! start, docs/networkpolicy-design.md §4.2): UDP datagrams and TCP SYNs from
//! `netpol_agent flood`, ICMP echo requests from `ping`, each at a steady rate, from one
//! namespace. Everything stops when the flood is dropped.

use crate::{binary, wait_until, Background, Netns};
use std::net::IpAddr;
use std::time::Duration;

/// A running flood from one namespace.
#[derive(Debug)]
pub struct Flood {
    processes: Vec<Background>,
}

impl Flood {
    /// From `from`, `pps` UDP datagrams, TCP SYNs (to `port`) and ICMP echo requests a
    /// second to each of `targets`; returns once the sending has begun.
    pub fn start(from: &Netns, targets: &[IpAddr], pps: u32, port: u16) -> Flood {
        let agent = binary("netpol_agent");
        let (pps_text, port_text) = (pps.to_string(), port.to_string());
        let addrs: Vec<String> = targets.iter().map(IpAddr::to_string).collect();
        let mut args = vec!["flood", "--pps", &pps_text, "--port", &port_text];
        args.extend(addrs.iter().map(String::as_str));
        let flood = Background::spawn(from, agent.to_str().unwrap(), &args);
        wait_until("the flood to start", Duration::from_secs(5), || {
            flood.output().starts_with("flooding")
        })
        .unwrap_or_else(|e| panic!("{e}: {}", flood.output()));
        // Root may ping at any interval (iputils); ping goes on through unreachables.
        let interval = format!("{:.6}", 1.0 / f64::from(pps));
        let mut processes = vec![flood];
        processes.extend(
            addrs
                .iter()
                .map(|a| Background::spawn(from, "ping", &["-q", "-n", "-i", &interval, a])),
        );
        Flood { processes }
    }

    /// Whether every sender still runs.
    pub fn running(&mut self) -> bool {
        self.processes.iter_mut().all(Background::running)
    }
}
