use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::endpointslice::not_special;
use super::{Errs, port_range};
use crate::core::Protocol;
use crate::intstr::IntOrString;
use crate::names;
use crate::service::{Service, ServiceType, SessionAffinity};

pub(crate) fn validate(s: &Service, e: &mut Errs) {
    let spec = &s.spec;
    let ty = s.service_type();
    let external_name = ty == ServiceType::ExternalName;
    if external_name {
        validate_external_name(s, e);
    }
    if spec.ports.is_empty() && !s.is_headless() && !external_name {
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
            if !matches!(ty, ServiceType::NodePort | ServiceType::LoadBalancer) {
                e.add(
                    format!("{pp}.nodePort"),
                    "may only be set when spec.type is NodePort or LoadBalancer",
                );
            } else {
                // Which ports are node ports is the API server's
                // --service-node-port-range (the lab's registry checks
                // its own); any port is a valid value here.
                e.check(format!("{pp}.nodePort"), port_range(np));
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
        if ip == "None" && matches!(ty, ServiceType::NodePort | ServiceType::LoadBalancer) {
            e.add(
                "spec.clusterIP",
                format!("may not be \"None\" for a {ty} service"),
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
    if spec.external_traffic_policy.is_some() && !s.is_externally_accessible() {
        e.add(
            "spec.externalTrafficPolicy",
            "may only be set for externally-accessible services (NodePort, LoadBalancer, or with spec.externalIPs)",
        );
    }
    if let Some(p) = spec.health_check_node_port {
        if !s.needs_health_check_node_port() {
            e.add(
                "spec.healthCheckNodePort",
                "may only be set when spec.type is LoadBalancer and spec.externalTrafficPolicy is Local",
            );
        } else {
            e.check("spec.healthCheckNodePort", port_range(p));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != ServiceType::LoadBalancer {
        e.add(
            "spec.allocateLoadBalancerNodePorts",
            "may only be set when spec.type is LoadBalancer",
        );
    }
    for (i, ip) in spec.external_ips.iter().enumerate() {
        e.check(format!("spec.externalIPs[{i}]"), ip_address(ip));
    }
    if !spec.load_balancer_source_ranges.is_empty() && ty != ServiceType::LoadBalancer {
        e.add(
            "spec.loadBalancerSourceRanges",
            "may only be used when spec.type is LoadBalancer",
        );
    }
    for (i, r) in spec.load_balancer_source_ranges.iter().enumerate() {
        e.check(
            format!("spec.loadBalancerSourceRanges[{i}]"),
            source_range(r).map(|_| ()),
        );
    }
    let ingress = s
        .status
        .iter()
        .filter_map(|st| st.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter());
    for (i, ing) in ingress.enumerate() {
        let p = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = &ing.ip {
            e.check(format!("{p}.ip"), ip_address(ip));
        }
        if let Some(h) = &ing.hostname {
            if h.parse::<IpAddr>().is_ok() {
                e.add(
                    format!("{p}.hostname"),
                    "must be a DNS name, not an IP address",
                );
            } else {
                e.check(format!("{p}.hostname"), names::dns1123_subdomain(h));
            }
        }
        match ing.ip_mode.as_deref() {
            None | Some("VIP") | Some("Proxy") => {}
            Some(m) => e.add(
                format!("{p}.ipMode"),
                format!("must be \"VIP\" or \"Proxy\", got {m:?}"),
            ),
        }
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

/// `type: ExternalName`: a DNS name (a trailing dot is allowed), no cluster
/// IP.
fn validate_external_name(s: &Service, e: &mut Errs) {
    let spec = &s.spec;
    match spec
        .external_name
        .as_deref()
        .map(|n| n.strip_suffix('.').unwrap_or(n))
    {
        None | Some("") => e.add(
            "spec.externalName",
            "required for an ExternalName service: the DNS name it stands for",
        ),
        Some(name) => e.check("spec.externalName", names::dns1123_subdomain(name)),
    }
    if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
        e.add(
            "spec.clusterIP",
            "may not be set for an ExternalName service",
        );
    }
}

/// An IP address (IPv6 is accepted; the lab load balances IPv4 only) that
/// is not special.
fn ip_address(s: &str) -> Result<(), String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("must be a valid IP address, got {s:?}"))?;
    not_special(ip)
}

/// A `spec.loadBalancerSourceRanges` entry as the API server takes it
/// (`IsValidCIDR`, after trimming the spaces it allows): an IPv4 or IPv6
/// address with a prefix length, host bits allowed. Returns the address and
/// the prefix length.
fn source_range(s: &str) -> Result<(IpAddr, u8), String> {
    let s = s.trim();
    let bad =
        || format!("must be a valid CIDR value (e.g. 10.9.8.0/24 or 2001:db8::/64), got {s:?}");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len.parse::<u8>() {
        Ok(n) if n <= max && len.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(bad()),
    };
    Ok((addr, len))
}

/// `addr/len` with the host bits cleared.
fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// What a valid service says that the lab does not act on, as (path,
/// message).
pub(crate) fn warnings(s: &Service) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.service_type() == ServiceType::ExternalName {
        return out;
    }
    for (i, p) in s.spec.ports.iter().enumerate() {
        if p.protocol() == Protocol::Sctp {
            out.push((
                format!("spec.ports[{i}].protocol"),
                "SCTP is not load balanced (TCP or UDP): the port gets no frontend".to_string(),
            ));
        }
    }
    for (i, ip) in s.spec.external_ips.iter().enumerate() {
        if ip.parse::<Ipv4Addr>().is_err() {
            out.push((
                format!("spec.externalIPs[{i}]"),
                "not an IPv4 address: not load balanced (IPv4 only)".to_string(),
            ));
        }
    }
    for (i, r) in s.spec.load_balancer_source_ranges.iter().enumerate() {
        let Ok((addr, len)) = source_range(r) else {
            continue;
        };
        let path = format!("spec.loadBalancerSourceRanges[{i}]");
        if addr.is_ipv6() {
            out.push((
                path.clone(),
                "an IPv6 range is not enforced (IPv4 only): it admits no IPv4 client".to_string(),
            ));
        }
        let net = network(addr, len);
        if net != addr {
            out.push((
                path,
                format!("has host bits set: it stands for {net}/{len}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Decoded, ManifestError, Object, decode, parse_documents};

    fn one(text: &str) -> Result<Decoded, Vec<ManifestError>> {
        let docs = parse_documents("t.yaml", text).map_err(|e| vec![e])?;
        decode(&docs[0])
    }

    fn lb(ranges: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  type: LoadBalancer\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n  loadBalancerSourceRanges: {ranges}\n"
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match one(text) {
            Ok(d) => panic!("expected an error, got {:?}", d.object),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn source_ranges_are_decoded_without_the_unknown_field_warning() {
        let d = one(&lb("['203.0.113.0/24', ' 10.0.0.0/8 ', 192.0.2.7/32]")).unwrap();
        let Object::Service(s) = &d.object else {
            panic!("{:?}", d.object)
        };
        assert_eq!(
            s.spec.load_balancer_source_ranges,
            ["203.0.113.0/24", " 10.0.0.0/8 ", "192.0.2.7/32"]
        );
        assert_eq!(
            s.load_balancer_source_ranges().collect::<Vec<_>>(),
            ["203.0.113.0/24", "10.0.0.0/8", "192.0.2.7/32"]
        );
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        // Empty is everyone, and no field at all the same.
        let d = one(&lb("[]")).unwrap();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn ipv6_and_host_bits_are_accepted_with_warnings() {
        let d = one(&lb("['2001:db8::/64', 10.1.2.3/8, '::/0']")).unwrap();
        let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            w,
            [
                "t.yaml:8: document 1 (Service default/web): spec.loadBalancerSourceRanges[0]: an IPv6 range is not enforced (IPv4 only): it admits no IPv4 client",
                "t.yaml:8: document 1 (Service default/web): spec.loadBalancerSourceRanges[1]: has host bits set: it stands for 10.0.0.0/8",
                "t.yaml:8: document 1 (Service default/web): spec.loadBalancerSourceRanges[2]: an IPv6 range is not enforced (IPv4 only): it admits no IPv4 client",
            ]
        );
    }

    #[test]
    fn bad_ranges_and_other_types_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "10.0.0/8",
            "2001:db8::/129",
            "example.com/8",
            "",
        ] {
            let e = errors(&lb(&format!("['{bad}']")));
            assert_eq!(e.len(), 1, "{bad:?}: {e:?}");
            assert!(
                e[0].contains("spec.loadBalancerSourceRanges[0]: must be a valid CIDR value"),
                "{bad:?}: {e:?}"
            );
        }
        let np = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  ports: [{port: 80}]\n  loadBalancerSourceRanges: [10.0.0.0/8]\n";
        let e = errors(np);
        assert!(
            e.iter().any(|e| e.contains(
                "spec.loadBalancerSourceRanges: may only be used when spec.type is LoadBalancer"
            )),
            "{e:?}"
        );
    }
}
