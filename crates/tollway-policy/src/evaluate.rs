//! The policy's verdict for one flow, two ways: [`evaluate`] straight from
//! the rules, and [`lookup`] on compiled entries the way the datapath does.
//! Tests check that they agree.

use serde::{Deserialize, Serialize};

use crate::abi::TW_ID_ANY;
use crate::compile::{EndpointPolicy, PolicyEntry};
use crate::model::{Action, Direction, Entity, Peer, PolicyContext, PortSpec, Rule};

/// The fate of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Allowed by a rule, or not policed in that direction.
    Allow,
    /// Explicitly denied by a deny rule (`TW_DROP_POLICY_DENY`).
    Deny,
    /// Matched by no rule in a default-deny direction
    /// (`TW_DROP_POLICY_DENIED`).
    Denied,
}

/// A new connection as the policy sees it, from the endpoint's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flow {
    /// The other end's identity (source for ingress, destination for egress).
    pub peer: u32,
    /// Ingress to the endpoint or egress from it.
    pub direction: Direction,
    /// The IP protocol number.
    pub proto: u8,
    /// The destination port (after service translation); 0 for protocols
    /// without ports.
    pub port: u16,
}

/// The policy's verdict for `flow` of endpoint identity `subject`,
/// computed directly from the rules, independently of the compiler: deny
/// if a matching deny rule exists, else allow if a matching allow rule
/// exists, else denied if a rule selecting the subject in that direction
/// is default-deny, else allow.
///
/// Assumes rules [`compile`](crate::compile()) accepts (an inverted port
/// range matches nothing here).
pub fn evaluate(rules: &[Rule], ctx: &PolicyContext, subject: u32, flow: Flow) -> Verdict {
    let Some(labels) = ctx.identities.get(&subject) else {
        return Verdict::Allow;
    };
    let mut default_deny = false;
    let mut allowed = false;
    for rule in rules {
        if rule.direction != flow.direction || !rule.subject.matches(labels) {
            continue;
        }
        default_deny |= rule.default_deny;
        if !peer_matches(rule.peers.as_deref(), ctx, flow.peer)
            || !ports_match(&rule.ports, ctx, subject, flow)
        {
            continue;
        }
        match rule.action {
            Action::Deny => return Verdict::Deny,
            Action::Allow => allowed = true,
        }
    }
    if allowed {
        Verdict::Allow
    } else if default_deny {
        Verdict::Denied
    } else {
        Verdict::Allow
    }
}

fn peer_matches(peers: Option<&[Peer]>, ctx: &PolicyContext, id: u32) -> bool {
    let Some(peers) = peers else {
        return true;
    };
    peers.iter().any(|peer| match peer {
        Peer::Endpoints(sel) => ctx.identities.get(&id).is_some_and(|l| sel.matches(l)),
        Peer::Cidr {
            cidr,
            except,
            cluster,
        } => ctx.cidr_covers(*cidr, except, *cluster, id),
        Peer::Entity(Entity::All) => true,
        Peer::Entity(Entity::World) => ctx.is_world(id),
        Peer::Entity(Entity::Cluster) => ctx.is_cluster(id),
        Peer::Entity(e) => e.reserved_identity() == Some(id),
    })
}

fn ports_match(ports: &[PortSpec], ctx: &PolicyContext, subject: u32, flow: Flow) -> bool {
    if ports.is_empty() {
        return true;
    }
    ports.iter().any(|spec| match spec {
        PortSpec::Any => true,
        PortSpec::Number { proto, .. } => {
            proto.covers(flow.proto)
                && spec
                    .range()
                    .is_some_and(|(first, last)| (first..=last).contains(&flow.port))
        }
        PortSpec::Named { proto, name } => {
            let owner = match flow.direction {
                Direction::Ingress => subject,
                Direction::Egress => flow.peer,
            };
            ctx.resolve_named(owner, *proto, name)
                .iter()
                .any(|&(p, port)| p.covers(flow.proto) && port == flow.port)
        }
    })
}

/// The longest entry of `identity` matching the flow, like a full-length
/// `tw_policy` LPM lookup.
fn longest(entries: &[PolicyEntry], identity: u32, flow: Flow) -> Option<&PolicyEntry> {
    entries
        .iter()
        .filter(|e| e.identity == identity && e.direction == flow.direction)
        .filter_map(|e| Some((e.match_len(flow.proto, flow.port)?, e)))
        .max_by_key(|(len, _)| *len)
        .map(|(_, e)| e)
}

/// The datapath's verdict on compiled entries (`bpf/abi/policy.h`): look up
/// the peer's identity and `TW_ID_ANY`, each with longest-prefix match; a
/// deny in either wins, else an allow in either passes, else the
/// direction's default.
pub fn lookup(policy: &EndpointPolicy, flow: Flow) -> Verdict {
    let exact = longest(&policy.entries, flow.peer, flow);
    let any = longest(&policy.entries, TW_ID_ANY, flow);
    let found = [exact, any];
    if found.iter().flatten().any(|e| e.deny) {
        Verdict::Deny
    } else if found.iter().flatten().next().is_some() {
        Verdict::Allow
    } else if policy.default_deny(flow.direction) {
        Verdict::Denied
    } else {
        Verdict::Allow
    }
}
