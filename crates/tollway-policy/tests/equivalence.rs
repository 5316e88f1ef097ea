//! The compiler is checked against the policy itself: for random
//! identities and rules, `lookup(compile(..))` (what the datapath does with
//! the entries) equals `evaluate(..)` (the rules read directly) for every
//! sampled subject, peer, direction, protocol and port.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use common::{ICMP, TCP, UDP, check_entries};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tollway_policy::{
    Action, CidrIdentities, Direction, EndpointSelector, Entity, Flow, LabelKey, NamedPort,
    Operator, Peer, PolicyContext, PortSpec, Proto, Requirement, Rule, TW_ID_CIDR_FIRST,
    TW_ID_CLUSTER_FIRST, TW_ID_HOST, Verdict, compile, evaluate, lookup, pod_security_labels,
    reserved_identities,
};

const CIDRS: [&str; 7] = [
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.128/25",
    "192.168.0.0/16",
    "172.16.0.0/12",
];
const ADDRS: [&str; 6] = [
    "10.1.2.3",
    "10.1.2.200",
    "10.1.3.4",
    "10.2.0.1",
    "192.168.1.1",
    "172.16.0.1",
];
const NAMED: [(Proto, &str, u16); 6] = [
    (Proto::Tcp, "http", 80),
    (Proto::Tcp, "http", 8080),
    (Proto::Udp, "dns", 53),
    (Proto::Tcp, "dns", 53),
    (Proto::Tcp, "metrics", 9090),
    (Proto::Udp, "metrics", 9091),
];
const PORTS: [u16; 8] = [0, 1, 53, 80, 443, 1000, 8080, 65535];
const NAMES: [&str; 4] = ["http", "dns", "metrics", "nope"];

/// An identity that appears nowhere in the context.
const UNKNOWN: u32 = 9999;

/// A pod: namespace index, app, optional tier.
#[derive(Debug, Clone)]
struct Pod {
    ns: usize,
    app: usize,
    tier: Option<usize>,
    addrs: Vec<usize>,
    named: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Scenario {
    pods: Vec<Pod>,
    cidrs: Vec<usize>,
    host_addrs: Vec<usize>,
    host_named: Vec<usize>,
    rules: Vec<Rule>,
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        0..2usize,
        0..3usize,
        proptest::option::of(0..2usize),
        proptest::collection::vec(0..ADDRS.len(), 0..=3),
        proptest::collection::vec(0..NAMED.len(), 0..=2),
    )
        .prop_map(|(ns, app, tier, addrs, named)| Pod {
            ns,
            app,
            tier,
            addrs,
            named,
        })
}

fn label_key() -> impl Strategy<Value = LabelKey> {
    pick(&[
        "app",
        "k8s:app",
        "any:app",
        "tier",
        "k8s:tier",
        "container:app",
        "k8s:io.kubernetes.pod.namespace",
        "io.cilium.k8s.namespace.labels.team",
        "reserved:host",
        "reserved:world",
        "cidr:10.0.0.0/8",
    ])
    .prop_map(|k| k.parse().unwrap())
}

fn label_value() -> impl Strategy<Value = String> {
    pick(&["a", "b", "c", "x", "y", "n0", "n1", ""]).prop_map(str::to_string)
}

fn selector() -> impl Strategy<Value = EndpointSelector> {
    let requirement = (
        label_key(),
        pick(&[
            Operator::In,
            Operator::NotIn,
            Operator::Exists,
            Operator::DoesNotExist,
        ]),
        proptest::collection::vec(label_value(), 0..=2),
    )
        .prop_map(|(key, operator, values)| Requirement {
            key,
            operator,
            values,
        });
    (
        proptest::collection::vec((label_key(), label_value()), 0..=2),
        proptest::collection::vec(requirement, 0..=1),
    )
        .prop_map(|(match_labels, match_expressions)| EndpointSelector {
            match_labels,
            match_expressions,
        })
}

fn net(i: usize) -> Ipv4Net {
    CIDRS[i].parse().unwrap()
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        3 => subject().prop_map(Peer::Endpoints),
        2 => (0..CIDRS.len(), proptest::collection::vec(0..CIDRS.len(), 0..=2), any::<bool>()).prop_map(
            |(c, except, cluster)| Peer::Cidr {
                cidr: net(c),
                except: except.into_iter().map(net).collect(),
                cluster,
            }
        ),
        2 => pick(&[
            Entity::World,
            Entity::Cluster,
            Entity::Host,
            Entity::RemoteNode,
            Entity::All,
            Entity::Health,
            Entity::Init,
            Entity::KubeApiserver,
            Entity::Unmanaged,
        ])
        .prop_map(Peer::Entity),
    ]
}

fn proto() -> impl Strategy<Value = Proto> {
    pick(&[Proto::Tcp, Proto::Udp, Proto::Any])
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        1 => Just(PortSpec::Any),
        4 => (proto(), pick(&PORTS), proptest::option::of(pick(&[0u16, 1, 7, 100, 1000, 65535])))
            .prop_map(|(proto, port, delta)| PortSpec::Number {
                proto,
                port,
                end_port: delta.map(|d| port.saturating_add(d)),
            }),
        2 => (proto(), pick(&NAMES)).prop_map(|(proto, name)| PortSpec::Named {
            proto,
            name: name.to_string(),
        }),
    ]
}

/// Subjects: mostly selectors that select some pods.
fn subject() -> impl Strategy<Value = EndpointSelector> {
    let sel = |k: &str, v: &str| EndpointSelector {
        match_labels: vec![(k.parse().unwrap(), v.to_string())],
        match_expressions: Vec::new(),
    };
    prop_oneof![
        1 => Just(EndpointSelector::all()),
        2 => pick(&["a", "b", "c"]).prop_map(move |v| sel("k8s:app", v)),
        1 => pick(&["n0", "n1"]).prop_map(move |v| sel("io.kubernetes.pod.namespace", v)),
        1 => selector(),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        subject(),
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        prop_oneof![Just(Action::Allow), Just(Action::Deny)],
        proptest::option::weighted(0.75, proptest::collection::vec(peer(), 0..=3)),
        prop_oneof![
            1 => Just(Vec::new()),
            3 => proptest::collection::vec(port_spec(), 1..=3),
        ],
        any::<bool>(),
    )
        .prop_map(
            |(subject, direction, action, peers, ports, default_deny)| Rule {
                id: 0,
                subject,
                direction,
                action,
                peers,
                ports,
                default_deny,
                origin: String::new(),
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(pod(), 1..=5),
        proptest::collection::vec(0..CIDRS.len(), 0..=4),
        proptest::collection::vec(0..ADDRS.len(), 0..=1),
        proptest::collection::vec(0..NAMED.len(), 0..=1),
        proptest::collection::vec(rule(), 0..=6),
    )
        .prop_map(|(pods, cidrs, host_addrs, host_named, mut rules)| {
            for (i, r) in rules.iter_mut().enumerate() {
                r.id = u32::try_from(i).unwrap() + 1;
                r.origin = format!("rule {i}");
            }
            Scenario {
                pods,
                cidrs,
                host_addrs,
                host_named,
                rules,
            }
        })
}

fn named_ports(idx: &[usize]) -> Vec<NamedPort> {
    idx.iter()
        .map(|&i| NamedPort {
            proto: NAMED[i].0,
            name: NAMED[i].1.to_string(),
            port: NAMED[i].2,
        })
        .collect()
}

fn addrs(idx: &[usize]) -> Vec<Ipv4Addr> {
    idx.iter().map(|&i| ADDRS[i].parse().unwrap()).collect()
}

/// The context and the endpoint identities of a scenario.
fn context(s: &Scenario) -> (PolicyContext, BTreeSet<u32>) {
    const APPS: [&str; 3] = ["a", "b", "c"];
    const TIERS: [&str; 2] = ["x", "y"];
    let mut ctx = PolicyContext {
        identities: reserved_identities(),
        ..PolicyContext::default()
    };
    let mut local = BTreeSet::new();
    for (i, p) in s.pods.iter().enumerate() {
        let id = TW_ID_CLUSTER_FIRST + u32::try_from(i).unwrap();
        let ns = format!("n{}", p.ns);
        let mut labels = BTreeMap::from([("app".to_string(), APPS[p.app].to_string())]);
        if let Some(t) = p.tier {
            labels.insert("tier".to_string(), TIERS[t].to_string());
        }
        let ns_labels = BTreeMap::from([("team".to_string(), ns.clone())]);
        ctx.identities
            .insert(id, pod_security_labels(&ns, &labels, &ns_labels, "sa"));
        if !p.addrs.is_empty() {
            ctx.addresses.insert(id, addrs(&p.addrs));
        }
        if !p.named.is_empty() {
            ctx.named_ports.insert(id, named_ports(&p.named));
        }
        local.insert(id);
    }
    let mut cidrs = CidrIdentities::new();
    for &c in &s.cidrs {
        cidrs.allocate(net(c)).unwrap();
    }
    ctx.identities.extend(cidrs.identities());
    if !s.host_addrs.is_empty() {
        ctx.addresses.insert(TW_ID_HOST, addrs(&s.host_addrs));
    }
    if !s.host_named.is_empty() {
        ctx.named_ports
            .insert(TW_ID_HOST, named_ports(&s.host_named));
    }
    (ctx, local)
}

/// Ports worth probing: every rule's boundaries and their neighbours, every
/// named port, and a few fixed ones.
fn probe_ports(rules: &[Rule]) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = [0, 1, 2, 52, 54, 79, 81, 1023, 1024, 32768, 65534, 65535].into();
    let mut near = |p: u16| {
        out.insert(p);
        out.insert(p.saturating_sub(1));
        out.insert(p.saturating_add(1));
    };
    for r in rules {
        for spec in &r.ports {
            if let Some((first, last)) = spec.range() {
                near(first);
                near(last);
                near(first.midpoint(last));
            }
        }
    }
    for (_, _, p) in NAMED {
        near(p);
    }
    out
}

/// Checks every sampled flow; returns how many times each verdict came up
/// (Allow, Deny, Denied).
fn check(s: &Scenario) -> Result<[usize; 3], TestCaseError> {
    let (ctx, local) = context(s);
    let compiled =
        compile(&s.rules, &ctx, &local).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut peers: BTreeSet<u32> = ctx.identities.keys().copied().collect();
    peers.extend([UNKNOWN, TW_ID_CIDR_FIRST + 1000]);
    let ports = probe_ports(&s.rules);
    let mut counts = [0; 3];
    for &subject in &local {
        let policy = &compiled[&subject];
        check_entries(policy);
        for &peer in &peers {
            for direction in [Direction::Ingress, Direction::Egress] {
                let flows = ports
                    .iter()
                    .flat_map(|&port| [TCP, UDP].map(|proto| (proto, port)))
                    .chain([(ICMP, 0)]);
                for (proto, port) in flows {
                    let flow = Flow {
                        peer,
                        direction,
                        proto,
                        port,
                    };
                    let want = evaluate(&s.rules, &ctx, subject, flow);
                    let got = lookup(policy, flow);
                    prop_assert_eq!(
                        got,
                        want,
                        "subject {} {:?}\nentries: {:#?}",
                        subject,
                        flow,
                        policy.entries
                    );
                    counts[match want {
                        Verdict::Allow => 0,
                        Verdict::Deny => 1,
                        Verdict::Denied => 2,
                    }] += 1;
                }
            }
        }
    }
    Ok(counts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn lookup_of_compiled_equals_evaluate(s in scenario()) {
        check(&s)?;
    }
}

/// The generator is not degenerate: over a fixed sample, all three verdicts
/// are common, so the property above really compares something.
#[test]
fn scenarios_exercise_every_verdict() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut totals = [0usize; 3];
    for _ in 0..100 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let counts = check(&s).unwrap();
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
    }
    let sum: usize = totals.iter().sum();
    println!("allow, deny, denied: {totals:?}");
    for (name, t) in ["allow", "deny", "denied"].iter().zip(totals) {
        assert!(t * 20 > sum, "{name}: {t} of {sum} flows");
    }
}
