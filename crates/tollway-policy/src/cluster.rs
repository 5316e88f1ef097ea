//! The cluster's policy state computed from its objects: every pod's
//! security labels and identity, the compiler's [`PolicyContext`], every
//! rule, and the ipcache each node's datapath needs. Pure: the agent and
//! the CLI feed it a snapshot of the store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use tollway_api::{
    CiliumIdentity, CiliumNetworkPolicy, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node, Pod,
    Protocol,
};

use crate::PolicyError;
use crate::abi::{TW_ID_HOST, TW_ID_INIT, TW_ID_REMOTE_NODE};
use crate::identity::{CidrIdentities, reserved_identities};
use crate::labels::{LabelSet, pod_security_labels};
use crate::model::{NamedPort, PolicyContext, Proto, Rule, policy_cidrs};
use crate::translate::translate_all;

/// A namespace's labels as policy sees them: its own plus
/// `kubernetes.io/metadata.name`, which Kubernetes always sets.
pub fn namespace_labels(ns: &Namespace) -> BTreeMap<String, String> {
    let mut labels = ns.metadata.labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| ns.metadata.name.clone());
    labels
}

/// The security labels of `pod`, given its namespace's labels.
pub fn pod_labels(pod: &Pod, namespace_labels: &BTreeMap<String, String>) -> LabelSet {
    pod_security_labels(
        pod.metadata.namespace_or_default(),
        &pod.metadata.labels,
        namespace_labels,
        pod.service_account(),
    )
}

/// A CiliumIdentity's `security-labels` as a label set (`k8s:app` →
/// `web` becomes `k8s:app=web`).
pub fn identity_labels(id: &CiliumIdentity) -> Result<LabelSet, PolicyError> {
    let mut set = LabelSet::new();
    for (k, v) in &id.security_labels {
        set.insert(format!("{k}={v}").parse()?);
    }
    Ok(set)
}

/// A label set as CiliumIdentity `security-labels`.
pub fn security_labels_map(set: &LabelSet) -> BTreeMap<String, String> {
    set.iter()
        .map(|l| (format!("{}:{}", l.source, l.key), l.value.clone()))
        .collect()
}

/// Every well-formed CiliumIdentity: number → labels (others are skipped).
pub fn identity_table<'a>(
    identities: impl IntoIterator<Item = &'a CiliumIdentity>,
) -> BTreeMap<u32, LabelSet> {
    identities
        .into_iter()
        .filter_map(|i| Some((i.number()?, identity_labels(i).ok()?)))
        .collect()
}

/// The objects policy depends on.
#[derive(Debug, Default, Clone)]
pub struct ClusterObjects<'a> {
    /// Every namespace.
    pub namespaces: Vec<&'a Namespace>,
    /// Every pod.
    pub pods: Vec<&'a Pod>,
    /// Every CiliumIdentity.
    pub identities: Vec<&'a CiliumIdentity>,
    /// Every node.
    pub nodes: Vec<&'a Node>,
    /// Every NetworkPolicy.
    pub network_policies: Vec<&'a NetworkPolicy>,
    /// Every CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.
    pub cilium_policies: Vec<&'a CiliumNetworkPolicy>,
}

/// What an ipcache prefix stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpKind {
    /// A pod's address.
    Endpoint,
    /// A node's address.
    Node,
    /// A CIDR some policy names.
    Cidr,
}

/// One wanted ipcache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpcacheWant {
    /// The identity.
    pub identity: u32,
    /// For a pod: the node it runs on.
    pub node_ip: Option<Ipv4Addr>,
    /// What the prefix is.
    pub kind: IpKind,
}

/// A pod as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodIdentity {
    /// `namespace/name`.
    pub pod: String,
    /// Its node, once scheduled.
    pub node: Option<String>,
    /// Its address, once assigned.
    pub ip: Option<Ipv4Addr>,
    /// Its identity (`TW_ID_INIT` until one is allocated for its labels).
    pub identity: u32,
}

/// The cluster's policy state.
#[derive(Debug, Clone, Default)]
pub struct ClusterPolicy {
    /// Every rule of every policy.
    pub rules: Vec<Rule>,
    /// Policies that could not be translated.
    pub errors: Vec<(String, PolicyError)>,
    /// What the compiler needs.
    pub ctx: PolicyContext,
    /// Every pod, by uid.
    pub pods: BTreeMap<String, PodIdentity>,
    /// The ipcache every node should hold, with this node's view of which
    /// node address is the host.
    pub ipcache: BTreeMap<Ipv4Net, IpcacheWant>,
}

/// Computes the cluster's policy state as node `local_node` sees it.
///
/// `cidrs` keeps the node's CIDR identities across calls (they are local
/// to a node, as in Cilium): CIDRs no policy names any more are released,
/// new ones allocated, the others keep their numbers.
pub fn cluster_policy(
    objects: &ClusterObjects<'_>,
    local_node: &str,
    cidrs: &mut CidrIdentities,
) -> ClusterPolicy {
    let translated = translate_all(
        objects.network_policies.iter().copied(),
        objects.cilium_policies.iter().copied(),
    );
    let mut out = ClusterPolicy {
        rules: translated.rules,
        errors: translated.errors,
        ..Default::default()
    };

    // Identities: reserved, endpoints (as allocated), CIDRs.
    let endpoint_ids = identity_table(objects.identities.iter().copied());
    // Two identities with one label set (allocators that raced across a
    // garbage collection): the lowest number wins, as in the allocator, so
    // that every node picks the same one (highest first, lower overwrite).
    let by_labels: BTreeMap<&LabelSet, u32> =
        endpoint_ids.iter().rev().map(|(id, l)| (l, *id)).collect();
    let wanted_cidrs = policy_cidrs(&out.rules);
    cidrs.release_unused(&wanted_cidrs);
    for c in &wanted_cidrs {
        if let Err(e) = cidrs.allocate(*c) {
            out.errors.push((c.to_string(), e));
        }
    }
    let mut identities = reserved_identities();
    identities.extend(endpoint_ids.iter().map(|(k, v)| (*k, v.clone())));
    identities.extend(cidrs.identities());

    // Prefixes: CIDRs first, so that pods and nodes override an equal one.
    for (id, net) in cidrs.table() {
        out.ipcache.insert(
            *net,
            IpcacheWant {
                identity: *id,
                node_ip: None,
                kind: IpKind::Cidr,
            },
        );
    }
    let node_ips: BTreeMap<&str, Ipv4Addr> = objects
        .nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_str(), n.internal_ip()?.parse().ok()?)))
        .collect();
    let mut addresses: BTreeMap<u32, Vec<Ipv4Addr>> = BTreeMap::new();
    for (name, ip) in &node_ips {
        let identity = if *name == local_node {
            TW_ID_HOST
        } else {
            TW_ID_REMOTE_NODE
        };
        addresses.entry(identity).or_default().push(*ip);
        out.ipcache.insert(
            Ipv4Net::from(*ip),
            IpcacheWant {
                identity,
                node_ip: None,
                kind: IpKind::Node,
            },
        );
    }

    let ns_labels: BTreeMap<&str, BTreeMap<String, String>> = objects
        .namespaces
        .iter()
        .map(|ns| (ns.metadata.name.as_str(), namespace_labels(ns)))
        .collect();
    let empty = BTreeMap::new();
    let mut named: BTreeMap<u32, BTreeSet<NamedPort>> = BTreeMap::new();
    for pod in &objects.pods {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let ns = pod.metadata.namespace_or_default();
        let labels = pod_labels(pod, ns_labels.get(ns).unwrap_or(&empty));
        let identity = by_labels.get(&labels).copied().unwrap_or(TW_ID_INIT);
        let ip: Option<Ipv4Addr> = pod.pod_ip().and_then(|s| s.parse().ok());
        let node = pod.spec.node_name.clone();
        if let Some(ip) = ip {
            addresses.entry(identity).or_default().push(ip);
            out.ipcache.insert(
                Ipv4Net::from(ip),
                IpcacheWant {
                    identity,
                    node_ip: node.as_deref().and_then(|n| node_ips.get(n)).copied(),
                    kind: IpKind::Endpoint,
                },
            );
        }
        let ports = named.entry(identity).or_default();
        for p in pod.spec.containers.iter().flat_map(|c| c.ports.iter()) {
            let (Some(name), Ok(port)) = (&p.name, u16::try_from(p.container_port)) else {
                continue;
            };
            ports.insert(NamedPort {
                proto: match p.protocol.unwrap_or(Protocol::Tcp) {
                    Protocol::Tcp => Proto::Tcp,
                    Protocol::Udp => Proto::Udp,
                    Protocol::Sctp => continue,
                },
                name: name.clone(),
                port,
            });
        }
        out.pods.insert(
            uid,
            PodIdentity {
                pod: format!("{ns}/{}", pod.metadata.name),
                node,
                ip,
                identity,
            },
        );
    }
    for a in addresses.values_mut() {
        a.sort();
        a.dedup();
    }
    out.ctx = PolicyContext {
        identities,
        addresses,
        named_ports: named
            .into_iter()
            .map(|(id, set)| (id, set.into_iter().collect()))
            .collect(),
    };
    out
}

/// The label sets the pods of the cluster need identities for (the lab's
/// identity allocator: one identity per distinct set).
pub fn wanted_label_sets<'a>(
    namespaces: impl IntoIterator<Item = &'a Namespace>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeSet<LabelSet> {
    let ns_labels: BTreeMap<&str, BTreeMap<String, String>> = namespaces
        .into_iter()
        .map(|ns| (ns.metadata.name.as_str(), namespace_labels(ns)))
        .collect();
    let empty = BTreeMap::new();
    pods.into_iter()
        .map(|p| {
            let ns = p.metadata.namespace_or_default();
            pod_labels(p, ns_labels.get(ns).unwrap_or(&empty))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::TW_ID_CLUSTER_FIRST;
    use tollway_api::{ObjectMeta, PodStatus};

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            metadata: ObjectMeta {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn pod(ns: &str, name: &str, app: &str, ip: &str, node: &str) -> Pod {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                         "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                     "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap();
        p.status = Some(PodStatus {
            pod_ip: Some(ip.into()),
            ..Default::default()
        });
        p
    }

    fn node(name: &str, ip: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
        }))
        .unwrap()
    }

    fn identity(n: u32, labels: &LabelSet) -> CiliumIdentity {
        CiliumIdentity {
            api_version: "cilium.io/v2".into(),
            kind: "CiliumIdentity".into(),
            metadata: ObjectMeta {
                name: n.to_string(),
                ..Default::default()
            },
            security_labels: security_labels_map(labels),
        }
    }

    #[test]
    fn pods_get_their_identities_and_the_ipcache_is_complete() {
        let namespaces = [ns("payments", &[("team", "pay")])];
        let pods = [
            pod("payments", "web-1", "web", "10.244.1.5", "node-a"),
            pod("payments", "web-2", "web", "10.244.2.5", "node-b"),
            pod("payments", "api-1", "api", "10.244.2.6", "node-b"),
        ];
        let nodes = [node("node-a", "172.18.0.2"), node("node-b", "172.18.0.3")];
        let sets = wanted_label_sets(&namespaces, &pods);
        assert_eq!(sets.len(), 2, "web pods share one set");
        let web_labels = pod_labels(&pods[0], &namespace_labels(&namespaces[0]));
        assert_eq!(
            web_labels.get(
                "k8s",
                "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"
            ),
            Some("payments")
        );
        // Only web has an identity so far.
        let ids = [identity(TW_ID_CLUSTER_FIRST, &web_labels)];
        let objects = ClusterObjects {
            namespaces: namespaces.iter().collect(),
            pods: pods.iter().collect(),
            identities: ids.iter().collect(),
            nodes: nodes.iter().collect(),
            ..Default::default()
        };
        let mut cidrs = CidrIdentities::new();
        let cp = cluster_policy(&objects, "node-a", &mut cidrs);
        assert_eq!(cp.pods["uid-web-1"].identity, TW_ID_CLUSTER_FIRST);
        assert_eq!(cp.pods["uid-web-2"].identity, TW_ID_CLUSTER_FIRST);
        assert_eq!(cp.pods["uid-api-1"].identity, TW_ID_INIT);
        let at = |s: &str| cp.ipcache[&s.parse::<Ipv4Net>().unwrap()];
        assert_eq!(at("172.18.0.2/32").identity, TW_ID_HOST);
        assert_eq!(at("172.18.0.3/32").identity, TW_ID_REMOTE_NODE);
        let w2 = at("10.244.2.5/32");
        assert_eq!(w2.identity, TW_ID_CLUSTER_FIRST);
        assert_eq!(w2.node_ip, Some(Ipv4Addr::new(172, 18, 0, 3)));
        assert_eq!(w2.kind, IpKind::Endpoint);
        assert_eq!(
            cp.ctx.addresses[&TW_ID_CLUSTER_FIRST],
            vec![Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 5)]
        );
        assert_eq!(cp.ctx.named_ports[&TW_ID_CLUSTER_FIRST][0].port, 8080);
        // Round trip through the object form.
        assert_eq!(identity_labels(&ids[0]).unwrap(), web_labels);
    }

    #[test]
    fn the_lowest_of_duplicate_identities_wins() {
        let namespaces = [ns("payments", &[])];
        let pods = [pod("payments", "web-1", "web", "10.244.1.5", "node-a")];
        let web = pod_labels(&pods[0], &namespace_labels(&namespaces[0]));
        for ids in [
            [identity(300, &web), identity(257, &web)],
            [identity(257, &web), identity(300, &web)],
        ] {
            let objects = ClusterObjects {
                namespaces: namespaces.iter().collect(),
                pods: pods.iter().collect(),
                identities: ids.iter().collect(),
                ..Default::default()
            };
            let cp = cluster_policy(&objects, "node-a", &mut CidrIdentities::new());
            assert_eq!(cp.pods["uid-web-1"].identity, 257);
        }
    }

    #[test]
    fn cidr_identities_are_kept_across_calls_and_released() {
        let np: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}
        }))
        .unwrap();
        let mut objects = ClusterObjects {
            network_policies: vec![&np],
            ..Default::default()
        };
        let mut cidrs = CidrIdentities::new();
        let a = cluster_policy(&objects, "n", &mut cidrs);
        let net: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        let id = a.ipcache[&net].identity;
        assert_eq!(a.ipcache[&net].kind, IpKind::Cidr);
        let b = cluster_policy(&objects, "n", &mut cidrs);
        assert_eq!(b.ipcache[&net].identity, id, "stable");
        objects.network_policies.clear();
        let c = cluster_policy(&objects, "n", &mut cidrs);
        assert!(c.ipcache.is_empty());
        assert!(cidrs.table().is_empty());
    }
}
