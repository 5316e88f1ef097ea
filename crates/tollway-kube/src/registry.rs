//! The kinds the source watches: one [`KindEntry`] each, saying where the
//! API serves the kind and how its objects become Tollway's.
//!
//! Adding a kind (AuthorizationPolicy, Gateway, HTTPRoute, ...) is one
//! entry: once tollway-api has a type for it, [`Conversion::Decode`] with
//! its [`Kind`]; before that, [`Conversion::Raw`] keeps the JSON.

use kube::discovery::ApiResource;
use serde_json::Value;
use tollway_api::{Kind, Object, ObjectKey, RawDocument};

use crate::identity;
use crate::mirror::{AnyKey, RawKey};

/// How an object of the API becomes a Tollway object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Decode as this kind with tollway-api's decoder (the lab's defaults
    /// and validation).
    Decode(Kind),
    /// The same shape under another group: take this kind's `apiVersion`
    /// and `kind`, then decode (TollwayIdentity → CiliumIdentity, which is
    /// what policy reads).
    DecodeAs(Kind),
    /// Keep the JSON as it is (kinds tollway-api has no type for yet, which
    /// it refuses as "not supported yet").
    Raw,
}

/// What an entry's objects land as in the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Produces {
    /// Typed objects of this kind.
    Typed(Kind),
    /// Raw objects under this kind name.
    Raw(String),
}

/// Rewrites an object before conversion (drops what the agent never
/// reads and the lab's validation would refuse).
pub type Prepare = fn(&mut Value);

/// One watched kind.
#[derive(Debug, Clone)]
pub struct KindEntry {
    /// Group, version, kind and plural, as the API serves them.
    pub resource: ApiResource,
    /// Whether objects live in namespaces (the watch is cluster-wide
    /// either way).
    pub namespaced: bool,
    /// How objects become Tollway's.
    pub conversion: Conversion,
    /// Applied before conversion.
    pub prepare: Option<Prepare>,
}

/// An object converted for the mirror.
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    /// A typed object (boxed: objects are large).
    Object(Box<Object>),
    /// A raw one.
    Raw {
        /// Its key.
        key: RawKey,
        /// The object as the API gave it (with `apiVersion` and `kind`).
        value: Value,
    },
}

impl Converted {
    /// The key it is stored under.
    pub fn key(&self) -> AnyKey {
        match self {
            Converted::Object(o) => AnyKey::Typed(o.key()),
            Converted::Raw { key, .. } => AnyKey::Raw(key.clone()),
        }
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

impl KindEntry {
    /// An entry for a kind tollway-api decodes, served where the kind's
    /// `apiVersion` says.
    pub fn typed(kind: Kind) -> KindEntry {
        let (group, version) = match kind.api_version().rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", kind.api_version()),
        };
        KindEntry {
            resource: resource(group, version, kind.as_str(), kind.plural()),
            namespaced: kind.namespaced(),
            conversion: Conversion::Decode(kind),
            prepare: None,
        }
    }

    /// An entry kept raw.
    pub fn raw(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> KindEntry {
        KindEntry {
            resource: resource(group, version, kind, plural),
            namespaced,
            conversion: Conversion::Raw,
            prepare: None,
        }
    }

    /// What the entry's objects land as.
    pub fn produces(&self) -> Produces {
        match self.conversion {
            Conversion::Decode(k) | Conversion::DecodeAs(k) => Produces::Typed(k),
            Conversion::Raw => Produces::Raw(self.resource.kind.clone()),
        }
    }

    /// The collection's path (`/api/v1/pods`, `/apis/cilium.io/v2/...`).
    pub fn path(&self) -> String {
        if self.resource.group.is_empty() {
            format!("/api/{}/{}", self.resource.version, self.resource.plural)
        } else {
            format!(
                "/apis/{}/{}/{}",
                self.resource.group, self.resource.version, self.resource.plural
            )
        }
    }

    /// The key of an object of this kind, from its metadata alone (so that
    /// a deletion needs no decoding).
    pub fn key_of(&self, value: &Value) -> Option<AnyKey> {
        let meta = value.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str);
        Some(match self.produces() {
            Produces::Typed(kind) => AnyKey::Typed(ObjectKey::new(kind, namespace, name)),
            Produces::Raw(kind) => AnyKey::Raw(RawKey {
                kind,
                namespace: if self.namespaced {
                    namespace.map(str::to_string)
                } else {
                    None
                },
                name: name.to_string(),
            }),
        })
    }

    /// Convert an object as the API serves it (list items come without
    /// `apiVersion` and `kind`: they are filled in from the entry). The
    /// error is the decoder's message, naming the object and the field.
    pub fn convert(&self, mut value: Value) -> Result<Converted, String> {
        let Some(map) = value.as_object_mut() else {
            return Err(format!("{}: not a JSON object", self.path()));
        };
        let (api_version, kind) = match self.conversion {
            Conversion::DecodeAs(k) => (k.api_version().to_string(), k.as_str().to_string()),
            Conversion::Decode(_) | Conversion::Raw => (
                self.resource.api_version.clone(),
                self.resource.kind.clone(),
            ),
        };
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
        if let Some(prepare) = self.prepare {
            prepare(&mut value);
        }
        match self.conversion {
            Conversion::Raw => {
                let Some(AnyKey::Raw(key)) = self.key_of(&value) else {
                    return Err(format!("{}: object without metadata.name", self.path()));
                };
                Ok(Converted::Raw { key, value })
            }
            Conversion::Decode(_) | Conversion::DecodeAs(_) => {
                let doc = RawDocument::from_value(&self.path(), 1, value);
                match tollway_api::decode(&doc) {
                    Ok(d) => Ok(Converted::Object(Box::new(d.object))),
                    Err(errors) => Err(errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")),
                }
            }
        }
    }
}

/// The agent reads a pod's identity, addresses, ports and placement, never
/// its environment; the lab validates `env` because its kubelet runs the
/// containers (it only knows `fieldRef`), which would refuse every pod
/// that takes a variable from a ConfigMap or a Secret.
fn drop_container_env(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("env");
                c.remove("envFrom");
            }
        }
    }
}

/// A pod as the agent needs it: without its environment (above) and
/// without SCTP container ports, which the datapath does not handle and
/// the lab's validation refuses (the pod itself still gets its identity,
/// policy and the TCP/UDP ports of its Services).
fn prepare_pod(pod: &mut Value) {
    drop_container_env(pod);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    ports.retain(|p| p.get("protocol").and_then(Value::as_str) != Some("SCTP"));
                }
            }
        }
    }
}

/// A dual-stack Service as the IPv4 datapath sees it: its IPv4 cluster IP
/// only (`clusterIPs`, `ipFamilies` and `ipFamilyPolicy` narrowed to
/// IPv4, as a single-stack cluster would have made it). An IPv6-only
/// Service is left as it is, and refused by name.
fn prepare_service(svc: &mut Value) {
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let v4 = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.parse::<std::net::Ipv4Addr>().is_ok())
    };
    let Some(Value::Array(ips)) = spec.get("clusterIPs") else {
        return;
    };
    if ips.len() < 2 || !ips.iter().any(v4) {
        return;
    }
    let kept: Vec<Value> = ips.iter().filter(|v| v4(v)).cloned().collect();
    if let Some(first) = kept.first() {
        spec.insert("clusterIP".into(), first.clone());
    }
    spec.insert("clusterIPs".into(), Value::Array(kept));
    spec.insert("ipFamilies".into(), Value::Array(vec![Value::from("IPv4")]));
    spec.insert("ipFamilyPolicy".into(), Value::from("SingleStack"));
}

/// The set of watched kinds.
#[derive(Debug, Clone)]
pub struct KindRegistry {
    entries: Vec<KindEntry>,
}

/// Two entries would fill the same part of the mirror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kinds {first} and {second} both produce {produces:?}")]
pub struct DuplicateKind {
    /// The entry already there.
    pub first: String,
    /// The entry refused.
    pub second: String,
    /// What both produce.
    pub produces: Produces,
}

impl KindRegistry {
    /// No kinds.
    pub fn empty() -> KindRegistry {
        KindRegistry {
            entries: Vec::new(),
        }
    }

    /// What the agent watches: Namespaces, ServiceAccounts, Nodes, Pods,
    /// Services, EndpointSlices (the endpoints of services without a
    /// selector, such as `default/kubernetes`), NetworkPolicies,
    /// CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies and
    /// TollwayIdentities.
    pub fn standard() -> KindRegistry {
        let mut pods = KindEntry::typed(Kind::Pod);
        pods.prepare = Some(prepare_pod);
        let mut services = KindEntry::typed(Kind::Service);
        services.prepare = Some(prepare_service);
        let entries = vec![
            KindEntry::typed(Kind::Namespace),
            KindEntry::typed(Kind::ServiceAccount),
            KindEntry::typed(Kind::Node),
            pods,
            services,
            KindEntry::typed(Kind::EndpointSlice),
            KindEntry::typed(Kind::NetworkPolicy),
            KindEntry::typed(Kind::CiliumNetworkPolicy),
            KindEntry::typed(Kind::CiliumClusterwideNetworkPolicy),
            identity::entry(),
        ];
        KindRegistry { entries }
    }

    /// Add a kind; refused if another entry already fills the same part of
    /// the mirror (a relist of one would delete the other's objects).
    pub fn push(&mut self, entry: KindEntry) -> Result<(), DuplicateKind> {
        let produces = entry.produces();
        if let Some(first) = self.entries.iter().find(|e| e.produces() == produces) {
            return Err(DuplicateKind {
                first: first.resource.kind.clone(),
                second: entry.resource.kind.clone(),
                produces,
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// The entries, in watch order.
    pub fn entries(&self) -> &[KindEntry] {
        &self.entries
    }

    /// The entry of a kind name (`Pod`, `EndpointSlice`, `TollwayIdentity`).
    pub fn get(&self, kind: &str) -> Option<&KindEntry> {
        self.entries.iter().find(|e| e.resource.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn standard_entries_are_distinct_and_served_where_kubernetes_serves_them() {
        let std = KindRegistry::standard();
        let mut check = KindRegistry::empty();
        for e in std.entries() {
            check.push(e.clone()).expect("distinct");
        }
        let paths: Vec<String> = std.entries().iter().map(KindEntry::path).collect();
        assert!(paths.contains(&"/api/v1/pods".to_string()));
        assert!(paths.contains(&"/apis/discovery.k8s.io/v1/endpointslices".to_string()));
        assert!(paths.contains(&"/apis/networking.k8s.io/v1/networkpolicies".to_string()));
        assert!(paths.contains(&"/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies".to_string()));
        assert!(paths.contains(&"/apis/tollway.io/v1alpha1/tollwayidentities".to_string()));
        assert!(
            !std.get("CiliumClusterwideNetworkPolicy")
                .unwrap()
                .namespaced
        );
        let dup = check.push(KindEntry::typed(Kind::Pod)).unwrap_err();
        assert_eq!(dup.produces, Produces::Typed(Kind::Pod));
    }

    #[test]
    fn list_items_get_their_type_and_decode() {
        let reg = KindRegistry::standard();
        let svc = reg.get("Service").unwrap();
        let item = json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80, "protocol": "TCP"}],
                     "selector": {"app": "web"}, "type": "ClusterIP"},
            "status": {"loadBalancer": {}}
        });
        let Converted::Object(o) = svc.convert(item).unwrap() else {
            panic!("typed expected")
        };
        assert_eq!(o.key(), ObjectKey::new(Kind::Service, Some("shop"), "web"));
    }

    #[test]
    fn decoding_failures_name_the_object_and_field() {
        let reg = KindRegistry::standard();
        let svc = reg.get("Service").unwrap();
        // An ExternalName service must say what name it stands for.
        let item = json!({
            "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "Not A Name"}
        });
        let e = svc.convert(item).unwrap_err();
        assert!(e.contains("Service shop/ext"), "{e}");
        assert!(e.contains("spec.externalName"), "{e}");
        let es = reg.get("EndpointSlice").unwrap();
        let item = json!({
            "metadata": {"name": "web-abc", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["fd00::5"]}]
        });
        let e = es.convert(item).unwrap_err();
        assert!(e.contains("EndpointSlice shop/web-abc"), "{e}");
        assert!(e.contains("endpoints[0].addresses[0]"), "{e}");
    }

    #[test]
    fn the_service_types_of_a_real_cluster_decode() {
        let reg = KindRegistry::standard();
        let svc = reg.get("Service").unwrap();
        let items = [
            json!({"metadata": {"name": "ext", "namespace": "shop"},
                   "spec": {"type": "ExternalName", "externalName": "db.example.com",
                            "sessionAffinity": "None"},
                   "status": {"loadBalancer": {}}}),
            json!({"metadata": {"name": "lb", "namespace": "shop"},
                   "spec": {"type": "LoadBalancer", "clusterIP": "10.96.40.2",
                            "clusterIPs": ["10.96.40.2"], "externalTrafficPolicy": "Local",
                            "healthCheckNodePort": 31000, "allocateLoadBalancerNodePorts": true,
                            "selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                       "targetPort": 8080, "nodePort": 30880},
                                      {"name": "sig", "port": 9000, "protocol": "SCTP",
                                       "targetPort": 9000, "nodePort": 30881}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}}}),
        ];
        for item in items {
            let Converted::Object(o) = svc.convert(item).unwrap() else {
                panic!("typed expected")
            };
            let Object::Service(s) = *o else { panic!() };
            if s.metadata.name == "lb" {
                assert_eq!(s.load_balancer_ips().collect::<Vec<_>>(), ["203.0.113.7"]);
            }
        }
    }

    #[test]
    fn endpoint_slices_are_typed() {
        let reg = KindRegistry::standard();
        let es = reg.get("EndpointSlice").unwrap();
        assert_eq!(es.produces(), Produces::Typed(Kind::EndpointSlice));
        // A list item: no apiVersion/kind; what the API server writes for
        // default/kubernetes.
        let v = json!({"metadata": {"name": "kubernetes", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                       "addressType": "IPv4",
                       "endpoints": [{"addresses": ["172.18.0.2"], "conditions": {"ready": true}}],
                       "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]});
        let Converted::Object(o) = es.convert(v).unwrap() else {
            panic!("typed expected")
        };
        assert_eq!(
            o.key(),
            ObjectKey::new(Kind::EndpointSlice, Some("default"), "kubernetes")
        );
        let Object::EndpointSlice(s) = *o else {
            panic!()
        };
        assert_eq!(s.service_name(), Some("kubernetes"));
        assert_eq!(s.ports[0].port, Some(6443));
        // The placeholder slice of a service without endpoints: Go's nil
        // lists come as null.
        let v = json!({"metadata": {"name": "web-x", "namespace": "shop",
                                    "labels": {"kubernetes.io/service-name": "web"}},
                       "addressType": "IPv4", "endpoints": null, "ports": null});
        let Converted::Object(o) = es.convert(v).unwrap() else {
            panic!("typed expected")
        };
        let Object::EndpointSlice(s) = *o else {
            panic!()
        };
        assert!(s.endpoints.is_empty() && s.ports.is_empty());
    }

    #[test]
    fn identities_become_cilium_identities() {
        let reg = KindRegistry::standard();
        let id = reg.get("TollwayIdentity").unwrap();
        let v = json!({
            "apiVersion": "tollway.io/v1alpha1", "kind": "TollwayIdentity",
            "metadata": {"name": "256"},
            "security-labels": {"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}
        });
        let Converted::Object(o) = id.convert(v).unwrap() else {
            panic!()
        };
        let Object::CiliumIdentity(i) = *o else {
            panic!("{o:?}")
        };
        assert_eq!(i.number(), Some(256));
        assert_eq!(i.security_labels["k8s:app"], "web");
    }

    #[test]
    fn pods_lose_their_environment_only() {
        let reg = KindRegistry::standard();
        let pods = reg.get("Pod").unwrap();
        let v = json!({
            "metadata": {"name": "p", "namespace": "shop", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "x",
                "env": [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "ports": [{"containerPort": 8080, "name": "http"}]}]}
        });
        let Converted::Object(o) = pods.convert(v).unwrap() else {
            panic!()
        };
        let Object::Pod(p) = *o else { panic!() };
        assert!(p.spec.containers[0].env.is_empty());
        assert_eq!(p.spec.containers[0].ports[0].container_port, 8080);
    }

    #[test]
    fn dual_stack_services_keep_their_ipv4_and_sctp_pod_ports_go() {
        let reg = KindRegistry::standard();
        let v = json!({
            "metadata": {"name": "d", "namespace": "shop"},
            "spec": {"clusterIP": "fd00::5", "clusterIPs": ["fd00::5", "10.96.0.5"],
                     "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack",
                     "ports": [{"port": 80}], "selector": {"app": "d"}}
        });
        let Converted::Object(o) = reg.get("Service").unwrap().convert(v).unwrap() else {
            panic!()
        };
        let Object::Service(s) = *o else { panic!() };
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("10.96.0.5"));
        assert_eq!(s.spec.cluster_ips, ["10.96.0.5"]);
        let only_v6 = json!({
            "metadata": {"name": "six", "namespace": "shop"},
            "spec": {"clusterIP": "fd00::6", "clusterIPs": ["fd00::6"], "ipFamilies": ["IPv6"],
                     "ports": [{"port": 80}]}
        });
        let e = reg.get("Service").unwrap().convert(only_v6).unwrap_err();
        assert!(
            e.contains("Service shop/six") && e.contains("spec.clusterIP"),
            "{e}"
        );
        let pod = json!({
            "metadata": {"name": "p", "namespace": "shop", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [
                {"containerPort": 9000, "protocol": "SCTP"},
                {"containerPort": 8080, "name": "http"}]}]}
        });
        let Converted::Object(o) = reg.get("Pod").unwrap().convert(pod).unwrap() else {
            panic!()
        };
        let Object::Pod(p) = *o else { panic!() };
        assert_eq!(p.spec.containers[0].ports.len(), 1);
        assert_eq!(p.spec.containers[0].ports[0].container_port, 8080);
    }

    #[test]
    fn raw_kinds_keep_the_json() {
        // A kind tollway-api has no type for yet (Gateway API routes).
        let mut reg = KindRegistry::standard();
        reg.push(KindEntry::raw(
            "gateway.networking.k8s.io",
            "v1",
            "HTTPRoute",
            "httproutes",
            true,
        ))
        .unwrap();
        let routes = reg.get("HTTPRoute").unwrap();
        assert_eq!(
            routes.path(),
            "/apis/gateway.networking.k8s.io/v1/httproutes"
        );
        let v = json!({"metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"parentRefs": [{"name": "gw"}]}});
        let Converted::Raw { key, value } = routes.convert(v).unwrap() else {
            panic!()
        };
        assert_eq!(key.kind, "HTTPRoute");
        assert_eq!(key.namespace.as_deref(), Some("shop"));
        assert_eq!(value["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(value["spec"]["parentRefs"][0]["name"], "gw");
        assert!(matches!(
            routes.key_of(&value),
            Some(AnyKey::Raw(k)) if k == key
        ));
    }
}
