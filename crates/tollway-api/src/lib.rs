//! Kubernetes-shaped resource types for Tollway, and their parsing, defaulting
//! and validation.
//!
//! This crate does no I/O: it turns manifest text into typed [`Object`]s, or
//! into [`ManifestError`]s that name the file, the document, the object and
//! the field (and, for YAML, the line), the way `kubectl` users expect.
//!
//! The kinds known today are `Namespace`, `ServiceAccount`, `Pod`, `Node`,
//! `Service` (all `v1`), `EndpointSlice` (`discovery.k8s.io/v1`),
//! `Deployment` (`apps/v1`), `NetworkPolicy`
//! (`networking.k8s.io/v1`), and `CiliumNetworkPolicy` and
//! `CiliumClusterwideNetworkPolicy` (`cilium.io/v2`). Kinds that later issues
//! add (Istio policies, gateways, routes) are reported as "not supported
//! yet", never silently dropped.

// Manifest errors are built on the cold path and carry file, object and
// field by value; their size does not matter.
#![allow(clippy::result_large_err)]

mod apps;
pub mod cidr;
mod cilium;
mod core;
mod decode;
mod defaults;
mod discovery;
mod error;
mod identity;
mod intstr;
mod meta;
pub mod names;
mod netpol;
mod object;
mod parse;
pub mod selector;
mod service;
mod validate;

pub use apps::{Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, PodTemplateSpec};
pub use cidr::Ipv4Cidr;
pub use cilium::{
    CidrRule, CiliumClusterwideNetworkPolicy, CiliumEgressRule, CiliumIngressRule,
    CiliumNetworkPolicy, CiliumPort, CiliumRule, DefaultDeny, EndpointSelector, Entity, L4Proto,
    L7Rules, LABEL_SOURCES, PortProtocol, PortRule, PortRuleDns, PortRuleHttp, RuleLabel,
};
pub use core::{
    Container, ContainerPort, ContainerState, ContainerStatus, EnvVar, EnvVarSource, FieldSelector,
    Namespace, NamespaceStatus, Node, NodeAddress, NodeSpec, NodeStatus, Pod, PodCondition, PodIp,
    PodSpec, PodStatus, Protocol, ServiceAccount, StateRunning, StateTerminated, StateWaiting,
};
pub use decode::{Decoded, decode, decode_all};
pub use defaults::{NAMESPACE_NAME_LABEL, apply_defaults};
pub use discovery::{
    AddressType, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, ObjectReference,
    SERVICE_NAME_LABEL,
};
pub use error::{ManifestError, ObjectRef, Problem, Warning};
pub use identity::CiliumIdentity;
pub use intstr::IntOrString;
pub use meta::{ObjectMeta, OwnerReference};
pub use netpol::{
    IpBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, PolicyType,
};
pub use object::{Kind, Object, ObjectKey};
pub use parse::{RawDocument, parse_documents};
pub use selector::{LabelSelector, LabelSelectorRequirement, Selector};
pub use service::{
    ClientIpConfig, LoadBalancerIngress, LoadBalancerStatus, PortStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus, ServiceType, SessionAffinity, SessionAffinityConfig, TrafficPolicy,
};
