//! The truth table's shape: every ordered pair of pods × both families × the probed ports,
//! each with a verdict; what the oracle expects, and the differences between an observed
//! table and an expected one, printed as grids a person can read.

use super::model::{Connection, Family, Model, PodId, Protocol, Source};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeMap;
use std::fmt;

/// A protocol and port probed on every pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbedPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
}

impl fmt::Display for ProbedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.protocol, self.port)
    }
}

/// The ports every pod serves and every probe tries: upstream's model serves 80 and 81
/// over each protocol (SCTP left out: not every test kernel has it).
pub const PROBED_PORTS: [ProbedPort; 4] = [
    ProbedPort {
        protocol: Protocol::Tcp,
        port: 80,
    },
    ProbedPort {
        protocol: Protocol::Tcp,
        port: 81,
    },
    ProbedPort {
        protocol: Protocol::Udp,
        port: 80,
    },
    ProbedPort {
        protocol: Protocol::Udp,
        port: 81,
    },
];

/// Who probes: a pod, or a node from its own network namespace (as kubelet probes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Client {
    /// A pod of the model.
    Pod(PodId),
    /// A node of the model, by name.
    Node(String),
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Pod(id) => id.fmt(f),
            Client::Node(name) => f.write_str(name),
        }
    }
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// Who connects.
    pub from: Client,
    /// The destination pod.
    pub to: PodId,
    /// The destination's address family.
    pub family: Family,
    /// Protocol and port.
    pub port: ProbedPort,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {} {}",
            self.from, self.to, self.family, self.port
        )
    }
}

/// Verdicts: true when the connection went through (or is expected to).
pub type Matrix = BTreeMap<Probe, bool>;

/// Every probe of `model`: all ordered pairs of pods (a pod and itself included), then
/// every node to every pod, × both families × [`PROBED_PORTS`].
pub fn all_probes(model: &Model) -> Vec<Probe> {
    let clients = model
        .pods
        .iter()
        .map(|p| Client::Pod(p.id.clone()))
        .chain(model.nodes.iter().map(|n| Client::Node(n.name.clone())));
    let mut probes = Vec::new();
    for from in clients {
        for to in &model.pods {
            for family in Family::BOTH {
                for port in PROBED_PORTS {
                    probes.push(Probe {
                        from: from.clone(),
                        to: to.id.clone(),
                        family,
                        port,
                    });
                }
            }
        }
    }
    probes
}

/// What the oracle says of every probe under `policies`.
pub fn expected_matrix(model: &Model, policies: &[NetworkPolicy]) -> Matrix {
    all_probes(model)
        .into_iter()
        .map(|probe| {
            let source = match &probe.from {
                Client::Pod(id) => Source::Pod(id.clone()),
                Client::Node(name) => Source::Node {
                    name: name.clone(),
                    addr: model
                        .node(name)
                        .and_then(|n| n.addr(probe.family))
                        .unwrap_or_else(|| panic!("{name} has no {} address", probe.family)),
                },
            };
            let connection = Connection {
                source,
                destination: probe.to.clone(),
                family: probe.family,
                protocol: probe.port.protocol,
                port: probe.port.port,
            };
            let allowed = model.allows(policies, &connection);
            (probe, allowed)
        })
        .collect()
}

/// The cells where an observed table differs from the expected one (a cell missing from
/// either counts as a difference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Probes compared.
    pub probes: usize,
    /// Allowed although expected denied: a hole.
    pub leaked: Vec<Probe>,
    /// Denied although expected allowed.
    pub blocked: Vec<Probe>,
    /// Present in one table only.
    pub missing: Vec<Probe>,
    clients: Vec<Client>,
    pods: Vec<PodId>,
    observed: Matrix,
    expected: Matrix,
}

impl Comparison {
    /// No difference at all.
    pub fn matches(&self) -> bool {
        self.leaked.is_empty() && self.blocked.is_empty() && self.missing.is_empty()
    }
}

/// Compares `observed` with `expected`.
pub fn compare(observed: &Matrix, expected: &Matrix) -> Comparison {
    let mut comparison = Comparison {
        probes: expected.len(),
        leaked: Vec::new(),
        blocked: Vec::new(),
        missing: Vec::new(),
        clients: Vec::new(),
        pods: Vec::new(),
        observed: observed.clone(),
        expected: expected.clone(),
    };
    for (probe, want) in expected {
        match observed.get(probe) {
            None => comparison.missing.push(probe.clone()),
            Some(got) if got == want => {}
            Some(true) => comparison.leaked.push(probe.clone()),
            Some(false) => comparison.blocked.push(probe.clone()),
        }
    }
    comparison.missing.extend(
        observed
            .keys()
            .filter(|p| !expected.contains_key(*p))
            .cloned(),
    );
    let cells = || expected.keys().chain(observed.keys());
    comparison.clients = cells().map(|p| p.from.clone()).collect();
    comparison.clients.sort();
    comparison.clients.dedup();
    comparison.pods = cells().map(|p| p.to.clone()).collect();
    comparison.pods.sort();
    comparison.pods.dedup();
    comparison
}

/// Grid marks: agreement shows the verdict, disagreement which way it went.
fn mark(expected: Option<bool>, observed: Option<bool>) -> char {
    match (expected, observed) {
        (Some(true), Some(true)) => '.',
        (Some(false), Some(false)) => 'X',
        (Some(false), Some(true)) => '+',
        (Some(true), Some(false)) => '-',
        _ => '?',
    }
}

impl fmt::Display for Comparison {
    /// A summary line, then a grid (rows from, columns to) per family with a difference,
    /// each cell one mark per probed port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} probes: {} leaked (allowed, expected denied), {} blocked (denied, expected \
             allowed), {} missing",
            self.probes,
            self.leaked.len(),
            self.blocked.len(),
            self.missing.len()
        )?;
        if self.matches() {
            return Ok(());
        }
        let ports: Vec<String> = PROBED_PORTS.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "rows from, columns to, a mark per port ({}): . allowed, X denied (both as \
             expected), + leaked, - blocked, ? missing",
            ports.join(" ")
        )?;
        let width = self
            .clients
            .iter()
            .map(|c| c.to_string().len())
            .chain(self.pods.iter().map(|p| p.to_string().len()))
            .chain([PROBED_PORTS.len()])
            .max()
            .unwrap_or(0);
        for family in Family::BOTH {
            let cell = |from: &Client, to: &PodId| -> String {
                PROBED_PORTS
                    .iter()
                    .map(|port| {
                        let probe = Probe {
                            from: from.clone(),
                            to: to.clone(),
                            family,
                            port: *port,
                        };
                        mark(
                            self.expected.get(&probe).copied(),
                            self.observed.get(&probe).copied(),
                        )
                    })
                    .collect()
            };
            let differs = self.clients.iter().any(|from| {
                self.pods
                    .iter()
                    .any(|to| cell(from, to).contains(['+', '-', '?']))
            });
            if !differs {
                continue;
            }
            write!(f, "{family:width$}")?;
            for to in &self.pods {
                write!(f, " {:>width$}", to.to_string())?;
            }
            writeln!(f)?;
            for from in &self.clients {
                write!(f, "{:width$}", from.to_string())?;
                for to in &self.pods {
                    write!(f, " {:>width$}", cell(from, to))?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpol::model::{Namespace, Node, Pod};

    fn model() -> Model {
        let pod = |name: &str, last: u8| Pod {
            id: PodId::new("x", name),
            node: "node-1".into(),
            labels: [("pod".to_owned(), name.to_owned())].into(),
            v4: Some([10, 0, 0, last].into()),
            v6: Some([0x2001, 0xdb8, 0, 0, 0, 0, 0, last.into()].into()),
            ports: Vec::new(),
        };
        Model {
            nodes: vec![Node {
                name: "node-1".into(),
                v4: Some([192, 0, 2, 11].into()),
                v6: Some([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11].into()),
            }],
            namespaces: vec![Namespace {
                name: "x".into(),
                labels: Default::default(),
            }],
            pods: vec![pod("a", 1), pod("b", 2)],
        }
    }

    #[test]
    fn every_ordered_pair_family_and_port_is_a_probe() {
        let probes = all_probes(&model());
        // (2 pods + 1 node) × 2 pods × 2 families × the ports.
        assert_eq!(probes.len(), 3 * 2 * 2 * PROBED_PORTS.len());
        assert!(probes.iter().any(|p| p.from == Client::Pod(p.to.clone())));
        assert!(probes
            .iter()
            .any(|p| p.from == Client::Node("node-1".into())));
    }

    #[test]
    fn a_comparison_tells_leaks_from_blocks_and_shows_them_in_a_grid() {
        let model = model();
        let expected = expected_matrix(&model, &[]);
        assert!(compare(&expected, &expected).matches());
        let mut observed = expected.clone();
        let mut cells = expected
            .keys()
            .filter(|p| p.from != Client::Pod(p.to.clone()));
        let blocked = cells.next().unwrap().clone();
        let missing = cells.next().unwrap().clone();
        observed.insert(blocked.clone(), false);
        observed.remove(&missing);
        let comparison = compare(&observed, &expected);
        assert_eq!(comparison.blocked, std::slice::from_ref(&blocked));
        assert_eq!(comparison.missing, [missing]);
        assert!(comparison.leaked.is_empty());
        let text = comparison.to_string();
        // a -> b over IPv4: tcp80 blocked, tcp81 missing, the UDP ports as expected.
        assert!(text.contains("x/a      ....   -?.."), "{text}");
        assert!(!text.contains("IPv6"), "{text}");
        let mut leaked_expected = expected.clone();
        leaked_expected.insert(blocked.clone(), false);
        assert_eq!(compare(&expected, &leaked_expected).leaked, [blocked]);
    }
}
