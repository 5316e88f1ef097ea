//! The closed set of kinds Tollway stores, and a typed object of any of them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::apps::Deployment;
use crate::cilium::CiliumNetworkPolicy;
use crate::core::{Namespace, Node, Pod, ServiceAccount};
use crate::discovery::EndpointSlice;
use crate::identity::CiliumIdentity;
use crate::meta::ObjectMeta;
use crate::netpol::NetworkPolicy;
use crate::service::Service;

/// A kind Tollway stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// `v1` Namespace.
    Namespace,
    /// `v1` ServiceAccount.
    ServiceAccount,
    /// `v1` Node.
    Node,
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` Pod.
    Pod,
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `cilium.io/v2` CiliumNetworkPolicy.
    CiliumNetworkPolicy,
    /// `cilium.io/v2` CiliumClusterwideNetworkPolicy.
    CiliumClusterwideNetworkPolicy,
    /// `cilium.io/v2` CiliumIdentity: a security identity (allocated by
    /// Tollway, never applied by users).
    CiliumIdentity,
}

impl Kind {
    /// Every kind, in the order objects are applied (namespaces first).
    pub const ALL: [Kind; 11] = [
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Node,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Deployment,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::CiliumNetworkPolicy,
        Kind::CiliumClusterwideNetworkPolicy,
        Kind::CiliumIdentity,
    ];

    /// The `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Node => "Node",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Deployment => "Deployment",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            Kind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            Kind::CiliumIdentity => "CiliumIdentity",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment => "apps/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::CiliumNetworkPolicy
            | Kind::CiliumClusterwideNetworkPolicy
            | Kind::CiliumIdentity => "cilium.io/v2",
            Kind::Namespace | Kind::ServiceAccount | Kind::Node | Kind::Service | Kind::Pod => "v1",
        }
    }

    /// Lower-case plural, as in `kubectl get pods`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Node => "nodes",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Deployment => "deployments",
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::CiliumNetworkPolicy => "ciliumnetworkpolicies",
            Kind::CiliumClusterwideNetworkPolicy => "ciliumclusterwidenetworkpolicies",
            Kind::CiliumIdentity => "ciliumidentities",
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace
                | Kind::Node
                | Kind::CiliumClusterwideNetworkPolicy
                | Kind::CiliumIdentity
        )
    }

    /// Look a kind up by its `kind` field.
    pub fn from_kind_str(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Look a kind up the way `kubectl get` does: singular, plural, short
    /// name or `kind`, case-insensitively (`po`, `svc`, `deploy`, `ns`, `sa`,
    /// `netpol`, `cnp`, `ccnp`; `endpointslices` has no short name); a group
    /// suffix (`networkpolicies.networking.k8s.io`) is ignored.
    pub fn from_cli(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        let l = l.split('.').next().unwrap_or("");
        Some(match l {
            "ns" | "namespace" | "namespaces" => Kind::Namespace,
            "sa" | "serviceaccount" | "serviceaccounts" => Kind::ServiceAccount,
            "no" | "node" | "nodes" => Kind::Node,
            "svc" | "service" | "services" => Kind::Service,
            "endpointslice" | "endpointslices" => Kind::EndpointSlice,
            "deploy" | "deployment" | "deployments" => Kind::Deployment,
            "po" | "pod" | "pods" => Kind::Pod,
            "netpol" | "networkpolicy" | "networkpolicies" => Kind::NetworkPolicy,
            "cnp" | "ciliumnetworkpolicy" | "ciliumnetworkpolicies" => Kind::CiliumNetworkPolicy,
            "ciliumid" | "ciliumidentity" | "ciliumidentities" => Kind::CiliumIdentity,
            "ccnp" | "ciliumclusterwidenetworkpolicy" | "ciliumclusterwidenetworkpolicies" => {
                Kind::CiliumClusterwideNetworkPolicy
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace (None for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key; the namespace is dropped for cluster-scoped kinds.
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: if kind.namespaced() {
                Some(namespace.unwrap_or("default").to_string())
            } else {
                None
            },
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A typed object of any stored kind.
// Objects live in the store's map and are rarely moved; boxing every variant
// would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// Namespace.
    Namespace(Namespace),
    /// ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// Node.
    Node(Node),
    /// Service.
    Service(Service),
    /// EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// Deployment.
    Deployment(Deployment),
    /// Pod.
    Pod(Pod),
    /// NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// CiliumNetworkPolicy.
    CiliumNetworkPolicy(CiliumNetworkPolicy),
    /// CiliumClusterwideNetworkPolicy (same shape, no namespace).
    CiliumClusterwideNetworkPolicy(CiliumNetworkPolicy),
    /// CiliumIdentity.
    CiliumIdentity(CiliumIdentity),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Deployment(_) => Kind::Deployment,
            Object::Pod(_) => Kind::Pod,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::CiliumNetworkPolicy(_) => Kind::CiliumNetworkPolicy,
            Object::CiliumClusterwideNetworkPolicy(_) => Kind::CiliumClusterwideNetworkPolicy,
            Object::CiliumIdentity(_) => Kind::CiliumIdentity,
        }
    }

    /// Metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::CiliumIdentity(o) => &o.metadata,
            Object::CiliumNetworkPolicy(o) | Object::CiliumClusterwideNetworkPolicy(o) => {
                &o.metadata
            }
        }
    }

    /// Metadata, mutably.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::ServiceAccount(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::CiliumIdentity(o) => &mut o.metadata,
            Object::CiliumNetworkPolicy(o) | Object::CiliumClusterwideNetworkPolicy(o) => {
                &mut o.metadata
            }
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(self.kind(), m.namespace.as_deref(), &m.name)
    }

    /// As a JSON value (Kubernetes' wire shape).
    pub fn to_value(&self) -> serde_json::Value {
        // Serializing plain data structs to a Value cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Decode a stored object (already validated when it was applied).
    pub fn from_value(value: serde_json::Value) -> Result<Object, serde_json::Error> {
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(Kind::from_kind_str);
        Ok(match kind {
            Some(Kind::Namespace) => Object::Namespace(serde_json::from_value(value)?),
            Some(Kind::ServiceAccount) => Object::ServiceAccount(serde_json::from_value(value)?),
            Some(Kind::Node) => Object::Node(serde_json::from_value(value)?),
            Some(Kind::Service) => Object::Service(serde_json::from_value(value)?),
            Some(Kind::EndpointSlice) => Object::EndpointSlice(serde_json::from_value(value)?),
            Some(Kind::Deployment) => Object::Deployment(serde_json::from_value(value)?),
            Some(Kind::Pod) => Object::Pod(serde_json::from_value(value)?),
            Some(Kind::NetworkPolicy) => Object::NetworkPolicy(serde_json::from_value(value)?),
            Some(Kind::CiliumIdentity) => Object::CiliumIdentity(serde_json::from_value(value)?),
            Some(Kind::CiliumNetworkPolicy) => {
                Object::CiliumNetworkPolicy(serde_json::from_value(value)?)
            }
            Some(Kind::CiliumClusterwideNetworkPolicy) => {
                Object::CiliumClusterwideNetworkPolicy(serde_json::from_value(value)?)
            }
            None => {
                return Err(serde::de::Error::custom(format!(
                    "stored object has unknown kind {:?}",
                    value.get("kind")
                )));
            }
        })
    }

    /// The spec as a JSON value (used to detect spec changes).
    pub fn spec_value(&self) -> serde_json::Value {
        match self {
            Object::Namespace(_) | Object::ServiceAccount(_) => serde_json::Value::Null,
            Object::Node(o) => serde_json::to_value(&o.spec).unwrap_or_default(),
            Object::Service(o) => serde_json::to_value(&o.spec).unwrap_or_default(),
            // No spec: the endpoints are what the slice says.
            Object::EndpointSlice(o) => serde_json::json!({
                "addressType": o.address_type,
                "endpoints": serde_json::to_value(&o.endpoints).unwrap_or_default(),
                "ports": serde_json::to_value(&o.ports).unwrap_or_default(),
            }),
            Object::Deployment(o) => serde_json::to_value(&o.spec).unwrap_or_default(),
            Object::Pod(o) => serde_json::to_value(&o.spec).unwrap_or_default(),
            Object::NetworkPolicy(o) => serde_json::to_value(&o.spec).unwrap_or_default(),
            Object::CiliumIdentity(o) => {
                serde_json::to_value(&o.security_labels).unwrap_or_default()
            }
            Object::CiliumNetworkPolicy(o) | Object::CiliumClusterwideNetworkPolicy(o) => {
                serde_json::json!({
                    "spec": serde_json::to_value(&o.spec).unwrap_or_default(),
                    "specs": serde_json::to_value(&o.specs).unwrap_or_default(),
                })
            }
        }
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Object::Namespace(o) => o.serialize(s),
            Object::ServiceAccount(o) => o.serialize(s),
            Object::Node(o) => o.serialize(s),
            Object::Service(o) => o.serialize(s),
            Object::EndpointSlice(o) => o.serialize(s),
            Object::Deployment(o) => o.serialize(s),
            Object::Pod(o) => o.serialize(s),
            Object::NetworkPolicy(o) => o.serialize(s),
            Object::CiliumIdentity(o) => o.serialize(s),
            Object::CiliumNetworkPolicy(o) | Object::CiliumClusterwideNetworkPolicy(o) => {
                o.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Object::from_value(v).map_err(serde::de::Error::custom)
    }
}
