//! `networking.k8s.io/v1` NetworkPolicy.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::Protocol;
use crate::intstr::IntOrString;
use crate::meta::ObjectMeta;
use crate::selector::LabelSelector;

/// `networking.k8s.io/v1` NetworkPolicy: which traffic the selected pods of
/// its namespace may receive (ingress) and send (egress).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// `networking.k8s.io/v1`.
    pub api_version: String,
    /// `NetworkPolicy`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

/// NetworkPolicy spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The pods the policy applies to; `{}` selects every pod of the
    /// namespace. Required (validation rejects `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// The directions the policy isolates. Defaulted as Kubernetes does:
    /// `[Ingress]`, plus `Egress` when `egress` rules are given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
    /// Allowed incoming traffic (any rule may match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    /// Allowed outgoing traffic (any rule may match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
}

/// A direction a NetworkPolicy isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Incoming traffic.
    Ingress,
    /// Outgoing traffic.
    Egress,
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyType::Ingress => "Ingress",
            PolicyType::Egress => "Egress",
        })
    }
}

/// One ingress rule: traffic from any of `from` (everyone when empty) to
/// any of `ports` (every port when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyIngressRule {
    /// Destination ports on the selected pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
    /// Allowed sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
}

/// One egress rule: traffic to any of `to` (everyone when empty) on any of
/// `ports` (every port when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyEgressRule {
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
    /// Allowed destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
}

/// A peer: pods (by pod and/or namespace selector, both must match when
/// both are given) or an IP block. At least one field; `ipBlock` alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPeer {
    /// Pods (of the policy's namespace, unless `namespaceSelector` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces (every pod in them, unless `podSelector` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// `ipBlock`: a CIDR minus some sub-CIDRs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// `10.0.0.0/8` (IPv4 only in Tollway).
    #[serde(default)]
    pub cidr: String,
    /// Strict sub-blocks of `cidr` that are not allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A port (or port range) and protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPort {
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// A number, or a container port name; every port when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Last port of a range starting at a numeric `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

static EVERYTHING: LabelSelector = LabelSelector {
    match_labels: BTreeMap::new(),
    match_expressions: Vec::new(),
};

impl NetworkPolicy {
    /// The selected pods (an unset selector, rejected by validation, reads
    /// as `{}`).
    pub fn pod_selector(&self) -> &LabelSelector {
        self.spec.pod_selector.as_ref().unwrap_or(&EVERYTHING)
    }

    /// Whether the policy isolates the given direction (after defaulting,
    /// from `policyTypes`).
    pub fn isolates(&self, t: PolicyType) -> bool {
        if self.spec.policy_types.is_empty() {
            // Not defaulted yet: Kubernetes' rule.
            return t == PolicyType::Ingress || !self.spec.egress.is_empty();
        }
        self.spec.policy_types.contains(&t)
    }
}

impl NetworkPolicyPort {
    /// The protocol (TCP by default).
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }
}
