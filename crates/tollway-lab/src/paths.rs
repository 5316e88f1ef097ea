//! Names of everything a lab makes: directories, namespaces, cgroups, pins.
//! Every name starts with a prefix that only this lab can have, so that
//! `lab down` finds all of it, also after a crash.

use std::path::PathBuf;

use crate::error::{LabError, Result};

/// Check a lab name: a DNS label of at most 32 characters (it becomes part
/// of namespace, cgroup and bpffs names).
pub fn check_lab_name(name: &str) -> Result<()> {
    let bad = |reason: &str| LabError::BadName {
        name: name.into(),
        reason: reason.into(),
    };
    if name.len() > 32 {
        return Err(bad("must be at most 32 characters"));
    }
    tollway_api::names::dns1123_label(name).map_err(|r| bad(&r))
}

/// Paths and names of one lab.
#[derive(Debug, Clone)]
pub struct LabPaths {
    /// The lab's name.
    pub lab: String,
    /// `/var/lib/tollway/labs/<lab>` (or under `$TOLLWAY_STATE_DIR`).
    pub dir: PathBuf,
}

/// The root of all labs' state: `$TOLLWAY_STATE_DIR` or `/var/lib/tollway`.
pub fn state_root() -> PathBuf {
    std::env::var_os("TOLLWAY_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/tollway"))
}

fn short(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    // FNV-1a keeps long names unique and stable.
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}-{h:016x}", &s[..max - 17])
}

impl LabPaths {
    /// Paths of lab `lab`.
    pub fn new(lab: &str) -> Self {
        LabPaths {
            lab: lab.to_string(),
            dir: state_root().join("labs").join(lab),
        }
    }

    /// `lab.json`: the lab's shape.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    /// The desired-state store.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }
    /// A pod's directory (logs).
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join("pods").join(namespace).join(name)
    }
    /// A container's log file.
    pub fn container_log(&self, namespace: &str, name: &str, container: &str) -> PathBuf {
        self.pod_dir(namespace, name)
            .join(format!("{container}.log"))
    }
    /// The daemon's pid file.
    pub fn daemon_pid_file(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    /// The daemon's log.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// Prefix of every network namespace of this lab (`_` cannot occur in
    /// lab names, so no other lab's names start with it).
    pub fn netns_prefix(&self) -> String {
        format!("tw_{}_", self.lab)
    }
    /// The fabric (underlay) namespace.
    pub fn fabric_netns(&self) -> String {
        format!("{}fabric", self.netns_prefix())
    }
    /// The `external` namespace: a client outside the cluster, on the fabric.
    pub fn external_netns(&self) -> String {
        format!("{}external", self.netns_prefix())
    }
    /// A node's agent files (log, pid, status).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }
    /// The marker a node's agent writes once a pod's endpoint (programs,
    /// identity, policy) is in place; the kubelet starts the pod's
    /// containers only then.
    pub fn endpoint_marker(&self, node: &str, pod_uid: &str) -> PathBuf {
        self.node_dir(node).join("endpoints").join(pod_uid)
    }
    /// A node's namespace.
    pub fn node_netns(&self, node: &str) -> String {
        format!("{}node_{node}", self.netns_prefix())
    }
    /// A pod's namespace.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        short(
            &format!("{}pod_{namespace}_{name}", self.netns_prefix()),
            200,
        )
    }
    /// Whether a namespace name is one of this lab's pod namespaces.
    pub fn is_pod_netns(&self, netns: &str) -> bool {
        netns.starts_with(&format!("{}pod_", self.netns_prefix()))
    }

    /// The lab's cgroup, relative to the cgroup2 mount.
    pub fn cgroup_rel(&self) -> PathBuf {
        PathBuf::from("tollway").join(&self.lab)
    }
    /// The lab's cgroup directory.
    pub fn cgroup(&self) -> Result<PathBuf> {
        Ok(crate::sys::cgroup::mount_point()?.join(self.cgroup_rel()))
    }
    /// Where the lab's own processes (daemon, agents, node execs) run.
    pub fn system_cgroup(&self) -> Result<PathBuf> {
        Ok(self.cgroup()?.join("system"))
    }
    /// A node's cgroup: the parent of its pods' cgroups.
    pub fn node_cgroup(&self, node: &str) -> Result<PathBuf> {
        Ok(self.cgroup()?.join(format!("node_{node}")))
    }
    /// A pod's cgroup.
    pub fn pod_cgroup(&self, node: &str, namespace: &str, name: &str) -> Result<PathBuf> {
        Ok(self
            .node_cgroup(node)?
            .join(short(&format!("pod_{namespace}_{name}"), 200)))
    }

    /// The lab's directory on bpffs (pins are named by lab and node).
    pub fn bpf_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf/tollway").join(&self.lab)
    }
    /// A node's pin directory.
    pub fn bpf_node_dir(&self, node: &str) -> PathBuf {
        self.bpf_dir().join(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_bounded() {
        let p = LabPaths::new("a");
        assert_eq!(p.fabric_netns(), "tw_a_fabric");
        assert_eq!(p.node_netns("node-1"), "tw_a_node_node-1");
        assert!(p.pod_netns("payments", "web").starts_with("tw_a_pod_"));
        assert!(p.is_pod_netns(&p.pod_netns("x", "y")));
        // Another lab whose name starts with "a-" never matches a's prefix.
        let q = LabPaths::new("a-b");
        assert!(!q.fabric_netns().starts_with(&p.netns_prefix()));
        let long = p.pod_netns("ns", &"x".repeat(250));
        assert_eq!(long.len(), 200);
        assert_ne!(long, p.pod_netns("ns", &"x".repeat(249)));
        assert!(check_lab_name("default").is_ok());
        assert!(check_lab_name("My_Lab").is_err());
        assert!(check_lab_name(&"a".repeat(33)).is_err());
    }
}
