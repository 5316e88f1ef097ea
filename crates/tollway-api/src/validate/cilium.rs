//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy: rules and peers,
//! as Cilium's `Rule.Sanitize` checks them, plus what Tollway does not
//! implement yet (rejected by field). Ports and L7 rules: [`super::cilium_ports`].

use serde_json::Value;

use super::cilium_ports::{Dir, validate_port_rule};
use super::{Errs, validate_selector_keyed};
use crate::cidr::Ipv4Cidr;
use crate::cilium::{
    CidrRule, CiliumEgressRule, CiliumIngressRule, CiliumNetworkPolicy, CiliumRule,
    EndpointSelector, Entity, LABEL_SOURCES, PortRule,
};
use crate::names;

/// The warning on every allow rule whose ports carry L7 rules.
pub(crate) const L7_NOT_ENFORCED: &str =
    "L7 rules are not enforced yet: the L3/L4 part of this rule is";

/// The warning on `icmps`.
pub(crate) const ICMP_NOT_ENFORCED: &str =
    "ICMP rules are not enforced yet: the rule is accepted, its ICMP types are ignored";

pub(crate) fn validate(p: &CiliumNetworkPolicy, e: &mut Errs) {
    if p.spec.is_none() && p.specs.is_empty() {
        e.add(
            "spec",
            format!(
                "required: a {} needs `spec` or `specs` (at least one rule)",
                p.kind
            ),
        );
    }
    for (base, rule) in p.rules() {
        validate_rule(rule, &base, e);
    }
}

/// L7 rules and ICMP rules, accepted but not enforced.
pub(crate) fn warnings(p: &CiliumNetworkPolicy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut port_rules = |path: String, ports: &[PortRule], icmps: &[Value], deny: bool| {
        if !icmps.is_empty() {
            out.push((format!("{path}.icmps"), ICMP_NOT_ENFORCED.to_string()));
        }
        for (j, pr) in ports.iter().enumerate() {
            if !deny && pr.rules.as_ref().is_some_and(|r| !r.is_empty()) {
                out.push((
                    format!("{path}.toPorts[{j}].rules"),
                    L7_NOT_ENFORCED.to_string(),
                ));
            }
        }
    };
    for (base, rule) in p.rules() {
        for (name, list, deny) in [
            ("ingress", &rule.ingress, false),
            ("ingressDeny", &rule.ingress_deny, true),
        ] {
            for (i, r) in list.iter().enumerate() {
                port_rules(format!("{base}.{name}[{i}]"), &r.to_ports, &r.icmps, deny);
            }
        }
        for (name, list, deny) in [
            ("egress", &rule.egress, false),
            ("egressDeny", &rule.egress_deny, true),
        ] {
            for (i, r) in list.iter().enumerate() {
                port_rules(format!("{base}.{name}[{i}]"), &r.to_ports, &r.icmps, deny);
            }
        }
    }
    out
}

fn validate_rule(r: &CiliumRule, base: &str, e: &mut Errs) {
    if r.node_selector.is_some() {
        e.add(
            format!("{base}.nodeSelector"),
            "nodeSelector (host policy) is not supported yet",
        );
    } else if r.endpoint_selector.is_none() {
        e.add(
            format!("{base}.endpointSelector"),
            "required (`endpointSelector: {}` selects every endpoint)",
        );
    }
    if let Some(s) = &r.endpoint_selector {
        endpoint_selector(s, &format!("{base}.endpointSelector"), e);
    }
    for (name, list, deny) in [
        ("ingress", &r.ingress, false),
        ("ingressDeny", &r.ingress_deny, true),
    ] {
        for (i, rule) in list.iter().enumerate() {
            ingress(rule, &format!("{base}.{name}[{i}]"), deny, e);
        }
    }
    for (name, list, deny) in [
        ("egress", &r.egress, false),
        ("egressDeny", &r.egress_deny, true),
    ] {
        for (i, rule) in list.iter().enumerate() {
            egress(rule, &format!("{base}.{name}[{i}]"), deny, e);
        }
    }
}

fn ingress(r: &CiliumIngressRule, p: &str, deny: bool, e: &mut Errs) {
    for (name, v) in [
        ("fromRequires", &r.from_requires),
        ("fromGroups", &r.from_groups),
        ("fromNodes", &r.from_nodes),
        ("authentication", &r.authentication),
    ] {
        not_supported(v, p, name, e);
    }
    one_peer_kind(
        &[
            ("fromEndpoints", r.from_endpoints.len()),
            ("fromCIDR", r.from_cidr.len()),
            ("fromCIDRSet", r.from_cidr_set.len()),
            ("fromEntities", r.from_entities.len()),
        ],
        p,
        e,
    );
    peers(
        p,
        ("fromEndpoints", &r.from_endpoints),
        ("fromCIDR", &r.from_cidr),
        ("fromCIDRSet", &r.from_cidr_set),
        ("fromEntities", &r.from_entities),
        e,
    );
    ports(
        p,
        &r.to_ports,
        &r.icmps,
        Dir {
            ingress: true,
            deny,
        },
        e,
    );
}

fn egress(r: &CiliumEgressRule, p: &str, deny: bool, e: &mut Errs) {
    for (name, v) in [
        ("toServices", &r.to_services),
        ("toFQDNs", &r.to_fqdns),
        ("toGroups", &r.to_groups),
        ("toNodes", &r.to_nodes),
        ("toRequires", &r.to_requires),
        ("authentication", &r.authentication),
    ] {
        not_supported(v, p, name, e);
    }
    one_peer_kind(
        &[
            ("toEndpoints", r.to_endpoints.len()),
            ("toCIDR", r.to_cidr.len()),
            ("toCIDRSet", r.to_cidr_set.len()),
            ("toEntities", r.to_entities.len()),
        ],
        p,
        e,
    );
    peers(
        p,
        ("toEndpoints", &r.to_endpoints),
        ("toCIDR", &r.to_cidr),
        ("toCIDRSet", &r.to_cidr_set),
        ("toEntities", &r.to_entities),
        e,
    );
    ports(
        p,
        &r.to_ports,
        &r.icmps,
        Dir {
            ingress: false,
            deny,
        },
        e,
    );
}

/// A raw field Tollway does not implement: rejected when it says anything.
pub(super) fn not_supported(v: &Option<Value>, p: &str, name: &str, e: &mut Errs) {
    let said = match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    };
    if said {
        e.add(
            format!("{p}.{name}"),
            format!("{name} is not supported yet"),
        );
    }
}

/// Cilium rejects rules that mix peer kinds ("Combining FromEndpoints and
/// FromCIDR is not supported yet").
fn one_peer_kind(counts: &[(&str, usize)], p: &str, e: &mut Errs) {
    let used: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| *name)
        .collect();
    if let [a, b, ..] = used.as_slice() {
        e.add(
            p,
            format!(
                "combining {a} and {b} in one rule is not supported (as in Cilium): write one rule for each"
            ),
        );
    }
}

fn peers(
    p: &str,
    (ep_name, endpoints): (&str, &[EndpointSelector]),
    (cidr_name, cidrs): (&str, &[String]),
    (set_name, sets): (&str, &[CidrRule]),
    (ent_name, entities): (&str, &[Entity]),
    e: &mut Errs,
) {
    for (k, s) in endpoints.iter().enumerate() {
        endpoint_selector(s, &format!("{p}.{ep_name}[{k}]"), e);
    }
    for (k, c) in cidrs.iter().enumerate() {
        let path = format!("{p}.{cidr_name}[{k}]");
        if c.is_empty() {
            e.add(path, "must not be empty");
        } else {
            e.check(path, Ipv4Cidr::parse_ip_or_cidr(c).map(|_| ()));
        }
    }
    for (k, s) in sets.iter().enumerate() {
        cidr_rule(s, &format!("{p}.{set_name}[{k}]"), e);
    }
    for (k, ent) in entities.iter().enumerate() {
        if *ent == Entity::WorldIpv6 {
            e.add(
                format!("{p}.{ent_name}[{k}]"),
                "IPv6 is not supported yet (IPv4 only): use world or world-ipv4",
            );
        }
    }
}

fn cidr_rule(s: &CidrRule, p: &str, e: &mut Errs) {
    if s.cidr_group_ref.is_some() {
        e.add(
            format!("{p}.cidrGroupRef"),
            "cidrGroupRef (CiliumCIDRGroup) is not supported yet",
        );
    }
    not_supported(&s.cidr_group_selector, p, "cidrGroupSelector", e);
    if s.cidr_group_ref.is_some() || s.cidr_group_selector.is_some() {
        return;
    }
    let Some(cidr) = s.cidr.as_deref().filter(|c| !c.is_empty()) else {
        e.add(format!("{p}.cidr"), "required");
        return;
    };
    let cidr = match Ipv4Cidr::parse(cidr) {
        Ok(c) => c,
        Err(r) => {
            e.add(format!("{p}.cidr"), r);
            return;
        }
    };
    for (i, x) in s.except.iter().enumerate() {
        let path = format!("{p}.except[{i}]");
        match Ipv4Cidr::parse(x) {
            Err(r) => e.add(path, r),
            Ok(x) if !cidr.contains(&x) => {
                e.add(path, format!("must be inside `cidr` ({cidr}), got {x}"));
            }
            Ok(_) => {}
        }
    }
}

fn ports(p: &str, to_ports: &[PortRule], icmps: &[Value], dir: Dir, e: &mut Errs) {
    if !icmps.is_empty() && !to_ports.is_empty() {
        e.add(
            format!("{p}.icmps"),
            "may not be combined with toPorts in one rule (as in Cilium): write one rule for each",
        );
    }
    for (j, pr) in to_ports.iter().enumerate() {
        validate_port_rule(pr, &format!("{p}.toPorts[{j}]"), dir, e);
    }
}

fn endpoint_selector(s: &EndpointSelector, p: &str, e: &mut Errs) {
    validate_selector_keyed(&s.0, p, endpoint_key, e);
}

/// `[source:]key`, the key a Kubernetes qualified name.
fn endpoint_key(k: &str) -> Result<(), String> {
    let (source, key) = EndpointSelector::split_key(k);
    if let Some(s) = source
        && !LABEL_SOURCES.contains(&s)
    {
        return Err(format!(
            "unknown label source {s:?} in {k:?} (known: {})",
            LABEL_SOURCES.join(", ")
        ));
    }
    names::qualified_name(key)
}
