//! Routes to the other nodes' pod CIDRs (Cilium's `autoDirectNodeRoutes`):
//! with native routing and every node on one L2 segment, a pod address of
//! node B is reached from node A through `<B's podCIDR> via <B's
//! InternalIP> dev <uplink>`.
//!
//! [`desired`] computes the routes from the Node objects (pure); a node
//! whose InternalIP is not on one of the uplink's subnets is skipped with a
//! warning (it is behind a router: the route would need the router to know
//! the pod CIDRs, which is what cloud routes or BGP are for). [`NodeRoutes`]
//! installs them with iproute2 under a protocol number of Tollway's own, so
//! that it removes only routes it made, and leaves them when the agent
//! stops: a restarting agent breaks no connection.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;
use tollway_api::Node;

use crate::error::AgentError;
use crate::status::NodeRoutesReport;

/// The routes' `proto` (RTPROT_*; 0–4 and the values in iproute2's
/// `rt_protos` are taken, this one is not).
pub const ROUTE_PROTO: u8 = 186;

/// One route to another node's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRoute {
    /// The other node's pod CIDR.
    pub cidr: Ipv4Net,
    /// The other node's InternalIP.
    pub via: Ipv4Addr,
}

impl fmt::Display for NodeRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.cidr, self.via)
    }
}

/// Why a node got no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteWarning {
    /// Its InternalIP is not on the uplink's subnets.
    NotOnLink {
        /// The node.
        node: String,
        /// Its address.
        address: Ipv4Addr,
    },
    /// A pod CIDR that is not an IPv4 prefix.
    BadCidr {
        /// The node.
        node: String,
        /// The value.
        value: String,
    },
    /// The pod CIDR overlaps this node's own.
    Overlap {
        /// The node.
        node: String,
        /// Its CIDR.
        cidr: Ipv4Net,
    },
}

impl fmt::Display for RouteWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteWarning::NotOnLink { node, address } => write!(
                f,
                "node {node}: its InternalIP {address} is not on the uplink's subnets; no direct route to its pods (autoDirectNodeRoutes needs one L2 segment)"
            ),
            RouteWarning::BadCidr { node, value } => {
                write!(f, "node {node}: pod CIDR {value:?} is not an IPv4 prefix")
            }
            RouteWarning::Overlap { node, cidr } => {
                write!(
                    f,
                    "node {node}: pod CIDR {cidr} overlaps this node's; no route"
                )
            }
        }
    }
}

fn pod_cidrs(n: &Node) -> Vec<&str> {
    let mut v: Vec<&str> = n.spec.pod_cidrs.iter().map(String::as_str).collect();
    if let Some(c) = n.spec.pod_cidr.as_deref()
        && !v.contains(&c)
    {
        v.push(c);
    }
    v
}

fn ipv4_internal_ip(n: &Node) -> Option<Ipv4Addr> {
    n.status
        .as_ref()?
        .addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The routes this node (`me`) wants, given the uplink's subnets: every
/// other node's IPv4 pod CIDRs via its IPv4 InternalIP. IPv6 CIDRs are
/// left out silently (the datapath is IPv4).
pub fn desired<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    me: &str,
    uplink_nets: &[Ipv4Net],
) -> (BTreeSet<NodeRoute>, Vec<RouteWarning>) {
    let nodes: Vec<&Node> = nodes.into_iter().collect();
    let mine: Vec<Ipv4Net> = nodes
        .iter()
        .filter(|n| n.metadata.name == me)
        .flat_map(|n| pod_cidrs(n))
        .filter_map(|c| c.parse().ok())
        .collect();
    let mut routes = BTreeSet::new();
    let mut warnings = Vec::new();
    for n in nodes.iter().filter(|n| n.metadata.name != me) {
        let name = &n.metadata.name;
        let cidrs = pod_cidrs(n);
        if cidrs.is_empty() {
            continue;
        }
        let Some(via) = ipv4_internal_ip(n) else {
            continue;
        };
        if !uplink_nets.iter().any(|net| net.contains(&via)) {
            warnings.push(RouteWarning::NotOnLink {
                node: name.clone(),
                address: via,
            });
            continue;
        }
        for c in cidrs {
            if c.contains(':') {
                continue;
            }
            let Ok(cidr) = c.parse::<Ipv4Net>() else {
                warnings.push(RouteWarning::BadCidr {
                    node: name.clone(),
                    value: c.to_string(),
                });
                continue;
            };
            let cidr = cidr.trunc();
            if mine.iter().any(|m| m.contains(&cidr) || cidr.contains(m)) {
                warnings.push(RouteWarning::Overlap {
                    node: name.clone(),
                    cidr,
                });
                continue;
            }
            routes.insert(NodeRoute { cidr, via });
        }
    }
    (routes, warnings)
}

fn ip(args: &[&str]) -> Result<String, AgentError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| AgentError::Route {
            action: format!("ip {}", args.join(" ")),
            message: source.to_string(),
        })?;
    if !out.status.success() {
        return Err(AgentError::Route {
            action: format!("ip {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The IPv4 subnets of `dev`'s addresses.
pub fn subnets_of(dev: &str) -> Result<Vec<Ipv4Net>, AgentError> {
    let out = ip(&["-j", "-4", "addr", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| AgentError::Route {
        action: format!("reading the addresses of {dev}"),
        message: e.to_string(),
    })?;
    let mut nets = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            if let (Ok(addr), Ok(len)) = (local.parse::<Ipv4Addr>(), u8::try_from(len))
                && let Ok(net) = Ipv4Net::new(addr, len)
            {
                nets.push(net.trunc());
            }
        }
    }
    Ok(nets)
}

/// The routes of [`ROUTE_PROTO`] on `dev`, as the kernel has them.
pub fn installed(dev: &str) -> Result<BTreeSet<NodeRoute>, AgentError> {
    let proto = ROUTE_PROTO.to_string();
    let out = ip(&["-j", "-4", "route", "show", "proto", &proto, "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| AgentError::Route {
        action: format!("reading the routes on {dev}"),
        message: e.to_string(),
    })?;
    let mut set = BTreeSet::new();
    for r in v.as_array().into_iter().flatten() {
        let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gateway"].as_str()) else {
            continue;
        };
        // A /32 shows without its length.
        let cidr = if dst.contains('/') {
            dst.parse::<Ipv4Net>().ok()
        } else {
            dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
        };
        if let (Some(cidr), Ok(via)) = (cidr, gw.parse()) {
            set.insert(NodeRoute { cidr, via });
        }
    }
    Ok(set)
}

/// Keeps the kernel's routes on the uplink equal to [`desired`].
pub struct NodeRoutes {
    me: String,
    uplink: String,
    applied: Option<BTreeSet<NodeRoute>>,
    /// For the status.
    pub report: NodeRoutesReport,
}

impl NodeRoutes {
    /// Routes for node `me` on `uplink`; the first reconcile reads what an
    /// earlier agent left.
    pub fn new(me: &str, uplink: &str) -> NodeRoutes {
        NodeRoutes {
            me: me.into(),
            uplink: uplink.into(),
            applied: None,
            report: NodeRoutesReport::default(),
        }
    }

    /// Make the routes what the Node objects say.
    pub fn reconcile<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) {
        match self.try_reconcile(nodes) {
            Ok(()) => self.report.error = None,
            Err(e) => {
                tracing::warn!(error = %e, "node routes");
                self.report.error = Some(e.to_string());
                // Re-read the kernel's view next time.
                self.applied = None;
            }
        }
    }

    /// `ip route OP <cidr> via <node> dev <uplink> proto 186`.
    fn route(&self, op: &str, r: &NodeRoute) -> Result<String, AgentError> {
        let (cidr, via) = (r.cidr.to_string(), r.via.to_string());
        let proto = ROUTE_PROTO.to_string();
        ip(&[
            "route",
            op,
            &cidr,
            "via",
            &via,
            "dev",
            &self.uplink,
            "proto",
            &proto,
        ])
    }

    fn try_reconcile<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a Node>,
    ) -> Result<(), AgentError> {
        let nets = subnets_of(&self.uplink)?;
        let (want, warnings) = desired(nodes, &self.me, &nets);
        self.report.warnings = warnings.iter().map(ToString::to_string).collect();
        let have = match self.applied.take() {
            Some(a) => a,
            None => installed(&self.uplink)?,
        };
        let mut now = have.clone();
        for r in have.difference(&want) {
            match self.route("del", r) {
                Ok(_) => {
                    tracing::info!(route = %r, "removed node route");
                    now.remove(r);
                }
                Err(e) => tracing::warn!(route = %r, error = %e, "cannot remove node route"),
            }
        }
        let mut result = Ok(());
        for r in want.difference(&have) {
            match self.route("replace", r) {
                Ok(_) => {
                    tracing::info!(route = %r, "installed node route");
                    now.insert(*r);
                }
                Err(e) => result = Err(e),
            }
        }
        self.report.routes = now.iter().map(ToString::to_string).collect();
        self.applied = Some(now);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollway_api::{NodeAddress, NodeSpec, NodeStatus, ObjectMeta};

    fn node(name: &str, cidr: &str, ip: &str) -> Node {
        Node {
            api_version: "v1".into(),
            kind: "Node".into(),
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            spec: NodeSpec {
                pod_cidr: (!cidr.is_empty()).then(|| cidr.to_string()),
                pod_cidrs: Vec::new(),
            },
            status: Some(NodeStatus {
                addresses: vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ],
                conditions: Vec::new(),
            }),
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn other_nodes_on_link_get_a_route_and_this_one_none() {
        let nodes = [
            node("a", "10.244.1.0/24", "172.18.0.2"),
            node("b", "10.244.2.0/24", "172.18.0.3"),
            node("c", "10.244.3.0/24", "192.168.9.4"),
            node("d", "", "172.18.0.5"),
        ];
        let (routes, warnings) = desired(&nodes, "a", &[net("172.18.0.0/24")]);
        let got: Vec<String> = routes.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.244.2.0/24 via 172.18.0.3"]);
        assert_eq!(
            warnings,
            [RouteWarning::NotOnLink {
                node: "c".into(),
                address: "192.168.9.4".parse().unwrap()
            }]
        );
    }

    #[test]
    fn dual_stack_cidrs_bad_values_and_overlaps() {
        let mut b = node("b", "10.244.2.0/24", "172.18.0.3");
        b.spec.pod_cidrs = vec!["10.244.2.0/24".into(), "fd00:10:244:2::/64".into()];
        let c = node("c", "10.244.1.128/25", "172.18.0.4");
        let d = node("d", "10.244.x/24", "172.18.0.5");
        let a = node("a", "10.244.1.0/24", "172.18.0.2");
        let (routes, warnings) = desired([&a, &b, &c, &d], "a", &[net("172.18.0.0/16")]);
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert!(matches!(&warnings[0], RouteWarning::Overlap { node, .. } if node == "c"));
        assert!(matches!(&warnings[1], RouteWarning::BadCidr { node, .. } if node == "d"));
    }

    #[test]
    fn host_bits_are_dropped() {
        let nodes = [node("b", "10.244.2.7/24", "172.18.0.3")];
        let (routes, _) = desired(&nodes, "a", &[net("172.18.0.0/24")]);
        assert_eq!(routes.iter().next().unwrap().cidr, net("10.244.2.0/24"));
    }
}
