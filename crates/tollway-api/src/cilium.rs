//! `cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy,
//! with Cilium's field names (`pkg/policy/api`).
//!
//! Fields Tollway does not implement yet are still parsed (as raw values),
//! so that validation can reject them by name instead of dropping them.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::meta::ObjectMeta;
use crate::selector::LabelSelector;

/// `cilium.io/v2` CiliumNetworkPolicy (namespaced) or, with
/// `kind: CiliumClusterwideNetworkPolicy`, its cluster-scoped twin: one rule
/// in `spec`, and/or a list of rules in `specs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumNetworkPolicy {
    /// `cilium.io/v2`.
    pub api_version: String,
    /// `CiliumNetworkPolicy` or `CiliumClusterwideNetworkPolicy`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// One rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CiliumRule>,
    /// More rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specs: Vec<CiliumRule>,
}

/// `cilium.io/v2` CiliumClusterwideNetworkPolicy: the same shape as a
/// [`CiliumNetworkPolicy`], without a namespace.
pub type CiliumClusterwideNetworkPolicy = CiliumNetworkPolicy;

impl CiliumNetworkPolicy {
    /// Every rule with its field path: `spec` first, then `specs[i]`.
    pub fn rules(&self) -> impl Iterator<Item = (String, &CiliumRule)> {
        self.spec.iter().map(|r| ("spec".to_string(), r)).chain(
            self.specs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("specs[{i}]"), r)),
        )
    }

    /// Every rule, mutably.
    pub fn rules_mut(&mut self) -> impl Iterator<Item = &mut CiliumRule> {
        self.spec.iter_mut().chain(self.specs.iter_mut())
    }

    /// True for `CiliumClusterwideNetworkPolicy`.
    pub fn is_clusterwide(&self) -> bool {
        self.kind == "CiliumClusterwideNetworkPolicy"
    }
}

/// A Cilium policy rule (`api.Rule`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumRule {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The endpoints (pods) the rule applies to; `{}` selects all of them
    /// (in the policy's namespace, for a CiliumNetworkPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_selector: Option<EndpointSelector>,
    /// Host policy: parsed, rejected (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<EndpointSelector>,
    /// Allowed incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<CiliumIngressRule>,
    /// Denied incoming traffic (wins over any allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_deny: Vec<CiliumIngressRule>,
    /// Allowed outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<CiliumEgressRule>,
    /// Denied outgoing traffic (wins over any allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_deny: Vec<CiliumEgressRule>,
    /// Whether selecting an endpoint puts it in default deny, per direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_default_deny: Option<DefaultDeny>,
    /// Labels of the rule itself (accepted, informational).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<RuleLabel>,
}

impl CiliumRule {
    /// Whether the rule puts its endpoints in ingress default deny:
    /// `enableDefaultDeny.ingress`, or else whether it has any ingress or
    /// ingressDeny rule (Cilium's `Rule.Sanitize`).
    pub fn default_deny_ingress(&self) -> bool {
        self.enable_default_deny
            .as_ref()
            .and_then(|d| d.ingress)
            .unwrap_or(!self.ingress.is_empty() || !self.ingress_deny.is_empty())
    }

    /// The egress counterpart of [`CiliumRule::default_deny_ingress`].
    pub fn default_deny_egress(&self) -> bool {
        self.enable_default_deny
            .as_ref()
            .and_then(|d| d.egress)
            .unwrap_or(!self.egress.is_empty() || !self.egress_deny.is_empty())
    }
}

/// `enableDefaultDeny`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultDeny {
    /// Ingress default deny (default: whether the rule has ingress rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<bool>,
    /// Egress default deny (default: whether the rule has egress rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<bool>,
}

/// One entry of a rule's `labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleLabel {
    /// Key.
    #[serde(default)]
    pub key: String,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Source (`k8s`, `unspec`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Cilium's `EndpointSelector`: a Kubernetes label selector whose keys may
/// carry a label source, `source:key` (`k8s:app`, `any:app`,
/// `k8s:io.kubernetes.pod.namespace`, `reserved:host`). A key without a
/// source means `any:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointSelector(pub LabelSelector);

/// Label sources an [`EndpointSelector`] key may name.
pub const LABEL_SOURCES: &[&str] = &[
    "any",
    "k8s",
    "reserved",
    "unspec",
    "container",
    "cni",
    "cidr",
    "fqdn",
    "cilium-generated",
];

impl EndpointSelector {
    /// The selector as written (keys still carry their sources).
    pub fn selector(&self) -> &LabelSelector {
        &self.0
    }

    /// True when it selects every endpoint.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Split a selector key into its source and label key:
    /// `k8s:app` → `(Some("k8s"), "app")`, `app` → `(None, "app")`.
    pub fn split_key(key: &str) -> (Option<&str>, &str) {
        match key.split_once(':') {
            Some((source, k)) => (Some(source), k),
            None => (None, key),
        }
    }
}

/// An ingress (or ingressDeny) rule: traffic from any of the peers, to any
/// of `toPorts`. Peers of different kinds may not be combined in one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumIngressRule {
    /// Endpoints (pods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_endpoints: Vec<EndpointSelector>,
    /// CIDRs or addresses.
    #[serde(default, rename = "fromCIDR", skip_serializing_if = "Vec::is_empty")]
    pub from_cidr: Vec<String>,
    /// CIDRs with exceptions.
    #[serde(default, rename = "fromCIDRSet", skip_serializing_if = "Vec::is_empty")]
    pub from_cidr_set: Vec<CidrRule>,
    /// Entities (`world`, `cluster`, `host`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_entities: Vec<Entity>,
    /// Destination ports (with optional L7 rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_ports: Vec<PortRule>,
    /// ICMP types: accepted, not enforced yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmps: Vec<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_requires: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_groups: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_nodes: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Value>,
}

/// An egress (or egressDeny) rule: traffic to any of the peers, on any of
/// `toPorts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumEgressRule {
    /// Endpoints (pods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_endpoints: Vec<EndpointSelector>,
    /// CIDRs or addresses.
    #[serde(default, rename = "toCIDR", skip_serializing_if = "Vec::is_empty")]
    pub to_cidr: Vec<String>,
    /// CIDRs with exceptions.
    #[serde(default, rename = "toCIDRSet", skip_serializing_if = "Vec::is_empty")]
    pub to_cidr_set: Vec<CidrRule>,
    /// Entities (`world`, `cluster`, `host`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_entities: Vec<Entity>,
    /// Destination ports (with optional L7 rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_ports: Vec<PortRule>,
    /// ICMP types: accepted, not enforced yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmps: Vec<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_services: Option<Value>,
    /// Not supported yet.
    #[serde(default, rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    pub to_fqdns: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_groups: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_nodes: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_requires: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Value>,
}

/// `fromCIDRSet` / `toCIDRSet` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrRule {
    /// The allowed prefix (`a.b.c.d/n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Prefixes inside `cidr` that are not allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// Not supported yet (CiliumCIDRGroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_group_ref: Option<String>,
    /// Not supported yet (CiliumCIDRGroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_group_selector: Option<Value>,
}

/// A peer class without individual identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entity {
    /// Everything outside the cluster.
    World,
    /// IPv4 outside the cluster.
    WorldIpv4,
    /// IPv6 outside the cluster (rejected: IPv4 only).
    WorldIpv6,
    /// Everything inside the cluster.
    Cluster,
    /// The local node.
    Host,
    /// Other nodes.
    RemoteNode,
    /// The Kubernetes API server.
    KubeApiserver,
    /// Cilium's ingress proxy.
    Ingress,
    /// Endpoints whose identity is not resolved yet.
    Init,
    /// Cilium's health endpoints.
    Health,
    /// Pods not managed by the data plane.
    Unmanaged,
    /// Everything.
    All,
    /// Nothing.
    None,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::World => "world",
            Entity::WorldIpv4 => "world-ipv4",
            Entity::WorldIpv6 => "world-ipv6",
            Entity::Cluster => "cluster",
            Entity::Host => "host",
            Entity::RemoteNode => "remote-node",
            Entity::KubeApiserver => "kube-apiserver",
            Entity::Ingress => "ingress",
            Entity::Init => "init",
            Entity::Health => "health",
            Entity::Unmanaged => "unmanaged",
            Entity::All => "all",
            Entity::None => "none",
        })
    }
}

/// `toPorts` entry: ports, and optional L7 rules over them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRule {
    /// Ports (every port when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortProtocol>,
    /// L7 rules: accepted with a warning (not enforced yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<L7Rules>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<Value>,
    /// Not supported yet.
    #[serde(
        default,
        rename = "originatingTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_tls: Option<Value>,
    /// Not supported yet.
    #[serde(
        default,
        rename = "terminatingTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub terminating_tls: Option<Value>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_names: Option<Value>,
}

/// A port, port range or named port, and a protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortProtocol {
    /// `"8080"` (a number is accepted too), a named port (`"http"`), or
    /// `"0"`/empty/omitted for every port.
    #[serde(
        default,
        deserialize_with = "port_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<String>,
    /// Last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
    /// `TCP`, `UDP`, `SCTP` (rejected) or `ANY` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<L4Proto>,
}

/// A port as [`PortProtocol::port`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiliumPort<'a> {
    /// Every port (`"0"`, empty or omitted).
    All,
    /// A port number (not range-checked; validation does).
    Number(u64),
    /// A container port name.
    Named(&'a str),
}

impl PortProtocol {
    /// The port, interpreted.
    pub fn port(&self) -> CiliumPort<'_> {
        match self.port.as_deref().map(str::trim) {
            None | Some("") => CiliumPort::All,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u64>() {
                Ok(0) => CiliumPort::All,
                Ok(n) => CiliumPort::Number(n),
                Err(_) => CiliumPort::Number(u64::MAX),
            },
            Some(p) => CiliumPort::Named(p),
        }
    }

    /// The protocol (`ANY` by default).
    pub fn protocol(&self) -> L4Proto {
        self.protocol.unwrap_or(L4Proto::Any)
    }
}

/// Cilium's L4 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum L4Proto {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP: parsed so that it can be rejected by name.
    #[serde(rename = "SCTP")]
    Sctp,
    /// Any protocol (TCP and UDP here).
    #[serde(rename = "ANY")]
    Any,
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Proto::Tcp => "TCP",
            L4Proto::Udp => "UDP",
            L4Proto::Sctp => "SCTP",
            L4Proto::Any => "ANY",
        })
    }
}

/// L7 rules of a port rule (one protocol per rule).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L7Rules {
    /// HTTP rules (accepted, not enforced yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<PortRuleHttp>>,
    /// DNS rules (accepted on egress, not enforced yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<PortRuleDns>>,
    /// Not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Value>,
    /// Not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7proto: Option<String>,
    /// Not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7: Option<Value>,
}

impl L7Rules {
    /// Cilium's `IsEmpty`: no rule list given at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none()
            && self.dns.is_none()
            && self.kafka.is_none()
            && self.l7proto.is_none()
            && self.l7.is_none()
    }
}

/// An HTTP rule: every given field must match. Path, method and host are
/// (extended POSIX) regular expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRuleHttp {
    /// Request path regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Method regex (`GET`, `POST|PUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Host header regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers that must be present (`Name` or `Name: value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_matches: Option<Value>,
}

/// A DNS rule: one of `matchName` or `matchPattern`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRuleDns {
    /// An exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_name: Option<String>,
    /// A glob (`*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_pattern: Option<String>,
}

/// `port` is a string in Cilium's schema; accept a YAML number too.
fn port_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct PortVisitor;
    impl Visitor<'_> for PortVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number or name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(PortVisitor)
}
