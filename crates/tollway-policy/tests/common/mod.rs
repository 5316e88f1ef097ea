//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;

use tollway_policy::{
    Action, Direction, EndpointPolicy, EndpointSelector, Flow, Peer, PolicyContext, PortSpec,
    Proto, Rule, Verdict, compile, evaluate, lookup,
};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// A selector from `key=value` pairs (keys parsed like Cilium's).
pub fn sel(pairs: &[(&str, &str)]) -> EndpointSelector {
    EndpointSelector {
        match_labels: pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.to_string()))
            .collect(),
        match_expressions: Vec::new(),
    }
}

/// An allow rule with default deny, every port.
pub fn rule(
    id: u32,
    subject: EndpointSelector,
    direction: Direction,
    peers: Option<Vec<Peer>>,
) -> Rule {
    Rule {
        id,
        subject,
        direction,
        action: Action::Allow,
        peers,
        ports: Vec::new(),
        default_deny: true,
        origin: format!("test rule {id}"),
    }
}

pub fn tcp(port: u16) -> PortSpec {
    PortSpec::Number {
        proto: Proto::Tcp,
        port,
        end_port: None,
    }
}

pub fn ingress(peer: u32, proto: u8, port: u16) -> Flow {
    Flow {
        peer,
        direction: Direction::Ingress,
        proto,
        port,
    }
}

pub fn egress(peer: u32, proto: u8, port: u16) -> Flow {
    Flow {
        peer,
        direction: Direction::Egress,
        proto,
        port,
    }
}

/// Checks the entries the datapath relies on: one entry per key, port
/// bits below the prefix zero, protocol 0 only with prefix 40, and within
/// one identity, direction and protocol no allow prefix overlapping a deny
/// prefix.
pub fn check_entries(policy: &EndpointPolicy) {
    let mut keys = BTreeSet::new();
    for e in &policy.entries {
        assert!(
            keys.insert((e.identity, e.direction, e.proto, e.port, e.prefix_len)),
            "duplicate key {e:?}"
        );
        assert!(e.prefix_len <= 16);
        if e.proto == 0 {
            assert_eq!((e.port, e.prefix_len), (0, 0), "{e:?}");
        } else {
            assert!(e.proto == TCP || e.proto == UDP, "{e:?}");
            let mask = if e.prefix_len == 0 {
                0
            } else {
                u16::MAX << (16 - e.prefix_len)
            };
            assert_eq!(e.port & !mask, 0, "port bits below the prefix: {e:?}");
        }
    }
    for a in policy.entries.iter().filter(|e| !e.deny && e.proto != 0) {
        for d in policy.entries.iter().filter(|e| e.deny) {
            if (a.identity, a.direction, a.proto) != (d.identity, d.direction, d.proto) {
                continue;
            }
            let len = a.prefix_len.min(d.prefix_len);
            let shift = 16 - u32::from(len);
            let overlap = len == 0 || (u32::from(a.port) >> shift) == (u32::from(d.port) >> shift);
            assert!(!overlap, "allow {a:?} overlaps deny {d:?}");
        }
    }
}

/// The verdict both ways, asserting they agree.
pub fn verdict(rules: &[Rule], ctx: &PolicyContext, subject: u32, flow: Flow) -> Verdict {
    let compiled = compile(rules, ctx, &BTreeSet::from([subject])).unwrap();
    let policy = &compiled[&subject];
    check_entries(policy);
    let direct = evaluate(rules, ctx, subject, flow);
    let looked_up = lookup(policy, flow);
    assert_eq!(
        direct, looked_up,
        "evaluate and lookup disagree for subject {subject} {flow:?}\nrules: {rules:#?}\nentries: {:#?}",
        policy.entries
    );
    direct
}
