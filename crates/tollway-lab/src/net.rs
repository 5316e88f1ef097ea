//! The lab's network: a fabric namespace with a bridge (the underlay), one
//! namespace per node with native routing to the other nodes' pod CIDRs,
//! and one namespace per pod behind a veth pair, Calico/Cilium style (the
//! pod routes everything via a link-local gateway that resolves to the
//! host-side veth; the node routes the pod's /32 to that veth).
//!
//! Pods' veths are made by the CNI plugin (`tollway-cni`, called by the
//! kubelet through [`crate::cni`]) with the same scheme.
//!
//! Nothing here touches the machine's root network namespace: every link is
//! created inside a lab namespace (`ip -n NS link add ... peer ... netns NS2`).

use std::net::Ipv4Addr;

use crate::config::{LabConfig, NodeConfig};
use crate::error::Result;
use crate::paths::LabPaths;
use crate::sys::{cmd, netns};

/// The bridge in the fabric namespace.
pub const BRIDGE: &str = "br0";
/// A node's uplink (and, later, where NodePort traffic arrives).
pub const NODE_UPLINK: &str = "eth0";

/// The fabric-side name of a node's uplink veth.
fn fabric_port(node: &str) -> String {
    let mut n = format!("n-{node}");
    n.truncate(15);
    n
}

/// Sysctls every lab namespace gets: no IPv6 noise, no reverse-path filter
/// (pod traffic arrives on per-pod veths without addresses).
const COMMON_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

/// Whether the fabric exists with its bridge.
pub fn fabric_healthy(paths: &LabPaths) -> bool {
    let ns = paths.fabric_netns();
    netns::exists(&ns) && cmd::ip(Some(&ns), &["link", "show", BRIDGE]).is_ok()
}

/// Create the fabric namespace and bridge.
pub fn create_fabric(paths: &LabPaths) -> Result<()> {
    let ns = paths.fabric_netns();
    netns::add(&ns)?;
    netns::sysctls(&ns, COMMON_SYSCTLS)?;
    cmd::ip_batch(
        Some(&ns),
        &[
            format!("link add {BRIDGE} type bridge"),
            format!("link set {BRIDGE} up"),
        ],
    )
}

/// Whether a node's namespace exists with its uplink attached to the fabric.
pub fn node_healthy(paths: &LabPaths, node: &NodeConfig) -> bool {
    let ns = paths.node_netns(&node.name);
    netns::exists(&ns)
        && cmd::ip(Some(&ns), &["-4", "addr", "show", NODE_UPLINK])
            .is_ok_and(|out| out.contains(&format!("{}/", node.ip)))
        && cmd::ip(
            Some(&paths.fabric_netns()),
            &["link", "show", &fabric_port(&node.name)],
        )
        .is_ok_and(|out| out.contains(&format!("master {BRIDGE}")))
}

/// Create a node: namespace, uplink on the fabric, forwarding, routes to
/// every other node's pod CIDR.
pub fn create_node(paths: &LabPaths, cfg: &LabConfig, node: &NodeConfig) -> Result<()> {
    let ns = paths.node_netns(&node.name);
    let fabric = paths.fabric_netns();
    let port = fabric_port(&node.name);
    // A half-made node from a crash is rebuilt from scratch.
    netns::delete(&ns)?;
    let _ = cmd::ip(Some(&fabric), &["link", "del", &port]);
    netns::add(&ns)?;
    netns::sysctls(&ns, COMMON_SYSCTLS)?;
    netns::sysctls(&ns, &[("net.ipv4.ip_forward", "1")])?;
    cmd::ip_batch(
        Some(&fabric),
        &[
            format!("link add {port} type veth peer name {NODE_UPLINK} netns {ns}"),
            format!("link set {port} master {BRIDGE} up"),
        ],
    )?;
    let mut lines = vec![
        format!(
            "addr add {}/{} dev {NODE_UPLINK}",
            node.ip,
            cfg.fabric_cidr.prefix_len()
        ),
        format!("link set {NODE_UPLINK} up"),
    ];
    for peer in cfg.nodes.iter().filter(|n| n.name != node.name) {
        lines.push(format!(
            "route replace {} via {} dev {NODE_UPLINK}",
            peer.pod_cidr, peer.ip
        ));
    }
    cmd::ip_batch(Some(&ns), &lines)
}

/// Whether the external client's namespace is intact.
pub fn external_healthy(paths: &LabPaths, cfg: &LabConfig) -> bool {
    let ns = paths.external_netns();
    netns::exists(&ns)
        && cmd::ip(Some(&ns), &["-4", "addr", "show", "eth0"])
            .is_ok_and(|o| o.contains(&format!("{}/", cfg.external_ip)))
        && cmd::ip(
            Some(&paths.fabric_netns()),
            &["link", "show", &fabric_port("external")],
        )
        .is_ok_and(|out| out.contains(&format!("master {BRIDGE}")))
}

/// Create the `external` namespace: a host outside the cluster with an
/// address on the fabric, routes to the pod CIDRs (native routing, no
/// masquerading) and none to services (it reaches services through node
/// ports, as a client outside Kubernetes does).
pub fn create_external(paths: &LabPaths, cfg: &LabConfig) -> Result<()> {
    let ns = paths.external_netns();
    let fabric = paths.fabric_netns();
    let port = fabric_port("external");
    netns::delete(&ns)?;
    let _ = cmd::ip(Some(&fabric), &["link", "del", &port]);
    netns::add(&ns)?;
    netns::sysctls(&ns, COMMON_SYSCTLS)?;
    cmd::ip_batch(
        Some(&fabric),
        &[
            format!("link add {port} type veth peer name eth0 netns {ns}"),
            format!("link set {port} master {BRIDGE} up"),
        ],
    )?;
    let mut lines = vec![
        format!(
            "addr add {}/{} dev eth0",
            cfg.external_ip,
            cfg.fabric_cidr.prefix_len()
        ),
        "link set eth0 up".to_string(),
    ];
    // Native routing: the fabric knows where each node's pod CIDR is (as a
    // router fed by BGP would), so pods reach outside hosts with their own
    // addresses and no masquerading rule exists anywhere.
    for n in &cfg.nodes {
        lines.push(format!(
            "route replace {} via {} dev eth0",
            n.pod_cidr, n.ip
        ));
    }
    cmd::ip_batch(Some(&ns), &lines)
}

/// Names of a pod's veth pair and its host-side MAC, derived from the pod's
/// uid so that they are stable across daemon restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    /// Host-side name in the node namespace: `lxc` + 11 hex digits.
    pub host_if: String,
    /// Host-side MAC (locally administered).
    pub host_mac: String,
}

impl PodLink {
    /// The link of the pod with this uid: the CNI plugin's host veth of
    /// container `uid`, interface `eth0` (the lab uses the pod uid as the
    /// CNI container id).
    pub fn for_uid(uid: &str) -> PodLink {
        let l = tollway_cni::link::host_link(uid, "eth0");
        PodLink {
            host_if: l.name,
            host_mac: l.mac,
        }
    }
}

/// Whether a pod's sandbox network is intact.
pub fn pod_healthy(
    paths: &LabPaths,
    node: &str,
    pod_netns: &str,
    link: &PodLink,
    ip: Ipv4Addr,
) -> bool {
    netns::exists(pod_netns)
        && cmd::ip(Some(pod_netns), &["-4", "addr", "show", "eth0"])
            .is_ok_and(|o| o.contains(&format!("{ip}/32")))
        && cmd::ip(
            Some(&paths.node_netns(node)),
            &["link", "show", &link.host_if],
        )
        .is_ok()
}

/// Create a pod's namespace, as a container runtime does before it calls
/// the CNI plugin (which wires it to its node: [`crate::cni::add`]). A
/// leftover namespace from a crash goes first.
pub fn create_pod_netns(pod_netns: &str) -> Result<()> {
    netns::delete(pod_netns)?;
    netns::add(pod_netns)?;
    netns::sysctls(pod_netns, COMMON_SYSCTLS)
}

/// Remove a pod's namespace (its veth pair and the node's route go with it).
pub fn delete_pod(pod_netns: &str) -> Result<()> {
    netns::delete(pod_netns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_links_are_stable_and_valid() {
        let a = PodLink::for_uid("0b6c7e3e-1111-4a3c-9b1e-000000000001");
        assert_eq!(a, PodLink::for_uid("0b6c7e3e-1111-4a3c-9b1e-000000000001"));
        assert_ne!(a.host_if, PodLink::for_uid("other").host_if);
        assert_eq!(a.host_if.len(), 14);
        assert!(a.host_mac.starts_with("02:"));
        assert_eq!(a.host_mac.len(), 17);
        assert_eq!(fabric_port("node-123"), "n-node-123");
    }
}
