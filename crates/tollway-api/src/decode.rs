//! Raw documents → typed, defaulted, validated objects.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::defaults::apply_defaults;
use crate::error::{ManifestError, ObjectRef, Problem, Warning};
use crate::object::{Kind, Object};
use crate::parse::RawDocument;
use crate::validate::{validate, warnings as policy_warnings};

/// A decoded object and what is worth telling about it.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The defaulted, validated object.
    pub object: Object,
    /// The document it came from (for later errors, e.g. from the store).
    pub document: RawDocument,
    /// Warnings: ignored unknown fields, fields the lab does not act on.
    pub warnings: Vec<Warning>,
}

/// Kinds that later Tollway issues add: reported as "not supported yet".
const LATER_KINDS: &[(&str, &str)] = &[
    ("security.istio.io", "AuthorizationPolicy"),
    ("security.istio.io", "PeerAuthentication"),
    ("security.istio.io", "RequestAuthentication"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "GRPCRoute"),
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "ServiceEntry"),
    ("", "Endpoints"),
];

/// Decode every document; all errors of all documents are returned together.
pub fn decode_all(docs: &[RawDocument]) -> Result<Vec<Decoded>, Vec<ManifestError>> {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for d in docs {
        match decode(d) {
            Ok(x) => ok.push(x),
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() { Ok(ok) } else { Err(errs) }
}

/// Decode one document into a typed object: check `apiVersion`/`kind`,
/// deserialize (naming the field of any type error), apply Kubernetes'
/// defaults, then validate.
pub fn decode(doc: &RawDocument) -> Result<Decoded, Vec<ManifestError>> {
    let v = &doc.value;
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_str = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let obj_ref = object_ref(v, kind_str);
    let err = |problem: Problem, field: Option<&str>| ManifestError {
        file: doc.file.clone(),
        document: Some(doc.index),
        line: doc.line_of(field.unwrap_or("")),
        object: if kind_str.is_empty() {
            None
        } else {
            Some(obj_ref.clone())
        },
        problem,
    };
    let prefix = doc.path_prefix();
    let field = |f: &str, reason: String| Problem::Field {
        field: format!("{prefix}{f}"),
        reason,
    };
    if !v.is_object() {
        return Err(vec![err(
            field("", "a manifest must be a mapping".into()),
            None,
        )]);
    }
    if kind_str.is_empty() {
        return Err(vec![err(field("kind", "required".into()), Some("kind"))]);
    }
    if api_version.is_empty() {
        return Err(vec![err(
            field("apiVersion", "required".into()),
            Some("apiVersion"),
        )]);
    }
    let Some(kind) = Kind::from_kind_str(kind_str) else {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let later = LATER_KINDS
            .iter()
            .any(|(g, k)| *g == group && *k == kind_str);
        let problem = if later {
            Problem::NotSupportedYet {
                kind: kind_str.into(),
                api_version: api_version.into(),
            }
        } else {
            Problem::UnknownKind {
                kind: kind_str.into(),
                api_version: api_version.into(),
            }
        };
        return Err(vec![err(problem, Some("kind"))]);
    };
    if api_version != kind.api_version() {
        return Err(vec![err(
            field(
                "apiVersion",
                format!(
                    "must be {:?} for {kind}, got {api_version:?}",
                    kind.api_version()
                ),
            ),
            Some("apiVersion"),
        )]);
    }

    let mut ignored = Vec::new();
    let typed = match kind {
        Kind::Namespace => typed(v, &mut ignored).map(Object::Namespace),
        Kind::ServiceAccount => typed(v, &mut ignored).map(Object::ServiceAccount),
        Kind::Node => typed(v, &mut ignored).map(Object::Node),
        Kind::Service => typed(v, &mut ignored).map(Object::Service),
        Kind::EndpointSlice => typed(v, &mut ignored).map(Object::EndpointSlice),
        Kind::Deployment => typed(v, &mut ignored).map(Object::Deployment),
        Kind::Pod => typed(v, &mut ignored).map(Object::Pod),
        Kind::NetworkPolicy => typed(v, &mut ignored).map(Object::NetworkPolicy),
        Kind::CiliumIdentity => typed(v, &mut ignored).map(Object::CiliumIdentity),
        Kind::CiliumNetworkPolicy => typed(v, &mut ignored).map(Object::CiliumNetworkPolicy),
        Kind::CiliumClusterwideNetworkPolicy => {
            typed(v, &mut ignored).map(Object::CiliumClusterwideNetworkPolicy)
        }
    };
    let mut object = match typed {
        Ok(o) => o,
        Err((path, reason)) => return Err(vec![err(field(&path, reason), Some(&path))]),
    };
    apply_defaults(&mut object);
    let problems = validate(&object);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|(path, reason)| err(field(&path, reason), Some(&path)))
            .collect());
    }
    let mut warnings: Vec<Warning> = ignored
        .into_iter()
        .map(|path| (path, "unknown field, ignored".to_string()))
        .chain(unused_fields(&object))
        .chain(policy_warnings(&object))
        .map(|(path, message)| Warning {
            file: doc.file.clone(),
            document: doc.index,
            line: doc.line_of(&path),
            object: obj_ref.clone(),
            field: format!("{prefix}{path}"),
            message,
        })
        .collect();
    warnings.sort_by(|a, b| a.line.cmp(&b.line).then(a.field.cmp(&b.field)));
    Ok(Decoded {
        object,
        document: doc.clone(),
        warnings,
    })
}

fn object_ref(v: &Value, kind: &str) -> ObjectRef {
    let meta = v.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let namespaced = Kind::from_kind_str(kind).is_none_or(Kind::namespaced);
    ObjectRef {
        kind: kind.to_string(),
        namespace: if namespaced {
            Some(ns.unwrap_or("default").to_string())
        } else {
            None
        },
        name: name.map(str::to_string),
    }
}

/// Deserialize with the path of any error, collecting ignored fields.
fn typed<T: DeserializeOwned>(v: &Value, ignored: &mut Vec<String>) -> Result<T, (String, String)> {
    let mut on_ignored = |p: serde_ignored::Path<'_>| ignored.push(render_ignored(&p));
    let de = serde_ignored::Deserializer::new(v, &mut on_ignored);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

/// Render serde_ignored's path as `spec.ports[0].foo`.
fn render_ignored(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_ignored(parent)),
        Path::Map { parent, key } => {
            let parent = render_ignored(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_ignored(parent),
    }
}

/// Known Kubernetes fields that the lab accepts but does not act on.
fn unused_fields(o: &Object) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (spec, base) = match o {
        Object::Pod(p) => (&p.spec, "spec".to_string()),
        Object::Deployment(d) => (&d.spec.template.spec, "spec.template.spec".to_string()),
        _ => return out,
    };
    for (i, c) in spec.containers.iter().enumerate() {
        for (set, name) in [
            (c.readiness_probe.is_some(), "readinessProbe"),
            (c.liveness_probe.is_some(), "livenessProbe"),
            (c.startup_probe.is_some(), "startupProbe"),
        ] {
            if set {
                out.push((
                    format!("{base}.containers[{i}].{name}"),
                    "probes are not run by the lab yet: a container counts as ready once it runs"
                        .to_string(),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_documents;

    fn one(text: &str) -> Result<Decoded, Vec<ManifestError>> {
        let docs = parse_documents("t.yaml", text).map_err(|e| vec![e])?;
        decode(&docs[0])
    }

    fn errors(text: &str) -> Vec<String> {
        match one(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: checkout-api\n  namespace: payments\nspec:\n  selector:\n    app: checkout-api\n  ports:\n  - port: 70000\n";

    #[test]
    fn error_names_file_document_object_field_and_line() {
        let text =
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: payments\n---\n{SVC}");
        let docs = parse_documents("payments.yaml", &text).unwrap();
        let errs = decode(&docs[1]).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "payments.yaml:15: document 2 (Service payments/checkout-api): spec.ports[0].port: must be 1-65535, got 70000"
        );
    }

    #[test]
    fn not_supported_yet_kinds_are_named() {
        let e = errors(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: payments\nspec: {}\n",
        );
        assert!(
            e[0].contains("AuthorizationPolicy is not supported yet"),
            "{e:?}"
        );
        let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n");
        assert!(
            e[0].contains("\"ConfigMap\"") && e[0].contains("not supported by Tollway"),
            "{e:?}"
        );
    }

    #[test]
    fn kind_and_api_version() {
        assert!(errors("apiVersion: v1\nmetadata:\n  name: x\n")[0].contains("kind: required"));
        assert!(errors("kind: Pod\nmetadata:\n  name: x\n")[0].contains("apiVersion: required"));
        let e = errors("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: x\n");
        assert!(
            e[0].contains("apiVersion: must be \"apps/v1\" for Deployment"),
            "{e:?}"
        );
        assert!(errors("- a\n- b\n")[0].contains("must be a mapping"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = errors(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: eighty\n",
        );
        assert!(
            e[0].contains("(Service default/s): spec.ports[0].port: invalid type"),
            "{e:?}"
        );
        assert!(e[0].starts_with("t.yaml:7:"), "{e:?}");
        let e = errors(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: Weird\n  ports:\n  - port: 80\n",
        );
        assert!(e[0].contains("spec.type: unknown variant"), "{e:?}");
    }

    #[test]
    fn unknown_fields_are_warnings_and_probes_are_flagged() {
        let d = one("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n    comand: [sleep]\n    readinessProbe:\n      tcpSocket: {port: 80}\n").unwrap();
        let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("spec.containers[0].comand: unknown field, ignored"),
            "{w:?}"
        );
        assert!(w[0].starts_with("t.yaml:9:"), "{w:?}");
        assert!(w[1].contains("readinessProbe: probes are not run"), "{w:?}");
    }

    #[test]
    fn endpoint_slices_decode_with_kubernetes_defaults() {
        let d = one("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kubernetes\n  labels: {kubernetes.io/service-name: kubernetes}\naddressType: IPv4\nendpoints:\n- addresses: [172.18.0.2]\n  conditions: {}\n- addresses: [172.18.0.3]\n  conditions: {ready: false, terminating: true}\n  nodeName: node-b\n  zone: z1\n  hostname: api-1\n  targetRef: {kind: Pod, namespace: default, name: api-1, uid: u1}\nports:\n- {name: https, port: 6443}\n- {port: 53, protocol: UDP, appProtocol: dns}\n").unwrap();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let Object::EndpointSlice(es) = d.object else {
            panic!("{:?}", d.object)
        };
        assert_eq!(es.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(es.service_name(), Some("kubernetes"));
        assert_eq!(es.address_type, crate::AddressType::IPv4);
        // Unset conditions: ready, and serving as ready.
        let c = es.endpoints[0].conditions;
        assert!(c.is_ready() && c.is_serving() && !c.is_terminating());
        let c = es.endpoints[1].conditions;
        assert!(!c.is_ready() && !c.is_serving() && c.is_terminating());
        assert_eq!(es.endpoints[1].node_name.as_deref(), Some("node-b"));
        assert_eq!(
            es.endpoints[1]
                .target_ref
                .as_ref()
                .and_then(|r| r.name.as_deref()),
            Some("api-1")
        );
        // `SetDefaults_EndpointPort`: name "", protocol TCP.
        assert_eq!(es.ports[0].protocol, Some(crate::Protocol::Tcp));
        assert_eq!(es.ports[1].name.as_deref(), Some(""));
        assert_eq!(es.ports[1].protocol(), crate::Protocol::Udp);
        for name in [
            "endpointslices",
            "EndpointSlice",
            "endpointslices.discovery.k8s.io",
        ] {
            assert_eq!(Kind::from_cli(name), Some(Kind::EndpointSlice), "{name}");
        }
        assert_eq!(Kind::EndpointSlice.plural(), "endpointslices");
        assert!(Kind::EndpointSlice.namespaced());
        // Round trip through the store's JSON.
        let v = Object::EndpointSlice(es.clone()).to_value();
        assert_eq!(v["addressType"], "IPv4");
        assert_eq!(Object::from_value(v).unwrap(), Object::EndpointSlice(es));
    }

    #[test]
    fn ipv6_and_unlabelled_slices_are_accepted_with_warnings() {
        let d = one("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-v6\n  namespace: shop\naddressType: IPv6\nendpoints:\n- addresses: ['fd00:10:244::5']\n").unwrap();
        let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("addressType: IPv6 slices are not load balanced")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("metadata.labels: no \"kubernetes.io/service-name\" label")),
            "{w:?}"
        );
    }

    #[test]
    fn endpoint_slice_errors_name_the_slice_and_field() {
        let e = errors(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n  namespace: shop\naddressType: IPv4\nendpoints:\n- addresses:\n  - 10.244.1.5\n  - 127.0.0.1\n",
        );
        assert_eq!(
            e,
            [
                "t.yaml:10: document 1 (EndpointSlice shop/web-abc): endpoints[0].addresses[1]: may not be in the loopback range (127.0.0.0/8, ::1/128), got 127.0.0.1"
            ]
        );
        let e = errors(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n",
        );
        assert!(
            e[0].contains("(EndpointSlice default/web-abc)")
                && e[0].contains("missing field `addressType`"),
            "{e:?}"
        );
    }

    #[test]
    fn service_types_of_a_real_cluster_are_accepted() {
        let lb = one("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: LoadBalancer\n  externalIPs: [192.168.50.10, 'fd00::10']\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n  - {name: sig, port: 9000, protocol: SCTP}\nstatus:\n  loadBalancer:\n    ingress:\n    - {ip: 203.0.113.7, ipMode: VIP}\n    - hostname: lb.example.com\n").unwrap();
        let Object::Service(s) = &lb.object else {
            panic!()
        };
        assert_eq!(s.spec.allocate_load_balancer_node_ports, Some(true));
        assert_eq!(
            s.spec.external_traffic_policy,
            Some(crate::TrafficPolicy::Cluster)
        );
        assert!(s.allocates_node_ports() && s.is_externally_accessible());
        assert_eq!(s.load_balancer_ips().collect::<Vec<_>>(), ["203.0.113.7"]);
        let w: Vec<String> = lb.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.contains("spec.externalIPs[1]: not an IPv4 address")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("spec.ports[1].protocol: SCTP is not load balanced")),
            "{w:?}"
        );

        let ext = one("apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  type: ExternalName\n  externalName: db.example.com.\n").unwrap();
        let Object::Service(s) = &ext.object else {
            panic!()
        };
        assert_eq!(s.spec.external_name.as_deref(), Some("db.example.com."));
        assert_eq!(s.spec.internal_traffic_policy, None);
        assert!(!s.is_externally_accessible() && !s.allocates_node_ports());

        // External IPs make a ClusterIP service externally accessible.
        let c = one("apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n  externalIPs: [192.168.50.11]\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n").unwrap();
        let Object::Service(s) = &c.object else {
            panic!()
        };
        assert_eq!(
            s.spec.external_traffic_policy,
            Some(crate::TrafficPolicy::Local)
        );
        let no_alloc = one("apiVersion: v1\nkind: Service\nmetadata: {name: nolb}\nspec:\n  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n").unwrap();
        let Object::Service(s) = &no_alloc.object else {
            panic!()
        };
        assert!(!s.allocates_node_ports());
    }

    #[test]
    fn list_items_are_prefixed() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec:\n    ports:\n    - port: 0\n";
        let docs = parse_documents("l.yaml", text).unwrap();
        let e = decode(&docs[0]).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("items[0].spec.ports[0].port: must be 1-65535, got 0"),
            "{}",
            e[0]
        );
    }
}
