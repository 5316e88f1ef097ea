//! Translation checked by its effect: manifests are decoded as `tollway
//! apply` would, translated, and evaluated against a small cluster.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use tollway_api::{Object, decode_all, parse_documents};

use super::*;
use crate::abi::{IPPROTO_TCP, IPPROTO_UDP, TW_ID_HOST, TW_ID_REMOTE_NODE, TW_ID_WORLD};
use crate::evaluate::{Flow, Verdict, evaluate};
use crate::identity::{CidrIdentities, reserved_identities};
use crate::labels::{LabelSet, pod_security_labels};
use crate::model::{NamedPort, PolicyContext, policy_cidrs};

const WEB: u32 = 1000;
const CHECKOUT: u32 = 1001;
const BATCH: u32 = 1002;
const OTHER_NS: u32 = 1003;

fn labels(ns: &str, pairs: &[(&str, &str)], ns_labels: &[(&str, &str)]) -> LabelSet {
    let m = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    pod_security_labels(ns, &m(pairs), &m(ns_labels), "default")
}

/// Three pods in `payments` (labelled `team: pay`) and one in `shop`.
fn cluster(rules: &[Rule]) -> PolicyContext {
    let mut ctx = PolicyContext {
        identities: reserved_identities(),
        ..Default::default()
    };
    let pay = [("team", "pay")];
    ctx.identities
        .insert(WEB, labels("payments", &[("app", "web-frontend")], &pay));
    ctx.identities.insert(
        CHECKOUT,
        labels("payments", &[("app", "checkout-api")], &pay),
    );
    ctx.identities.insert(
        BATCH,
        labels("payments", &[("app", "batch-reporter")], &pay),
    );
    ctx.identities
        .insert(OTHER_NS, labels("shop", &[("app", "web-frontend")], &[]));
    ctx.addresses.insert(WEB, vec![Ipv4Addr::new(10, 0, 1, 5)]);
    ctx.addresses
        .insert(CHECKOUT, vec![Ipv4Addr::new(10, 0, 1, 6)]);
    ctx.addresses
        .insert(BATCH, vec![Ipv4Addr::new(10, 0, 2, 7)]);
    ctx.addresses
        .insert(OTHER_NS, vec![Ipv4Addr::new(10, 0, 2, 8)]);
    ctx.named_ports.insert(
        CHECKOUT,
        vec![NamedPort {
            proto: Proto::Tcp,
            name: "http".into(),
            port: 8080,
        }],
    );
    let mut cidrs = CidrIdentities::new();
    for c in policy_cidrs(rules) {
        cidrs.allocate(c).expect("cidr identity");
    }
    ctx.identities.extend(cidrs.identities());
    ctx
}

fn rules_of(yaml: &str) -> Vec<Rule> {
    let docs = parse_documents("test.yaml", yaml).expect("parse");
    let decoded = decode_all(&docs).expect("valid manifest");
    let mut nps = Vec::new();
    let mut cnps = Vec::new();
    for d in decoded {
        match d.object {
            Object::NetworkPolicy(np) => nps.push(np),
            Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
                cnps.push(p)
            }
            other => panic!("unexpected {:?}", other.kind()),
        }
    }
    let t = translate_all(&nps, &cnps);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    t.rules
}

fn tcp_in(peer: u32, port: u16) -> Flow {
    Flow {
        peer,
        direction: Direction::Ingress,
        proto: IPPROTO_TCP,
        port,
    }
}

fn tcp_out(peer: u32, port: u16) -> Flow {
    Flow {
        direction: Direction::Egress,
        ..tcp_in(peer, port)
    }
}

fn verdict(rules: &[Rule], subject: u32, flow: Flow) -> Verdict {
    evaluate(rules, &cluster(rules), subject, flow)
}

#[test]
fn seed_cilium_policy_allows_only_web_frontend_on_8080() {
    let rules = rules_of(include_str!(
        "../../../../examples/seed/checkout-api-l7-policy.yaml"
    ));
    assert_eq!(verdict(&rules, CHECKOUT, tcp_in(WEB, 8080)), Verdict::Allow);
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(WEB, 8081)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(BATCH, 8080)),
        Verdict::Denied
    );
    // The implicit namespace: web-frontend of another namespace is not it.
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(OTHER_NS, 8080)),
        Verdict::Denied
    );
    // Only ingress of checkout-api is policed.
    assert_eq!(verdict(&rules, CHECKOUT, tcp_out(WEB, 80)), Verdict::Allow);
    assert_eq!(verdict(&rules, WEB, tcp_in(BATCH, 80)), Verdict::Allow);
    // Ids are assigned from 1.
    assert!(rules.iter().all(|r| r.id >= 1));
}

#[test]
fn network_policy_default_deny_and_namespace_scoping() {
    let rules = rules_of(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: payments}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
",
    );
    for id in [WEB, CHECKOUT, BATCH] {
        assert_eq!(verdict(&rules, id, tcp_in(WEB, 80)), Verdict::Denied);
        assert_eq!(verdict(&rules, id, tcp_out(WEB, 80)), Verdict::Denied);
    }
    // Another namespace is untouched.
    assert_eq!(verdict(&rules, OTHER_NS, tcp_in(WEB, 80)), Verdict::Allow);
}

#[test]
fn network_policy_peers_ports_and_named_ports() {
    let rules = rules_of(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: checkout, namespace: payments}
spec:
  podSelector: {matchLabels: {app: checkout-api}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web-frontend}}
    ports:
    - port: http
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: web-frontend}}
    ports:
    - {protocol: UDP, port: 5000, endPort: 5010}
  - from:
    - ipBlock: {cidr: 10.0.2.0/24, except: [10.0.2.8/32]}
",
    );
    let c = CHECKOUT;
    // Named port `http` resolves on the subject: 8080.
    assert_eq!(verdict(&rules, c, tcp_in(WEB, 8080)), Verdict::Allow);
    assert_eq!(verdict(&rules, c, tcp_in(WEB, 80)), Verdict::Denied);
    // A podSelector alone is this namespace only.
    assert_eq!(verdict(&rules, c, tcp_in(OTHER_NS, 8080)), Verdict::Denied);
    // With a namespaceSelector, any namespace; the range is inclusive.
    let udp = |peer, port| Flow {
        proto: IPPROTO_UDP,
        ..tcp_in(peer, port)
    };
    assert_eq!(verdict(&rules, c, udp(OTHER_NS, 5010)), Verdict::Allow);
    assert_eq!(verdict(&rules, c, udp(OTHER_NS, 5011)), Verdict::Denied);
    assert_eq!(verdict(&rules, c, tcp_in(OTHER_NS, 5005)), Verdict::Denied);
    // ipBlock: batch-reporter (10.0.2.7) is inside, 10.0.2.8 is excepted.
    assert_eq!(verdict(&rules, c, tcp_in(BATCH, 9)), Verdict::Allow);
    // Egress is not isolated by an ingress-only policy.
    assert_eq!(verdict(&rules, c, tcp_out(BATCH, 9)), Verdict::Allow);
    // Not the subject.
    assert_eq!(verdict(&rules, WEB, tcp_in(BATCH, 9)), Verdict::Allow);
}

#[test]
fn network_policy_empty_rule_allows_everything_and_namespace_selector_labels() {
    let rules = rules_of(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: payments}
spec:
  podSelector: {matchLabels: {app: web-frontend}}
  ingress:
  - {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-team, namespace: payments}
spec:
  podSelector: {matchLabels: {app: batch-reporter}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {team: pay}}
",
    );
    assert_eq!(verdict(&rules, WEB, tcp_in(TW_ID_WORLD, 1)), Verdict::Allow);
    assert_eq!(verdict(&rules, BATCH, tcp_out(CHECKOUT, 1)), Verdict::Allow);
    assert_eq!(
        verdict(&rules, BATCH, tcp_out(OTHER_NS, 1)),
        Verdict::Denied
    );
    // A namespace selector selects pods, never the world.
    assert_eq!(
        verdict(&rules, BATCH, tcp_out(TW_ID_WORLD, 1)),
        Verdict::Denied
    );
}

#[test]
fn cilium_deny_wins_and_entities() {
    let rules = rules_of(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: checkout-api}}
  ingress:
  - fromEntities: [all]
  ingressDeny:
  - fromEndpoints:
    - matchLabels: {app: batch-reporter}
  egress:
  - toEntities: [cluster]
",
    );
    let c = CHECKOUT;
    assert_eq!(verdict(&rules, c, tcp_in(WEB, 80)), Verdict::Allow);
    assert_eq!(verdict(&rules, c, tcp_in(TW_ID_WORLD, 80)), Verdict::Allow);
    assert_eq!(verdict(&rules, c, tcp_in(BATCH, 80)), Verdict::Deny);
    assert_eq!(verdict(&rules, c, tcp_out(OTHER_NS, 80)), Verdict::Allow);
    assert_eq!(verdict(&rules, c, tcp_out(TW_ID_HOST, 80)), Verdict::Allow);
    assert_eq!(
        verdict(&rules, c, tcp_out(TW_ID_REMOTE_NODE, 80)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, c, tcp_out(TW_ID_WORLD, 80)),
        Verdict::Denied
    );
}

#[test]
fn cilium_ports_only_rule_and_empty_rule() {
    let rules = rules_of(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: checkout-api}}
  ingress:
  - toPorts:
    - ports: [{port: '8080', protocol: TCP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: web-frontend}}
  ingress:
  - {}
",
    );
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(TW_ID_WORLD, 8080)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(OTHER_NS, 8081)),
        Verdict::Denied
    );
    // `ingress: [{}]` makes the endpoint default-deny and allows nothing.
    assert_eq!(verdict(&rules, WEB, tcp_in(CHECKOUT, 80)), Verdict::Denied);
}

#[test]
fn cilium_cidr_set_except_and_default_deny_off() {
    let rules = rules_of(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: web-frontend}}
  enableDefaultDeny: {egress: false}
  egressDeny:
  - toCIDRSet:
    - cidr: 192.0.2.0/24
      except: [192.0.2.128/25]
",
    );
    let ctx = cluster(&rules);
    let id_of = |c: &str| {
        let net: Ipv4Net = c.parse().unwrap();
        *ctx.identities
            .iter()
            .find(|(_, l)| crate::identity::identity_cidr(l) == Some(net))
            .expect("cidr identity")
            .0
    };
    let low = id_of("192.0.2.0/24");
    let high = id_of("192.0.2.128/25");
    assert_eq!(evaluate(&rules, &ctx, WEB, tcp_out(low, 1)), Verdict::Deny);
    assert_eq!(
        evaluate(&rules, &ctx, WEB, tcp_out(high, 1)),
        Verdict::Allow
    );
    // Cilium's CIDR rules never select pods by address: batch-reporter
    // (10.0.2.7) is not in 192.0.2.0/24 anyway, but checkout-api's egress
    // rule below allows 10.0.0.0/8 and still does not reach it.
    let pods = rules_of(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: c, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: checkout-api}}
  egress:
  - toCIDR: [10.0.0.0/8]
",
    );
    assert_eq!(verdict(&pods, CHECKOUT, tcp_out(BATCH, 1)), Verdict::Denied);
    // Default deny is off: everything else still flows.
    assert_eq!(
        evaluate(&rules, &ctx, WEB, tcp_out(TW_ID_WORLD, 1)),
        Verdict::Allow
    );
}

#[test]
fn clusterwide_peers_are_any_pod_and_subject_any_namespace() {
    let rules = rules_of(
        "apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: web-frontend}}
  ingress:
  - fromEndpoints: [{}]
",
    );
    for subject in [WEB, OTHER_NS] {
        assert_eq!(verdict(&rules, subject, tcp_in(BATCH, 1)), Verdict::Allow);
        assert_eq!(
            verdict(&rules, subject, tcp_in(TW_ID_WORLD, 1)),
            Verdict::Denied
        );
    }
    assert_eq!(
        verdict(&rules, CHECKOUT, tcp_in(TW_ID_WORLD, 1)),
        Verdict::Allow
    );
}

#[test]
fn errors_name_the_policy_and_field() {
    let docs = parse_documents(
        "test.yaml",
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: payments}
spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: ['10.0.0.0/8']
",
    )
    .expect("parse");
    let mut decoded = decode_all(&docs).expect("valid manifest");
    let Object::CiliumNetworkPolicy(mut p) = decoded.remove(0).object else {
        panic!("not a CNP");
    };
    // What validation would have refused, had it been bypassed.
    p.spec.as_mut().expect("spec").ingress[0].from_cidr = vec!["10.0.0.300/8".into()];
    let t = translate_all([], [&p]);
    assert!(t.rules.is_empty());
    assert_eq!(t.errors.len(), 1);
    assert_eq!(t.errors[0].0, "payments/p");
    assert_eq!(
        t.errors[0].1.to_string(),
        "payments/p spec.ingress[0]: cidr[0]: \"10.0.0.300/8\" is not an IPv4 CIDR"
    );
}
