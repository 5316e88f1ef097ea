//! Rules → per-endpoint policy entries for the `tw_policy` inner LPM trie.
//!
//! # How the entries encode the policy
//!
//! The datapath (`bpf/abi/policy.h`) looks up `{peer, dir, proto, port}`
//! and `{TW_ID_ANY, dir, proto, port}` with the full prefix: a deny in
//! either wins, else an allow in either passes, else the direction's
//! default applies. The compiler therefore keeps, per local endpoint,
//! direction and *key identity* (an exact peer identity, or `TW_ID_ANY`
//! for rules whose peers are every identity), two port sets per protocol
//! (allowed, denied) and two "every protocol" flags, and emits:
//!
//! - a denied "every protocol" flag: one prefix-40 deny entry and nothing
//!   else for that identity (everything is denied anyway);
//! - otherwise an allowed "every protocol" flag: one prefix-40 allow entry;
//! - per protocol (TCP, UDP), the denied ports as deny prefixes, and the
//!   allowed ports *minus the denied ports* as allow prefixes (none if the
//!   prefix-40 allow exists, which covers them). The subtraction happens on
//!   port sets before the prefix decomposition, so within one identity and
//!   protocol allow and deny prefixes never overlap and the longest match is
//!   the answer. The only nesting is a prefix-40 allow above
//!   protocol-specific deny prefixes, where the longer deny wins.
//!
//! Why keeping the exact identity and `TW_ID_ANY` apart is enough: for a
//! flow from peer `p`, the policy says deny iff a deny rule matches via `p`
//! or via "every peer", i.e. the port is in `D(p) ∪ D(ANY)`; the datapath
//! says deny iff the exact lookup or the ANY lookup returns a deny, i.e. the
//! same union. If neither denies, the policy allows iff the port is in
//! `A(p) ∪ A(ANY)`, and each lookup returns an allow for `A \ D` of its own
//! identity; since the port is in neither `D`, that is the same. So an
//! ANY-identity deny wins over an exact allow, and an ANY-identity allow
//! can never shadow an exact deny — deny in either wins.
//!
//! Protocol choices: an empty port list or [`PortSpec::Any`] is every
//! protocol (proto 0, prefix 40: it also matches ICMP and the rest);
//! [`Proto::Any`] with ports is TCP and UDP entries. Named ports are
//! resolved on the subject's own pods for ingress and on each peer
//! identity's pods for egress (egress with "every peer" is expanded to
//! every identity that has the name); unresolvable names add nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::abi::{
    IPPROTO_TCP, IPPROTO_UDP, KEY_PREFIX_ANY_PROTO, KEY_PREFIX_PORT_START,
    TW_EP_F_EGRESS_DEFAULT_DENY, TW_EP_F_INGRESS_DEFAULT_DENY, TW_ID_ANY, TW_ID_HOST,
    TW_ID_KUBE_APISERVER, TW_POL_F_DENY, TW_POLICY_ENTRIES_MAX,
};
use crate::model::{Action, Direction, Entity, Peer, PolicyContext, PortSpec, Proto, Rule};
use crate::ports::{PortMap, prefix_covers, range_to_prefixes};

/// One entry of an endpoint's policy trie: a `tw_policy_key` and the parts
/// of `tw_policy_entry` the compiler decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// Ingress or egress (`tw_policy_key.egress`).
    pub direction: Direction,
    /// The peer identity; `TW_ID_ANY` (0) for every peer.
    pub identity: u32,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 for every protocol (then the
    /// prefix stops after the direction, and `port`/`prefix_len` are 0).
    pub proto: u8,
    /// The port prefix's value (bits below the prefix are zero).
    pub port: u16,
    /// How many leading bits of the port must match: 0..=16.
    pub prefix_len: u8,
    /// A deny entry (`TW_POL_F_DENY`).
    pub deny: bool,
    /// The rule the entry comes from (the first in input order, if several).
    pub rule_id: u32,
}

impl PolicyEntry {
    /// `tw_policy_key.prefixlen`: 40 for every protocol, else 48 + the port
    /// prefix length.
    pub fn key_prefixlen(&self) -> u32 {
        if self.proto == 0 {
            KEY_PREFIX_ANY_PROTO
        } else {
            KEY_PREFIX_PORT_START + u32::from(self.prefix_len)
        }
    }

    /// `tw_policy_entry.flags`.
    pub fn flags(&self) -> u8 {
        if self.deny { TW_POL_F_DENY } else { 0 }
    }

    /// The prefix length with which this entry matches a full-length
    /// lookup of (`proto`, `port`) for its identity and direction, if it
    /// does.
    pub fn match_len(&self, proto: u8, port: u16) -> Option<u32> {
        if self.proto == 0 {
            return Some(KEY_PREFIX_ANY_PROTO);
        }
        (self.proto == proto && prefix_covers(self.port, self.prefix_len, port))
            .then(|| self.key_prefixlen())
    }
}

/// The compiled policy of one local endpoint identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPolicy {
    /// Ingress not matched by an entry is denied.
    pub ingress_default_deny: bool,
    /// Egress not matched by an entry is denied.
    pub egress_default_deny: bool,
    /// The trie entries, sorted; at most one per key.
    pub entries: Vec<PolicyEntry>,
}

impl EndpointPolicy {
    /// The default-deny bits of `tw_endpoint.flags`
    /// (`TW_EP_F_INGRESS_DEFAULT_DENY`, `TW_EP_F_EGRESS_DEFAULT_DENY`).
    pub fn endpoint_flags(&self) -> u32 {
        let mut f = 0;
        if self.ingress_default_deny {
            f |= TW_EP_F_INGRESS_DEFAULT_DENY;
        }
        if self.egress_default_deny {
            f |= TW_EP_F_EGRESS_DEFAULT_DENY;
        }
        f
    }

    /// Whether the direction is default-deny.
    pub fn default_deny(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress_default_deny,
            Direction::Egress => self.egress_default_deny,
        }
    }
}

/// The peers of a rule, which do not depend on the subject.
#[derive(Debug, Clone)]
enum PeerSet {
    /// Every identity: the rule's entries go to `TW_ID_ANY`.
    Any,
    /// These identities.
    Ids(BTreeSet<u32>),
}

/// Every identity the context mentions, plus the reserved ones: the only
/// identities a peer other than "every peer" can match.
fn universe(ctx: &PolicyContext) -> BTreeSet<u32> {
    ctx.identities
        .keys()
        .chain(ctx.addresses.keys())
        .chain(ctx.named_ports.keys())
        .copied()
        .chain(TW_ID_HOST..=TW_ID_KUBE_APISERVER)
        .collect()
}

fn resolve_peers(peers: Option<&[Peer]>, ctx: &PolicyContext, universe: &BTreeSet<u32>) -> PeerSet {
    let Some(peers) = peers else {
        return PeerSet::Any;
    };
    let mut ids = BTreeSet::new();
    for peer in peers {
        match peer {
            Peer::Entity(Entity::All) => return PeerSet::Any,
            Peer::Entity(Entity::World) => {
                ids.extend(universe.iter().filter(|&&id| ctx.is_world(id)));
            }
            Peer::Entity(Entity::Cluster) => {
                ids.extend(universe.iter().filter(|&&id| ctx.is_cluster(id)));
            }
            Peer::Entity(e) => ids.extend(e.reserved_identity()),
            Peer::Endpoints(sel) => ids.extend(
                ctx.identities
                    .iter()
                    .filter(|(_, labels)| sel.matches(labels))
                    .map(|(id, _)| *id),
            ),
            Peer::Cidr {
                cidr,
                except,
                cluster,
            } => ids.extend(
                universe
                    .iter()
                    .filter(|&&id| ctx.cidr_covers(*cidr, except, *cluster, id)),
            ),
        }
    }
    PeerSet::Ids(ids)
}

/// L4 traffic a rule adds for one key identity.
enum L4 {
    /// Every protocol and port.
    All,
    /// These `(protocol, first, last)` ranges.
    Ports(Vec<(Proto, u16, u16)>),
}

/// The allowed or denied traffic of one key identity.
#[derive(Debug, Default)]
struct Side {
    /// Every protocol, by this rule.
    all: Option<u32>,
    tcp: PortMap,
    udp: PortMap,
}

impl Side {
    fn add(&mut self, l4: &L4, rule: u32) {
        match l4 {
            L4::All => {
                self.all.get_or_insert(rule);
            }
            L4::Ports(ranges) => {
                for &(proto, first, last) in ranges {
                    for &ipproto in proto.ipprotos() {
                        let map = if ipproto == IPPROTO_TCP {
                            &mut self.tcp
                        } else {
                            &mut self.udp
                        };
                        map.insert(first, last, rule);
                    }
                }
            }
        }
    }
}

/// Allowed and denied traffic of one key identity.
#[derive(Debug, Default)]
struct Acc {
    allow: Side,
    deny: Side,
}

/// Per direction: key identity → traffic.
type DirAcc = BTreeMap<u32, Acc>;

fn add(acc: &mut DirAcc, id: u32, l4: &L4, action: Action, rule: u32) {
    if matches!(l4, L4::Ports(r) if r.is_empty()) {
        return;
    }
    let a = acc.entry(id).or_default();
    match action {
        Action::Allow => a.allow.add(l4, rule),
        Action::Deny => a.deny.add(l4, rule),
    }
}

/// Checks what the compiler relies on: port ranges are not inverted.
fn validate(rules: &[Rule]) -> Result<(), PolicyError> {
    for rule in rules {
        for spec in &rule.ports {
            if let PortSpec::Number {
                port,
                end_port: Some(end_port),
                ..
            } = *spec
                && end_port < port
            {
                return Err(PolicyError::InvalidPortRange {
                    rule_id: rule.id,
                    origin: rule.origin.clone(),
                    port,
                    end_port,
                });
            }
        }
    }
    Ok(())
}

/// Compiles the policy of every local endpoint identity in `local`.
///
/// `rules` is every rule of the cluster; `ctx` describes every identity.
/// Fails on an inverted port range, or if an endpoint would need more than
/// `TW_POLICY_ENTRIES_MAX` entries (see [`compile_each`] to keep the others).
pub fn compile(
    rules: &[Rule],
    ctx: &PolicyContext,
    local: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, EndpointPolicy>, PolicyError> {
    compile_each(rules, ctx, local)?
        .into_iter()
        .map(|(id, p)| Ok((id, p?)))
        .collect()
}

/// [`compile`], with each identity's own outcome: one endpoint whose policy
/// does not fit its map fails alone. Fails as a whole only on an invalid
/// rule (an inverted port range).
pub fn compile_each(
    rules: &[Rule],
    ctx: &PolicyContext,
    local: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, Result<EndpointPolicy, PolicyError>>, PolicyError> {
    validate(rules)?;
    let universe = universe(ctx);
    let peers: Vec<PeerSet> = rules
        .iter()
        .map(|r| resolve_peers(r.peers.as_deref(), ctx, &universe))
        .collect();
    Ok(local
        .iter()
        .map(|&id| (id, compile_one(rules, &peers, ctx, id)))
        .collect())
}

/// Compiles the policy of one endpoint identity (see [`compile`]).
pub fn compile_endpoint(
    rules: &[Rule],
    ctx: &PolicyContext,
    subject: u32,
) -> Result<EndpointPolicy, PolicyError> {
    let mut out = compile(rules, ctx, &BTreeSet::from([subject]))?;
    Ok(out.remove(&subject).unwrap_or_default())
}

fn compile_one(
    rules: &[Rule],
    peers: &[PeerSet],
    ctx: &PolicyContext,
    subject: u32,
) -> Result<EndpointPolicy, PolicyError> {
    let mut policy = EndpointPolicy::default();
    let Some(labels) = ctx.identities.get(&subject) else {
        return Ok(policy);
    };
    let mut ingress = DirAcc::new();
    let mut egress = DirAcc::new();
    for (rule, peer_set) in rules.iter().zip(peers) {
        if !rule.subject.matches(labels) {
            continue;
        }
        let acc = match rule.direction {
            Direction::Ingress => {
                policy.ingress_default_deny |= rule.default_deny;
                &mut ingress
            }
            Direction::Egress => {
                policy.egress_default_deny |= rule.default_deny;
                &mut egress
            }
        };
        add_rule(acc, rule, peer_set, ctx, subject);
    }
    for (direction, acc) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
        for (id, a) in acc {
            emit(&mut policy.entries, direction, id, &a);
        }
    }
    policy.entries.sort();
    if policy.entries.len() > TW_POLICY_ENTRIES_MAX {
        return Err(PolicyError::TooManyEntries {
            identity: subject,
            needed: policy.entries.len(),
            max: TW_POLICY_ENTRIES_MAX,
        });
    }
    Ok(policy)
}

/// Adds what one rule selecting `subject` contributes.
fn add_rule(acc: &mut DirAcc, rule: &Rule, peers: &PeerSet, ctx: &PolicyContext, subject: u32) {
    let every_port = rule.ports.is_empty() || rule.ports.contains(&PortSpec::Any);
    // Traffic that does not depend on the peer: numbered ports, and named
    // ports of ingress rules (resolved on the subject).
    let (fixed, per_peer_names) = if every_port {
        (L4::All, Vec::new())
    } else {
        let mut ranges = Vec::new();
        let mut names = Vec::new();
        for spec in &rule.ports {
            match spec {
                PortSpec::Any => {}
                PortSpec::Number { proto, .. } => {
                    if let Some((first, last)) = spec.range() {
                        ranges.push((*proto, first, last));
                    }
                }
                PortSpec::Named { proto, name } => match rule.direction {
                    Direction::Ingress => ranges.extend(
                        ctx.resolve_named(subject, *proto, name)
                            .into_iter()
                            .map(|(p, port)| (p, port, port)),
                    ),
                    Direction::Egress => names.push((*proto, name.as_str())),
                },
            }
        }
        (L4::Ports(ranges), names)
    };
    match peers {
        PeerSet::Any => add(acc, TW_ID_ANY, &fixed, rule.action, rule.id),
        PeerSet::Ids(ids) => {
            for &id in ids {
                add(acc, id, &fixed, rule.action, rule.id);
            }
        }
    }
    if per_peer_names.is_empty() {
        return;
    }
    // Egress named ports, resolved on each peer. "Every peer" means every
    // identity that has such a port: the others have nothing to resolve.
    let ids: Vec<u32> = match peers {
        PeerSet::Any => ctx.named_ports.keys().copied().collect(),
        PeerSet::Ids(ids) => ids.iter().copied().collect(),
    };
    for id in ids {
        let ranges: Vec<(Proto, u16, u16)> = per_peer_names
            .iter()
            .flat_map(|(proto, name)| ctx.resolve_named(id, *proto, name))
            .map(|(p, port)| (p, port, port))
            .collect();
        add(acc, id, &L4::Ports(ranges), rule.action, rule.id);
    }
}

/// Emits the entries of one key identity (see the module docs).
fn emit(out: &mut Vec<PolicyEntry>, direction: Direction, identity: u32, acc: &Acc) {
    let entry = |proto: u8, port: u16, prefix_len: u8, deny: bool, rule_id: u32| PolicyEntry {
        direction,
        identity,
        proto,
        port,
        prefix_len,
        deny,
        rule_id,
    };
    if let Some(rule) = acc.deny.all {
        out.push(entry(0, 0, 0, true, rule));
        return;
    }
    if let Some(rule) = acc.allow.all {
        out.push(entry(0, 0, 0, false, rule));
    }
    for (proto, allow, deny) in [
        (IPPROTO_TCP, &acc.allow.tcp, &acc.deny.tcp),
        (IPPROTO_UDP, &acc.allow.udp, &acc.deny.udp),
    ] {
        for (first, last, rule) in deny.runs() {
            for (port, len) in range_to_prefixes(first, last) {
                out.push(entry(proto, port, len, true, rule));
            }
        }
        if acc.allow.all.is_some() {
            continue;
        }
        for (first, last, rule) in allow.minus(deny).runs() {
            for (port, len) in range_to_prefixes(first, last) {
                out.push(entry(proto, port, len, false, rule));
            }
        }
    }
}
