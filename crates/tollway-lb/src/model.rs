//! The desired-state model: frontends, backends and what a node should load
//! balance, independent of BPF map ids.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;
use tollway_api::Protocol;

use crate::flags::{
    TW_LB_ALG_MAGLEV, TW_LB_ALG_RANDOM, TW_LB_SCOPE_EXT, TW_LB_SCOPE_INT, TW_SVC_F_AFFINITY,
    TW_SVC_F_CLUSTERIP, TW_SVC_F_ETP_LOCAL, TW_SVC_F_EXTERNAL_IP, TW_SVC_F_LOADBALANCER,
    TW_SVC_F_NODEPORT, TW_SVC_F_SRC_RANGE, TW_SVC_F_TWO_SCOPES,
};
use crate::maglev::DEFAULT_M;

/// L4 protocol of a frontend or backend (SCTP ports are skipped with a
/// [`DesiredWarning::UnsupportedProtocol`](crate::DesiredWarning)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Proto {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Proto {
    /// The load balancer's protocol for a Kubernetes one; `None` for SCTP.
    pub fn from_protocol(p: Protocol) -> Option<Proto> {
        match p {
            Protocol::Tcp => Some(Proto::Tcp),
            Protocol::Udp => Some(Proto::Udp),
            Protocol::Sctp => None,
        }
    }

    /// The IP protocol number stored in the BPF maps (`IPPROTO_TCP`/`_UDP`).
    pub fn ipproto(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// The inverse of [`Proto::ipproto`], for reading maps back.
    pub fn from_ipproto(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Which sources a frontend entry serves (`tw_lb4_key.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// All sources (`TW_LB_SCOPE_EXT`).
    External,
    /// In-cluster sources of an `externalTrafficPolicy: Local` NodePort,
    /// which may use every backend (`TW_LB_SCOPE_INT`).
    Internal,
}

impl Scope {
    /// The `TW_LB_SCOPE_*` value.
    pub fn abi(self) -> u8 {
        match self {
            Scope::External => TW_LB_SCOPE_EXT,
            Scope::Internal => TW_LB_SCOPE_INT,
        }
    }

    /// The inverse of [`Scope::abi`], for reading maps back.
    pub fn from_abi(n: u8) -> Option<Scope> {
        match n {
            TW_LB_SCOPE_EXT => Some(Scope::External),
            TW_LB_SCOPE_INT => Some(Scope::Internal),
            _ => None,
        }
    }
}

/// A service frontend: the key of the master entry in `tw_lb4_services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Frontend {
    /// The cluster IP, the node IP of a NodePort, a load balancer IP or an
    /// external IP.
    pub address: Ipv4Addr,
    /// The service port or node port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// External or internal scope.
    pub scope: Scope,
}

impl fmt::Display for Frontend {
    /// `10.96.0.10:53/UDP`, with ` (internal)` for the internal scope.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.address, self.port, self.proto)?;
        if self.scope == Scope::Internal {
            f.write_str(" (internal)")?;
        }
        Ok(())
    }
}

/// An IPv4 source range a LoadBalancer frontend admits
/// (`spec.loadBalancerSourceRanges`): a network address (host bits always
/// clear) and a prefix length, 0-32. `10.0.0.0/8` in text and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRange {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl SourceRange {
    /// The smallest range in the order (`0.0.0.0/0`).
    pub(crate) const MIN: SourceRange = SourceRange {
        network: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    };
    /// Greater than or equal to every range in the order.
    pub(crate) const MAX: SourceRange = SourceRange {
        network: Ipv4Addr::BROADCAST,
        prefix_len: 32,
    };

    /// `address/prefix_len` with the host bits cleared; `None` for a prefix
    /// length beyond 32.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<SourceRange> {
        (prefix_len <= 32).then(|| SourceRange {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix_len)),
            prefix_len,
        })
    }

    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length, 0-32.
    pub fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside the range.
    pub fn contains_addr(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains(self, other: SourceRange) -> bool {
        other.prefix_len >= self.prefix_len && self.contains_addr(other.network)
    }
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

impl fmt::Display for SourceRange {
    /// `10.0.0.0/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl Serialize for SourceRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A backend: a pod IP, its target port and the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BackendAddr {
    /// The pod IP.
    pub address: Ipv4Addr,
    /// The target port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

impl fmt::Display for BackendAddr {
    /// `10.244.1.2:8080/TCP`: also the stable name hashed by Maglev.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.address, self.port, self.proto)
    }
}

/// How new flows pick a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// A random slot (`TW_LB_ALG_RANDOM`).
    Random,
    /// A Maglev consistent-hashing table (`TW_LB_ALG_MAGLEV`).
    Maglev,
}

impl Algorithm {
    /// The `TW_LB_ALG_*` value.
    pub fn abi(self) -> u8 {
        match self {
            Algorithm::Random => TW_LB_ALG_RANDOM,
            Algorithm::Maglev => TW_LB_ALG_MAGLEV,
        }
    }

    /// The inverse of [`Algorithm::abi`], for reading maps back.
    pub fn from_abi(n: u8) -> Option<Algorithm> {
        match n {
            TW_LB_ALG_RANDOM => Some(Algorithm::Random),
            TW_LB_ALG_MAGLEV => Some(Algorithm::Maglev),
            _ => None,
        }
    }

    /// Parse an annotation value: `random` or `maglev`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "random" => Some(Algorithm::Random),
            "maglev" => Some(Algorithm::Maglev),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        })
    }
}

/// What kind of address a frontend listens on (Cilium's frontend types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendKind {
    /// The service's cluster IP.
    ClusterIp,
    /// A node port on this node's IP.
    NodePort,
    /// A LoadBalancer service's ingress IP (`status.loadBalancer`), at the
    /// service port.
    LoadBalancer,
    /// One of `spec.externalIPs`, at the service port.
    ExternalIps,
}

impl FrontendKind {
    /// Cilium's name: `ClusterIP`, `NodePort`, `LoadBalancer`,
    /// `ExternalIPs`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIps => "ExternalIPs",
        }
    }

    /// Whether `externalTrafficPolicy` applies (every kind but ClusterIP).
    pub fn is_external(self) -> bool {
        self != FrontendKind::ClusterIp
    }
}

impl fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kubernetes service (and port) a frontend comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceName {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The service port's name, if it has one.
    pub port_name: Option<String>,
}

impl fmt::Display for ServiceName {
    /// `namespace/name`, or `namespace/name:port` for a named port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(p) = &self.port_name {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A Kubernetes service's identity: its namespace and name. Ordered as
/// [`desired_services`](crate::desired_services) processes services (the
/// first by this order keeps a contested frontend).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceKey {
    /// Namespace (`default` when the object has none).
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl ServiceKey {
    /// The key of a service object.
    pub fn of(svc: &tollway_api::Service) -> ServiceKey {
        ServiceKey {
            namespace: svc.metadata.namespace_or_default().to_string(),
            name: svc.metadata.name.clone(),
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `namespace/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One frontend as this node should serve it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DesiredService {
    /// The frontend.
    pub frontend: Frontend,
    /// ClusterIP, NodePort, LoadBalancer or ExternalIPs.
    pub kind: FrontendKind,
    /// Where it comes from.
    pub service: ServiceName,
    /// Active backends (new flows may go there); sorted, deduplicated.
    pub backends: Vec<BackendAddr>,
    /// Backends of terminating pods: kept for established flows only;
    /// sorted, deduplicated.
    pub terminating: Vec<BackendAddr>,
    /// The backends (of both lists) that run on this node.
    pub local: BTreeSet<BackendAddr>,
    /// How new flows pick a backend.
    pub algorithm: Algorithm,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local` on the external scope of a node port,
    /// load balancer IP or external IP.
    pub etp_local: bool,
    /// The frontend is one of an External/Internal scope pair.
    pub two_scopes: bool,
    /// The clients the frontend admits (`spec.loadBalancerSourceRanges`, on
    /// the external-scope LoadBalancer frontends of a LoadBalancer service,
    /// the ones the uplink serves): `None` admits everyone; `Some` only
    /// the clients in one of its IPv4 ranges (sorted, deduplicated), so
    /// nobody when the service lists IPv6 ranges only. `Some` sets
    /// `TW_SVC_F_SRC_RANGE`.
    pub source_ranges: Option<Vec<SourceRange>>,
}

impl DesiredService {
    /// The master entry's `TW_SVC_F_*` flags.
    pub fn flags(&self) -> u16 {
        let mut f = match self.kind {
            FrontendKind::ClusterIp => TW_SVC_F_CLUSTERIP,
            FrontendKind::NodePort => TW_SVC_F_NODEPORT,
            FrontendKind::LoadBalancer => TW_SVC_F_LOADBALANCER,
            FrontendKind::ExternalIps => TW_SVC_F_EXTERNAL_IP,
        };
        if self.etp_local {
            f |= TW_SVC_F_ETP_LOCAL;
        }
        if self.affinity_timeout.is_some() {
            f |= TW_SVC_F_AFFINITY;
        }
        if self.two_scopes {
            f |= TW_SVC_F_TWO_SCOPES;
        }
        if self.source_ranges.is_some() {
            f |= TW_SVC_F_SRC_RANGE;
        }
        f
    }

    /// The ranges whose entries the frontend needs in `tw_lb4_srcrange`.
    pub fn src_ranges(&self) -> &[SourceRange] {
        self.source_ranges.as_deref().unwrap_or_default()
    }
}

/// The node the plan is computed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NodeContext {
    /// The node's name (pods' `spec.nodeName`).
    pub node_name: String,
    /// The node's IP: the address of its NodePort frontends.
    pub node_ip: Ipv4Addr,
}

/// Load-balancer settings of the node agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct LbConfig {
    /// The algorithm of services without an algorithm annotation.
    pub default_algorithm: Algorithm,
    /// The Maglev table size M: a prime larger than any service's backend
    /// count; must equal `tw_config.maglev_m`.
    pub maglev_m: u32,
}

impl Default for LbConfig {
    /// Random, with M = [`DEFAULT_M`] (as Cilium).
    fn default() -> Self {
        LbConfig {
            default_algorithm: Algorithm::Random,
            maglev_m: DEFAULT_M,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_round_trips() {
        for p in [Proto::Tcp, Proto::Udp] {
            assert_eq!(Proto::from_ipproto(p.ipproto()), Some(p));
        }
        for s in [Scope::External, Scope::Internal] {
            assert_eq!(Scope::from_abi(s.abi()), Some(s));
        }
        for a in [Algorithm::Random, Algorithm::Maglev] {
            assert_eq!(Algorithm::from_abi(a.abi()), Some(a));
            assert_eq!(Algorithm::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Proto::from_protocol(Protocol::Sctp), None);
        assert_eq!(Algorithm::from_abi(0), None);
    }

    #[test]
    fn display() {
        let f = Frontend {
            address: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            proto: Proto::Udp,
            scope: Scope::Internal,
        };
        assert_eq!(f.to_string(), "10.96.0.10:53/UDP (internal)");
        let b = BackendAddr {
            address: Ipv4Addr::new(10, 244, 1, 2),
            port: 8080,
            proto: Proto::Tcp,
        };
        assert_eq!(b.to_string(), "10.244.1.2:8080/TCP");
        let n = ServiceName {
            namespace: "payments".into(),
            name: "api".into(),
            port_name: Some("http".into()),
        };
        assert_eq!(n.to_string(), "payments/api:http");
    }

    #[test]
    fn source_ranges() {
        let r = SourceRange::new(Ipv4Addr::new(10, 1, 2, 3), 8).unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert_eq!(
            (r.network(), r.prefix_len()),
            (Ipv4Addr::new(10, 0, 0, 0), 8)
        );
        assert_eq!(serde_json::to_value(r).unwrap(), "10.0.0.0/8");
        assert!(r.contains_addr(Ipv4Addr::new(10, 255, 0, 1)));
        assert!(!r.contains_addr(Ipv4Addr::new(11, 0, 0, 0)));
        let host = SourceRange::new(Ipv4Addr::new(10, 9, 9, 9), 32).unwrap();
        assert!(r.contains(host) && !host.contains(r) && host.contains(host));
        let all = SourceRange::new(Ipv4Addr::new(1, 2, 3, 4), 0).unwrap();
        assert_eq!(all, SourceRange::MIN);
        assert!(all.contains(r) && all.contains_addr(Ipv4Addr::BROADCAST));
        assert!(SourceRange::new(Ipv4Addr::BROADCAST, 32).unwrap() <= SourceRange::MAX);
        assert_eq!(SourceRange::new(Ipv4Addr::LOCALHOST, 33), None);
    }
}
