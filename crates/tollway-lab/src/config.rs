//! The shape of a lab: its nodes and address plan (`lab.json`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tollway_state::ClusterConfig;

use crate::error::{LabError, Result};
use crate::paths::LabPaths;

/// One node of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    /// `node-1`, `node-2`, ...
    pub name: String,
    /// The node's address on the fabric.
    pub ip: Ipv4Addr,
    /// The node's pod CIDR.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
}

/// Service load-balancing settings of a lab (`lab up --lb-algorithm ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbSettings {
    /// `random` (default) or `maglev`; services may override it with the
    /// `service.cilium.io/lb-algorithm` annotation.
    pub algorithm: String,
    /// Maglev table size M (a prime).
    pub maglev_table_size: u32,
    /// Translate ClusterIP connections at connect() (socket LB); the tc
    /// path handles what the socket hooks don't see either way.
    pub socket_lb: bool,
}

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            algorithm: "random".into(),
            maglev_table_size: 16381,
            socket_lb: true,
        }
    }
}

/// A lab's shape, fixed at `lab up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabConfig {
    /// The lab's name.
    pub name: String,
    /// Its nodes.
    pub nodes: Vec<NodeConfig>,
    /// The underlay between nodes (a bridge in the fabric namespace).
    pub fabric_cidr: Ipv4Net,
    /// All pods' addresses; each node gets a /24 of it.
    #[serde(rename = "clusterPodCIDR")]
    pub cluster_pod_cidr: Ipv4Net,
    /// Service CIDR and node port range.
    pub cluster: ClusterConfig,
    /// When the lab was made.
    pub created: Timestamp,
    /// Service load balancing.
    #[serde(default)]
    pub lb: LbSettings,
    /// The client outside the cluster, on the fabric (for NodePort).
    #[serde(default = "default_external_ip")]
    pub external_ip: Ipv4Addr,
}

fn default_external_ip() -> Ipv4Addr {
    EXTERNAL_IP
}

/// The address of the `external` namespace on the fabric.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 254);

/// The address a pod uses as its default gateway: answered by a static
/// neighbour entry pointing at the host-side veth (no address is needed on
/// the node side).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

impl LabConfig {
    /// The default plan for `n` nodes: fabric 172.18.0.0/16 with nodes at
    /// .2, .3, ...; node i gets pod CIDR 10.244.(i-1).0/24.
    pub fn plan(name: &str, n: usize) -> Result<LabConfig> {
        if n == 0 || n > 200 {
            return Err(LabError::BadName {
                name: name.into(),
                reason: format!("a lab has 1-200 nodes, got {n}"),
            });
        }
        let nodes = (1..=n)
            .map(|i| NodeConfig {
                name: format!("node-{i}"),
                ip: Ipv4Addr::new(172, 18, 0, 1 + i as u8),
                pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, (i - 1) as u8, 0), 24)
                    .unwrap_or_default(),
            })
            .collect();
        Ok(LabConfig {
            name: name.into(),
            nodes,
            fabric_cidr: Ipv4Net::new(Ipv4Addr::new(172, 18, 0, 0), 16).unwrap_or_default(),
            cluster_pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
            cluster: ClusterConfig::default(),
            created: Timestamp::now(),
            lb: LbSettings::default(),
            external_ip: EXTERNAL_IP,
        })
    }

    /// Read `lab.json`.
    pub fn load(paths: &LabPaths) -> Result<Option<LabConfig>> {
        let p = paths.config_file();
        match std::fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|source| LabError::BadFile { path: p, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io("reading", p, e)),
        }
    }

    /// Write `lab.json`.
    pub fn save(&self, paths: &LabPaths) -> Result<()> {
        let p = paths.config_file();
        std::fs::create_dir_all(&paths.dir).map_err(|e| LabError::io("creating", &paths.dir, e))?;
        let text = serde_json::to_string_pretty(self).map_err(|source| LabError::BadFile {
            path: p.clone(),
            source,
        })?;
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| LabError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| LabError::io("renaming", &p, e))
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Result<&NodeConfig> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::NoSuchNode {
                lab: self.name.clone(),
                node: name.into(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
