//! What the flow decoder asks about addresses, sockets and identities,
//! built from the store's snapshot ([`build`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use tollway_api::Protocol;
use tollway_flow::decode::{EndpointInfo, ServiceRef, StaticResolver};
use tollway_flow::model::Workload;
use tollway_lb::Applied;
use tollway_state::Snapshot;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The resolver of node `node`: every pod of the cluster by address (with
/// its security labels, identity and owner), this node's pods by cgroup,
/// services by frontend (cluster, external and load-balancer IPs, and this
/// node's node ports) and by
/// the rev NAT index the maps give them (`mirror`), and every identity's
/// labels.
pub fn build(
    snap: &Snapshot,
    node: &str,
    node_ip: Ipv4Addr,
    cgroups: &crate::cgroups::PodCgroups,
    mirror: &Applied,
) -> StaticResolver {
    let mut r = StaticResolver::new();
    let ns_labels: BTreeMap<&str, BTreeMap<String, String>> = snap
        .namespaces()
        .map(|ns| {
            (
                ns.metadata.name.as_str(),
                tollway_policy::namespace_labels(ns),
            )
        })
        .collect();
    // Identity numbers by label set, from the CiliumIdentity objects.
    let table = tollway_policy::identity_table(snap.cilium_identities());
    for (id, labels) in &table {
        r.identities
            .insert(*id, labels.iter().map(ToString::to_string).collect());
    }
    let by_labels: BTreeMap<String, u32> = table
        .iter()
        .map(|(id, labels)| (label_key(labels), *id))
        .collect();

    for pod in snap.pods() {
        let ns = pod.metadata.namespace_or_default();
        let empty = BTreeMap::new();
        let set = tollway_policy::pod_labels(pod, ns_labels.get(ns).unwrap_or(&empty));
        let identity = by_labels.get(&label_key(&set)).copied().unwrap_or(0);
        let mut labels: Vec<String> = set.iter().map(ToString::to_string).collect();
        labels.sort();
        let workloads = pod
            .metadata
            .owner_references
            .iter()
            .map(|o| Workload {
                name: o.name.clone(),
                kind: o.kind.clone(),
            })
            .collect();
        let info = EndpointInfo {
            id: 0,
            identity,
            ip: pod.pod_ip().and_then(|ip| ip.parse().ok()),
            cluster_name: String::new(),
            namespace: ns.to_string(),
            pod_name: pod.metadata.name.clone(),
            labels,
            workloads,
        };
        if pod.spec.node_name.as_deref() == Some(node) {
            for id in cgroups.ids(pod) {
                r.add_cgroup(id, info.clone());
            }
        }
        r.add_endpoint(info);
    }

    let mut by_frontend: BTreeMap<(Ipv4Addr, u16, u8), ServiceRef> = BTreeMap::new();
    for svc in snap.services() {
        let sref = ServiceRef {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace_or_default().to_string(),
        };
        // Every address the service answers on at its ports: cluster IPs,
        // external IPs and the load balancer's ingress IPs.
        let ips: Vec<Ipv4Addr> = svc
            .spec
            .cluster_ip
            .iter()
            .chain(svc.spec.cluster_ips.iter())
            .chain(svc.spec.external_ips.iter())
            .map(String::as_str)
            .chain(svc.load_balancer_ips())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        for port in &svc.spec.ports {
            let proto = match port.protocol {
                Some(Protocol::Udp) => IPPROTO_UDP,
                _ => IPPROTO_TCP,
            };
            let Ok(p) = u16::try_from(port.port) else {
                continue;
            };
            for ip in &ips {
                by_frontend.insert((*ip, p, proto), sref.clone());
            }
            if let Some(np) = port.node_port.and_then(|n| u16::try_from(n).ok()) {
                by_frontend.insert((node_ip, np, proto), sref.clone());
            }
        }
    }
    for (fe, svc) in &mirror.services {
        if let Some(sref) = by_frontend.get(&(fe.address, fe.port, fe.proto.ipproto())) {
            r.services_by_rev_nat
                .insert(svc.rev_nat_index, sref.clone());
        }
    }
    r.services_by_frontend = by_frontend.into_iter().collect();
    r
}

/// A label set's identity key (its labels in order).
fn label_key(set: &tollway_policy::LabelSet) -> String {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    v.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_at_every_address_they_answer_on() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.20\n  externalIPs: [192.0.2.10]\n  selector: {app: web}\n  ports:\n  - {port: 80, nodePort: 30080}\nstatus:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.7}]\n";
        let docs = tollway_api::parse_documents("svc.yaml", yaml).unwrap();
        let obj = tollway_api::decode(&docs[0]).unwrap().object;
        let mut snap = Snapshot::default();
        snap.objects.insert(obj.key(), obj);
        let node_ip: Ipv4Addr = "172.18.0.2".parse().unwrap();
        let r = build(
            &snap,
            "node-a",
            node_ip,
            &crate::cgroups::PodCgroups::Lab {
                paths: tollway_lab::LabPaths::new("resolver-test"),
                node: "node-a".into(),
            },
            &Applied::default(),
        );
        for ip in ["10.96.0.20", "192.0.2.10", "203.0.113.7"] {
            let key = (ip.parse().unwrap(), 80, IPPROTO_TCP);
            assert_eq!(
                r.services_by_frontend.get(&key).map(|s| s.name.as_str()),
                Some("web"),
                "{ip}"
            );
        }
        assert!(
            r.services_by_frontend
                .contains_key(&(node_ip, 30080, IPPROTO_TCP))
        );
    }
}
