//! EndpointSlice, as the API server validates it (`ValidateEndpointSlice`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Errs, port_range};
use crate::discovery::{AddressType, EndpointSlice};
use crate::names;

/// At most this many endpoints in one slice.
const MAX_ENDPOINTS: usize = 1000;
/// At most this many addresses in one endpoint.
const MAX_ADDRESSES: usize = 100;
/// At most this many ports in one slice.
const MAX_PORTS: usize = 100;

pub(crate) fn validate(es: &EndpointSlice, e: &mut Errs) {
    if es.endpoints.len() > MAX_ENDPOINTS {
        e.add(
            "endpoints",
            format!(
                "must have at most {MAX_ENDPOINTS} endpoints, got {}",
                es.endpoints.len()
            ),
        );
    }
    for (i, ep) in es.endpoints.iter().enumerate() {
        let p = format!("endpoints[{i}]");
        if ep.addresses.is_empty() {
            e.add(format!("{p}.addresses"), "must contain at least 1 address");
        } else if ep.addresses.len() > MAX_ADDRESSES {
            e.add(
                format!("{p}.addresses"),
                format!(
                    "must have at most {MAX_ADDRESSES} addresses, got {}",
                    ep.addresses.len()
                ),
            );
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            e.check(format!("{p}.addresses[{j}]"), address(es.address_type, a));
        }
        if let Some(n) = &ep.node_name {
            e.check(format!("{p}.nodeName"), names::dns1123_subdomain(n));
        }
        if let Some(h) = &ep.hostname {
            e.check(format!("{p}.hostname"), names::dns1123_label(h));
        }
    }
    if es.ports.len() > MAX_PORTS {
        e.add(
            "ports",
            format!(
                "must have at most {MAX_PORTS} ports, got {}",
                es.ports.len()
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, port) in es.ports.iter().enumerate() {
        let p = format!("ports[{i}]");
        let name = port.name();
        if !name.is_empty() {
            e.check(format!("{p}.name"), names::dns1123_label(name));
        }
        if !seen.insert(name) {
            e.add(format!("{p}.name"), format!("duplicate port name {name:?}"));
        }
        if let Some(n) = port.port {
            e.check(format!("{p}.port"), port_range(n));
        }
        if let Some(a) = &port.app_protocol {
            e.check(format!("{p}.appProtocol"), names::qualified_name(a));
        }
    }
}

/// An address of the slice's type; IPs may not be special
/// (`ValidateEndpointIP`).
fn address(ty: AddressType, a: &str) -> Result<(), String> {
    match ty {
        AddressType::IPv4 => {
            let ip: Ipv4Addr = a.parse().map_err(|_| {
                format!("must be a valid IPv4 address (addressType IPv4), got {a:?}")
            })?;
            not_special(IpAddr::V4(ip))
        }
        AddressType::IPv6 => {
            let ip: Ipv6Addr = a.parse().map_err(|_| {
                format!("must be a valid IPv6 address (addressType IPv6), got {a:?}")
            })?;
            not_special(IpAddr::V6(ip))
        }
        AddressType::Fqdn => {
            names::dns1123_subdomain(a)?;
            if a.contains('.') {
                Ok(())
            } else {
                Err(format!(
                    "must be a fully qualified domain name (at least two labels), got {a:?}"
                ))
            }
        }
    }
}

/// Kubernetes' `ValidateNonSpecialIP`: not unspecified, loopback,
/// link-local or link-local multicast.
pub(crate) fn not_special(ip: IpAddr) -> Result<(), String> {
    let (unspecified, loopback, link_local, ll_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified(),
            v6.is_loopback(),
            v6.segments()[0] & 0xffc0 == 0xfe80,
            v6.segments()[0] & 0xff0f == 0xff02,
        ),
    };
    let why = if unspecified {
        "may not be unspecified"
    } else if loopback {
        "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    } else if link_local {
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    } else if ll_multicast {
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    } else {
        return Ok(());
    };
    Err(format!("{why}, got {ip}"))
}

/// What a valid slice says that the lab does not act on.
pub(crate) fn warnings(es: &EndpointSlice) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if es.address_type != AddressType::IPv4 {
        out.push((
            "addressType".to_string(),
            format!(
                "{} slices are not load balanced (IPv4 only): ignored",
                es.address_type
            ),
        ));
    }
    if es.service_name().is_none() {
        out.push((
            "metadata.labels".to_string(),
            format!(
                "no {:?} label: the slice belongs to no Service",
                crate::discovery::SERVICE_NAME_LABEL
            ),
        ));
    }
    out
}
