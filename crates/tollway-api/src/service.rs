//! `v1` Service.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::Protocol;
use crate::intstr::IntOrString;
use crate::meta::ObjectMeta;

/// `v1` Service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Status: the load balancer's addresses, written by whoever provides
    /// it (a cloud controller; nobody in the lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

/// Service spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Pods selected as endpoints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// The virtual IP, allocated from the service CIDR when omitted;
    /// `None` makes a headless service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// Same as `clusterIP`, as a list.
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// `None` (default) or `ClientIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// ClientIP affinity timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// `Cluster` (default) or `Local`, for traffic to the node ports, the
    /// load balancer's and the external IPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// More addresses the service answers on (at its ports), any type but
    /// ExternalName.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// `ExternalName`: the DNS name the service is an alias of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// `LoadBalancer`: whether node ports are allocated (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// `LoadBalancer`: the clients (CIDRs) the load balancer's ingress IPs
    /// admit; empty admits everyone. The API server allows the entries to
    /// be space-padded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    /// `LoadBalancer` with `externalTrafficPolicy: Local`: the node port on
    /// which each node answers a load balancer's health check (200 with
    /// local endpoints, 503 without), allocated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<i64>,
    /// `Cluster` (default) or `Local`, for in-cluster traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<TrafficPolicy>,
    /// Include not-ready pods as endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
    /// Accepted (IPv4 only in the lab).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    /// Accepted (IPv4 only in the lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
}

/// Service type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus the load balancer's addresses
    /// (`status.loadBalancer.ingress`).
    LoadBalancer,
    /// A DNS alias (`externalName`): no addresses, no ports are served.
    ExternalName,
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        })
    }
}

/// Session affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    /// No affinity.
    None,
    /// Stick a client IP to one backend for `timeoutSeconds`.
    ClientIP,
}

/// Traffic policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any endpoint in the cluster.
    Cluster,
    /// Only endpoints on the receiving node.
    Local,
}

/// `sessionAffinityConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// `clientIP`.
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// `sessionAffinityConfig.clientIP`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// 1-86400, default 10800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
}

/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The load balancer, for `LoadBalancer` services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerStatus>,
}

/// `status.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// Where the load balancer listens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// `status.loadBalancer.ingress[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    /// An IP address (IPv4 ones get a frontend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A DNS name (not load balanced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `VIP` (default) or `Proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<String>,
    /// The ports' status, as the provider reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortStatus>,
}

/// `status.loadBalancer.ingress[].ports[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// The port.
    pub port: i64,
    /// Its protocol.
    pub protocol: Protocol,
    /// An error, as a CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A service port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Required when the service has more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The service's port.
    pub port: i64,
    /// The pods' port: a number, or a container port name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// For NodePort and LoadBalancer services: allocated from 30000-32767
    /// when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i64>,
    /// Accepted (application protocol hint, used by L7 later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl Service {
    /// The service type (`ClusterIP` by default).
    pub fn service_type(&self) -> ServiceType {
        self.spec.type_.unwrap_or(ServiceType::ClusterIP)
    }

    /// True for `clusterIP: None`.
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip.as_deref() == Some("None")
    }

    /// Reachable from outside the cluster (Kubernetes'
    /// `ExternallyAccessible`): NodePort and LoadBalancer services, and
    /// ClusterIP services with external IPs. `externalTrafficPolicy`
    /// applies to these only.
    pub fn is_externally_accessible(&self) -> bool {
        match self.service_type() {
            ServiceType::NodePort | ServiceType::LoadBalancer => true,
            ServiceType::ClusterIP => !self.spec.external_ips.is_empty(),
            ServiceType::ExternalName => false,
        }
    }

    /// Whether the service needs a health-check node port: a LoadBalancer
    /// with `externalTrafficPolicy: Local`.
    pub fn needs_health_check_node_port(&self) -> bool {
        self.service_type() == ServiceType::LoadBalancer
            && self.spec.external_traffic_policy == Some(TrafficPolicy::Local)
    }

    /// Whether the service gets node ports: NodePort services, and
    /// LoadBalancer services unless `allocateLoadBalancerNodePorts: false`.
    pub fn allocates_node_ports(&self) -> bool {
        match self.service_type() {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => self.spec.allocate_load_balancer_node_ports != Some(false),
            ServiceType::ClusterIP | ServiceType::ExternalName => false,
        }
    }

    /// The load balancer's ingress IPs (`status.loadBalancer.ingress[].ip`)
    /// that nodes may serve themselves, as given: those of `ipMode: VIP`
    /// (the default); `Proxy` ones must reach the load balancer (kube-proxy
    /// leaves them alone).
    pub fn load_balancer_ips(&self) -> impl Iterator<Item = &str> + '_ {
        self.status
            .iter()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| lb.ingress.iter())
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref())
    }
}

impl Service {
    /// `spec.loadBalancerSourceRanges` as the datapath applies them: empty
    /// (everyone admitted) unless the service is a LoadBalancer; each
    /// entry trimmed of the spaces the API server allows.
    pub fn load_balancer_source_ranges(&self) -> impl Iterator<Item = &str> + '_ {
        self.spec
            .load_balancer_source_ranges
            .iter()
            .filter(|_| self.service_type() == ServiceType::LoadBalancer)
            .map(|r| r.trim())
    }
}

impl ServicePort {
    /// The protocol (TCP by default).
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }
}
