//! The columns `kubectl get` prints for each kind, and their cells.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tollway_api::{
    Deployment, EndpointSlice, Kind, LabelSelector, Namespace, NetworkPolicy, Node, Object, Pod,
    Service, ServiceType,
};

use super::{age, pod};

/// What kubectl prints for a missing value.
pub(super) const NONE: &str = "<none>";

/// The column headers of `kind` (without NAMESPACE and LABELS).
pub(super) fn headers(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut base, extra): (Vec<&str>, &[&str]) = match kind {
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        Kind::Service => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            &[],
        ),
        Kind::Deployment => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::NetworkPolicy => (vec!["NAME", "POD-SELECTOR", "AGE"], &[]),
        Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy => {
            (vec!["NAME", "AGE"], &[])
        }
        // Cilium's CRD printer columns.
        Kind::CiliumIdentity => (vec!["NAME", "NAMESPACE", "AGE"], &[]),
        Kind::Namespace => (vec!["NAME", "STATUS", "AGE"], &[]),
        Kind::ServiceAccount => (vec!["NAME", "SECRETS", "AGE"], &[]),
        Kind::Node => (
            vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
                "POD-CIDR",
            ],
        ),
    };
    if wide {
        base.extend_from_slice(extra);
    }
    base
}

/// The cells of one object, matching [`headers`] of its kind.
pub(super) fn cells(object: &Object, wide: bool, now: Timestamp) -> Vec<String> {
    match object {
        Object::Pod(p) => pod_cells(p, wide, now),
        Object::Service(s) => service_cells(s, wide, now),
        Object::EndpointSlice(es) => endpoint_slice_cells(es, now),
        Object::Deployment(d) => deployment_cells(d, wide, now),
        Object::Namespace(n) => namespace_cells(n, now),
        Object::ServiceAccount(sa) => vec![
            sa.metadata.name.clone(),
            "0".to_string(),
            age::since(sa.metadata.creation_timestamp, now),
        ],
        Object::Node(n) => node_cells(n, wide, now),
        Object::NetworkPolicy(np) => network_policy_cells(np, now),
        Object::CiliumIdentity(id) => vec![
            id.metadata.name.clone(),
            or_none(
                id.security_labels
                    .get("k8s:io.kubernetes.pod.namespace")
                    .map(String::as_str),
            ),
            age::since(id.metadata.creation_timestamp, now),
        ],
        Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => vec![
            p.metadata.name.clone(),
            age::since(p.metadata.creation_timestamp, now),
        ],
    }
}

/// `k=v,k2=v2` in key order, or `<none>` (kubectl's `labels.FormatLabels`).
pub(super) fn format_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return NONE.to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn or_none(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or(NONE).to_string()
}

fn pod_cells(p: &Pod, wide: bool, now: Timestamp) -> Vec<String> {
    let s = pod::summarize(p, now);
    let mut row = vec![
        p.metadata.name.clone(),
        s.ready,
        s.status,
        s.restarts,
        age::since(p.metadata.creation_timestamp, now),
    ];
    if wide {
        let ip = p.status.as_ref().and_then(|s| {
            s.pod_ips
                .first()
                .map(|i| i.ip.as_str())
                .or(s.pod_ip.as_deref())
        });
        row.extend([
            or_none(ip),
            or_none(p.spec.node_name.as_deref()),
            NONE.to_string(),
            NONE.to_string(),
        ]);
    }
    row
}

/// `80/TCP,443:30443/TCP` (kubectl's `makePortString`), `<none>` without ports.
pub(super) fn service_ports(s: &Service) -> String {
    if s.spec.ports.is_empty() {
        return NONE.to_string();
    }
    s.spec
        .ports
        .iter()
        .map(|p| match p.node_port.filter(|n| *n > 0) {
            Some(node_port) => format!("{}:{}/{}", p.port, node_port, p.protocol()),
            None => format!("{}/{}", p.port, p.protocol()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_cells(s: &Service, wide: bool, now: Timestamp) -> Vec<String> {
    let cluster_ip = s
        .spec
        .cluster_ips
        .first()
        .map(String::as_str)
        .or(s.spec.cluster_ip.as_deref());
    let mut row = vec![
        s.metadata.name.clone(),
        s.service_type().to_string(),
        or_none(cluster_ip),
        service_external_ip(s, wide),
        service_ports(s),
        age::since(s.metadata.creation_timestamp, now),
    ];
    if wide {
        row.push(format_labels(&s.spec.selector));
    }
    row
}

/// kubectl's `getServiceExternalIP`: the external IPs; for a
/// LoadBalancer its ingress first (`<pending>` without any); for an
/// ExternalName its name.
fn service_external_ip(s: &Service, wide: bool) -> String {
    let external = &s.spec.external_ips;
    match s.service_type() {
        ServiceType::ClusterIP | ServiceType::NodePort if !external.is_empty() => {
            external.join(",")
        }
        ServiceType::ClusterIP | ServiceType::NodePort => NONE.to_string(),
        ServiceType::LoadBalancer => {
            // `loadBalancerStatusStringer`: IPs or hostnames, truncated
            // unless wide.
            let ingress: Vec<&str> = s
                .status
                .iter()
                .filter_map(|st| st.load_balancer.as_ref())
                .flat_map(|lb| lb.ingress.iter())
                .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
                .filter(|a| !a.is_empty())
                .collect();
            let mut lb = ingress.join(",");
            if !wide && lb.len() > 16 {
                lb = format!("{}...", lb.get(..13).unwrap_or(&lb));
            }
            let all: Vec<&str> = Some(lb.as_str())
                .filter(|l| !l.is_empty())
                .into_iter()
                .chain(external.iter().map(String::as_str))
                .collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        ServiceType::ExternalName => s.spec.external_name.clone().unwrap_or_default(),
    }
}

/// kubectl's `printEndpointSlice`: the first three ports (the number, else
/// the name, else `*`) and addresses, `+ N more...` for the rest,
/// `<unset>` for none.
fn endpoint_slice_cells(es: &EndpointSlice, now: Timestamp) -> Vec<String> {
    let ports: Vec<String> = es
        .ports
        .iter()
        .map(|p| match (p.port, p.name.as_deref()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = es
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    vec![
        es.metadata.name.clone(),
        es.address_type.to_string(),
        list_with_more(&ports),
        list_with_more(&addresses),
        age::since(es.metadata.creation_timestamp, now),
    ]
}

/// kubectl's `listWithMoreString` with at most three shown.
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

/// A label selector as kubectl prints it: requirements sorted by key,
/// `app=x,env in (a,b),!legacy`; empty for an empty selector and
/// `<invalid>` for one that cannot be a selector.
pub(super) fn format_selector(sel: &LabelSelector) -> String {
    let mut terms: Vec<(&str, String)> = sel
        .match_labels
        .iter()
        .map(|(k, v)| (k.as_str(), format!("{k}={v}")))
        .collect();
    for r in &sel.match_expressions {
        let mut values: Vec<&str> = r.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let set = values.join(",");
        let k = &r.key;
        let term = match (r.operator.as_str(), values.is_empty()) {
            ("In", false) => format!("{k} in ({set})"),
            ("NotIn", false) => format!("{k} notin ({set})"),
            ("Exists", true) => k.clone(),
            ("DoesNotExist", true) => format!("!{k}"),
            _ => return "<invalid>".to_string(),
        };
        terms.push((k.as_str(), term));
    }
    terms.sort_by(|a, b| a.0.cmp(b.0));
    terms
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// kubectl's `printNetworkPolicy`: the pod selector as
/// `metav1.FormatLabelSelector` prints it (`<none>` for `{}`).
fn network_policy_cells(np: &NetworkPolicy, now: Timestamp) -> Vec<String> {
    let selector = format_selector(np.pod_selector());
    vec![
        np.metadata.name.clone(),
        if selector.is_empty() {
            NONE.to_string()
        } else {
            selector
        },
        age::since(np.metadata.creation_timestamp, now),
    ]
}

fn deployment_cells(d: &Deployment, wide: bool, now: Timestamp) -> Vec<String> {
    let status = d.status.clone().unwrap_or_default();
    let mut row = vec![
        d.metadata.name.clone(),
        format!("{}/{}", status.ready_replicas, d.replicas()),
        status.updated_replicas.to_string(),
        status.available_replicas.to_string(),
        age::since(d.metadata.creation_timestamp, now),
    ];
    if wide {
        let containers = &d.spec.template.spec.containers;
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        let images: Vec<&str> = containers
            .iter()
            .map(|c| c.image.as_deref().unwrap_or(""))
            .collect();
        row.extend([
            names.join(","),
            images.join(","),
            format_selector(&d.spec.selector),
        ]);
    }
    row
}

fn namespace_cells(n: &Namespace, now: Timestamp) -> Vec<String> {
    let phase = n
        .status
        .as_ref()
        .map(|s| s.phase.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("Active");
    vec![
        n.metadata.name.clone(),
        phase.to_string(),
        age::since(n.metadata.creation_timestamp, now),
    ]
}

/// `Ready`, `NotReady`, or `Unknown` when the node never reported.
fn node_status(n: &Node) -> &'static str {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
}

/// Roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role`.
fn node_roles(n: &Node) -> String {
    let mut roles: Vec<&str> = n
        .metadata
        .labels
        .iter()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if k == "kubernetes.io/role" && !v.is_empty() => Some(v.as_str()),
            None => None,
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        NONE.to_string()
    } else {
        roles.join(",")
    }
}

fn node_address(n: &Node, type_: &str) -> String {
    let addr = n.status.as_ref().and_then(|s| {
        s.addresses
            .iter()
            .find(|a| a.type_ == type_)
            .map(|a| a.address.as_str())
    });
    or_none(addr)
}

fn node_cells(n: &Node, wide: bool, now: Timestamp) -> Vec<String> {
    let annotation = |key: &str| n.metadata.annotations.get(key).map(String::as_str);
    let mut row = vec![
        n.metadata.name.clone(),
        node_status(n).to_string(),
        node_roles(n),
        age::since(n.metadata.creation_timestamp, now),
        or_none(annotation("tollway.io/version")),
    ];
    if wide {
        let unknown = |key: &str| {
            annotation(key)
                .filter(|v| !v.is_empty())
                .unwrap_or("<unknown>")
                .to_string()
        };
        let pod_cidr = if n.spec.pod_cidrs.is_empty() {
            or_none(n.spec.pod_cidr.as_deref())
        } else {
            n.spec.pod_cidrs.join(",")
        };
        row.extend([
            node_address(n, "InternalIP"),
            node_address(n, "ExternalIP"),
            unknown("tollway.io/os-image"),
            unknown("tollway.io/kernel-version"),
            unknown("tollway.io/container-runtime"),
            pod_cidr,
        ]);
    }
    row
}
