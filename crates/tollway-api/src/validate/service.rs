use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{Errs, port_range};
use crate::core::Protocol;
use crate::intstr::IntOrString;
use crate::names;
use crate::service::{Service, ServiceType, SessionAffinity};

pub(crate) fn validate(s: &Service, e: &mut Errs) {
    let spec = &s.spec;
    let ty = s.service_type();
    if matches!(ty, ServiceType::LoadBalancer | ServiceType::ExternalName) {
        e.add(
            "spec.type",
            format!("{ty} is not supported yet (ClusterIP or NodePort)"),
        );
    }
    if spec.ports.is_empty() && !s.is_headless() {
        e.add("spec.ports", "required: a service needs at least one port");
    }
    let multi = spec.ports.len() > 1;
    let mut names_seen = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        match &p.name {
            Some(n) => {
                e.check(format!("{pp}.name"), names::dns1123_label(n));
                if !names_seen.insert(n.as_str()) {
                    e.add(format!("{pp}.name"), format!("duplicate port name {n:?}"));
                }
            }
            None if multi => e.add(
                format!("{pp}.name"),
                "required when the service has more than one port",
            ),
            None => {}
        }
        e.check(format!("{pp}.port"), port_range(p.port));
        if p.protocol() == Protocol::Sctp {
            e.add(
                format!("{pp}.protocol"),
                "SCTP is not supported (TCP or UDP)",
            );
        }
        if !pairs.insert((p.port, p.protocol())) {
            e.add(
                format!("{pp}.port"),
                format!("duplicate port {}/{}", p.port, p.protocol()),
            );
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) => e.check(format!("{pp}.targetPort"), port_range(*n)),
            Some(IntOrString::String(n)) => {
                e.check(format!("{pp}.targetPort"), names::iana_svc_name(n));
            }
            None => {}
        }
        if let Some(np) = p.node_port {
            if ty != ServiceType::NodePort {
                e.add(
                    format!("{pp}.nodePort"),
                    "may only be set when spec.type is NodePort",
                );
            } else if !(30000..=32767).contains(&np) {
                e.add(
                    format!("{pp}.nodePort"),
                    format!("must be 30000-32767, got {np}"),
                );
            }
        }
    }
    if let Some(ip) = &spec.cluster_ip {
        if ip != "None" && !ip.is_empty() && ip.parse::<Ipv4Addr>().is_err() {
            e.add(
                "spec.clusterIP",
                format!("must be an IPv4 address or \"None\", got {ip:?}"),
            );
        }
        if ip == "None" && ty == ServiceType::NodePort {
            e.add(
                "spec.clusterIP",
                "may not be \"None\" for a NodePort service",
            );
        }
    }
    for (i, ip) in spec.cluster_ips.iter().enumerate() {
        if Some(ip) != spec.cluster_ip.as_ref() && i == 0 && spec.cluster_ip.is_some() {
            e.add("spec.clusterIPs[0]", "must match spec.clusterIP");
        }
        if i > 0 {
            e.add(
                format!("spec.clusterIPs[{i}]"),
                "only one (IPv4) cluster IP is supported",
            );
        }
    }
    if spec.session_affinity == Some(SessionAffinity::ClientIP) {
        let t = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        if let Some(t) = t
            && !(1..=86400).contains(&t)
        {
            e.add(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                format!("must be 1-86400, got {t}"),
            );
        }
    } else if spec.session_affinity_config.is_some() {
        e.add(
            "spec.sessionAffinityConfig",
            "may only be set when spec.sessionAffinity is ClientIP",
        );
    }
    if spec.external_traffic_policy.is_some() && ty != ServiceType::NodePort {
        e.add(
            "spec.externalTrafficPolicy",
            "may only be set for NodePort services",
        );
    }
    for f in &spec.ip_families {
        if f != "IPv4" {
            e.add(
                "spec.ipFamilies",
                format!("only IPv4 is supported, got {f:?}"),
            );
        }
    }
    super::validate_labels(&spec.selector, "spec.selector", e);
}
