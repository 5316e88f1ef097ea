//! Cilium / Kubernetes NetworkPolicy semantics, checked on both
//! [`evaluate`] and [`lookup`] of the compiled entries.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use ipnet::Ipv4Net;
use tollway_policy::{
    Action, CidrIdentities, Direction, EndpointSelector, Entity, LabelSelector, NamedPort, Peer,
    PolicyContext, PolicyError, PortSpec, Proto, Rule, TW_ID_ANY, TW_ID_HOST, TW_ID_KUBE_APISERVER,
    TW_ID_REMOTE_NODE, TW_ID_WORLD, TW_POLICY_ENTRIES_MAX, Verdict, compile, compile_each,
    compile_endpoint, evaluate, pod_security_labels, policy_cidrs, reserved_identities,
};

const WEB: u32 = 256;
const DB: u32 = 257;
const API: u32 = 258;
const UNKNOWN: u32 = 4242;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn labels(ns: &str, app: &str) -> tollway_policy::LabelSet {
    pod_security_labels(
        ns,
        &[("app".to_string(), app.to_string())].into(),
        &[("team".to_string(), ns.to_string())].into(),
        "default",
    )
}

struct World {
    ctx: PolicyContext,
    cidrs: CidrIdentities,
}

/// web and db in namespace `shop`, api in `other`; CIDR identities for
/// 10.0.0.0/8, 10.1.0.0/16, 10.1.2.0/24, 192.168.0.0/16.
fn world() -> World {
    let mut ctx = PolicyContext {
        identities: reserved_identities(),
        ..PolicyContext::default()
    };
    ctx.identities.insert(WEB, labels("shop", "web"));
    ctx.identities.insert(DB, labels("shop", "db"));
    ctx.identities.insert(API, labels("other", "api"));
    let mut cidrs = CidrIdentities::new();
    for c in ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.168.0.0/16"] {
        cidrs.allocate(net(c)).unwrap();
    }
    ctx.identities.extend(cidrs.identities());
    ctx.addresses.insert(
        WEB,
        vec!["10.2.0.1".parse().unwrap(), "10.2.0.2".parse().unwrap()],
    );
    ctx.addresses.insert(DB, vec!["10.1.5.5".parse().unwrap()]);
    ctx.addresses.insert(
        API,
        vec!["10.2.0.3".parse().unwrap(), "172.16.0.1".parse().unwrap()],
    );
    let np = |proto, name: &str, port| NamedPort {
        proto,
        name: name.to_string(),
        port,
    };
    ctx.named_ports
        .insert(WEB, vec![np(Proto::Tcp, "http", 8080)]);
    ctx.named_ports.insert(
        DB,
        vec![np(Proto::Tcp, "http", 9090), np(Proto::Udp, "dns", 53)],
    );
    World { ctx, cidrs }
}

fn app(a: &str) -> EndpointSelector {
    sel(&[("k8s:app", a)])
}

fn ids(w: &World, c: &str) -> u32 {
    w.cidrs.get(net(c)).unwrap()
}

#[test]
fn no_rules_allow_everything() {
    let w = world();
    for flow in [
        ingress(DB, TCP, 80),
        egress(TW_ID_WORLD, UDP, 53),
        ingress(UNKNOWN, ICMP, 0),
    ] {
        assert_eq!(verdict(&[], &w.ctx, WEB, flow), Verdict::Allow);
    }
    let p = compile_endpoint(&[], &w.ctx, WEB).unwrap();
    assert!(p.entries.is_empty() && !p.ingress_default_deny && !p.egress_default_deny);
}

#[test]
fn default_deny_applies_to_selected_direction_only() {
    let w = world();
    let mut r = rule(
        1,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    r.ports = vec![tcp(5432)];
    let rules = [r];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 5432)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 80)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, UDP, 5432)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 5432)),
        Verdict::Denied
    );
    // Egress of web and everything of db are not policed.
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(API, TCP, 1)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, DB, ingress(API, TCP, 1)),
        Verdict::Allow
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert!(p.ingress_default_deny && !p.egress_default_deny);
    assert_eq!(p.endpoint_flags(), 0x01);
    assert_eq!(p.entries.len(), 1);
    let e = &p.entries[0];
    assert_eq!(
        (e.identity, e.proto, e.port, e.prefix_len, e.deny),
        (DB, TCP, 5432, 16, false)
    );
    assert_eq!(e.key_prefixlen(), 64);
}

#[test]
fn policy_types_without_rules_deny_everything() {
    // NetworkPolicy `policyTypes: [Ingress, Egress]` with no rules.
    let w = world();
    let rules = [
        rule(1, app("web"), Direction::Ingress, Some(vec![])),
        rule(2, app("web"), Direction::Egress, Some(vec![])),
    ];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 80)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(TW_ID_WORLD, UDP, 53)),
        Verdict::Denied
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert!(p.entries.is_empty());
    assert_eq!(p.endpoint_flags(), 0x03);
}

#[test]
fn without_default_deny_unmatched_traffic_passes() {
    // CNP with enableDefaultDeny.ingress = false.
    let w = world();
    let mut r = rule(
        1,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    r.default_deny = false;
    r.ports = vec![tcp(5432)];
    let mut deny = rule(
        2,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("api"))]),
    );
    deny.action = Action::Deny;
    deny.default_deny = false;
    let rules = [r, deny];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 80)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 5432)),
        Verdict::Deny
    );
    assert!(
        !compile_endpoint(&rules, &w.ctx, WEB)
            .unwrap()
            .ingress_default_deny
    );
}

#[test]
fn deny_wins_over_allow() {
    let w = world();
    let allow = rule(
        1,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Entity(Entity::Cluster)]),
    );
    let mut deny_ssh = rule(
        2,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    deny_ssh.action = Action::Deny;
    deny_ssh.ports = vec![tcp(22)];
    // A deny for every peer must beat exact allows.
    let mut deny_any = rule(3, app("web"), Direction::Ingress, None);
    deny_any.action = Action::Deny;
    deny_any.ports = vec![tcp(23)];
    let rules = [allow, deny_ssh, deny_any];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 22)),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 80)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 22)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 23)),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(TW_ID_HOST, TCP, 23)),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(TW_ID_WORLD, TCP, 80)),
        Verdict::Denied
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    let db: Vec<_> = p.entries.iter().filter(|e| e.identity == DB).collect();
    // Every protocol allowed (prefix 40), TCP 22 denied under it.
    assert_eq!(db.len(), 2, "{db:?}");
    assert!(db.iter().any(|e| e.proto == 0 && !e.deny && e.rule_id == 1));
    assert!(
        db.iter()
            .any(|e| e.proto == TCP && e.port == 22 && e.deny && e.rule_id == 2)
    );
    let any: Vec<_> = p
        .entries
        .iter()
        .filter(|e| e.identity == TW_ID_ANY)
        .collect();
    assert_eq!(any.len(), 1);
    assert!(any[0].deny && any[0].port == 23);
}

#[test]
fn deny_ranges_are_subtracted_before_prefixes() {
    let w = world();
    let mut allow = rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    allow.ports = vec![PortSpec::Number {
        proto: Proto::Tcp,
        port: 1000,
        end_port: Some(2000),
    }];
    let mut deny = allow.clone();
    deny.id = 2;
    deny.action = Action::Deny;
    deny.ports = vec![PortSpec::Number {
        proto: Proto::Tcp,
        port: 1500,
        end_port: Some(1599),
    }];
    let rules = [allow, deny];
    for (port, want) in [
        (999, Verdict::Denied),
        (1000, Verdict::Allow),
        (1499, Verdict::Allow),
        (1500, Verdict::Deny),
        (1599, Verdict::Deny),
        (1600, Verdict::Allow),
        (2000, Verdict::Allow),
        (2001, Verdict::Denied),
    ] {
        assert_eq!(
            verdict(&rules, &w.ctx, WEB, egress(DB, TCP, port)),
            want,
            "port {port}"
        );
    }
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, UDP, 1000)),
        Verdict::Denied
    );
}

#[test]
fn deny_every_protocol_leaves_only_the_deny() {
    let w = world();
    let mut allow = rule(
        1,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    allow.ports = vec![tcp(80), tcp(443)];
    let mut deny = rule(
        2,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    deny.action = Action::Deny;
    let rules = [allow, deny];
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert!(p.entries[0].deny && p.entries[0].proto == 0 && p.entries[0].key_prefixlen() == 40);
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 80)),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, ICMP, 0)),
        Verdict::Deny
    );
}

#[test]
fn no_peers_means_every_peer() {
    let w = world();
    let mut r = rule(1, app("web"), Direction::Ingress, None);
    r.ports = vec![tcp(80)];
    let rules = [r];
    for peer in [
        DB,
        API,
        TW_ID_WORLD,
        TW_ID_HOST,
        UNKNOWN,
        ids(&w, "10.0.0.0/8"),
    ] {
        assert_eq!(
            verdict(&rules, &w.ctx, WEB, ingress(peer, TCP, 80)),
            Verdict::Allow
        );
        assert_eq!(
            verdict(&rules, &w.ctx, WEB, ingress(peer, TCP, 81)),
            Verdict::Denied
        );
    }
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].identity, TW_ID_ANY);
}

#[test]
fn no_ports_means_every_protocol() {
    let w = world();
    let every = rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![Peer::Endpoints(app("db"))]),
    );
    assert_eq!(
        verdict(
            std::slice::from_ref(&every),
            &w.ctx,
            WEB,
            egress(DB, ICMP, 0)
        ),
        Verdict::Allow
    );
    assert_eq!(
        verdict(
            std::slice::from_ref(&every),
            &w.ctx,
            WEB,
            egress(DB, UDP, 9)
        ),
        Verdict::Allow
    );
    let mut any_spec = every.clone();
    any_spec.ports = vec![PortSpec::Any, tcp(80)];
    assert_eq!(
        verdict(&[any_spec], &w.ctx, WEB, egress(DB, ICMP, 0)),
        Verdict::Allow
    );
    // TCP+UDP on every port is not every protocol.
    let mut tcp_udp = every;
    tcp_udp.ports = vec![PortSpec::Number {
        proto: Proto::Any,
        port: 0,
        end_port: None,
    }];
    let rules = [tcp_udp];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, TCP, 65535)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, UDP, 1)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, ICMP, 0)),
        Verdict::Denied
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert_eq!(p.entries.len(), 2);
    assert!(
        p.entries
            .iter()
            .all(|e| e.prefix_len == 0 && e.key_prefixlen() == 48)
    );
}

#[test]
fn proto_any_port_is_tcp_and_udp() {
    let w = world();
    let mut r = rule(1, app("web"), Direction::Egress, None);
    r.ports = vec![PortSpec::Number {
        proto: Proto::Any,
        port: 53,
        end_port: None,
    }];
    let rules = [r];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, TCP, 53)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, UDP, 53)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, 132, 53)),
        Verdict::Denied
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    let protos: Vec<u8> = p.entries.iter().map(|e| e.proto).collect();
    assert_eq!(protos, vec![TCP, UDP]);
}

#[test]
fn entities() {
    let w = world();
    let c8 = ids(&w, "10.0.0.0/8");
    let check = |entity, allowed: &[u32], denied: &[u32]| {
        let rules = [rule(
            1,
            app("web"),
            Direction::Ingress,
            Some(vec![Peer::Entity(entity)]),
        )];
        for &p in allowed {
            assert_eq!(
                verdict(&rules, &w.ctx, WEB, ingress(p, TCP, 80)),
                Verdict::Allow,
                "{entity:?} {p}"
            );
        }
        for &p in denied {
            assert_eq!(
                verdict(&rules, &w.ctx, WEB, ingress(p, TCP, 80)),
                Verdict::Denied,
                "{entity:?} {p}"
            );
        }
    };
    check(
        Entity::World,
        &[TW_ID_WORLD, c8],
        &[WEB, DB, TW_ID_HOST, TW_ID_REMOTE_NODE, UNKNOWN],
    );
    check(
        Entity::Cluster,
        &[
            WEB,
            DB,
            API,
            TW_ID_HOST,
            TW_ID_REMOTE_NODE,
            3,
            4,
            5,
            TW_ID_KUBE_APISERVER,
        ],
        &[TW_ID_WORLD, c8, UNKNOWN],
    );
    check(
        Entity::Host,
        &[TW_ID_HOST],
        &[TW_ID_REMOTE_NODE, WEB, TW_ID_WORLD],
    );
    check(Entity::RemoteNode, &[TW_ID_REMOTE_NODE], &[TW_ID_HOST]);
    check(
        Entity::KubeApiserver,
        &[TW_ID_KUBE_APISERVER],
        &[TW_ID_HOST],
    );
    check(Entity::Health, &[4], &[5]);
    check(Entity::Init, &[5], &[4]);
    check(Entity::Unmanaged, &[3], &[4]);
    check(
        Entity::All,
        &[TW_ID_WORLD, c8, WEB, TW_ID_HOST, UNKNOWN],
        &[],
    );
    let rules = [rule(
        1,
        app("web"),
        Direction::Ingress,
        Some(vec![Peer::Entity(Entity::All)]),
    )];
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].identity, TW_ID_ANY);
}

#[test]
fn cidr_with_except() {
    let w = world();
    let peer = Peer::Cidr {
        cidr: net("10.0.0.0/8"),
        except: vec![net("10.1.0.0/16")],
        cluster: true,
    };
    let rules = [rule(1, app("web"), Direction::Egress, Some(vec![peer]))];
    let v = |p| verdict(&rules, &w.ctx, WEB, egress(p, TCP, 443));
    assert_eq!(v(ids(&w, "10.0.0.0/8")), Verdict::Allow);
    assert_eq!(
        v(ids(&w, "10.1.0.0/16")),
        Verdict::Denied,
        "the except block"
    );
    assert_eq!(
        v(ids(&w, "10.1.2.0/24")),
        Verdict::Denied,
        "inside the except block"
    );
    assert_eq!(v(ids(&w, "192.168.0.0/16")), Verdict::Denied);
    assert_eq!(v(TW_ID_WORLD), Verdict::Denied);
    // Pods: web's addresses are all in 10.0.0.0/8 outside the except.
    assert_eq!(v(WEB), Verdict::Allow);
    // db's only address is in the except block.
    assert_eq!(v(DB), Verdict::Denied);
    // api has one address inside and one outside: identity granularity.
    assert_eq!(v(API), Verdict::Denied);
    // Without `cluster` (Cilium's CIDR rules) pods are never matched by
    // address, only CIDR identities are.
    let cilium = [rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![Peer::Cidr {
            cidr: net("10.0.0.0/8"),
            except: vec![net("10.1.0.0/16")],
            cluster: false,
        }]),
    )];
    let vc = |p| verdict(&cilium, &w.ctx, WEB, egress(p, TCP, 443));
    assert_eq!(vc(WEB), Verdict::Denied);
    assert_eq!(vc(ids(&w, "10.0.0.0/8")), Verdict::Allow);
    assert_eq!(
        policy_cidrs(&rules),
        BTreeSet::from([net("10.0.0.0/8"), net("10.1.0.0/16")])
    );

    // 0.0.0.0/0 covers world and every CIDR identity.
    let all = [rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![Peer::Cidr {
            cidr: net("0.0.0.0/0"),
            except: vec![],
            cluster: true,
        }]),
    )];
    for p in [
        TW_ID_WORLD,
        ids(&w, "192.168.0.0/16"),
        ids(&w, "10.1.2.0/24"),
        WEB,
        API,
    ] {
        assert_eq!(
            verdict(&all, &w.ctx, WEB, egress(p, TCP, 1)),
            Verdict::Allow,
            "{p}"
        );
    }
    assert_eq!(
        verdict(&all, &w.ctx, WEB, egress(TW_ID_HOST, TCP, 1)),
        Verdict::Denied
    );
}

#[test]
fn named_ports_ingress_on_subject_egress_on_peer() {
    let w = world();
    let named = |proto| PortSpec::Named {
        proto,
        name: "http".to_string(),
    };
    // Ingress to web on "http": web's own 8080.
    let mut r = rule(1, app("web"), Direction::Ingress, None);
    r.ports = vec![named(Proto::Any)];
    let rules = [r];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 8080)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 9090)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, UDP, 8080)),
        Verdict::Denied
    );
    // Egress from web on "http": the peer's port.
    let mut r = rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![Peer::Entity(Entity::Cluster)]),
    );
    r.ports = vec![named(Proto::Tcp)];
    let rules = [r];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, TCP, 9090)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, TCP, 8080)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(WEB, TCP, 8080)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(API, TCP, 8080)),
        Verdict::Denied
    );
    // Egress to every peer: expanded to the identities having the name.
    let mut r = rule(1, app("web"), Direction::Egress, None);
    r.ports = vec![PortSpec::Named {
        proto: Proto::Any,
        name: "dns".to_string(),
    }];
    let rules = [r];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, UDP, 53)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(DB, TCP, 53)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, egress(TW_ID_WORLD, UDP, 53)),
        Verdict::Denied
    );
    let p = compile_endpoint(&rules, &w.ctx, WEB).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!((p.entries[0].identity, p.entries[0].proto), (DB, UDP));
    // A protocol restriction that excludes the named port, and an unknown
    // name, match nothing.
    for spec in [
        PortSpec::Named {
            proto: Proto::Tcp,
            name: "dns".to_string(),
        },
        PortSpec::Named {
            proto: Proto::Any,
            name: "nope".to_string(),
        },
    ] {
        let mut r = rule(1, app("web"), Direction::Egress, None);
        r.ports = vec![spec];
        let rules = [r];
        assert_eq!(
            verdict(&rules, &w.ctx, WEB, egress(DB, UDP, 53)),
            Verdict::Denied
        );
        assert!(
            compile_endpoint(&rules, &w.ctx, WEB)
                .unwrap()
                .entries
                .is_empty()
        );
    }
}

#[test]
fn cilium_namespace_translation() {
    // A CNP in `shop`: endpointSelector app=web, fromEndpoints {} → only
    // pods of `shop`; a NetworkPolicy namespaceSelector team=other.
    let w = world();
    let subject = app("web").require_namespace("shop");
    let same_ns = rule(
        1,
        subject.clone(),
        Direction::Ingress,
        Some(vec![Peer::Endpoints(
            EndpointSelector::all().in_namespace("shop"),
        )]),
    );
    let rules = [same_ns];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 1)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 1)),
        Verdict::Denied
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(TW_ID_HOST, TCP, 1)),
        Verdict::Denied
    );
    let ns_sel = LabelSelector {
        match_labels: BTreeMap::from([("team".to_string(), "other".to_string())]),
        match_expressions: vec![],
    };
    let rules = [rule(
        1,
        subject,
        Direction::Ingress,
        Some(vec![Peer::Endpoints(
            EndpointSelector::for_namespace_selector(&ns_sel),
        )]),
    )];
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(API, TCP, 1)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &w.ctx, WEB, ingress(DB, TCP, 1)),
        Verdict::Denied
    );
}

#[test]
fn rule_ids_follow_the_first_rule() {
    let w = world();
    let mut a = rule(7, app("web"), Direction::Ingress, None);
    a.ports = vec![PortSpec::Number {
        proto: Proto::Tcp,
        port: 10,
        end_port: Some(20),
    }];
    let mut b = rule(8, app("web"), Direction::Ingress, None);
    b.ports = vec![PortSpec::Number {
        proto: Proto::Tcp,
        port: 16,
        end_port: Some(31),
    }];
    let p = compile_endpoint(&[a, b], &w.ctx, WEB).unwrap();
    for e in &p.entries {
        let want = if e.port < 21 { 7 } else { 8 };
        assert_eq!(e.rule_id, want, "{e:?}");
    }
    // [10,20] → 10/15, 12/14, 16/14, 20/16; [21,31] → 21/16, 22/15, 24/13.
    assert_eq!(p.entries.len(), 7);
}

#[test]
fn errors() {
    let w = world();
    let mut r = rule(9, app("web"), Direction::Ingress, None);
    r.ports = vec![PortSpec::Number {
        proto: Proto::Tcp,
        port: 100,
        end_port: Some(99),
    }];
    assert_eq!(
        compile_endpoint(&[r], &w.ctx, WEB),
        Err(PolicyError::InvalidPortRange {
            rule_id: 9,
            origin: "test rule 9".to_string(),
            port: 100,
            end_port: 99,
        })
    );
    // One entry per odd port.
    let mut r = rule(1, app("web"), Direction::Ingress, None);
    r.ports = (0..=TW_POLICY_ENTRIES_MAX as u16)
        .map(|i| tcp(2 * i + 1))
        .collect();
    assert!(matches!(
        compile_endpoint(&[r.clone()], &w.ctx, WEB),
        Err(PolicyError::TooManyEntries { identity: WEB, needed, max: TW_POLICY_ENTRIES_MAX })
            if needed == TW_POLICY_ENTRIES_MAX + 1
    ));
    // compile_each: the overflowing identity fails alone; compile as a whole.
    let each = compile_each(&[r.clone()], &w.ctx, &BTreeSet::from([WEB, DB])).unwrap();
    assert!(matches!(
        each[&WEB],
        Err(PolicyError::TooManyEntries { identity: WEB, .. })
    ));
    assert_eq!(each[&DB], Ok(Default::default()));
    assert!(compile(&[r.clone()], &w.ctx, &BTreeSet::from([WEB, DB])).is_err());
    r.ports.pop();
    assert_eq!(
        compile_endpoint(&[r], &w.ctx, WEB).unwrap().entries.len(),
        TW_POLICY_ENTRIES_MAX
    );
}

#[test]
fn compile_many_and_unknown_subjects() {
    let w = world();
    let rules = [rule(
        1,
        EndpointSelector::all().in_any_namespace(),
        Direction::Ingress,
        Some(vec![]),
    )];
    let out = compile(&rules, &w.ctx, &BTreeSet::from([WEB, DB, UNKNOWN])).unwrap();
    assert!(out[&WEB].ingress_default_deny && out[&DB].ingress_default_deny);
    assert_eq!(out[&UNKNOWN], Default::default());
    assert_eq!(
        evaluate(&rules, &w.ctx, UNKNOWN, ingress(WEB, TCP, 1)),
        Verdict::Allow
    );
}

#[test]
fn rules_serde_roundtrip() {
    let mut r: Rule = rule(
        1,
        app("web"),
        Direction::Egress,
        Some(vec![
            Peer::Cidr {
                cidr: net("10.0.0.0/8"),
                except: vec![net("10.1.0.0/16")],
                cluster: false,
            },
            Peer::Entity(Entity::KubeApiserver),
            Peer::Endpoints(app("db")),
        ]),
    );
    r.ports = vec![
        PortSpec::Any,
        tcp(80),
        PortSpec::Named {
            proto: Proto::Udp,
            name: "dns".to_string(),
        },
    ];
    let json = serde_json::to_string(&r).unwrap();
    let back: Rule = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}
