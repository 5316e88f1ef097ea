//! What the agent reports (`<lab>/nodes/<node>/agent.json`), for `tollway
//! status`: written atomically after every sync and conntrack sweep.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// One attached program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramAttachment {
    /// Program name.
    pub program: String,
    /// Hook (`tc ingress`, `cgroup connect4`, ...).
    pub hook: String,
    /// Where (interfaces or cgroups).
    pub targets: Vec<String>,
}

/// The last reconcile of services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Store version it was computed from.
    pub resource_version: u64,
    /// Frontends in the maps.
    pub frontends: usize,
    /// Backends in the maps.
    pub backends: usize,
    /// Map operations executed.
    pub ops: usize,
    /// How long computing and writing took, microseconds.
    pub duration_us: u64,
    /// Completed at (RFC 3339).
    pub at: String,
    /// The last error, if the sync failed.
    pub error: Option<String>,
    /// `full` (everything recomputed) or `incremental` (only what changed).
    #[serde(default)]
    pub mode: String,
}

/// Conntrack garbage collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// Current sweep interval, seconds.
    pub interval_seconds: f64,
    /// Sweeps done.
    pub runs: u64,
    /// Entries seen in the last sweep.
    pub last_entries: usize,
    /// Entries deleted by the last sweep.
    pub last_deleted: usize,
    /// Entries deleted in all.
    pub total_deleted: u64,
    /// Fill of tw_ct4 after the last sweep (0..1).
    pub fill: f64,
    /// Set when the map is (nearly) full: new flows then evict the least
    /// recently used entries (the map is an LRU hash; nothing is dropped).
    pub full_warning: Option<String>,
}

/// Everything the agent reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Node.
    pub node: String,
    /// Agent PID.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// The node's address and uplink.
    pub node_ip: String,
    /// The uplink interface.
    pub uplink: String,
    /// `random` or `maglev`.
    pub algorithm: String,
    /// Maglev table size.
    pub maglev_table_size: u32,
    /// Socket LB enabled.
    pub socket_lb: bool,
    /// NodePort enabled (program built and attached).
    pub nodeport: bool,
    /// Node port range.
    pub node_port_range: String,
    /// Attached programs.
    pub programs: Vec<ProgramAttachment>,
    /// Pin directory.
    pub pin_dir: String,
    /// Last sync.
    pub sync: SyncReport,
    /// Conntrack GC.
    pub gc: GcReport,
    /// Network policy.
    #[serde(default)]
    pub policy: crate::policy::PolicyReport,
    /// Fill of the policy maps.
    #[serde(default)]
    pub policy_maps: Vec<MapFillReport>,
    /// Warnings (bad annotations, ...).
    pub warnings: Vec<String>,
    /// Heartbeat (RFC 3339), refreshed every few seconds.
    pub heartbeat: String,
    /// The flow service (None: it did not start).
    #[serde(default)]
    pub flows: Option<crate::flows::FlowsReport>,
    /// The Kubernetes API source (`agent --kubernetes`; None for a lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<tollway_kube::KubeReport>,
    /// Whether the agent translates services (kube-proxy replacement);
    /// false leaves them to kube-proxy.
    #[serde(default = "yes")]
    pub kube_proxy_replacement: bool,
    /// The namespace the agent runs in (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Routes to the other nodes' pod CIDRs (`autoDirectNodeRoutes`;
    /// None: not managed by the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_routes: Option<NodeRoutesReport>,
    /// The CNI plugin's endpoint records.
    #[serde(default)]
    pub cni_endpoints: CniEndpointsReport,
    /// Health-check node ports served (`<port> <namespace>/<name> <local
    /// endpoints>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_node_ports: Vec<String>,
    /// Health-check node ports that could not be bound, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_errors: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Routes to other nodes' pods: what the last reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRoutesReport {
    /// `<cidr> via <node ip>`, one per route in place.
    pub routes: Vec<String>,
    /// Nodes without a route, and why.
    pub warnings: Vec<String>,
    /// The last error.
    pub error: Option<String>,
}

/// The CNI plugin's endpoint records, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniEndpointsReport {
    /// The directory.
    pub dir: String,
    /// Records read.
    pub records: usize,
    /// This node's pods with an address but no record (their veth has
    /// no programs yet).
    pub pods_without_record: Vec<String>,
    /// Records that could not be read.
    pub unreadable: Vec<String>,
}

/// Size and use of one map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapFillReport {
    /// Map name.
    pub name: String,
    /// Capacity.
    pub max_entries: u32,
    /// Entries in use.
    pub in_use: u32,
}

/// Path of a node's status file.
pub fn status_path(node_dir: &Path) -> PathBuf {
    node_dir.join("agent.json")
}

impl AgentStatus {
    /// Write atomically.
    pub fn write(&self, node_dir: &Path) -> Result<(), AgentError> {
        std::fs::create_dir_all(node_dir).map_err(|source| AgentError::Io {
            action: "creating",
            path: node_dir.to_path_buf(),
            source,
        })?;
        let path = status_path(node_dir);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|source| AgentError::Io {
            action: "writing",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| AgentError::Io {
            action: "renaming",
            path,
            source,
        })
    }

    /// Read a node's status, if the agent wrote one.
    pub fn read(node_dir: &Path) -> Option<AgentStatus> {
        let text = std::fs::read_to_string(status_path(node_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}
