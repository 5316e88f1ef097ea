//! Kubernetes-shaped resource types for Tollway, and their parsing, defaulting
//! and validation.
//!
//! This crate does no I/O: it turns manifest text into typed [`Object`]s, or
//! into [`ManifestError`]s that name the file, the document, the object and
//! the field (and, for YAML, the line), the way `kubectl` users expect.
//!
//! The kinds known today are `Namespace`, `ServiceAccount`, `Pod`, `Node`,
//! `Service` (all `v1`) and `Deployment` (`apps/v1`). Kinds that later issues
//! add (policies, gateways, routes) are reported as "not supported yet",
//! never silently dropped.

// Manifest errors are built on the cold path and carry file, object and
// field by value; their size does not matter.
#![allow(clippy::result_large_err)]

mod apps;
mod core;
mod decode;
mod defaults;
mod error;
mod intstr;
mod meta;
pub mod names;
mod object;
mod parse;
pub mod selector;
mod service;
mod validate;

pub use apps::{Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, PodTemplateSpec};
pub use core::{
    Container, ContainerPort, ContainerState, ContainerStatus, EnvVar, EnvVarSource, FieldSelector,
    Namespace, NamespaceStatus, Node, NodeAddress, NodeSpec, NodeStatus, Pod, PodCondition, PodIp,
    PodSpec, PodStatus, Protocol, ServiceAccount, StateRunning, StateTerminated, StateWaiting,
};
pub use decode::{Decoded, decode, decode_all};
pub use defaults::apply_defaults;
pub use error::{ManifestError, ObjectRef, Problem, Warning};
pub use intstr::IntOrString;
pub use meta::{ObjectMeta, OwnerReference};
pub use object::{Kind, Object, ObjectKey};
pub use parse::{RawDocument, parse_documents};
pub use selector::{LabelSelector, LabelSelectorRequirement, Selector};
pub use service::{
    ClientIpConfig, Service, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
    SessionAffinityConfig, TrafficPolicy,
};
