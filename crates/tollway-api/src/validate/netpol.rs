//! NetworkPolicy, as the API server validates it
//! (`ValidateNetworkPolicySpec`), IPv4 and TCP/UDP only.

use super::{Errs, port_range, validate_selector};
use crate::cidr::Ipv4Cidr;
use crate::core::Protocol;
use crate::intstr::IntOrString;
use crate::names;
use crate::netpol::{IpBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PolicyType};

pub(crate) fn validate(np: &NetworkPolicy, e: &mut Errs) {
    let spec = &np.spec;
    match &spec.pod_selector {
        Some(s) => validate_selector(s, "spec.podSelector", e),
        None => e.add(
            "spec.podSelector",
            "required (`podSelector: {}` selects every pod in the namespace)",
        ),
    }
    if spec.policy_types.len() > 2 {
        e.add(
            "spec.policyTypes",
            "may not specify more than two policyTypes",
        );
    }
    for (i, r) in spec.ingress.iter().enumerate() {
        let p = format!("spec.ingress[{i}]");
        for (j, port) in r.ports.iter().enumerate() {
            validate_port(port, &format!("{p}.ports[{j}]"), e);
        }
        for (j, peer) in r.from.iter().enumerate() {
            validate_peer(peer, &format!("{p}.from[{j}]"), e);
        }
    }
    for (i, r) in spec.egress.iter().enumerate() {
        let p = format!("spec.egress[{i}]");
        for (j, port) in r.ports.iter().enumerate() {
            validate_port(port, &format!("{p}.ports[{j}]"), e);
        }
        for (j, peer) in r.to.iter().enumerate() {
            validate_peer(peer, &format!("{p}.to[{j}]"), e);
        }
    }
}

/// Egress rules of a policy that does not isolate egress have no effect, as
/// in Kubernetes; say so.
pub(crate) fn warnings(np: &NetworkPolicy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !np.spec.egress.is_empty() && !np.spec.policy_types.contains(&PolicyType::Egress) {
        out.push((
            "spec.egress".to_string(),
            "has no effect: spec.policyTypes does not include Egress".to_string(),
        ));
    }
    if !np.spec.ingress.is_empty() && !np.spec.policy_types.contains(&PolicyType::Ingress) {
        out.push((
            "spec.ingress".to_string(),
            "has no effect: spec.policyTypes does not include Ingress".to_string(),
        ));
    }
    out
}

fn validate_port(port: &NetworkPolicyPort, path: &str, e: &mut Errs) {
    if port.protocol == Some(Protocol::Sctp) {
        e.add(
            format!("{path}.protocol"),
            "SCTP is not supported (TCP or UDP)",
        );
    }
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(n)), end) => {
            e.check(format!("{path}.port"), port_range(*n));
            if let Some(end) = end {
                if end < *n {
                    e.add(
                        format!("{path}.endPort"),
                        format!("must be greater than or equal to `port` ({n}), got {end}"),
                    );
                }
                e.check(format!("{path}.endPort"), port_range(end));
            }
        }
        (Some(IntOrString::String(name)), end) => {
            e.check(format!("{path}.port"), names::iana_svc_name(name));
            if end.is_some() {
                e.add(
                    format!("{path}.endPort"),
                    "may not be specified when `port` is non-numeric",
                );
            }
        }
        (None, Some(_)) => e.add(
            format!("{path}.endPort"),
            "may not be specified when `port` is not specified",
        ),
        (None, None) => {}
    }
}

fn validate_peer(peer: &NetworkPolicyPeer, path: &str, e: &mut Errs) {
    let mut n = 0;
    if let Some(s) = &peer.pod_selector {
        n += 1;
        validate_selector(s, &format!("{path}.podSelector"), e);
    }
    if let Some(s) = &peer.namespace_selector {
        n += 1;
        validate_selector(s, &format!("{path}.namespaceSelector"), e);
    }
    if let Some(b) = &peer.ip_block {
        n += 1;
        validate_ip_block(b, &format!("{path}.ipBlock"), e);
    }
    if n == 0 {
        e.add(
            path,
            "must specify a peer (podSelector, namespaceSelector or ipBlock)",
        );
    } else if n > 1 && peer.ip_block.is_some() {
        e.add(
            path,
            "may not specify both ipBlock and another peer (podSelector or namespaceSelector)",
        );
    }
}

fn validate_ip_block(b: &IpBlock, path: &str, e: &mut Errs) {
    if b.cidr.is_empty() {
        e.add(format!("{path}.cidr"), "required");
        return;
    }
    let cidr = match Ipv4Cidr::parse(&b.cidr) {
        Ok(c) => Some(c),
        Err(r) => {
            e.add(format!("{path}.cidr"), r);
            None
        }
    };
    for (i, x) in b.except.iter().enumerate() {
        let p = format!("{path}.except[{i}]");
        match Ipv4Cidr::parse(x) {
            Err(r) => e.add(p, r),
            Ok(x) => {
                if let Some(c) = cidr
                    && !(c.contains(&x) && x.prefix_len > c.prefix_len)
                {
                    e.add(
                        p,
                        format!("must be a strict subset of `cidr` ({}), got {x}", b.cidr),
                    );
                }
            }
        }
    }
}
