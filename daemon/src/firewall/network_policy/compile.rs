//! The compiler: what the controller sent and the local pods → the [`Desired`] state.
//! Pure; the engine calls it on every batch of changes and [`super::script`] diffs the
//! result against what is in the kernel.

use super::names::{
    block_sets, group_ports_set, group_set, local_ports_set, profile_chain, Direction,
};
use super::rules::{rule_forms, Need, Needs};
use super::state::{Desired, DynamicSet, Family, SetElement, SetKind, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use weft_api::{GroupMember, PodPolicies, WeftPolicySpec};

/// The first rule of every profile chain: replies and ICMP errors of allowed flows.
pub const ESTABLISHED: &str = "ct state established,related accept";
/// The last: what no rule allowed, counted.
pub const DENIED: &str = "counter drop";

/// What the controller sent this node.
#[derive(Debug, Clone, Default)]
pub struct PolicyView<'a> {
    /// `WeftPolicy` specs by object name, as `PodPolicies` lists them.
    pub policies: BTreeMap<&'a str, &'a WeftPolicySpec>,
    /// Address groups by group name, their slices' members merged.
    pub groups: BTreeMap<&'a str, Vec<&'a GroupMember>>,
    /// The group of every pod, which named ports of egress rules without a group peer
    /// resolve against.
    pub all_pods_group: Option<&'a str>,
    /// The node's `WeftNodePolicy` entries, its pods' whether started or not: their
    /// profiles' chains are laid when an entry arrives, normally before its pod's ADD,
    /// which then writes only the pod's own elements ([`pod_elements`]).
    pub entries: Vec<&'a PodPolicies>,
}

/// A pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod<'a> {
    /// Its host veth.
    pub veth: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Families the node serves that the pod was started without (its
    /// `weft.dev/ip-families` annotation at ADD): dropped both ways from the start, before
    /// any controller entry says so.
    pub families_off: Vec<Family>,
    pub state: PodState<'a>,
}

/// What is known of a local pod's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState<'a> {
    /// Its namespace has no policy: accepted both ways.
    Unpoliced,
    /// Its namespace has policies, its entry has not arrived: dropped both ways.
    Pending,
    /// Its `WeftNodePolicy` entry.
    Policed(&'a PodPolicies),
}

/// A profile: the sorted, distinct policies of one direction that a pod is under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Profile {
    direction: Direction,
    policies: Vec<String>,
}

impl Profile {
    fn new(direction: Direction, policies: &[String]) -> Profile {
        let mut policies = policies.to_vec();
        policies.sort();
        policies.dedup();
        Profile {
            direction,
            policies,
        }
    }

    fn chain(&self) -> String {
        profile_chain(self.direction, &self.policies)
    }
}

/// The compiler's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    pub desired: Desired,
    /// What could not be enforced as written (it allows nothing), for the status.
    pub problems: Vec<String>,
}

/// The state the kernel should hold for `pods` under `view`, with the chains (and the
/// sets they match) of the profiles of `view.entries` whose pods have not started.
/// Those profiles' problems (a policy not received yet) are left to the first pass that
/// has a started pod under them: until then they judge no packet.
pub fn compile(view: &PolicyView<'_>, pods: &[LocalPod<'_>]) -> Compiled {
    let mut compiler = Compiler {
        view,
        desired: Desired::default(),
        profiles: BTreeMap::new(),
        needs: Needs::default(),
    };
    for pod in pods {
        compiler.pod(pod);
    }
    let problems = compiler.needs.problems.len();
    // Only the chains: a pod's verdicts are its own elements, written at its ADD.
    for entry in &view.entries {
        compiler.profile(Direction::Ingress, &entry.ingress);
        compiler.profile(Direction::Egress, &entry.egress);
    }
    compiler.needs.problems.truncate(problems);
    let needs = std::mem::take(&mut compiler.needs.sets);
    for need in &needs {
        compiler.fill(need, pods);
    }
    let problems: BTreeSet<String> = compiler.needs.problems.into_iter().collect();
    Compiled {
        desired: compiler.desired,
        problems: problems.into_iter().collect(),
    }
}

/// One pod's own elements: its verdicts, the families it has off, and its named ports
/// in the local named-port sets of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwn {
    pub veth: String,
    pub ingress: Verdict,
    pub egress: Verdict,
    pub families_off: BTreeSet<Family>,
    /// Local named-port set → the pod's elements in it.
    pub ports: BTreeMap<String, BTreeSet<SetElement>>,
}

impl PodOwn {
    /// Writes the pod's elements into `state`, which holds its profiles.
    pub fn apply_to(&self, state: &mut Desired) {
        let veth = &self.veth;
        state.ingress.insert(veth.clone(), self.ingress.clone());
        state.egress.insert(veth.clone(), self.egress.clone());
        state.own.insert(veth.clone());
        for family in Family::BOTH {
            state.off_mut(family).remove(veth);
        }
        for family in &self.families_off {
            state.off_mut(*family).insert(veth.clone());
        }
        for (name, elements) in &self.ports {
            if let Some(set) = state.sets.get_mut(name) {
                set.elements.extend(elements.iter().copied());
            }
        }
    }
}

/// The elements of `pod` when `applied` (the state in the kernel) already holds its
/// profiles, as it does for a pod starting beside others of its profile, a pod whose
/// entry arrived before its ADD, or one in a namespace without policies; `None` when it
/// needs a new profile: a whole pass.
pub fn pod_elements(pod: &LocalPod<'_>, applied: &Desired) -> Option<PodOwn> {
    let (ingress, egress) = match pod.state {
        PodState::Unpoliced => (Verdict::Accept, Verdict::Accept),
        PodState::Pending => (Verdict::Drop, Verdict::Drop),
        PodState::Policed(entry) => {
            let verdict = |direction, policies: &[String]| {
                if policies.is_empty() {
                    return Some(Verdict::Accept);
                }
                let chain = Profile::new(direction, policies).chain();
                applied
                    .chains
                    .contains_key(&chain)
                    .then_some(Verdict::Jump(chain))
            };
            (
                verdict(Direction::Ingress, &entry.ingress)?,
                verdict(Direction::Egress, &entry.egress)?,
            )
        }
    };
    Some(PodOwn {
        veth: pod.veth.clone(),
        ingress,
        egress,
        families_off: families_off(pod),
        ports: local_port_elements(pod, applied),
    })
}

/// The families `pod` has off: those it started without, and those its entry's
/// `ipFamilies` leaves out.
fn families_off(pod: &LocalPod<'_>) -> BTreeSet<Family> {
    let mut off: BTreeSet<Family> = pod.families_off.iter().copied().collect();
    if let PodState::Policed(PodPolicies {
        ip_families: Some(kept),
        ..
    }) = pod.state
    {
        let keeps = |name: &str| kept.iter().any(|f| f == name);
        off.extend(
            [("IPv4", Family::V4), ("IPv6", Family::V6)]
                .into_iter()
                .filter(|(name, _)| !keeps(name))
                .map(|(_, family)| family),
        );
    }
    off
}

/// `pod`'s (address, protocol, port) of its entry's named port `port`, one family.
fn named_port_elements<'p>(
    pod: &'p LocalPod<'_>,
    entry: &'p PodPolicies,
    port: &'p str,
    family: Family,
) -> impl Iterator<Item = SetElement> + 'p {
    entry
        .named_ports
        .iter()
        .filter(move |named| named.name == port)
        .flat_map(move |named| {
            pod.addresses
                .iter()
                .filter(move |address| Family::of(address) == family)
                .map(move |address| SetElement::AddressPort(*address, named.protocol, named.port))
        })
}

/// `pod`'s elements in the local named-port sets that `applied` has (a set no chain
/// matches is not laid, and a pass would not fill it either); none unless policed.
fn local_port_elements(
    pod: &LocalPod<'_>,
    applied: &Desired,
) -> BTreeMap<String, BTreeSet<SetElement>> {
    let mut ports = BTreeMap::new();
    let PodState::Policed(entry) = pod.state else {
        return ports;
    };
    for named in &entry.named_ports {
        for family in Family::BOTH {
            let set = local_ports_set(&named.name, family);
            if applied.sets.contains_key(&set) {
                let elements = named_port_elements(pod, entry, &named.name, family);
                ports
                    .entry(set)
                    .or_insert_with(BTreeSet::new)
                    .extend(elements);
            }
        }
    }
    ports
}

struct Compiler<'v, 'a> {
    view: &'v PolicyView<'a>,
    desired: Desired,
    /// Each profile chain's profile, to tell a name collision.
    profiles: BTreeMap<String, Profile>,
    needs: Needs,
}

impl Compiler<'_, '_> {
    fn pod(&mut self, pod: &LocalPod<'_>) {
        let veth = &pod.veth;
        self.desired.own.insert(veth.clone());
        for family in families_off(pod) {
            self.desired.off_mut(family).insert(veth.clone());
        }
        let (ingress, egress) = match pod.state {
            PodState::Unpoliced => (Verdict::Accept, Verdict::Accept),
            PodState::Pending => (Verdict::Drop, Verdict::Drop),
            PodState::Policed(entry) => (
                self.profile(Direction::Ingress, &entry.ingress),
                self.profile(Direction::Egress, &entry.egress),
            ),
        };
        self.desired.ingress.insert(veth.clone(), ingress);
        self.desired.egress.insert(veth.clone(), egress);
    }

    /// The verdict of a pod under `policies` in `direction`, its chain compiled on
    /// first use.
    fn profile(&mut self, direction: Direction, policies: &[String]) -> Verdict {
        if policies.is_empty() {
            return Verdict::Accept;
        }
        let profile = Profile::new(direction, policies);
        let chain = profile.chain();
        match self.profiles.get(&chain) {
            Some(known) if *known == profile => return Verdict::Jump(chain),
            Some(known) => {
                self.needs.problems.push(format!(
                    "profiles {:?} and {:?} share chain {chain}: isolated, allowing nothing",
                    known.policies, profile.policies
                ));
                return Verdict::Drop;
            }
            None => {}
        }
        let rules = self.chain_rules(direction, &profile.policies);
        self.desired.chains.insert(chain.clone(), rules);
        self.profiles.insert(chain.clone(), profile);
        Verdict::Jump(chain)
    }

    /// `ESTABLISHED`, every rule of the policies in order (each text once), `DENIED`.
    fn chain_rules(&mut self, direction: Direction, policies: &[String]) -> Vec<String> {
        let mut rules = vec![ESTABLISHED.to_owned()];
        let field = match direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        for name in policies {
            let Some(spec) = self.view.policies.get(name.as_str()) else {
                self.needs.problems.push(format!(
                    "WeftPolicy {name}: not received; its pods' {field} allows nothing from it"
                ));
                continue;
            };
            let policy_rules = match direction {
                Direction::Ingress => &spec.ingress,
                Direction::Egress => &spec.egress,
            };
            for (i, rule) in policy_rules.iter().flatten().enumerate() {
                let at = format!("WeftPolicy {name}: spec.{field}[{i}]");
                let forms = rule_forms(
                    rule,
                    direction,
                    self.view.all_pods_group,
                    &at,
                    &mut self.needs,
                );
                for form in forms {
                    if !rules.contains(&form) {
                        rules.push(form);
                    }
                }
            }
        }
        rules.push(DENIED.to_owned());
        rules
    }

    /// Creates and fills the sets `need` names, both families.
    fn fill(&mut self, need: &Need, pods: &[LocalPod<'_>]) {
        match need {
            Need::Group(group) => {
                let members = members(self.view, group);
                for family in Family::BOTH {
                    let elements = self
                        .addresses(group, &members, family)
                        .map(|(_, address)| SetElement::Address(address))
                        .collect();
                    self.set(
                        group_set(group, family),
                        SetKind::Addresses(family),
                        elements,
                    );
                }
            }
            Need::GroupPorts { group, port } => {
                let members = members(self.view, group);
                for family in Family::BOTH {
                    let elements = self
                        .addresses(group, &members, family)
                        .flat_map(|(member, address)| {
                            member
                                .ports
                                .iter()
                                .filter(|p| p.name == *port)
                                .map(move |p| SetElement::AddressPort(address, p.protocol, p.port))
                        })
                        .collect();
                    let name = group_ports_set(group, port, family);
                    self.set(name, SetKind::AddressPorts(family), elements);
                }
            }
            Need::LocalPorts { port } => {
                for family in Family::BOTH {
                    let elements = local_ports(pods, port, family);
                    let name = local_ports_set(port, family);
                    self.set(name, SetKind::AddressPorts(family), elements);
                }
            }
            Need::Block { cidr, except, key } => {
                let family = Family::of_net(cidr);
                let (cidr_set, except_set) = block_sets(key, family);
                let prefixes = |nets: &[ipnet::IpNet]| -> BTreeSet<SetElement> {
                    nets.iter().copied().map(SetElement::Prefix).collect()
                };
                self.set(cidr_set, SetKind::Prefixes(family), prefixes(&[*cidr]));
                if !except.is_empty() {
                    self.set(except_set, SetKind::Prefixes(family), prefixes(except));
                }
            }
        }
    }

    /// Each member's addresses of `family`, with the member; unreadable ones reported.
    fn addresses<'m>(
        &mut self,
        group: &str,
        members: &[&'m GroupMember],
        family: Family,
    ) -> impl Iterator<Item = (&'m GroupMember, IpAddr)> {
        let mut out = Vec::new();
        for member in members {
            for text in &member.ips {
                match text.parse::<IpAddr>() {
                    Ok(address) if Family::of(&address) == family => out.push((*member, address)),
                    Ok(_) => {}
                    Err(_) => self.needs.problems.push(format!(
                        "WeftAddressGroup {group}: member {}: '{text}' is not an address",
                        member.uid
                    )),
                }
            }
        }
        out.into_iter()
    }

    fn set(&mut self, name: String, kind: SetKind, elements: BTreeSet<SetElement>) {
        self.desired
            .sets
            .insert(name, DynamicSet { kind, elements });
    }
}

/// The members of `group`, none when this node has not received it.
fn members<'a>(view: &PolicyView<'a>, group: &str) -> Vec<&'a GroupMember> {
    view.groups.get(group).cloned().unwrap_or_default()
}

/// The local policed pods' (address, protocol, port) of named port `port`.
fn local_ports(pods: &[LocalPod<'_>], port: &str, family: Family) -> BTreeSet<SetElement> {
    pods.iter()
        .filter_map(|pod| match pod.state {
            PodState::Policed(entry) => Some(named_port_elements(pod, entry, port, family)),
            _ => None,
        })
        .flatten()
        .collect()
}
