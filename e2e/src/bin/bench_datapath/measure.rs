//! One measurement of either side: iperf3 throughput with the CPU it cost, ping RTT.

use crate::plan::{Family, Plan};
use crate::Args;
use serde_json::Value;
use std::time::Duration;
use weft_e2e::bench::{busy_cpu, median_f64};
use weft_e2e::{wait_until, Background, Netns};

const IPERF_PORT: &str = "5201";

/// One topology as the measurement sees it: a client pod and a server pod.
#[derive(Debug)]
pub(crate) struct Side<'a> {
    pub(crate) label: &'static str,
    pub(crate) client: &'a Netns,
    pub(crate) server: &'a Netns,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) family: Family,
    pub(crate) streams: u32,
}

impl Cell {
    pub(crate) fn new(family: Family, streams: u32) -> Cell {
        Cell { family, streams }
    }
}

/// One iperf3 run: receiver's Gbit/s, the sender's retransmits, and what the bytes cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    pub(crate) gbps: f64,
    pub(crate) retransmits: u64,
    /// Busy CPU of the whole machine (every core, steal excluded) over the run, per GB
    /// received (ms/GB). Both ends share this 2-core machine and the run is CPU-bound,
    /// so this is the per-byte cost the throughput derives from, with the VM's steal
    /// time taken out: it varies less between runs than Gbit/s does.
    pub(crate) cpu_ms_per_gb: f64,
}

/// One ping series: median and mean RTT (ms), replies received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rtt {
    pub(crate) median: f64,
    pub(crate) mean: f64,
    pub(crate) received: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Samples {
    /// [cell][side]
    pub(crate) throughput: [[Vec<Throughput>; 2]; 4],
    /// [family (v6, v4)][side]
    pub(crate) rtt: [[Vec<Rtt>; 2]; 2],
}

impl Side<'_> {
    /// Both families reach pod B, at the largest payload the path MTU allows with
    /// fragmentation forbidden (a wrong MTU would show up as a black hole here).
    pub(crate) fn check_path(&self, plan: &Plan) {
        for family in Family::BOTH {
            let addr = plan.server_addr(family);
            let header = match family {
                Family::V6 => 48,
                Family::V4 => 28,
            };
            let size = plan.path_mtu(family) - header;
            wait_until(
                &format!("{} pod A to reach {addr}", self.label),
                Duration::from_secs(10),
                || self.client.ping(addr),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                self.client.ping_sized(addr, Some(size)),
                "{}: a {size}-byte ping to {addr} with DF set did not pass",
                self.label
            );
        }
    }

    /// A persistent iperf3 server in pod B, listening.
    pub(crate) fn serve(&self) -> Background {
        let server = Background::spawn(self.server, "iperf3", &["-s", "-p", IPERF_PORT]);
        let filter = format!("sport = :{IPERF_PORT}");
        wait_until("iperf3 to listen", Duration::from_secs(5), || {
            let out = self.server.run("ss", &["-Hltn", &filter]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        })
        .unwrap();
        server
    }

    pub(crate) fn iperf(&self, plan: &Plan, cell: &Cell, args: &Args) -> Throughput {
        let addr = plan.server_addr(cell.family);
        let (t, o, p) = (
            args.time.to_string(),
            args.omit.to_string(),
            cell.streams.to_string(),
        );
        let busy_before = busy_cpu();
        let out = self.client.run(
            "iperf3",
            &[
                "-c",
                addr,
                "-p",
                IPERF_PORT,
                "-t",
                &t,
                "-O",
                &o,
                "-P",
                &p,
                "-J",
                "--connect-timeout",
                "3000",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{}: iperf3 output is not JSON ({e}): {text} {}",
                self.label,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| {
                panic!(
                    "{}: no receiver rate in iperf3's output: {text}",
                    self.label
                )
            });
        let busy_ms = (busy_cpu() - busy_before).as_secs_f64() * 1000.0;
        // The CPU window spans the omitted seconds too; they run at the same rate.
        let gb = bps / 8e9 * f64::from(args.time + args.omit);
        Throughput {
            gbps: bps / 1e9,
            retransmits: json["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
            cpu_ms_per_gb: busy_ms / gb,
        }
    }

    pub(crate) fn ping(&self, plan: &Plan, family: Family, count: u32) -> Rtt {
        let addr = plan.server_addr(family);
        let count = count.to_string();
        let out = self.client.run(
            "ping",
            &["-n", "-c", &count, "-i", "0.005", "-W", "1", addr],
        );
        let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.split_whitespace().next())
            .filter_map(|t| t.parse().ok())
            .collect();
        assert!(
            !times.is_empty(),
            "{}: no ping replies from {addr}",
            self.label
        );
        Rtt {
            median: median_f64(times.iter().copied()),
            mean: times.iter().sum::<f64>() / times.len() as f64,
            received: times.len(),
        }
    }
}
